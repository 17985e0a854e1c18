"""Who the daily engagement cycle talks to: each customer's segment, campaign and day.

Segments, first match wins: `new` (signed up within `new_days` of as-of; onboarding
writes to them), `dormant` (no purchase in the churn model's active window, or never),
`at_risk` (churn probability at or above the threshold) and `active` (everyone else).
Contacts are spread over days by a stable hash of the customer id, so each day's cycle
writes to about a seventh of the active and at-risk customers and a 28th of the dormant
ones, and a customer's day does not move between runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pandas as pd

LIFECYCLE_STAGES = ("new", "active", "at_risk", "dormant")
CAMPAIGN_BY_SEGMENT = {"active": "rewards_digest", "at_risk": "win_back", "dormant": "reactivation"}
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
    new_days: int = 14,
    at_risk_probability: float = 0.5,
) -> pd.DataFrame:
    """One row per customer, in `customers` order.

    Columns: customer_id, segment, campaign (None for `new`), contact_today, and the
    churn_probability, open_probability and click_probability the choice was made with
    (NaN where `churn` or `engagement` has no row or no value for the customer).
    """
    ids = customers["customer_id"]
    # reindex refuses duplicate labels, so a customer scored twice fails loudly.
    scores = churn.set_index("customer_id").loc[:, ["churn_probability", "risk_band"]].reindex(ids)
    rates = engagement.set_index("customer_id").loc[:, ENGAGEMENT_RATES].reindex(ids)
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
