"""Which rewards a customer may be offered: the rules the recommendation sets are built with
and the API re-checks a stored set against, so the two can never disagree.

A reward is eligible for a customer when it is available (active and in stock), the
customer's tier may redeem it (tier rank at least the reward's minimum tier rank), the
customer can afford it (cost at most the points balance) and has not redeemed it in the
last `recent_days`. A reward that passes all but the cost, costing at most
`almost_there_ratio` times the balance, is "almost there": a goal to earn points for.

The batch reads availability and the minimum tier rank from `marts.dim_rewards`
(`is_available`, `min_tier_rank`). The API re-checks availability from `active` and
`inventory` with `unavailable_reason`, to say which of the two failed; dim_rewards.sql
cannot import it, so it states the same rule in SQL, and
reward_assets_tests/test_sql_models.py holds the two to each other. Tier ranks come from
the contract's TIERS on both sides.

`tier_allowed` and `affordable` take numbers or numpy arrays alike, so the batch applies
them to whole customers x rewards blocks and the API to one pair.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd

from reward_assets.ingest.contract import LOWEST_TIER, TIER_RANKS

ALMOST_THERE_RATIO = 1.25
RECENT_DAYS = 30
# A missing tier rank reads as the lowest tier's, as staging reads a missing tier.
LOWEST_RANK = TIER_RANKS[LOWEST_TIER]
# Above every tier's rank: what an unavailable reward requires, so no one qualifies.
UNREACHABLE_RANK = max(TIER_RANKS.values()) + 1


class Ineligible(StrEnum):
    """Why a stored recommendation is no longer shown (the API's `dropped` reasons)."""

    NOT_IN_CATALOGUE = "reward_not_in_catalogue"
    INACTIVE = "reward_inactive"
    OUT_OF_STOCK = "out_of_stock"
    TIER_NOT_ALLOWED = "tier_not_allowed"
    INSUFFICIENT_POINTS = "insufficient_points"


def unavailable_reason(active: bool, inventory: int | None) -> Ineligible | None:
    """Why no one may redeem the reward now; None when it is available. A NULL inventory
    means unlimited."""
    if not active:
        return Ineligible.INACTIVE
    if inventory is not None and inventory <= 0:
        return Ineligible.OUT_OF_STOCK
    return None


def required_rank(rewards: pd.DataFrame) -> np.ndarray:
    """The tier rank a customer needs for each reward (is_available, min_tier_rank): its
    minimum tier's while available, UNREACHABLE_RANK otherwise. A missing flag reads as
    unavailable."""
    available = rewards["is_available"].fillna(False).to_numpy(bool)
    rank = rewards["min_tier_rank"].fillna(LOWEST_RANK).to_numpy(np.int8)
    return np.where(available, rank, UNREACHABLE_RANK).astype(np.int8)


def tier_allowed(tier_rank, required):
    return tier_rank >= required


def affordable(points_cost, points_balance, ratio: float = 1.0):
    """Cost within `ratio` times the balance: 1 for an offer, `almost_there_ratio` for a goal."""
    return points_cost <= points_balance * ratio


def eligibility_masks(
    tier_rank: np.ndarray,
    points_balance: np.ndarray,
    required: np.ndarray,
    points_cost: np.ndarray,
    recent: np.ndarray,
    almost_there_ratio: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Customers x rewards masks: eligible, and almost there (eligible but for a cost within
    the ratio). `recent` holds the flat indexes (row x width + column) of the pairs
    redeemed in the last `recent_days`."""
    balance = points_balance[:, None]
    allowed = tier_allowed(tier_rank[:, None], required)
    allowed.flat[recent] = False
    within_reach = allowed & affordable(points_cost, balance, almost_there_ratio)
    eligible = np.logical_and(allowed, affordable(points_cost, balance), out=allowed)
    return eligible, np.logical_xor(within_reach, eligible, out=within_reach)


def blocking_reason(
    *,
    active: bool,
    inventory: int | None,
    min_tier_rank: int,
    points_cost: float,
    tier_rank: int,
    points_balance: float,
    almost_there: bool,
) -> Ineligible | None:
    """Why a stored item may no longer be shown to the customer; None when it may.

    Recency is left to the batch. An almost-there item stays while within reach, and also
    once the customer can afford it.
    """
    unavailable = unavailable_reason(active, inventory)
    if unavailable:
        return unavailable
    if not tier_allowed(tier_rank, min_tier_rank):
        return Ineligible.TIER_NOT_ALLOWED
    ratio = ALMOST_THERE_RATIO if almost_there else 1.0
    if not affordable(points_cost, points_balance, ratio):
        return Ineligible.INSUFFICIENT_POINTS
    return None
