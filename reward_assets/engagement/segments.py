"""Who the daily engagement cycle talks to: each customer's segment, campaign and day.

Segments, first match wins: `new` (signed up within `new_days` of as-of; onboarding
writes to them), `dormant` (no purchase in the churn model's active window, or never),
`at_risk` (churn probability at or above the threshold) and `active` (everyone else).
Contacts are spread over days by a stable hash of the customer id, so each day's cycle
writes to about a seventh of the active and at-risk customers and a 28th of the dormant
ones, and a customer's day does not move between runs.

`serve_segments` writes them to the served table `ml.customer_segments`, which the
engagement plan and the API read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reward_assets.contact.campaigns import CAMPAIGN_BY_SEGMENT
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.quality.publish import Audited, replace_served
from reward_assets.recommend.inputs import positions
from reward_assets.settings import Settings
from reward_assets.warehouse.store import Warehouse

LIFECYCLE_STAGES = ("new", "active", "at_risk", "dormant")
NEW_DAYS = 14
AT_RISK_PROBABILITY = 0.5
# Each segment's rule in words, for an email's lineage (`email explain`); first match wins.
SEGMENT_RULES = {
    "new": f"signed up within {NEW_DAYS} days of as-of",
    "dormant": "no purchase in the churn model's active window, or never",
    "at_risk": f"churn probability at or above {AT_RISK_PROBABILITY}",
    "active": "none of the above",
}
SEGMENTS_TABLE = "ml.customer_segments"
SEGMENT_COLUMNS = {
    "as_of": "DATE",
    "customer_id": "VARCHAR",
    "segment": "VARCHAR",
    "campaign": "VARCHAR",
    "contact_today": "BOOLEAN",
}
# Risk bands that `ChurnModel.score` gives customers outside its active population.
INACTIVE_BANDS = ("lapsed", "never_purchased")
ENGAGEMENT_RATES = ["open_probability", "click_probability"]
ACTIVE_PERIOD_DAYS = 7
DORMANT_PERIOD_DAYS = 28


def segment_customers(
    customers: pd.DataFrame,
    churn: pd.DataFrame,
    engagement: pd.DataFrame,
    as_of: dt.date,
    *,
    new_days: int = NEW_DAYS,
    at_risk_probability: float = AT_RISK_PROBABILITY,
) -> pd.DataFrame:
    """One row per customer, in `customers` order.

    Columns: customer_id, segment, campaign (None for `new`), contact_today, and the
    churn_probability, open_probability and click_probability the choice was made with
    (NaN where `churn` or `engagement` has no row or no value for the customer).
    """
    ids = customers["customer_id"]
    scores = _aligned(churn, ids, ["churn_probability", "risk_band"])
    rates = _aligned(engagement, ids, ENGAGEMENT_RATES)
    probability = scores["churn_probability"].astype("float64")
    signup_day = pd.to_datetime(customers["signup_at"], utc=True).dt.tz_convert(None).dt.normalize()
    age_days = (pd.Timestamp(as_of) - signup_day).dt.days
    new = (age_days < new_days).to_numpy()  # NaN (no sign-up date) compares False
    dormant = scores["risk_band"].isin(INACTIVE_BANDS).to_numpy()
    at_risk = (probability >= at_risk_probability).to_numpy()
    segment = np.select([new, dormant, at_risk], ["new", "dormant", "at_risk"], "active")
    campaign = np.select(
        [new, dormant, at_risk],
        [None, CAMPAIGN_BY_SEGMENT["dormant"], CAMPAIGN_BY_SEGMENT["at_risk"]],
        CAMPAIGN_BY_SEGMENT["active"],
    )

    day = as_of.toordinal()
    spread = _contact_hash(ids)
    contact_today = np.select(
        [new, dormant],
        [False, spread % DORMANT_PERIOD_DAYS == day % DORMANT_PERIOD_DAYS],
        spread % ACTIVE_PERIOD_DAYS == day % ACTIVE_PERIOD_DAYS,
    )
    return pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "segment": segment,
            "campaign": pd.Series(campaign, dtype=object),
            "contact_today": contact_today.astype(bool),
            "churn_probability": probability.to_numpy(),
            **{name: rates[name].to_numpy(dtype="float64") for name in ENGAGEMENT_RATES},
        }
    )


def _aligned(frame: pd.DataFrame, ids: pd.Series, columns: list[str]) -> pd.DataFrame:
    """`frame`'s `columns` for each of `ids`, in their order, missing where a customer has
    no row; a customer with two rows is an error. A position lookup through Arrow: a
    pandas reindex on a million string ids cost half a second."""
    if frame["customer_id"].duplicated().any():
        raise ValueError("a customer has duplicate rows among the scores")
    # The lookup's -1 (no row) takes the empty row appended last.
    padded = pd.concat([frame[columns], frame[columns].iloc[:0].reindex([0])])
    return padded.iloc[positions(ids, frame["customer_id"])].reset_index(drop=True)


def _contact_hash(customer_ids: pd.Series) -> np.ndarray:
    # sha256 rather than Python's hash(), which is salted per process, or pandas' hashing,
    # which is not promised stable across versions: a changed hash would move contact days.
    # Bytes 4-8, because the holdout reads the first four: contact days are independent of
    # the holdout. A Python loop, but about half a second per million ids.
    sha256 = hashlib.sha256
    digests = b"".join(
        [sha256(c.encode()).digest()[4:8] for c in customer_ids.astype(str).tolist()]
    )
    return np.frombuffer(digests, dtype=">u4").astype(np.int64)


@dataclass(frozen=True)
class ServedSegments:
    as_of: dt.date
    audited: Audited  # the build, its checks, and whether it was published
    counts: pd.DataFrame  # per segment: customers, contact_today


def serve_segments(warehouse: Warehouse, settings: Settings) -> ServedSegments:
    """Segment every customer of the warehouse as of AS_OF from the churn and engagement
    scores, and replace and publish the served segments table if its checks pass."""
    as_of = resolve_as_of(warehouse, settings.as_of)
    segments = segment_customers(
        warehouse.frame("SELECT customer_id, signup_at FROM marts.dim_customers"),
        warehouse.frame("SELECT customer_id, churn_probability, risk_band FROM ml.churn_scores"),
        warehouse.frame(
            "SELECT customer_id, open_probability, click_probability FROM ml.engagement_scores"
        ),
        as_of,
    )
    segments["as_of"] = as_of
    audited = replace_served(
        warehouse, SEGMENTS_TABLE, SEGMENT_COLUMNS, [segments], settings.data_dir
    )
    counts = segments.groupby("segment").agg(
        customers=("customer_id", "size"), contact_today=("contact_today", "sum")
    )
    return ServedSegments(as_of, audited, counts.reset_index())
