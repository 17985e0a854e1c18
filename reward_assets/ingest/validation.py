"""Row-level contract validation, as set-based SQL in an in-process DuckDB.

`validation_sql` turns a relation of landing text (the contract's columns, `__file`,
`__line`) into typed columns plus `__reason`/`__detail` for the first rule a row breaks,
in the order of `QuarantineReason`. The loader runs it on landing files whatever the
warehouse is (DuckDB parses, the warehouse only receives the result); `validate` runs it
on a DataFrame for the sign-up sensor and the offline evaluation, so every reader applies
the same rules. Rules that need other rows or tables (duplicates, unknown rewards, the
file's date) are the loader's.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from zoneinfo import available_timezones

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reward_assets.ingest.contract import (
    EARLIEST_TIMESTAMP,
    EVENT_TYPES,
    FUTURE_TOLERANCE,
    MAX_VALUE_LENGTH,
    TIERS,
    Column,
    Entity,
)
from reward_assets.ingest.landing import LandingFile
from reward_assets.ingest.quarantine import QuarantineReason, problem_rows, quarantine_rows
from reward_assets.ingest.reader import LINE, contract_table, read_file

EMAIL_PATTERN = r"[A-Za-z0-9._%+\-']+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
# Plain decimal notation only: DuckDB's own casts also take '1_000', '0x10' and round
# '1.5' into an integer, none of which a data engineer means by a number.
_INTEGER = r"[+-]?[0-9]+"
_DECIMAL = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
# ISO 8601 starts with the full date; DuckDB alone would also read 'epoch' or '2023-3-2'.
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
REASON, DETAIL = "__reason", "__detail"
NULLED = "__nulled__"
TIMEZONES_TABLE = "__timezones"


@cache
def _timezones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def latest_plausible(now: dt.datetime | None = None) -> dt.datetime:
    """The latest timestamp a landing row may carry: the wall clock (UTC) plus a day."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return now + FUTURE_TOLERANCE


@contextmanager
def session() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-process DuckDB for parsing and validating, on UTC, closed afterwards."""
    con = duckdb.connect(":memory:")
    try:
        # Naive timestamps mean UTC, whatever the machine's zone.
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = true")
        con.execute(f"CREATE TABLE {TIMEZONES_TABLE} (name VARCHAR PRIMARY KEY)")
        con.executemany(f"INSERT INTO {TIMEZONES_TABLE} VALUES (?)", [[z] for z in _timezones()])
        yield con
    finally:
        con.close()


def sql_text(value: str) -> str:
    """A SQL string literal of `value` (for the constants the rules write)."""
    return "'" + value.replace("'", "''") + "'"


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(sql_text(v) for v in values) + ")"


def _ts(value: dt.datetime) -> str:
    return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S}'"


_EMAIL = sql_text(EMAIL_PATTERN)


def nulled_columns(entity: Entity) -> list[str]:
    """Optional columns whose unreadable values load as NULL (counted, not quarantined)."""
    return [
        c.name
        for c in entity.columns
        if not c.required and (c.type in ("integer", "decimal", "boolean") or c.name in _LOOKUPS)
    ]


_LOOKUPS = {
    "tier": f"IN {_in(TIERS)}",
    "min_tier": f"IN {_in(TIERS)}",
    "timezone": f"IN (SELECT name FROM {TIMEZONES_TABLE})",
}


def _parsed(column: Column) -> list[str]:
    """First-stage expressions: the typed value(s) of `column` (from trimmed text `c`)."""
    c = f'"{column.name}"'
    if column.type == "timestamp":
        return [
            f"CASE WHEN regexp_matches({c}, '{_ISO_DATE}') THEN "
            f'TRY_CAST(TRY_CAST({c} AS TIMESTAMPTZ) AS TIMESTAMP) END AS "{column.name}__ts"'
        ]
    if column.type in ("integer", "decimal"):
        parts = [
            f"CASE WHEN regexp_full_match({c}, '{_DECIMAL}') THEN TRY_CAST({c} AS DOUBLE) END "
            f'AS "{column.name}__d"'
        ]
        if column.type == "integer":
            parts.append(
                f"CASE WHEN regexp_full_match({c}, '{_INTEGER}') THEN TRY_CAST({c} AS BIGINT) END "
                f'AS "{column.name}__i"'
            )
        return parts
    return []


def _typed(column: Column, latest: dt.datetime) -> str:
    """Second stage: the column's loaded value (NULL where absent or unreadable)."""
    name = column.name
    c = f'"{name}"'
    if column.type == "timestamp":
        ts = f'"{name}__ts"'
        return (
            f"CASE WHEN {ts} >= {_ts(EARLIEST_TIMESTAMP)} AND {ts} <= {_ts(latest)} THEN {ts} END"
        )
    if column.type == "decimal":
        return f'CASE WHEN isfinite("{name}__d") THEN "{name}__d" END'
    if column.type == "integer":
        d = f'"{name}__d"'
        # A whole number written as a decimal ('1.0', '1e3') is still an integer.
        return (
            f'COALESCE("{name}__i", CASE WHEN isfinite({d}) AND {d} = round({d}) '
            f"AND abs({d}) < 9223372036854775808.0 THEN CAST({d} AS BIGINT) END)"
        )
    if column.type == "boolean":
        return (
            f"CASE WHEN lower({c}) IN {_in(_TRUE)} THEN true "
            f"WHEN lower({c}) IN {_in(_FALSE)} THEN false END"
        )
    if name in ("email", "event_type"):
        return f"lower({c})"
    if name in _LOOKUPS:
        value = f"lower({c})" if name != "timezone" else c
        return f"CASE WHEN {value} {_LOOKUPS[name]} THEN {value} END"
    return c


def _rules(entity: Entity, suspect: Iterable[str]) -> list[tuple[str, QuarantineReason, str]]:
    """(condition, reason, detail) in the order they apply; conditions see text columns as
    `name` and typed values as `name__v`. Only `suspect` columns are checked for NUL bytes
    and oversized values (a pre-scan finds them: checking every value costs a pass)."""
    ids = {entity.key, "customer_id", "reward_id"}
    suspect = [c for c in entity.column_names if c in set(suspect)]
    rules = [
        (f'contains("{c}", chr(0))', QuarantineReason.MALFORMED_ROW, f"NUL byte in {c}")
        for c in suspect
    ]
    rules += [
        (
            f'length("{c}") > {MAX_VALUE_LENGTH}',
            QuarantineReason.OVERSIZED_VALUE,
            f"{c} longer than {MAX_VALUE_LENGTH} characters",
        )
        for c in suspect
    ]
    for name in entity.required:
        reason = QuarantineReason.MISSING_KEY if name in ids else QuarantineReason.MISSING_VALUE
        rules.append((f'"{name}" IS NULL', reason, name))
    for column in entity.columns:
        name = column.name
        if column.type == "timestamp":
            rules.append(
                (
                    f'"{name}" IS NOT NULL AND "{name}__ts" IS NULL',
                    QuarantineReason.UNPARSEABLE_TIMESTAMP,
                    name,
                )
            )
            rules.append(
                (
                    f'"{name}__ts" IS NOT NULL AND "{name}__v" IS NULL',
                    QuarantineReason.IMPLAUSIBLE_TIMESTAMP,
                    f"{name} before {EARLIEST_TIMESTAMP:%Y-%m-%d} or after the wall clock "
                    f"plus {FUTURE_TOLERANCE.days} day",
                )
            )
        elif column.required and column.type in ("integer", "decimal"):
            rules.append(
                (
                    f'"{name}" IS NOT NULL AND "{name}__v" IS NULL',
                    QuarantineReason.INVALID_NUMBER,
                    name,
                )
            )
    rules += [
        (
            f'"{c.name}__v" < {c.minimum}',
            QuarantineReason.OUT_OF_RANGE,
            f"{c.name} below {c.minimum}",
        )
        for c in entity.columns
        if c.minimum is not None
    ]
    rules += [
        (
            f'abs("{c.name}__v") > {c.magnitude!r}',
            QuarantineReason.OUT_OF_RANGE,
            f"{c.name} beyond ±{c.magnitude:g}",
        )
        for c in entity.columns
        if c.magnitude is not None
    ]
    if "email" in entity.column_names:
        rules.append(
            (
                f'"email__v" IS NOT NULL AND NOT regexp_full_match("email__v", {_EMAIL})',
                QuarantineReason.MALFORMED_EMAIL,
                "email",
            )
        )
    if "event_type" in entity.column_names:
        rules.append(
            (
                f'"event_type__v" IS NOT NULL AND "event_type__v" NOT IN {_in(EVENT_TYPES)}',
                QuarantineReason.INVALID_EVENT_TYPE,
                "event_type",
            )
        )
    return rules


def _holds_nul(column: pa.ChunkedArray) -> bool:
    # A scan of the data buffers is far cheaper than a search value by value, but it
    # also sees bytes outside the values (under nulls, around slices): a hit is checked.
    if pa.types.is_string(column.type) and all(
        chunk.buffers()[2] is None or np.all(np.frombuffer(chunk.buffers()[2], np.uint8))
        for chunk in column.chunks
    ):
        return False
    return pc.any(pc.match_substring(column, "\x00")).as_py()


def suspect_columns(table: pa.Table, entity: Entity) -> list[str]:
    """Columns of `table` (text) holding a NUL byte or a value over MAX_VALUE_LENGTH."""
    found = []
    for name in entity.column_names:
        column = table.column(name)
        if column.null_count == len(column):
            continue
        longest = pc.max(pc.binary_length(column)).as_py() or 0
        # Bytes bound characters from above: count characters only when it may matter.
        if (
            longest > MAX_VALUE_LENGTH
            and (pc.max(pc.utf8_length(column)).as_py() or 0) > (MAX_VALUE_LENGTH)
            or _holds_nul(column)
        ):
            found.append(name)
    return found


def validation_sql(
    entity: Entity, source: str, latest: dt.datetime, suspect: Iterable[str] | None = None
) -> str:
    """SELECT over `source` (contract columns as text, `__file`, `__line` and `__row`, the
    row's position in `source`): `__file`, `__line`, `__row`, the typed contract columns,
    `__reason`, `__detail` and a `__nulled__<c>` flag per column of `nulled_columns`.
    `latest` bounds timestamps from above; `suspect` (default: every column) are the
    columns that may hold NUL bytes or oversized values."""
    names = entity.column_names
    # The readers trim surrounding whitespace (`reader.contract_table`).
    trimmed = ", ".join(f'NULLIF("{c}", \'\') AS "{c}"' for c in names)
    parsed = ", ".join(p for column in entity.columns for p in _parsed(column))
    typed = ", ".join(
        f'{_typed(column, latest)} AS "{column.name}__v"' for column in entity.columns
    )
    rules = _rules(entity, names if suspect is None else suspect)
    # The number of the first rule broken, then its reason and detail by that number.
    number = " ".join(f"WHEN {cond} THEN {i}" for i, (cond, _, _) in enumerate(rules, start=1))
    reasons = "[" + ", ".join(sql_text(r) for _, r, _ in rules) + "]"
    details = "[" + ", ".join(sql_text(d) for _, _, d in rules) + "]"
    nulled = "".join(
        f', "{c}" IS NOT NULL AND "{c}__v" IS NULL AS "{NULLED}{c}"' for c in nulled_columns(entity)
    )
    out = ", ".join(f'"{c}__v" AS "{c}"' for c in names)
    return f"""
WITH trimmed AS (SELECT __file, __line, __row, {trimmed} FROM {source}),
parsed AS (SELECT *{", " + parsed if parsed else ""} FROM trimmed),
typed AS (SELECT *, {typed} FROM parsed),
ruled AS (SELECT *, CASE {number} END AS __rule FROM typed)
SELECT __file, __line, __row, {out},
  {reasons}[__rule] AS {REASON},
  {details}[__rule] AS {DETAIL}{nulled}
FROM ruled
"""


@dataclass
class Validated:
    good: pd.DataFrame
    quarantine: pd.DataFrame
    # Optional values that could not be read and were loaded as NULL, per column.
    nulled: Counter[str] = field(default_factory=Counter)


_PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Typed rows as pandas with nullable dtypes (Int64, Float64, boolean, string)."""
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def validate(entity: Entity, frame: pd.DataFrame, now: dt.datetime | None = None) -> Validated:
    """Split a frame of landing text (plus source_file, source_line) into typed good rows
    and quarantine rows, by the same SQL the loader runs. A repeated id keeps its first
    good row. `now` (naive UTC, default the wall clock) bounds timestamps from above."""
    text = contract_table(
        entity,
        {
            c: pa.array(frame[c].astype(object).where(frame[c].notna(), None), pa.string())
            for c in entity.column_names
            if c in frame
        },
        pa.array(range(len(frame)), pa.int64()),
    )
    text = text.append_column("__file", pa.array([0] * len(frame), pa.int32()))
    text = text.append_column("__row", pa.array(range(len(frame)), pa.int64()))
    key = f'"{entity.key}"'
    with session() as con:
        con.register("text_rows", text)
        con.execute(
            f"CREATE TABLE checked AS {validation_sql(entity, 'text_rows', latest_plausible(now))}"
        )
        con.execute(
            f"""UPDATE checked
            SET {REASON} = '{QuarantineReason.DUPLICATE_ID}', {DETAIL} = '{entity.key}'
            WHERE __line IN (SELECT __line FROM (SELECT __line, row_number() OVER
              (PARTITION BY {key} ORDER BY __line) AS n FROM checked WHERE {REASON} IS NULL)
              WHERE n > 1)"""
        )
        checked = con.execute("SELECT * FROM checked ORDER BY __line").fetch_arrow_table()
    lines = checked.column("__line").to_numpy()
    reasons = checked.column(REASON).to_pandas()
    bad = reasons.notna().to_numpy()
    good = to_pandas(checked.select(entity.column_names)).loc[~bad]
    good["source_file"] = frame["source_file"].to_numpy()[lines[~bad]]
    good["source_line"] = frame["source_line"].to_numpy()[lines[~bad]]
    nulled = Counter(
        {c: int(checked.column(NULLED + c).to_pandas()[~bad].sum()) for c in nulled_columns(entity)}
    )
    rows = frame.iloc[lines[bad]].reset_index(drop=True)
    rows = rows.assign(
        reason=reasons[bad].to_numpy(),
        detail=checked.column(DETAIL).to_pandas()[bad].to_numpy(),
        partition_date=None,
    )
    return Validated(
        good=good.reset_index(drop=True),
        quarantine=quarantine_rows(entity, rows),
        nulled=+nulled,
    )


def read_validated(files: list[LandingFile], entity: Entity) -> Validated:
    """Every file of `files` read and validated as one batch (a repeated id keeps its first
    good row), with rows and files that could not be read in the quarantine. For readers
    outside a load: the sign-up sensor and the offline evaluation."""
    frames, problems = [], []
    for file in files:
        result = read_file(file, entity)
        frame = to_pandas(result.table.drop_columns([LINE]))
        frame["source_file"] = file.name
        frame["source_line"] = result.table.column(LINE).to_numpy()
        frames.append(frame)
        problems.append(problem_rows(entity, file.name, result.problems))
    empty = {c: pd.Series(dtype="string") for c in [*entity.column_names, "source_file"]}
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(empty)
    if "source_line" not in frame:
        frame["source_line"] = pd.Series(dtype="int64")
    result = validate(entity, frame)
    result.quarantine = pd.concat(
        [q for q in [result.quarantine, *problems] if len(q)] or [result.quarantine],
        ignore_index=True,
    )
    return result
