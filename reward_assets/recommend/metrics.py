"""Top-k ranking metrics with binary relevance, averaged over the evaluated customers.

Every metric takes the same two inputs: `hits`, an (n, k) boolean matrix whose entry
(u, i) says whether the reward a ranking put at position i + 1 for customer u is relevant,
and `n_relevant`, how many relevant rewards each customer has (at least one). Positions a
ranking could not fill (fewer rewards than k) are simply False.
"""

from __future__ import annotations

import numpy as np

METRICS = ("precision", "recall", "ndcg", "map")


def _check(hits: np.ndarray, n_relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    if hits.ndim != 2 or n_relevant.shape != (hits.shape[0],):
        raise ValueError("hits must be (n, k) and n_relevant (n,)")
    if hits.shape[0] == 0:
        raise ValueError("no customers to evaluate")
    # A customer without relevant items has no defined recall, nDCG or AP.
    if (n_relevant < 1).any() or (hits.sum(axis=1) > n_relevant).any():
        raise ValueError("every customer needs at least one relevant item, and no more hits")
    return hits, n_relevant


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def precision_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    hits, _ = _check(hits, n_relevant)
    return float(hits.mean(axis=1).mean())


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    hits, n_relevant = _check(hits, n_relevant)
    return float((hits.sum(axis=1) / n_relevant).mean())


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """DCG over the ideal DCG of min(k, |relevant|) hits at the top."""
    hits, n_relevant = _check(hits, n_relevant)
    discounts = _discounts(hits.shape[1])
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, hits.shape[1]) - 1]
    return float(((hits @ discounts) / ideal).mean())


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """Mean of AP@k = sum over hit positions i of P@i, over min(k, |relevant|)."""
    hits, n_relevant = _check(hits, n_relevant)
    k = hits.shape[1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    average_precision = (precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k)
    return float(average_precision.mean())


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, float]:
    """All four metrics, keyed `precision@k`, `recall@k`, `ndcg@k`, `map@k`."""
    k = np.shape(hits)[1]
    functions = (precision_at_k, recall_at_k, ndcg_at_k, map_at_k)
    pairs = zip(METRICS, functions, strict=True)
    return {f"{name}@{k}": fn(hits, n_relevant) for name, fn in pairs}
