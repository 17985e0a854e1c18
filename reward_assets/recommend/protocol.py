"""The offline protocol that compares rankers: hold out redemptions, rank, count hits.

`HoldOut.split` keeps a seeded random (or the latest) share of the redemptions back and
evaluates a ranker fitted on the rest by the held-out rewards it ranks in its top k, for a
capped sample of customers; `top_k` is the ranking every consumer shows (rewards already
redeemed last, ties to the lower reward row). `ranking_quality` is the bar the served
ranker's validation metrics must clear before it may rank for customers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from reward_assets.recommend.interactions import Interactions, binary_matrix
from reward_assets.recommend.metrics import METRICS, ranking_metrics
from reward_assets.recommend.rankers import Ranker


def split_rows(data: Interactions, split: str, seed: int, test_share: float = 0.25) -> np.ndarray:
    """Boolean test mask over redemption rows: a seeded random share, or the latest ones."""
    n = len(data.redemptions)
    n_test = round(n * test_share)
    test = np.zeros(n, dtype=bool)
    if split == "random":
        test[np.random.default_rng(seed).permutation(n)[:n_test]] = True
    elif split == "temporal":
        order = np.argsort(data.redemptions["redeemed_at"].to_numpy(), kind="stable")
        test[order[n - n_test :]] = True
    else:
        raise ValueError(f"split must be 'random' or 'temporal', not {split!r}")
    return test


@dataclass
class HoldOut:
    """Training data and, for a sample of customers, their held-out relevant rewards."""

    train: Interactions
    customers: np.ndarray  # customer rows evaluated (sorted)
    relevant: sp.csr_matrix  # (len(customers), R): held-out rewards not redeemed in training
    eligible: int  # customers with at least one relevant reward, before the cap
    train_rows: int
    test_rows: int

    @classmethod
    def split(
        cls,
        data: Interactions,
        split: str = "random",
        seed: int = 42,
        max_customers: int = 50_000,
        test_share: float = 0.25,
    ) -> HoldOut:
        test = split_rows(data, split, seed, test_share)
        train = data.subset(np.flatnonzero(~test))
        customer, reward = data.codes
        shape = (data.n_customers, data.n_rewards)
        held_out = binary_matrix(shape, customer[test], reward[test])
        relevant = held_out - held_out.multiply(train.redemption_matrix)
        relevant.eliminate_zeros()
        candidates = np.flatnonzero(relevant.getnnz(axis=1))
        chosen = candidates
        if candidates.size > max_customers:
            rng = np.random.default_rng(seed)
            chosen = np.sort(rng.choice(candidates, size=max_customers, replace=False))
        return cls(
            train=train,
            customers=chosen,
            relevant=relevant[chosen].tocsr(),
            eligible=int(candidates.size),
            train_rows=int((~test).sum()),
            test_rows=int(test.sum()),
        )

    def evaluate(self, ranker: Ranker, k: int = 10) -> dict[str, float]:
        """Metrics of a ranker fitted on `train`."""
        if self.customers.size == 0:
            return {f"{name}@{k}": float("nan") for name in METRICS}
        return ranking_metrics(self.hits(ranker, k), self.relevant.getnnz(axis=1))

    def hits(self, ranker: Ranker, k: int = 10) -> np.ndarray:
        """(customers, k) boolean: whether the reward ranked at each position is relevant.

        The ranking is `top_k`'s: training rewards last, ties to the lower reward row. Only
        the relevant rewards' positions matter, so each is found by counting the rewards
        ranked above it, which is cheaper than sorting every customer's scores; and only
        for the rewards that may be in the top k (`_kth_floor`), most are far below it.
        """
        hits = np.zeros((self.customers.size, k), dtype=bool)
        reward = np.arange(self.train.n_rewards)
        for start, stop in self._chunks():
            rows = self.customers[start:stop]
            scores = _without(ranker.score(rows), self.train.redemption_matrix[rows])
            pairs = self.relevant[start:stop].tocoo()
            # Below the floor, a reward has k rewards ranked above it at least (a NaN score
            # is never below: its position is counted).
            near = ~(scores[pairs.row, pairs.col] < _kth_floor(scores, k)[pairs.row])
            row, col = pairs.row[near], pairs.col[near]
            own = scores[row, col][:, None]
            others = scores[row]
            position = (others > own).sum(axis=1) + (
                (others == own) & (reward[None, :] < col[:, None])
            ).sum(axis=1)
            shown = position < k
            hits[start + row[shown], position[shown]] = True
        return hits

    def _chunks(self) -> list[tuple[int, int]]:
        """Customer ranges whose scores and relevant pairs hold about 4M values each."""
        per_chunk = max(1, 4_000_000 // max(self.train.n_rewards, 1))
        weight = 1 + np.diff(self.relevant.indptr)
        group = (np.cumsum(weight) - 1) // per_chunk
        starts = np.flatnonzero(np.diff(group, prepend=-1))
        stops = np.append(starts[1:], group.size)
        return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _kth_floor(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, a value at or below its k-th largest score: the k-th largest of the maxima
    of 4k disjoint sets of columns (k different scores reach it), an elementwise pass over
    the scores where the k-th largest itself takes a selection per row. -inf with fewer
    than k columns."""
    rows, columns = scores.shape
    if columns < k:
        return np.full(rows, -np.inf, np.float32)
    sets = min(columns, 4 * k)
    # Set s holds columns s, s + sets, ...; columns past a whole number of sets are left
    # out, which only lowers the floor. fmax leaves NaN scores out.
    maxima = np.fmax.reduce(scores[:, : sets * (columns // sets)].reshape(rows, -1, sets), axis=1)
    # NaN scores rank below every other: a set of them reaches nothing.
    maxima[np.isnan(maxima)] = -np.inf
    return np.partition(maxima, sets - k, axis=1)[:, sets - k]


def _without(scores: np.ndarray, excluded: sp.csr_matrix) -> np.ndarray:
    """A float copy of `scores` with the excluded (row, reward) entries at -inf."""
    scores = np.array(scores, dtype=np.float32)
    rows = np.repeat(np.arange(excluded.shape[0]), np.diff(excluded.indptr))
    scores[rows, excluded.indices] = -np.inf
    return scores


def top_k(scores: np.ndarray, k: int, excluded: sp.csr_matrix | None = None) -> np.ndarray:
    """(n, min(k, R)) reward columns, best first; ties to the lower column.

    `excluded` (n, R), e.g. rewards already redeemed, ranks those entries last.
    """
    if excluded is not None:
        scores = _without(scores, excluded)
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]


def ranking_quality(validation_metrics: dict, min_lift: float = 1.0) -> list[str]:
    """Reasons the served ranker may not rank for customers (empty list: it may).

    The bar is the baseline, not a number tuned to one data set: the served model's
    validation nDCG@k must be at least `min_lift` times popularity's on the same split
    (by default, not below it).
    """
    key = f"ndcg@{validation_metrics['k']}"
    model = validation_metrics["served_model"][key]
    popularity = validation_metrics["popularity"][key]
    if not model >= min_lift * popularity:
        return [
            f"served model ({validation_metrics['served']}) validation {key} {model:.4f} is "
            f"below {min_lift:g}x popularity's {popularity:.4f}"
        ]
    return []


def lift_over_popularity(validation_metrics: dict) -> float:
    """The served model's validation nDCG@k over popularity's (reported, not required)."""
    key = f"ndcg@{validation_metrics['k']}"
    popularity = validation_metrics["popularity"][key]
    return validation_metrics["served_model"][key] / popularity if popularity > 0 else float("nan")
