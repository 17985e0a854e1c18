"""The churn score when no approved model can serve: the recency/frequency baseline.

When the model cannot be trained (too little history, one outcome only) or is rejected
with no approved version to keep, every active customer still gets a score: the mean of
two percentile ranks among the active customers, days since the last purchase (more is
riskier) and purchases in the last 90 days (fewer is riskier). The bands cut the score at
the model's quantiles (the riskiest 10% 'high', the next 20% 'medium').

The score is a rank, not a probability. Where the data can label a past as-of date (one
horizon before the data end) with both outcomes, `churn_probability` is the churn rate
that date showed among customers of the same score decile; otherwise it is left empty, so
no rule reading it (`at_risk` at 0.5) acts on a number that means nothing.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from reward_assets.churn.model import (
    BAND_QUANTILES,
    day_stamp,
    is_active,
    labelled_snapshot,
    outside_population,
)
from reward_assets.warehouse.store import Warehouse

VERSION = "fallback:recency"
# The `customer_features` columns the score reads.
INPUTS = ("recency_days", "frequency_90d")
SOURCE = "recency_frequency"
DECILES = 10


def recency_frequency(features: pd.DataFrame) -> pd.Series:
    """The score of each row in [0, 1], higher is riskier, ranked within `features`."""
    recency = features["recency_days"].astype("float64").rank(pct=True)
    rare = (-features["frequency_90d"].astype("float64")).rank(pct=True)
    return ((recency + rare) / 2).rename("score")


def decile_rates(labelled: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(inner decile cut points of the score, churn rate per decile) on a labelled
    snapshot, or None when it lacks an outcome."""
    if labelled.empty or labelled["churned"].nunique() < 2:
        return None
    score = recency_frequency(labelled).to_numpy()
    cuts = np.unique(np.quantile(score, np.linspace(0, 1, DECILES + 1)[1:-1]))
    bucket = np.searchsorted(cuts, score, side="right")
    churned = labelled["churned"].to_numpy(dtype=float)
    rates = np.bincount(bucket, churned, cuts.size + 1) / np.maximum(
        np.bincount(bucket, minlength=cuts.size + 1), 1
    )
    return cuts, rates


def _named(frame: pd.DataFrame, column: str) -> np.ndarray:
    return (column + "=" + frame[column].astype(int).astype(str)).to_numpy()


def fallback_scores(
    features: pd.DataFrame,
    calibration: tuple[np.ndarray, np.ndarray] | None,
    active_days: int = 90,
    as_of: dt.date | None = None,
) -> pd.DataFrame:
    """`churn_scores` rows for every customer of `features` (see the module docstring);
    customers outside the label's population are `lapsed` or `never_purchased` as with the
    model. A rank moves with everyone else's, so every row is computed afresh (computed
    `as_of`, no inputs key)."""
    mask = is_active(features, active_days)
    active = features.loc[mask]
    score = recency_frequency(active).to_numpy()
    if len(score):
        medium, high = np.quantile(score, BAND_QUANTILES)
    else:
        medium = high = np.inf
    if calibration is None:
        probability = np.full(len(score), np.nan)
    else:
        cuts, rates = calibration
        probability = rates[np.searchsorted(cuts, score, side="right")]
    inactive = features.loc[~mask]
    scored = pd.DataFrame(
        {
            "customer_id": active["customer_id"].to_numpy(),
            "churn_probability": probability,
            "risk_band": np.select([score >= high, score >= medium], ["high", "medium"], "low"),
            "driver_1": _named(active, "recency_days"),
            "driver_2": _named(active, "frequency_90d"),
            "driver_3": None,
            "source": SOURCE,
        }
    )
    scores = pd.concat([scored, outside_population(inactive)], ignore_index=True)
    scores["computed_as_of"] = day_stamp(as_of)
    scores["inputs_key"] = pd.array([pd.NA] * len(scores), dtype="Int64")
    return scores


def calibrate(warehouse: Warehouse, data_end: dt.date, horizon_days: int, active_days: int = 90):
    """`decile_rates` at the latest date the data can label (one horizon before its end),
    or None when no such date has both outcomes."""
    labelled = labelled_snapshot(
        warehouse, data_end - dt.timedelta(days=horizon_days), horizon_days, active_days
    )
    return decile_rates(labelled)
