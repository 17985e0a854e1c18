"""Reward matching: the first rewards to show a customer the warehouse does not know yet.

New customers have no history, so their vector comes from their sign-up preferences and
tier (the taste model's cold start) and the set follows the same eligibility rules as the
daily `recommendation_sets`. Before any ranker is approved, the ranking fallback
(`recommend.fallback`, global popularity for customers without purchases) stands in.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

import pandas as pd

from reward_assets.ingest.contract import LOWEST_TIER, TIER_RANKS
from reward_assets.ml.registry import ModelRegistry, NoServingModel
from reward_assets.recommend.fallback import fallback_ranker, fallback_sets
from reward_assets.recommend.served import ServedModel
from reward_assets.recommend.sets import COLUMNS, SetRules, build_sets


def matching_customers(customers: pd.DataFrame) -> pd.DataFrame:
    """Landing rows (customer_id, tier, points_balance, preferred_categories) in the shape
    the recommendation rules read, with the staging defaults (lowest tier, no points)."""
    tier = customers["tier"].fillna(LOWEST_TIER).str.lower()
    tier = tier.where(tier.isin(TIER_RANKS), LOWEST_TIER)
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].astype(str),
            "tier": tier,
            "tier_rank": tier.map(TIER_RANKS).astype("int64"),
            "points_balance": pd.to_numeric(customers["points_balance"]).fillna(0),
            "preferred_categories": customers["preferred_categories"],
        }
    ).reset_index(drop=True)


def cold_start_sets(
    customers: pd.DataFrame,
    rewards: pd.DataFrame,
    rules: SetRules,
    as_of: dt.date,
    model: ServedModel | None,
    model_version: str | None,
) -> pd.DataFrame:
    """Recommendation rows (COLUMNS) for `customers` (see `matching_customers`).

    rewards: reward_id, name, category, points_cost, min_tier_rank, is_available,
    redemptions (as `eligibility_inputs` returns them).
    """
    no_history = pd.DataFrame(columns=["customer_id", "reward_id"])
    last_redeemed = pd.DataFrame(columns=["customer_id", "category", "reward_name"])
    if model is None:
        fallback = fallback_ranker(customers, rewards)
        chunks = fallback_sets(
            customers, fallback, rewards, no_history, last_redeemed, rules, as_of
        )
    else:
        chunks = build_sets(
            customers,
            model.customer_vectors(customers, no_history),
            rewards,
            model.reward_vectors(rewards),
            model.blocks,
            no_history,
            last_redeemed,
            rules,
            model_version=model_version or "",
            as_of=as_of,
        )
    # No customers (all decided already, say by the API) gives no chunks, not an error.
    frames = list(chunks)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


def first_offers(
    customers: pd.DataFrame,
    rewards: pd.DataFrame,
    rules: SetRules,
    as_of: dt.date,
    registry: ModelRegistry,
) -> tuple[pd.DataFrame, str | None]:
    """New customers' first rewards from the serving ranker (the fallback before one is
    approved), with the catalogue columns an email needs, and the model version used.

    The onboarding job and the API's welcome both match this way, so they agree.
    customers: as `customers_by_id` gives them; rewards: as `reward_catalog` gives them.
    """
    try:
        record = registry.serving("taste_model")
        model, version = _taste_model(Path(record.artefact_path)), record.version
    except NoServingModel:
        model, version = None, None
    sets = cold_start_sets(matching_customers(customers), rewards, rules, as_of, model, version)
    offers = sets.merge(rewards[["reward_id", "name", "category", "points_cost"]], on="reward_id")
    return offers, version


@lru_cache(maxsize=2)
def _taste_model(path: Path) -> ServedModel:
    """Loaded once per version (each version has its own folder), not once per request."""
    return ServedModel.load(path)
