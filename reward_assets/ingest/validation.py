"""Row-level contract validation: typed good rows, quarantine rows with reasons.

Rules that need other rows or tables (duplicate ids across files, unknown rewards) are
applied by the loader; everything a single row can tell about itself is decided here.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from zoneinfo import available_timezones

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reward_assets.ingest.contract import (
    EARLIEST_TIMESTAMP,
    EVENT_TYPES,
    FUTURE_TOLERANCE,
    TIERS,
    Entity,
)
from reward_assets.ingest.quarantine import QuarantineReason, quarantine_frame

EMAIL_PATTERN = r"[A-Za-z0-9._%+\-']+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass
class Validated:
    good: pd.DataFrame
    quarantine: pd.DataFrame
    # Optional values that could not be read and were loaded as NULL, per column.
    nulled: Counter[str] = field(default_factory=Counter)


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_timestamps(values: pd.Series) -> pd.Series:
    """ISO 8601 to naive UTC (naive input means UTC); NaT where unparseable."""
    # No cache: event times are nearly all distinct, so finding the repeats costs more than
    # it saves.
    parsed = pd.to_datetime(
        values.where(values != ""), format="ISO8601", utc=True, errors="coerce", cache=False
    )
    return parsed.dt.tz_convert(None).astype("datetime64[us]")


_MASKED = {pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype()}.get


def parse_numbers(values: pd.Series, present: pd.Series, integer: bool) -> pd.Series:
    """The present values as numbers (Int64 or Float64); NA where absent or unreadable.

    Arrow's parser reads a clean column many times faster than `pd.to_numeric`; a column
    it refuses anywhere (a typo, a huge integer, a decimal in an integer column) is
    parsed by pandas instead, whose leniency then decides which values are bad.
    """
    text = values.where(present)
    strings = pa.array(text, pa.string())
    # Arrow reads "0x10" as 16 in integer casts; pandas, whose rule this keeps, refuses it.
    if integer and pc.any(pc.match_substring(strings, "x", ignore_case=True)).as_py():
        return pd.to_numeric(text, errors="coerce")
    try:
        parsed = pc.cast(strings, pa.int64() if integer else pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(text, errors="coerce")
    return pd.Series(parsed.to_pandas(types_mapper=_MASKED), index=values.index)


def parse_booleans(values: pd.Series) -> pd.Series:
    lowered = values.str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[lowered.isin(_TRUE)] = True
    out[lowered.isin(_FALSE)] = False
    return out


def latest_plausible(now: dt.datetime | None = None) -> dt.datetime:
    """The latest timestamp a landing row may carry: the wall clock (UTC) plus a day."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return now + FUTURE_TOLERANCE


def validate(entity: Entity, frame: pd.DataFrame, now: dt.datetime | None = None) -> Validated:
    """Split a frame of landing strings into typed good rows and quarantine rows.

    Each bad row is quarantined once, with the first rule it breaks (in the order below).
    `now` (naive UTC, default the wall clock) bounds timestamps from above.
    """
    latest = latest_plausible(now)
    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")
    details = pd.Series("", index=frame.index, dtype="string")
    typed = pd.DataFrame(index=frame.index)
    nulled: Counter[str] = Counter()

    def flag(mask: pd.Series, reason: QuarantineReason, detail: str) -> None:
        new = mask & reasons.isna()
        reasons[new] = reason
        details[new] = detail

    id_columns = [entity.key] + [c for c in ("customer_id", "reward_id") if c != entity.key]
    for column in entity.required:
        blank = frame[column] == ""
        is_key = column in id_columns
        reason = QuarantineReason.MISSING_KEY if is_key else QuarantineReason.MISSING_VALUE
        flag(blank, reason, column)

    for spec in entity.columns:
        values = frame[spec.name]
        present = values != ""
        if spec.type == "timestamp":
            parsed = parse_timestamps(values)
            bad = present & parsed.isna()
            flag(bad, QuarantineReason.UNPARSEABLE_TIMESTAMP, spec.name)
            implausible = parsed.notna() & ((parsed < EARLIEST_TIMESTAMP) | (parsed > latest))
            flag(
                implausible,
                QuarantineReason.IMPLAUSIBLE_TIMESTAMP,
                f"{spec.name} before {EARLIEST_TIMESTAMP:%Y-%m-%d} or after {latest:%Y-%m-%d}",
            )
            # No partition owns such a day: the row is quarantined with its file instead.
            parsed = parsed.where(~implausible)
        elif spec.type in ("integer", "decimal"):
            parsed = parse_numbers(values, present, spec.type == "integer")
            bad = present & (parsed.isna() | ~np.isfinite(parsed.fillna(0)))
            if spec.type == "integer":
                # Beyond 64 bits a value would wrap around when stored.
                bad |= present & parsed.notna() & (parsed != parsed.round())
                bad |= present & (parsed.abs() >= 2**63)
                parsed = parsed.where(~bad).astype("Int64")
            if spec.required:
                flag(bad, QuarantineReason.INVALID_NUMBER, spec.name)
        elif spec.type == "boolean":
            parsed = parse_booleans(values)
            bad = present & parsed.isna()
        else:
            parsed = values.where(present).astype("string")
            bad = pd.Series(False, index=frame.index)
        if not spec.required:
            parsed = parsed.where(~bad)
            nulled[spec.name] += int(bad.sum())
        typed[spec.name] = parsed

    if "email" in typed:
        typed["email"] = typed["email"].str.lower()
        ok = typed["email"].str.fullmatch(EMAIL_PATTERN).fillna(False).astype(bool)
        flag(typed["email"].notna() & ~ok, QuarantineReason.MALFORMED_EMAIL, "email")
    if "event_type" in typed:
        typed["event_type"] = typed["event_type"].str.lower()
        flag(
            typed["event_type"].notna() & ~typed["event_type"].isin(EVENT_TYPES),
            QuarantineReason.INVALID_EVENT_TYPE,
            "event_type",
        )
    for column in ("tier", "min_tier"):
        if column in typed:
            typed[column] = typed[column].str.lower()
            bad = typed[column].notna() & ~typed[column].isin(TIERS)
            nulled[column] += int(bad.sum())
            typed[column] = typed[column].where(~bad)
    if "timezone" in typed:
        bad = typed["timezone"].notna() & ~typed["timezone"].isin(_timezones())
        nulled["timezone"] += int(bad.sum())
        typed["timezone"] = typed["timezone"].where(~bad)

    # A repeated id within the batch: the first occurrence wins, the rest are quarantined.
    # Only rows still good compete, so a corrected re-send of a bad row is not a duplicate.
    still_good = reasons.isna()
    duplicate = still_good & frame[entity.key].where(still_good).duplicated()
    flag(duplicate, QuarantineReason.DUPLICATE_ID, entity.key)

    typed["source_file"] = frame["source_file"]
    typed["source_line"] = frame["source_line"].astype("int64")
    bad_rows = reasons.notna()
    day = None
    if entity.event_time:
        day = typed.loc[bad_rows, entity.event_time].dt.floor("D")
    quarantine = quarantine_frame(
        entity, frame[bad_rows], reason="", detail=details[bad_rows], day=day
    )
    quarantine["reason"] = reasons[bad_rows].to_numpy()
    return Validated(
        good=typed[~bad_rows].reset_index(drop=True),
        quarantine=quarantine.reset_index(drop=True),
        nulled=+nulled,
    )
