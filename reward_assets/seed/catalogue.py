"""The reward catalogue: drawing rewards and weighing them per tier.

Rewards get a category, a points cost, inventory, a minimum tier, an active flag and a Zipf
popularity; `reward_weights` is a reward's weight for a customer of each tier before taste,
used by the simulated redemptions and by the ranking tests' oracle.
"""

from __future__ import annotations

import numpy as np

from reward_assets.ingest.contract import TIERS
from reward_assets.seed.frames import Frame
from reward_assets.seed.model import CATEGORIES, REWARD_ADJECTIVES, Model


def draw_rewards(rng: np.random.Generator, n: int, model: Model) -> Frame:
    category = rng.integers(len(CATEGORIES), size=n)
    cost = rng.lognormal(np.log(model.reward_cost_median), model.reward_cost_sigma, n)
    cost = np.clip(np.round(cost / 50) * 50, 100, 100_000).astype(np.int64)
    inventory = rng.integers(1, 5_000, size=n)
    inventory[rng.random(n) < model.reward_out_of_stock_share] = 0
    min_tier = rng.choice(len(TIERS), size=n, p=model.reward_min_tier_shares)
    active = rng.random(n) >= model.reward_inactive_share
    # So that cust001..cust010 always have several affordable choices.
    cheapest = np.argsort(cost, kind="stable")[:5]
    active[cheapest] = True
    inventory[cheapest] = np.maximum(inventory[cheapest], 100)
    min_tier[cheapest] = 0
    rank = rng.permutation(n) + 1
    return {
        "category": category,
        "points_cost": cost,
        "inventory": inventory,
        "min_tier": min_tier,
        "active": active,
        "adjective": rng.integers(len(REWARD_ADJECTIVES), size=n),
        "item": rng.integers(5, size=n),
        "popularity": 1.0 / rank**model.reward_zipf_exponent,
    }


def reward_weights(rewards: Frame, model: Model) -> np.ndarray:
    """(tier, reward) weight of a reward for a customer of that tier, before taste.

    Popularity, times eligibility (min tier, active, in stock), times a soft affordability
    against the tier's typical balance.
    """
    tiers = np.arange(len(TIERS))[:, None]
    typical = np.asarray(model.tier_typical_balance)[:, None]
    afford = np.minimum(1.0, typical / rewards["points_cost"][None, :])
    available = rewards["active"] & (rewards["inventory"] > 0)
    eligible = (rewards["min_tier"][None, :] <= tiers) & available[None, :]
    return rewards["popularity"][None, :] * afford * eligible
