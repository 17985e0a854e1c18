"""The reward side of the recommendation sets, prepared once and shared by the batch and
the one-customer paths: the rules (`SetRules`), the catalogue sorted by category with its
running sums (`RewardCatalog`), and a chunk of customers' scores against it (`Scorer`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np
import pandas as pd
import scipy.sparse as sp

from reward_assets.recommend.arrays import hash_ids, running_sum
from reward_assets.recommend.eligibility import (
    ALMOST_THERE_RATIO,
    RECENT_DAYS,
    UNREACHABLE_RANK,
    required_rank,
    tier_allowed,
)
from reward_assets.settings import Settings


@dataclass(frozen=True)
class SetRules:
    k: int = 10
    exploration_share: float = 0.1  # share of the k slots for exploration (0 = none)
    max_per_category: int = 3  # diversity
    almost_there_ratio: float = ALMOST_THERE_RATIO
    recent_days: int = RECENT_DAYS
    new_reward_max_redemptions: int = 5  # "new" rewards = few redemptions so far

    def __post_init__(self):
        if self.k < 1 or self.max_per_category < 1:
            raise ValueError("k and max_per_category must be at least 1")
        if not 0 <= self.exploration_share <= 1:
            raise ValueError("exploration_share must be within [0, 1]")
        if self.almost_there_ratio < 1:
            raise ValueError("almost_there_ratio below 1 would flag affordable rewards")

    @classmethod
    def from_settings(cls, settings: Settings) -> SetRules:
        return cls(k=settings.recommendations_k, exploration_share=settings.exploration_share)

    @property
    def exploration_slots(self) -> int:
        # Half up, not Python's half-to-even round: 10 slots at 25% give 3, not 2.
        return int(np.floor(self.k * self.exploration_share + 0.5))


@dataclass(frozen=True)
class RewardCatalog:
    """The reward side, prepared once and shared by the batch and the one-customer paths.

    Rewards are sorted by category, so that each category is one slice of columns.
    """

    reward_id: pd.Index
    categories: np.ndarray
    category_code: np.ndarray
    category_slices: tuple[slice, ...]
    points_cost: np.ndarray
    required_rank: np.ndarray
    redemptions: np.ndarray
    vectors: np.ndarray
    blocks: Mapping[str, slice]
    hash: np.ndarray
    interest_reason: np.ndarray
    new_reason: np.ndarray
    # Running sums over the rewards by increasing cost, one row per tier rank, counting the
    # rewards that rank may redeem: the sum of a customer's affordable ones is one lookup.
    sorted_cost: np.ndarray
    cost_prefix_vectors: np.ndarray
    cost_prefix_counts: np.ndarray
    # (R, R) item-item weights, redeemed reward x scored reward in catalogue order, or None.
    item_weights: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        rewards: pd.DataFrame,
        reward_vectors: np.ndarray,
        blocks: Mapping[str, slice],
        item_weights: np.ndarray | None = None,
    ) -> RewardCatalog:
        """`item_weights` rows and columns are in the order of `rewards`."""
        order = np.argsort(rewards["category"].to_numpy(str), kind="stable")
        frame = rewards.iloc[order].reset_index(drop=True)
        codes, categories = pd.factorize(frame["category"], sort=True)
        bounds = np.searchsorted(codes, np.arange(len(categories) + 1))
        required = required_rank(frame)
        cost = frame["points_cost"].to_numpy(np.float64, na_value=np.nan)
        vectors = np.ascontiguousarray(np.asarray(reward_vectors)[order], dtype=np.float32)
        by_cost = np.argsort(cost, kind="stable")
        allowed = tier_allowed(np.arange(UNREACHABLE_RANK)[:, None], required[by_cost])
        label = frame["category"].str.replace("_", " ", regex=False)
        return cls(
            reward_id=pd.Index(frame["reward_id"]),
            categories=np.asarray(categories, dtype=object),
            category_code=codes,
            category_slices=tuple(slice(a, b) for a, b in pairwise(bounds)),
            points_cost=cost,
            required_rank=required,
            redemptions=frame["redemptions"].fillna(0).to_numpy(np.int64),
            vectors=vectors,
            blocks=dict(blocks),
            hash=hash_ids(frame["reward_id"]),
            interest_reason=("matches your interest in " + label).to_numpy(object),
            new_reason=("new in " + label).to_numpy(object),
            sorted_cost=cost[by_cost],
            cost_prefix_vectors=running_sum(allowed[:, :, None] * vectors[by_cost].astype(float)),
            cost_prefix_counts=running_sum(allowed.astype(np.int64)),
            item_weights=None
            if item_weights is None
            else np.ascontiguousarray(np.asarray(item_weights, np.float32)[np.ix_(order, order)]),
        )

    def item_columns(self, rewards: pd.DataFrame) -> np.ndarray:
        """The catalogue column of each row of `rewards` (the frame it was built from)."""
        return self.reward_id.get_indexer(rewards["reward_id"])

    @property
    def size(self) -> int:
        return len(self.reward_id)

    def in_catalog_order(
        self, history: sp.csr_matrix | None, rewards: pd.DataFrame
    ) -> sp.csr_matrix | None:
        """History columns (in `rewards` order) moved to the catalogue's; None without
        item-item weights."""
        if history is None or self.item_weights is None:
            return None
        # Sorted columns sum in one order, as the one-customer path does.
        order = np.argsort(self.item_columns(rewards))
        return sp.csr_matrix(history)[:, order].sorted_indices()


@dataclass(frozen=True)
class Scorer:
    """A chunk's scores: customer . reward vectors, plus the item-item term when the model
    has item-item weights and the chunk has redemption history."""

    vectors: np.ndarray
    catalog: RewardCatalog
    history: sp.csr_matrix | None

    @cached_property
    def item(self) -> np.ndarray | None:
        """(n, R) history rows times the item-item weights, or None."""
        if self.history is None or self.catalog.item_weights is None:
            return None
        return np.asarray(self.history @ self.catalog.item_weights, np.float32)

    def scores(self, columns: slice | np.ndarray, eligible: np.ndarray | None = None) -> np.ndarray:
        """Scores of the rewards in `columns`, -inf where not `eligible` (when given).

        Not BLAS: OpenBLAS's sgemm sums a row's products in an order that depends on how
        many rows it is given and where the row sits among them (seen on AMD EPYC, where
        even single-threaded chunks of 16 and 2,000 rows disagree in the last bit), so a
        customer's set would depend on who was scored beside them. einsum's loop sums each
        dot product over the 64 dimensions in one fixed order: the one-customer path, any
        chunk size and an incremental run give the batch's bits (about 2.4x sgemm's CPU).
        """
        reward_vectors = self.catalog.vectors[columns]
        scores = np.einsum("ik,jk->ij", self.vectors, reward_vectors, optimize=False)
        if self.item is not None:
            scores = scores + self.item[:, columns]
        if eligible is None:
            return scores
        return np.where(eligible[:, columns], scores, -np.inf)
