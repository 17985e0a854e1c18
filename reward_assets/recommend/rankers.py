"""The candidate rankers the taste model is compared with, and the interface they share.

Every ranker has `fit(Interactions) -> self` and `score(customer_index) -> (n, R)` float32
over all rewards in `Interactions.rewards` order, higher is better. `Popularity` and
`RandomRanker` are the floors any model has to beat; `Ease` and `ItemKNN` are the
established collaborative filters. `HoldOut` in `recommend.protocol` compares them and
`recommend.evaluate` runs the comparison; the product's own ranker is `recommend.taste`.
"""

from __future__ import annotations

from typing import Protocol, Self

import numpy as np

from reward_assets.recommend.interactions import Interactions


class Ranker(Protocol):
    def fit(self, data: Interactions) -> Self: ...

    def score(self, customer_index: np.ndarray) -> np.ndarray: ...


class Popularity:
    """Everyone gets the same ranking: rewards by how often they were redeemed."""

    def fit(self, data: Interactions) -> Self:
        self.counts = np.bincount(data.codes[1], minlength=data.n_rewards).astype(np.float32)
        return self

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(customer_index), 1))


class RandomRanker:
    """Uniform random scores, a fixed function of (seed, customer row, reward row)."""

    def __init__(self, seed: int = 42):
        self.seed = seed

    def fit(self, data: Interactions) -> Self:
        self.n_rewards = data.n_rewards
        return self

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        customer = np.asarray(customer_index, dtype=np.uint64)[:, None]
        reward = np.arange(self.n_rewards, dtype=np.uint64)[None, :]
        # SplitMix64 finaliser over a mix of the three keys: cheap, well spread bits.
        x = customer * np.uint64(0x9E3779B97F4A7C15) + reward * np.uint64(0xD1B54A32D192ED03)
        x ^= np.uint64(self.seed & 0xFFFFFFFFFFFFFFFF)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
        return ((x >> np.uint64(40)).astype(np.float32)) / np.float32(2**24)


class Ease:
    """EASE (Steck 2019): B = I - P / diag(P), P = (X'X + l2 I)^-1, so diag(B) = 0."""

    def __init__(self, l2: float = 100.0):
        self.l2 = l2

    def fit(self, data: Interactions) -> Self:
        self.matrix = data.redemption_matrix
        gram = data.gram.copy()
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = np.linalg.inv(gram)
        self.weights = (-inverse / np.diag(inverse)[None, :]).astype(np.float32)
        np.fill_diagonal(self.weights, 0.0)
        return self

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[customer_index] @ self.weights, dtype=np.float32)


class ItemKNN:
    """Item-based k nearest neighbours: cosine similarity of reward redemption columns.

    A customer's score for a reward sums its similarities to the customer's redeemed
    rewards, over the reward's `neighbors` most similar rewards only.
    """

    def __init__(self, neighbors: int = 50):
        self.neighbors = neighbors

    def fit(self, data: Interactions) -> Self:
        self.matrix = data.redemption_matrix
        similarity = cosine_similarity(data.gram)
        np.fill_diagonal(similarity, 0.0)
        if self.neighbors < similarity.shape[0]:
            # Rank of each row within its column; keep the top `neighbors` of every column.
            order = np.argsort(-similarity, axis=0, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(order.shape[0])[:, None], axis=0)
            similarity[rank >= self.neighbors] = 0.0
        self.similarity = similarity.astype(np.float32)
        return self

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[customer_index] @ self.similarity, dtype=np.float32)


def cosine_similarity(gram: np.ndarray) -> np.ndarray:
    """Reward x reward cosine similarity of the columns of a binary matrix (dense), from
    their Gram matrix (`Interactions.gram`)."""
    norms = np.sqrt(np.diag(gram))
    norms[norms == 0] = 1.0
    return gram / norms[:, None] / norms[None, :]
