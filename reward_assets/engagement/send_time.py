"""Send-time preferences: each customer's best local hour to email, from the engagement model.

The model scores each customer's history at as-of over every allowed local hour and weekday
and the best hour wins; customers with too little history take their segment's best hour
(time zone x tier), else the global one. Quiet hours are a contact rule
(`contact.timing.is_quiet_hour`) and never candidates. The expected open and click rates at
the chosen time are the customers' engagement scores.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from reward_assets.contact.timing import is_quiet_hour
from reward_assets.engagement.activity import load_activity
from reward_assets.engagement.model import (
    FEATURES,
    HOURS,
    WEEKDAY,
    WEEKDAYS,
    EngagementModel,
    History,
    circular_distance,
    feature_matrix,
    history_at,
)
from reward_assets.ingest.clock import as_of_params, resolve_as_of
from reward_assets.ml.cells import cells, distinct, keys, served_keyed, split_points
from reward_assets.quality.publish import Audited, replace_served
from reward_assets.recommend.inputs import positions
from reward_assets.warehouse.staging import Carry
from reward_assets.warehouse.store import Warehouse

TABLE = "ml.send_time_preferences"
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
    "computed_as_of": "DATE",
    "hour_peak": "DOUBLE PRECISION",
    "inputs_key": "BIGINT",
}
# What the model gives a customer, kept from the last computation while their inputs key
# holds, and the as-of it was computed at.
CARRIED = [
    "best_local_hour",
    "best_weekday",
    "expected_open_rate",
    "expected_click_rate",
    "hour_peak",
    "computed_as_of",
]
# What of a carried customer's served row today's columns need (their confidence: the
# hour and how it peaks); the build copies the rest inside the warehouse (`Carry`).
READ_BACK = ["best_local_hour", "hour_peak"]
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
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each customer's best local send hour outside quiet hours, from email history at as-of;
    the model scores only the customers whose inputs moved since `previous`
    (`served_preferences`).

    See `preferences_from_history` for the columns and rules.
    """
    as_of = resolve_as_of(warehouse, as_of)
    end = pd.Timestamp(as_of_params(as_of)["as_of_end"])
    activity = load_activity(warehouse, end, model.categories, in_time_order=False)
    return preferences_from_history(
        activity.customers,
        history_at(activity, end),
        model,
        quiet_hours,
        min_opens,
        min_segment_opens,
        chunk_customers,
        previous=previous,
        as_of=as_of,
    )


def refresh_preferences(
    warehouse: Warehouse,
    model: EngagementModel | None,
    version: str,
    as_of: dt.date,
    quiet_hours: tuple[int, int],
    data_dir: Path,
) -> tuple[pd.DataFrame, Audited]:
    """Build the table beside the served one (the model's preferences, or the fallback's
    without a model) and swap it in if its blocking checks pass."""
    previous = None
    if model is None:
        prefs = preferences_without_model(warehouse, as_of, quiet_hours)
    else:
        previous = served_preferences(warehouse)
        prefs = send_time_preferences(warehouse, model, as_of, quiet_hours, previous=previous)
    prefs["as_of"] = as_of
    prefs["model_version"] = version
    return prefs, serve_preferences(warehouse, prefs, previous, data_dir)


def served_preferences(warehouse: Warehouse) -> pd.DataFrame | None:
    """customer_id, inputs_key and READ_BACK of the served rows the model computed (None
    before any)."""
    return served_keyed(warehouse, TABLE, READ_BACK)


def serve_preferences(
    warehouse: Warehouse, prefs: pd.DataFrame, previous: pd.DataFrame | None, data_dir: Path
) -> Audited:
    """Build the table from `prefs` (SEND_TIME_COLUMNS) beside the served one and swap it
    in if its blocking checks pass. The customers `preferences_from_history` carried from
    `previous` keep their served CARRIED columns, copied inside the warehouse; only the
    columns computed today travel."""
    carried = _carried(prefs["customer_id"], prefs["inputs_key"].to_numpy(), previous)[0]
    today = [column for column in SEND_TIME_COLUMNS if column not in CARRIED]
    carry = Carry(prefs.loc[carried, today]) if carried.any() else None
    rows = [prefs[~carried]]
    return replace_served(warehouse, TABLE, SEND_TIME_COLUMNS, rows, data_dir, carry=carry)


def preferences_from_history(
    customers: pd.DataFrame,
    history: History,
    model: EngagementModel,
    quiet_hours: tuple[int, int] = (21, 8),
    min_opens: int = 3,
    min_segment_opens: int = 30,
    chunk_customers: int = 20_000,
    previous: pd.DataFrame | None = None,
    as_of: dt.date | None = None,
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

    `inputs_key` names the cells (`ml.cells`) of every row the model scores for
    the customer, under this model and these hours. A customer of `previous` (rows this
    function returned before) with the same key keeps that row's CARRIED columns, which
    the model would give again to the bit (those `previous` lacks are left missing: the
    served build copies them, `serve_preferences`); the others are scored,
    `computed_as_of` `as_of`, and counted in `attrs["scored"]`.
    """
    hours = allowed_hours(quiet_hours)
    weekdays = np.arange(WEEKDAYS if model.uses_weekday else 1)
    segment, segment_hour, global_hour, by_segment = _group_hours(
        customers, history, hours, min_segment_opens
    )
    own = history.opens >= min_opens
    fallback = np.where(by_segment, segment_hour[segment], global_hour)
    grid = _Grid(history, model, hours, weekdays, chunk_customers)

    key = grid.keys(own, fallback)
    carried, at = _carried(customers["customer_id"], key, previous)
    scored = np.flatnonzero(~carried)
    model_rows = grid.score(scored, own[scored], fallback[scored])
    model_rows["computed_as_of"] = pd.Series(
        pd.Timestamp(as_of), index=scored, dtype="datetime64[s]"
    )
    if carried.any():
        held = [column for column in CARRIED if column in previous]
        kept = previous.iloc[at[carried]][held].set_axis(np.flatnonzero(carried))
        model_rows = pd.concat([model_rows, kept]).sort_index()
    best, peak = model_rows["best_local_hour"].to_numpy(), model_rows["hour_peak"].to_numpy()

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
    prefs = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy(),
            **{column: model_rows[column].array for column in CARRIED},
            "confidence": np.where(own, base + (1 - base) * evidence * peak, base),
            "source": np.where(own, "customer", np.where(by_segment, "segment", "global")),
            "opens": history.opens.astype(np.int64),
            "inputs_key": key,
        }
    )
    prefs.attrs["scored"] = int(scored.size)
    return prefs


def _carried(
    ids: pd.Series, key: np.ndarray, previous: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray]:
    """(whether each of `ids` has a row of `previous` under its `key`, so the row the
    model computed then holds; its position in `previous`, -1 where none)."""
    carried, at = np.zeros(len(ids), dtype=bool), np.full(len(ids), -1)
    if previous is not None:
        at = positions(ids, previous["customer_id"])
        found = at >= 0
        carried[found] = previous["inputs_key"].to_numpy()[at[found]] == key[found]
    return carried, at


@dataclass(frozen=True)
class _Grid:
    """The model over the sends a customer's preference needs: every allowed hour x weekday
    for a customer whose own hour counts, their one hour x weekday for the others."""

    history: History
    model: EngagementModel
    hours: np.ndarray
    weekdays: np.ndarray
    chunk: int

    @cached_property
    def points(self) -> list[np.ndarray]:
        boosters = (self.model.open_booster, self.model.click_booster)
        return split_points(boosters, len(FEATURES))

    @cached_property
    def salt(self) -> int:
        """Keys differ whenever the model or what it is run over does."""
        settings = [self.model.fingerprint(), self.hours.tolist(), self.weekdays.tolist()]
        digest = hashlib.sha256(json.dumps([*settings, WEEKDAY_MIN_SPREAD]).encode())
        return int.from_bytes(digest.digest()[:8], "little")

    @cached_property
    def weekday_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(a weekday of each cell the trees see weekdays in, each weekday's cell): nothing
        else in a row depends on the weekday, so weekdays of one cell score the same."""
        rows = np.zeros((self.weekdays.size, len(FEATURES)), dtype=np.float32)
        rows[:, WEEKDAY] = self.weekdays
        _, first, cell = np.unique(
            cells(rows, self.points)[:, WEEKDAY], return_index=True, return_inverse=True
        )
        return self.weekdays[first], cell

    def features(self, customer: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """Rows for each customer at their hour(s) x a weekday per cell, unknown content."""
        weekdays = self.weekday_cells[0]
        customer, weekday = (
            axis.ravel() for axis in np.meshgrid(customer, weekdays, indexing="ij")
        )
        hour = np.repeat(hour, weekdays.size)
        unknown = np.full(customer.size, len(self.model.categories))
        return feature_matrix(self.history, customer, hour, weekday, unknown)

    def hour_grid(self, rows: np.ndarray) -> np.ndarray:
        customer, hour = (axis.ravel() for axis in np.meshgrid(rows, self.hours, indexing="ij"))
        return self.features(customer, hour)

    def by_weekday(self, scores: np.ndarray, customers: int) -> np.ndarray:
        """Scores of `features` rows spread back over every weekday: (customers, hours, 7)."""
        cells_scored = scores.reshape(customers, -1, self.weekday_cells[0].size)
        return cells_scored[:, :, self.weekday_cells[1]]

    def keys(self, own: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        """Each customer's inputs key: the cells of their grid, or of their fallback hour
        (and the hour itself, since it is the answer)."""
        key = np.empty(own.size, dtype=np.int64)
        width = self.weekday_cells[0].size * len(FEATURES)
        for start in range(0, own.size, self.chunk):
            rows = np.arange(start, min(start + self.chunk, own.size))
            owners, others = rows[own[rows]], rows[~own[rows]]
            inputs = cells(self.hour_grid(owners), self.points)
            key[owners] = keys(inputs.reshape(owners.size, self.hours.size * width), self.salt)
            inputs = cells(self.features(others, fallback[others]), self.points)
            inputs = np.column_stack([inputs.reshape(others.size, width), fallback[others]])
            key[others] = keys(inputs, self.salt + 1)
        return key

    def score(self, rows: np.ndarray, own: np.ndarray, fallback: np.ndarray) -> pd.DataFrame:
        """CARRIED columns but the date for `rows` (customers' positions), scored."""
        best = fallback.astype(np.int64)
        peak = np.zeros(rows.size)
        owners = np.flatnonzero(own)
        for start in range(0, owners.size, self.chunk):
            chunk = owners[start : start + self.chunk]
            grid = self.model.predict_open(self.hour_grid(rows[chunk]))
            by_hour = self.by_weekday(grid, chunk.size).mean(axis=2)
            best[chunk] = self.hours[by_hour.argmax(axis=1)]
            peak[chunk] = 1 - by_hour.mean(axis=1) / by_hour.max(axis=1)
        open_by_weekday, click_by_weekday = self.at_hour(rows, best)

        mean_open = open_by_weekday.mean(axis=1)
        spread = (open_by_weekday.max(axis=1) - open_by_weekday.min(axis=1)) / mean_open
        dated = spread >= WEEKDAY_MIN_SPREAD
        top_weekday = open_by_weekday.argmax(axis=1)
        index = np.arange(rows.size)
        return pd.DataFrame(
            {
                "best_local_hour": best,
                "best_weekday": pd.Series(self.weekdays[top_weekday], dtype="Int64").where(dated),
                "expected_open_rate": np.where(
                    dated, open_by_weekday[index, top_weekday], mean_open
                ).astype(np.float64),
                "expected_click_rate": np.where(
                    dated, click_by_weekday[index, top_weekday], click_by_weekday.mean(axis=1)
                ).astype(np.float64),
                "hour_peak": peak,
            }
        ).set_axis(rows)

    def at_hour(self, rows: np.ndarray, hour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Open and click probability of each of `rows` at its hour, by weekday: each cell
        of inputs scored once, however many customers share it."""
        shape = (rows.size, self.weekdays.size)
        if not rows.size:
            return np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32)
        inputs = np.concatenate(
            [
                cells(self.features(rows[part], hour[part]), self.points)
                for part in np.array_split(np.arange(rows.size), max(rows.size // self.chunk, 1))
            ]
        )
        group, first = distinct(inputs)
        weekdays = self.weekday_cells[0]
        customer = np.repeat(rows, weekdays.size)[first]
        at = np.repeat(hour, weekdays.size)[first]
        weekday = np.tile(weekdays, rows.size)[first]
        unknown = np.full(first.size, len(self.model.categories))
        opened, clicked = self.model.predict(
            feature_matrix(self.history, customer, at, weekday, unknown)
        )
        return (
            self.by_weekday(opened[group], rows.size).reshape(shape),
            self.by_weekday(clicked[group], rows.size).reshape(shape),
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
    as_of = resolve_as_of(warehouse, as_of)
    end = pd.Timestamp(as_of_params(as_of)["as_of_end"])
    activity = load_activity(warehouse, end, in_time_order=False)
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
            # Rates are read afresh every run: no key, nothing for the model to carry.
            "computed_as_of": pd.Timestamp(as_of),
            "hour_peak": np.nan,
            "inputs_key": pd.Series([pd.NA] * len(customers), dtype="Int64"),
        }
    )


def engagement_scores(preferences: pd.DataFrame) -> pd.DataFrame:
    """Per customer, the open and click probability at their preferred send time."""
    columns = {"expected_open_rate": "open_probability", "expected_click_rate": "click_probability"}
    return preferences.rename(columns=columns)[
        ["customer_id", "open_probability", "click_probability", "best_local_hour", "source"]
    ]
