"""Send-time preferences: each customer's best local hour to email, from the engagement model.

The model scores each customer's history at as-of over every allowed local hour and weekday
and the best hour wins; customers with too little history take their segment's best hour
(time zone x tier), else the global one. Quiet hours are a contact rule
(`contact.timing.is_quiet_hour`) and never candidates. The expected open and click rates at
the chosen time are the customers' engagement scores.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from reward_assets.contact.timing import is_quiet_hour
from reward_assets.engagement.model import (
    HOURS,
    WEEKDAYS,
    EngagementModel,
    History,
    circular_distance,
    feature_matrix,
    history_at,
    load_activity,
)
from reward_assets.ingest.clock import as_of_params, resolve_as_of
from reward_assets.warehouse.store import Warehouse

# ml.send_time_preferences and ml.engagement_scores, as this module fills them.
SEND_TIME_COLUMNS = {
    "customer_id": "VARCHAR",
    "as_of": "DATE",
    "best_local_hour": "INTEGER",
    "best_weekday": "INTEGER",
    "expected_open_rate": "DOUBLE PRECISION",
    "expected_click_rate": "DOUBLE PRECISION",
    "confidence": "DOUBLE PRECISION",
    "source": "VARCHAR",
    "opens": "BIGINT",
    "model_version": "VARCHAR",
}
SCORE_COLUMNS = {
    "customer_id": "VARCHAR",
    "as_of": "DATE",
    "open_probability": "DOUBLE PRECISION",
    "click_probability": "DOUBLE PRECISION",
    "best_local_hour": "INTEGER",
    "source": "VARCHAR",
    "model_version": "VARCHAR",
}
# The local hour the send-time fallback uses when no one has opened an email yet.
DEFAULT_SEND_HOUR = 10
FALLBACK_VERSION = "fallback:rates"
# A customer gets a best weekday only when it beats their worst one by this much (relative).
WEEKDAY_MIN_SPREAD = 0.10
# Opens at which a customer's own evidence counts half in the confidence.
CONFIDENCE_HALF_OPENS = 10.0


def allowed_hours(quiet_hours: tuple[int, int]) -> np.ndarray:
    """Local hours outside the quiet span [start, end), which may wrap past midnight."""
    start, end = quiet_hours
    hours = np.arange(HOURS)
    quiet = np.array([is_quiet_hour(int(hour), start, end) for hour in hours])
    if quiet.all():
        raise ValueError(f"quiet hours {quiet_hours} leave no hour to send at")
    return hours[~quiet]


def _best_hour(opened: np.ndarray, sent: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """The allowed hour whose sends (+-1 h) were opened most often, per row of counts."""
    opened, sent = opened[..., hours], sent[..., hours]
    rate = np.divide(opened, sent, out=np.zeros_like(opened), where=sent > 0)
    return hours[rate.argmax(axis=-1)]


def send_time_preferences(
    warehouse: Warehouse,
    model: EngagementModel,
    as_of: dt.date | None = None,
    quiet_hours: tuple[int, int] = (21, 8),
    min_opens: int = 3,
    min_segment_opens: int = 30,
    chunk_customers: int = 20_000,
) -> pd.DataFrame:
    """Each customer's best local send hour outside quiet hours, from email history at as-of.

    See `preferences_from_history` for the columns and rules.
    """
    end = pd.Timestamp(as_of_params(resolve_as_of(warehouse, as_of))["as_of_end"])
    activity = load_activity(warehouse, end, model.categories)
    return preferences_from_history(
        activity.customers,
        history_at(activity, end),
        model,
        quiet_hours,
        min_opens,
        min_segment_opens,
        chunk_customers,
    )


def preferences_from_history(
    customers: pd.DataFrame,
    history: History,
    model: EngagementModel,
    quiet_hours: tuple[int, int] = (21, 8),
    min_opens: int = 3,
    min_segment_opens: int = 30,
    chunk_customers: int = 20_000,
) -> pd.DataFrame:
    """One row per customer (customer_id, timezone, tier) of `customers`.

    Customers with `min_opens` open events or more (source 'customer') get the allowed hour
    with the highest predicted open probability, averaged over weekdays, for content of no
    particular category (the model runs over the hour grid for them only). The others get
    their segment's (time zone x tier) hour when the segment has `min_segment_opens` open
    events, else the global one: the allowed hour whose sends (+-1 h) were opened most
    often. A best weekday is named only when the model
    uses weekdays and the customer's best one beats the worst by WEEKDAY_MIN_SPREAD;
    expected rates are the model's at the chosen hour (and weekday, else their mean).
    """
    hours = allowed_hours(quiet_hours)
    weekdays = np.arange(WEEKDAYS if model.uses_weekday else 1)
    n = len(customers)
    segment, segment_hour, global_hour, by_segment = _group_hours(
        customers, history, hours, min_segment_opens
    )
    own = history.opens >= min_opens
    fallback = np.where(by_segment, segment_hour[segment], global_hour)

    # Only a customer whose own hour counts needs the model over every allowed hour (its
    # argmax is the hour, its peak feeds the confidence); the others take their fallback
    # hour, so the grid is left out for them: the same result at a share of the cost.
    best = np.where(own, 0, fallback).astype(np.int64)
    peak = np.zeros(n)
    owners = np.flatnonzero(own)
    for start in range(0, owners.size, chunk_customers):
        rows = owners[start : start + chunk_customers]
        customer, hour, weekday = (
            axis.ravel() for axis in np.meshgrid(rows, hours, weekdays, indexing="ij")
        )
        grid = model.predict_open(_uncategorised(history, model, customer, hour, weekday)).reshape(
            rows.size, hours.size, weekdays.size
        )
        by_hour = grid.mean(axis=2)
        best[rows] = hours[by_hour.argmax(axis=1)]
        peak[rows] = 1 - by_hour.mean(axis=1) / by_hour.max(axis=1)
    open_by_weekday = np.empty((n, weekdays.size), dtype=np.float32)
    click_by_weekday = np.empty((n, weekdays.size), dtype=np.float32)
    for start in range(0, n, chunk_customers):
        rows = np.arange(start, min(start + chunk_customers, n))
        customer, weekday = (axis.ravel() for axis in np.meshgrid(rows, weekdays, indexing="ij"))
        opened, clicked = model.predict(
            _uncategorised(history, model, customer, best[customer], weekday)
        )
        open_by_weekday[rows] = opened.reshape(rows.size, weekdays.size)
        click_by_weekday[rows] = clicked.reshape(rows.size, weekdays.size)

    mean_open = open_by_weekday.mean(axis=1)
    spread = (open_by_weekday.max(axis=1) - open_by_weekday.min(axis=1)) / mean_open
    dated = spread >= WEEKDAY_MIN_SPREAD
    top_weekday = open_by_weekday.argmax(axis=1)
    index = np.arange(n)

    # A group's hour is as sure as it is right (+-1 h) for the group's customers whose own
    # hour is known; a customer's own history adds to that, the more opens it has and the
    # more its predicted hours peak.
    global_hit = circular_distance(best[own], global_hour) <= 1
    global_share = float(global_hit.mean()) if own.any() else 0.0
    segment_hit = circular_distance(best[own], segment_hour[segment[own]]) <= 1
    segment_share = (
        pd.Series(segment_hit)
        .groupby(segment[own])
        .mean()
        .reindex(range(segment_hour.size), fill_value=global_share)
        .to_numpy()
    )
    base = np.where(by_segment, segment_share[segment], global_share)
    evidence = history.opens / (history.opens + CONFIDENCE_HALF_OPENS)
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy(),
            "best_local_hour": best,
            "best_weekday": pd.Series(weekdays[top_weekday], dtype="Int64").where(dated),
            "expected_open_rate": np.where(dated, open_by_weekday[index, top_weekday], mean_open),
            "expected_click_rate": np.where(
                dated, click_by_weekday[index, top_weekday], click_by_weekday.mean(axis=1)
            ),
            "confidence": np.where(own, base + (1 - base) * evidence * peak, base),
            "source": np.where(own, "customer", np.where(by_segment, "segment", "global")),
            "opens": history.opens.astype(np.int64),
        }
    )


def _group_hours(
    customers: pd.DataFrame, history: History, hours: np.ndarray, min_segment_opens: int
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(each customer's segment, each segment's best hour, the global best hour, whether
    the customer's segment has `min_segment_opens` opens to trust its hour)."""
    segment = pd.factorize(
        customers["timezone"].fillna("UTC") + "|" + customers["tier"].fillna("none")
    )[0]
    opened_by_segment = pd.DataFrame(history.hour_opened).groupby(segment).sum().to_numpy()
    sent_by_segment = pd.DataFrame(history.hour_sends).groupby(segment).sum().to_numpy()
    segment_hour = _best_hour(opened_by_segment, sent_by_segment, hours)
    segment_opens = pd.Series(history.opens).groupby(segment).sum().to_numpy()
    global_hour = _best_hour(history.hour_opened.sum(axis=0), history.hour_sends.sum(axis=0), hours)
    return segment, segment_hour, int(global_hour), segment_opens[segment] >= min_segment_opens


def preferences_without_model(
    warehouse: Warehouse,
    as_of: dt.date | None = None,
    quiet_hours: tuple[int, int] = (21, 8),
    min_segment_opens: int = 30,
) -> pd.DataFrame:
    """The send-time fallback when no approved engagement model exists: each customer
    gets their segment's (time zone x tier) best hour and observed open and click rates
    when the segment has `min_segment_opens` opens (source 'segment'), else the global
    hour and rates ('global'), else, with no open at all, DEFAULT_SEND_HOUR local (or the
    first hour after quiet hours) and the global rates, 0 where nothing was ever sent
    ('default'). No best weekday; confidence 0, since nothing was validated."""
    end = pd.Timestamp(as_of_params(resolve_as_of(warehouse, as_of))["as_of_end"])
    activity = load_activity(warehouse, end)
    customers, history = activity.customers, history_at(activity, end)
    hours = allowed_hours(quiet_hours)
    segment, segment_hour, global_hour, by_segment = _group_hours(
        customers, history, hours, min_segment_opens
    )
    anyone_opened = history.opens.sum() > 0
    later = hours[hours >= DEFAULT_SEND_HOUR]
    default_hour = int(later[0] if later.size else hours[0])
    sends = pd.Series(history.sends).groupby(segment).sum().to_numpy()
    segment_open = pd.Series(history.opened).groupby(segment).sum().to_numpy() / np.maximum(
        sends, 1
    )
    segment_click = pd.Series(history.clicked).groupby(segment).sum().to_numpy() / np.maximum(
        sends, 1
    )
    source = np.where(by_segment, "segment", "global" if anyone_opened else "default")
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy(),
            "best_local_hour": np.where(
                by_segment, segment_hour[segment], global_hour if anyone_opened else default_hour
            ).astype(np.int64),
            "best_weekday": pd.Series([pd.NA] * len(customers), dtype="Int64"),
            "expected_open_rate": np.where(by_segment, segment_open[segment], history.open_rate),
            "expected_click_rate": np.where(by_segment, segment_click[segment], history.click_rate),
            "confidence": 0.0,
            "source": source,
            "opens": history.opens.astype(np.int64),
        }
    )


def _uncategorised(
    history: History,
    model: EngagementModel,
    customer: np.ndarray,
    hour: np.ndarray,
    weekday: np.ndarray,
) -> np.ndarray:
    """Features for sends whose content is not known yet (the 'unknown' category)."""
    unknown = np.full(customer.size, len(model.categories))
    return feature_matrix(history, customer, hour, weekday, unknown)


def engagement_scores(preferences: pd.DataFrame) -> pd.DataFrame:
    """Per customer, the open and click probability at their preferred send time."""
    columns = {"expected_open_rate": "open_probability", "expected_click_rate": "click_probability"}
    return preferences.rename(columns=columns)[
        ["customer_id", "open_probability", "click_probability", "best_local_hour", "source"]
    ]
