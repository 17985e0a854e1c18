"""The ranking fallback: what sets are built from when no ranker may serve.

When there are too few redemptions to train or validate the served ranker, or it was
rejected with no approved version to keep, the sets are still built by the same rules
(eligibility, diversity, almost there, exploration: `recommend.sets`) from a plain score
that is again a dot product of customer and reward vectors, in the same three blocks:

- taste: the customer's share of non-refund purchases per category (times AFFINITY)
  against the reward's category;
- segment: the customer's tier against the reward's share of that tier's redemptions
  (times TIER);
- latent: one against the reward's share of all redemptions.

Shares are at most one, so the weights make the first source a customer has decide:
category affinity from purchases where they exist, else popularity within the tier, else
global popularity; the later ones break ties. That source names the customer's rows:
`source` and `model_version` `fallback:<source>`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reward_assets.recommend.inputs import positions
from reward_assets.recommend.interactions import TIER_SEGMENTS, CustomerProfiles
from reward_assets.recommend.sets import SetRules, build_sets

SOURCES = ("category_affinity", "tier_popularity", "popularity")
AFFINITY, TIER = 100.0, 10.0


def version(source: str) -> str:
    return f"fallback:{source}"


@dataclass(frozen=True)
class Fallback:
    customer_vectors: np.ndarray  # (n, d) float32
    reward_vectors: np.ndarray  # (R, d) float32, in the order of the rewards given
    blocks: dict[str, slice]
    source: np.ndarray  # (n,) one of SOURCES per customer

    def groups(self) -> list[tuple[str, np.ndarray]]:
        """Each source with the customer rows it ranks for (sources without any left out)."""
        found = [(name, np.flatnonzero(self.source == name)) for name in SOURCES]
        return [(name, rows) for name, rows in found if rows.size]


def fallback_ranker(
    customers: pd.DataFrame,
    rewards: pd.DataFrame,
    redemptions: pd.DataFrame | None = None,
    category_purchases: pd.DataFrame | None = None,
) -> Fallback:
    """The fallback for `customers` (customer_id, tier) over `rewards` (reward_id, category,
    and `redemptions`, a count, used when no redemption rows are given).

    redemptions: customer_id, reward_id; category_purchases: customer_id, category,
    purchases (as `Interactions` has them).
    """
    categories = sorted(rewards["category"].astype(str).str.lower().unique())
    category = pd.Index(categories).get_indexer(rewards["category"].astype(str).str.lower())
    profiles = CustomerProfiles(customers, category_purchases, categories)
    segment = profiles.segments
    purchases = profiles.purchases.toarray()
    totals = purchases.sum(axis=1, keepdims=True)
    affinity = np.divide(purchases, totals, out=np.zeros_like(purchases), where=totals > 0)

    by_segment = np.zeros((len(TIER_SEGMENTS), len(rewards)))
    if redemptions is not None:
        who = positions(redemptions["customer_id"], customers["customer_id"])
        what = pd.Index(rewards["reward_id"].astype(str)).get_indexer(
            redemptions["reward_id"].astype(str)
        )
        known = (who >= 0) & (what >= 0)
        np.add.at(by_segment, (segment[who[known]], what[known]), 1.0)
        overall = by_segment.sum(axis=0)
    else:
        overall = rewards["redemptions"].fillna(0).to_numpy(np.float64)
    in_segment = by_segment.sum(axis=1, keepdims=True)
    segment_share = by_segment / np.maximum(in_segment, 1.0)
    overall_share = overall / max(overall.sum(), 1.0)

    n_categories = len(categories)
    blocks = {
        "taste": slice(0, n_categories),
        "segment": slice(n_categories, n_categories + len(TIER_SEGMENTS)),
        "latent": slice(n_categories + len(TIER_SEGMENTS), n_categories + len(TIER_SEGMENTS) + 1),
    }
    customer_vectors = np.hstack(
        [AFFINITY * affinity, np.eye(len(TIER_SEGMENTS))[segment], np.ones((len(segment), 1))]
    )
    reward_vectors = np.hstack(
        [np.eye(n_categories)[category], TIER * segment_share.T, overall_share[:, None]]
    )
    source = np.where(
        totals[:, 0] > 0,
        SOURCES[0],
        np.where(in_segment[segment, 0] > 0, SOURCES[1], SOURCES[2]),
    )
    return Fallback(
        customer_vectors.astype(np.float32), reward_vectors.astype(np.float32), blocks, source
    )


def fallback_sets(
    customers: pd.DataFrame,
    fallback: Fallback,
    rewards: pd.DataFrame,
    recent: pd.DataFrame,
    last_redeemed: pd.DataFrame,
    rules: SetRules,
    as_of: dt.date,
    seed: int = 42,
) -> Iterator[pd.DataFrame]:
    """`build_sets` for each source's customers, rows labelled with that source."""
    for name, rows in fallback.groups():
        yield from build_sets(
            customers.iloc[rows].reset_index(drop=True),
            fallback.customer_vectors[rows],
            rewards,
            fallback.reward_vectors,
            fallback.blocks,
            recent,
            last_redeemed,
            rules,
            model_version=version(name),
            as_of=as_of,
            seed=seed,
            source=name,
        )
