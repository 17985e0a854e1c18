"""The analytics report over a date range: read from the daily analytics tables, plus the
uplift of the whole range, which needs each customer's redemptions over all of its days.

`db` is the warehouse or the API's snapshot reader (`storage.snapshots.open_reader`); both
carry the same table names, so the asset and the API give the same numbers.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict

import pandas as pd

from reward_assets.analytics.experiments import experiment_effects
from reward_assets.analytics.stats import Interval, welch_interval
from reward_assets.warehouse.store import Warehouse

MAX_RANGE_DAYS = 366
TOP_REWARDS = 10

FUNNEL = "analytics.analytics_email_funnel"
REDEMPTIONS = "analytics.analytics_redemptions"
REVENUE = "analytics.analytics_revenue"
ACTIVITY = "analytics.analytics_activity"
CHURN_RISK = "analytics.analytics_churn_risk"
RECOMMENDATIONS = "analytics.analytics_recommendations"
UPLIFT = "analytics.analytics_uplift"
DAILY_TABLES = (FUNNEL, REDEMPTIONS, REVENUE, ACTIVITY, CHURN_RISK, RECOMMENDATIONS, UPLIFT)
RANGE_TABLES = ("marts.dim_customers", "marts.fct_redemptions")
FUNNEL_COUNTS = ("sent", "delivered", "opened", "clicked", "unsubscribed", "bounced", "complained")


class NotMaterialized(LookupError):
    """The tables the report reads have not been materialised yet."""


def check_range(start: dt.date, end: dt.date) -> None:
    if end >= dt.date.max:
        # The range is read up to the start of the day after its end, which would not exist.
        raise ValueError(f"end_date must be before {dt.date.max}")
    if end < start:
        raise ValueError(f"end_date {end} is before start_date {start}")
    days = (end - start).days + 1
    if days > MAX_RANGE_DAYS:
        raise ValueError(f"the range holds {days} days; at most {MAX_RANGE_DAYS} are allowed")


def _require(db: Warehouse, tables) -> None:
    missing = [t for t in tables if not db.table_exists(t)]
    if missing:
        raise NotMaterialized(
            f"not materialised yet: {', '.join(missing)} (run analytics_job, or `make run`)"
        )


def range_uplift(db: Warehouse, start: dt.date, end: dt.date) -> Interval:
    """Redemptions per customer over start..end (inclusive), contacted minus holdout.

    Population: consenting customers signed up before `start`; contacted = outside the
    holdout (they may receive email), so the comparison is intention-to-treat and no
    self-selection of who opened or was sent what enters it.
    """
    arms = db.frame(
        """
        SELECT
            c.is_holdout,
            COUNT(*) AS customers,
            COALESCE(SUM(r.x), 0) AS total,
            COALESCE(SUM(r.x * r.x), 0) AS total_sq
        FROM marts.dim_customers c
        LEFT JOIN (
            SELECT customer_id, COUNT(*) AS x
            FROM marts.fct_redemptions
            WHERE redeemed_at >= :start AND redeemed_at < :end
            GROUP BY customer_id
        ) r ON r.customer_id = c.customer_id
        WHERE c.marketing_opt_in AND c.signup_at < :start
        GROUP BY c.is_holdout
        """,
        {
            "start": dt.datetime.combine(start, dt.time()),
            "end": dt.datetime.combine(end + dt.timedelta(days=1), dt.time()),
        },
    )
    by_arm = {bool(r.is_holdout): r for r in arms.itertuples(index=False)}

    def parts(arm) -> tuple[int, float, float]:
        if arm is None:
            return 0, 0.0, 0.0
        return int(arm.customers), float(arm.total), float(arm.total_sq)

    return welch_interval(*parts(by_arm.get(False)), *parts(by_arm.get(True)))


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: dates as ISO strings, NaN as None, numpy scalars as Python ones."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.date
    out = out.astype(object).where(out.notna(), None)
    rows = out.to_dict("records")
    return [
        {k: (v.isoformat() if isinstance(v, dt.date) else _plain(v)) for k, v in row.items()}
        for row in rows
    ]


def _iso(day) -> str | None:
    return None if day is None or pd.isna(day) else pd.Timestamp(day).date().isoformat()


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def range_report(db: Warehouse, start: dt.date, end: dt.date) -> dict:
    """Every metric of the daily analytics over start..end (both inclusive), JSON-ready."""
    check_range(start, end)
    _require(db, DAILY_TABLES + RANGE_TABLES)
    params = {"start": start, "end": end}

    def daily(table: str, order: str = "day") -> pd.DataFrame:
        return db.frame(
            f"SELECT * FROM {table} WHERE day >= :start AND day <= :end ORDER BY {order}", params
        )

    funnel = daily(FUNNEL)
    totals = {name: int(funnel[name].sum()) for name in FUNNEL_COUNTS}
    rates = {
        "delivery_rate": _ratio(totals["delivered"], totals["sent"]),
        "open_rate": _ratio(totals["opened"], totals["delivered"]),
        "click_rate": _ratio(totals["clicked"], totals["delivered"]),
        "click_to_open_rate": _ratio(totals["clicked"], totals["opened"]),
        "unsubscribe_rate": _ratio(totals["unsubscribed"], totals["delivered"]),
        "bounce_rate": _ratio(totals["bounced"], totals["sent"]),
    }

    redemptions = daily(REDEMPTIONS, "day, reward_id")
    by_category = (
        redemptions.groupby("category", as_index=False)[["redemptions", "points_spent"]]
        .sum()
        .sort_values(["redemptions", "category"], ascending=[False, True])
    )
    by_reward = (
        redemptions.groupby(["reward_id", "reward_name", "category"], as_index=False, dropna=False)[
            ["redemptions", "points_spent"]
        ]
        .sum()
        .sort_values(["redemptions", "reward_id"], ascending=[False, True])
        .head(TOP_REWARDS)
    )
    per_day_redemptions = redemptions.groupby("day", as_index=False)[
        ["redemptions", "points_spent"]
    ].sum()

    revenue = daily(REVENUE, "day, currency")
    money = ["purchases", "refunds", "gross_revenue", "refunded", "net_revenue", "points_earned"]
    by_currency = revenue.groupby("currency", as_index=False)[money].sum()

    activity = daily(ACTIVITY)
    churn = daily(CHURN_RISK, "day, risk_band")
    latest_scoring = churn.day.max() if not churn.empty else None
    recommendations = daily(RECOMMENDATIONS)
    uplift_days = daily(UPLIFT)
    daily_uplift = [
        {
            "day": _iso(row.day),
            **asdict(
                welch_interval(
                    row.contacted_customers,
                    row.contacted_redemptions,
                    row.contacted_sum_sq,
                    row.holdout_customers,
                    row.holdout_redemptions,
                    row.holdout_sum_sq,
                )
            ),
        }
        for row in uplift_days.itertuples(index=False)
    ]
    return {
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "days": (end - start).days + 1,
        "days_with_data": int(activity.day.nunique()),
        "email_funnel": {"totals": totals, "rates": rates, "daily": _records(funnel)},
        "redemptions": {
            "redemptions": int(redemptions.redemptions.sum()),
            "points_spent": int(redemptions.points_spent.sum()),
            "by_category": _records(by_category),
            "top_rewards": _records(by_reward),
            "daily": _records(per_day_redemptions),
        },
        "revenue": {"by_currency": _records(by_currency), "daily": _records(revenue)},
        "customers": {
            "new_customers": int(activity.new_customers.sum()),
            "mean_daily_active": float(activity.active_customers.mean())
            if not activity.empty
            else None,
            "daily": _records(activity),
        },
        "churn_risk": {
            "scoring_day": _iso(latest_scoring),
            "bands": _records(churn[churn.day == latest_scoring]),
        },
        "recommendations": {"daily": _records(recommendations)},
        "uplift": {
            "definition": (
                "Redemptions per customer over the range: consenting customers signed up "
                "before start_date, outside the holdout (contacted) minus in it (holdout); "
                "95% confidence interval, Welch."
            ),
            **asdict(range_uplift(db, start, end)),
            "daily": daily_uplift,
        },
        "experiments": experiment_effects(db, start, end),
    }
