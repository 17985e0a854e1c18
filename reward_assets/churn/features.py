"""Customer features as of any date, from the `customer_features` SQL model, and the
candidate inputs of the churn model among them.

The model trains on several past as-of dates; the SQL is the single definition of each
feature, so training and scoring can never compute them differently.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from reward_assets.ingest.clock import as_of_params
from reward_assets.warehouse.sql_models import SQL_DIR, load_models, render
from reward_assets.warehouse.store import Warehouse

# A share of the customers, the same at every date and on every engine: those whose id's
# MD5 starts below `:sample_cut` (eight hex digits; "ffffffff" takes nearly all).
SAMPLE = (
    "SELECT customer_id FROM marts.dim_customers WHERE SUBSTR(MD5(customer_id), 1, 8) < :sample_cut"
)


def features_sql(sampled: bool = False) -> str:
    """The `customer_features` model's SELECT, bound by `as_of_params`; `sampled`, for the
    customers of `SAMPLE` only: each table it reads holds just their rows, so their
    features are computed as for everyone, the others' not at all. One value reads beyond
    a customer's rows, the first day of data (`history_days`): the caller compares it."""
    models = load_models(SQL_DIR)
    model = models["customer_features"]
    if not sampled:
        return render(model, models)
    tables = {
        ref: f"(SELECT * FROM {models[ref].table} WHERE customer_id IN "
        "(SELECT customer_id FROM sampled_customers))"
        for ref in model.refs
    }
    return (
        f"WITH sampled_customers AS MATERIALIZED ({SAMPLE}) "
        f"SELECT * FROM ({render(model, models, tables)}) features"
    )


def sample_cut(share: float) -> str:
    """`:sample_cut` for a share of the customers."""
    return f"{min(round(share * 16**8), 16**8 - 1):08x}"


def features_as_of(warehouse: Warehouse, as_of: dt.date) -> pd.DataFrame:
    """One row per customer signed up by `as_of`, using events before the end of that day."""
    return warehouse.frame(features_sql(), as_of_params(as_of))


# The churn model's candidate inputs, in groups: the first always enters, each other one
# joins when it raises validation ROC-AUC (`churn/selection.py`), so what real data
# carries decides the inputs, not a fixed list. A window longer than the history at an
# as-of date is NULL in the SQL, which the trees treat as missing.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "recency": ("recency_days", "purchases_30d", "trend_30d"),
    "rhythm": ("mean_gap_days", "last_gap_days", "recency_gap_ratio"),
    "frequency": (
        "purchases_60d",
        "purchases_90d",
        "purchases_180d",
        "purchases_total",
        "purchase_days_30d",
        "purchase_days_60d",
        "purchase_days_90d",
        "purchase_days_180d",
        "purchase_days_total",
    ),
    "monetary": (
        "spend_30d",
        "spend_60d",
        "spend_90d",
        "spend_180d",
        "spend_total",
        "avg_basket",
        "refund_share",
    ),
    "tenure": ("tenure_days",),
    "loyalty": ("tier_rank", "points_balance", "redemptions_90d", "redemptions_total"),
    "email": ("emails_sent_90d", "open_rate_90d", "click_rate_90d", "days_since_engagement"),
}
FEATURES = tuple(name for group in FEATURE_GROUPS.values() for name in group)
# Totals over all history, and tenure, grow with how long the data reaches back: at the
# training dates the warehouse holds less of it than at scoring time, so they are
# candidates only when every training date has the longest window's worth (the seeded
# data's 32-60 days would teach the trees totals that scoring never sees; on the seeded
# world they cost 0.03 of validation ROC-AUC).
HISTORY_DEPENDENT = (
    "purchases_total",
    "purchase_days_total",
    "spend_total",
    "tenure_days",
    "redemptions_total",
)
LONGEST_WINDOW_DAYS = 180
# Inputs computed from `customer_features` columns rather than read as they are.
DERIVED = {"trend_30d": ("purchases_30d", "purchases_prev_30d")}


def available(frame: pd.DataFrame) -> list[str]:
    """The candidate inputs `frame` (customer_features rows) can give, in FEATURES order."""
    columns = set(frame.columns)
    return [f for f in FEATURES if f in columns or set(DERIVED.get(f, (f,))) <= columns]


def model_matrix(features: pd.DataFrame, names: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """The inputs `names` from `customer_features` rows, as floats; NaN where undefined."""
    matrix = pd.DataFrame(index=features.index)
    for name in names:
        if name == "trend_30d":
            recent = features["purchases_30d"].astype("float64")
            previous = features["purchases_prev_30d"].astype("float64")
            # Relative change of the last 30 days against the 30 before, in (-1, 1): a
            # decline in activity, which precedes churn, shows here before recency does.
            matrix[name] = (recent - previous) / (recent + previous + 1.0)
        else:
            matrix[name] = pd.to_numeric(features[name], errors="coerce").astype("float64")
    return matrix.replace([np.inf, -np.inf], np.nan)
