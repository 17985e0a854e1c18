"""The data-quality checks on the cleaned tables: declared beside each SQL model in
`dbt_like_sql/<model>.yml`, built and run here.

GX expectations cover what a column says about itself; referential integrity, which GX
has no expectation for across tables, is plain SQL returning the offending rows. Each
check reports how many rows fail and a few masked examples.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from reward_assets.ingest.validation import EMAIL_PATTERN
from reward_assets.privacy import mask_value
from reward_assets.warehouse.sql_models import SqlModel, SqlModelError
from reward_assets.warehouse.store import Warehouse

# Expectations are built when a check runs: importing GX costs seconds, which every
# process that merely loads the definitions (UI, sensors, each step) would pay.
Expectations = Callable[[Mapping[str, Any]], list]


def gx_expectations():
    from great_expectations import expectations

    return expectations


MAX_EXAMPLES = 5
CHECK_BATCH_ROWS = 1_000_000


@dataclass(frozen=True)
class TableCheck:
    name: str
    description: str
    blocking: bool
    column: str | None = None
    expectations: Expectations | None = None
    # For checks GX cannot express: SQL selecting the offending rows ({table} is the model's).
    violations_sql: str | None = None


@dataclass
class CheckOutcome:
    passed: bool
    failing_rows: int
    checked_rows: int
    examples: list[Any] = field(default_factory=list)


def _unique_not_null(spec: Mapping[str, Any]) -> Expectations:
    column = spec["column"]
    return lambda p: [
        gx_expectations().ExpectColumnValuesToNotBeNull(column=column),
        gx_expectations().ExpectColumnValuesToBeUnique(column=column),
    ]


def _email(spec: Mapping[str, Any]) -> Expectations:
    column = spec["column"]
    return lambda p: [
        gx_expectations().ExpectColumnValuesToNotBeNull(column=column),
        gx_expectations().ExpectColumnValuesToMatchRegex(column=column, regex=f"^{EMAIL_PATTERN}$"),
    ]


def _at_least(spec: Mapping[str, Any]) -> Expectations:
    column, minimum = spec["column"], spec["min"]
    return lambda p: [
        gx_expectations().ExpectColumnValuesToBeBetween(column=column, min_value=minimum)
    ]


def _in_period(spec: Mapping[str, Any]) -> Expectations:
    # The period ends with the run's window: days loaded beyond AS_OF are legitimate data.
    column = spec["column"]
    return lambda p: [
        gx_expectations().ExpectColumnValuesToBeBetween(
            column=column,
            min_value=p["period_start"],
            max_value=p.get("partition_end", p["as_of_end"]),
            strict_max=True,  # window ends are exclusive, as in the SQL models
        )
    ]


def _before_as_of_end(spec: Mapping[str, Any]) -> Expectations:
    column = spec["column"]
    return lambda p: [
        gx_expectations().ExpectColumnValuesToBeBetween(
            column=column, max_value=p["as_of_end"], strict_max=True
        )
    ]


# The kinds a model's `<model>.yml` may use, with the description a check gets by default.
KINDS: dict[str, tuple[Callable[[Mapping[str, Any]], Expectations] | None, str]] = {
    "unique_not_null": (_unique_not_null, "Every {column} is present and unique."),
    "email": (_email, "Every {column} is present and well formed."),
    "at_least": (_at_least, "{column} is at least {min}."),
    "in_period": (
        _in_period,
        "{column} falls between the first partition and the end of the run's window.",
    ),
    "before_as_of_end": (_before_as_of_end, "No {column} falls after AS_OF."),
    # SQL selecting the offending rows ({table} is the model's), for what GX cannot say.
    "violations": (None, "No row breaks this rule."),
}


def checks_path(model: SqlModel) -> Path:
    """Where a model's checks are declared: beside its .sql file."""
    return model.path.with_suffix(".yml")


def load_checks(model: SqlModel) -> list[TableCheck]:
    """The checks declared in `<model>.yml` beside the model's SQL (none without one)."""
    path = checks_path(model)
    if not path.exists():
        return []
    declared = yaml.safe_load(path.read_text()) or {}
    checks = []
    for spec in declared.get("checks", []):
        kind = spec.get("kind")
        if kind not in KINDS or "name" not in spec:
            raise SqlModelError(
                f"{path}: every check needs a name and a kind (one of {', '.join(KINDS)}); "
                f"got {spec!r}"
            )
        build, description = KINDS[kind]
        checks.append(
            TableCheck(
                name=spec["name"],
                description=spec.get("description") or description.format(**spec),
                blocking=spec.get("blocking", True),
                column=spec.get("column"),
                expectations=build(spec) if build else None,
                violations_sql=spec.get("sql"),
            )
        )
    return checks


def _batches(
    warehouse: Warehouse,
    model: SqlModel,
    columns: Sequence[str],
    window: tuple[dt.datetime, dt.datetime] | None,
) -> Iterator[pd.DataFrame]:
    """The rows to validate: a table whole, a partitioned model in runs of whole days.

    Days are grouped up to CHECK_BATCH_ROWS rows, so a range of small days costs a few
    validations while a day is never split and memory stays bounded on large tables.
    """
    select = f"SELECT {', '.join(columns)} FROM {model.table}"
    if not (model.partitioned and window):
        yield warehouse.frame(select)
        return
    column = model.partition_column
    in_range = f"{column} >= :start AND {column} < :end"
    days = warehouse.frame(
        f"SELECT CAST({column} AS DATE) AS day, COUNT(*) AS n FROM {model.table} "
        f"WHERE {in_range} GROUP BY 1 ORDER BY 1",
        {"start": window[0], "end": window[1]},
    )
    batch_start, rows = None, 0
    for day, n in days.itertuples(index=False):
        day_start = dt.datetime.combine(day, dt.time())
        if batch_start is not None and rows + n > CHECK_BATCH_ROWS:
            yield warehouse.frame(
                f"{select} WHERE {in_range}", {"start": batch_start, "end": day_start}
            )
            batch_start, rows = None, 0
        if batch_start is None:
            batch_start = max(day_start, window[0])
        rows += n
    if batch_start is not None:
        yield warehouse.frame(
            f"{select} WHERE {in_range}", {"start": batch_start, "end": window[1]}
        )


def _epoch_us(value):
    """Datetimes (scalars or a column) as integer microseconds since the epoch."""
    if isinstance(value, pd.Series):
        return value.astype("datetime64[us]").astype("int64").where(value.notna())
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    return value


def run_checks(
    warehouse: Warehouse,
    model: SqlModel,
    params: Mapping[str, Any],
    window: tuple[dt.datetime, dt.datetime] | None = None,
) -> dict[str, CheckOutcome]:
    """Run every check of `model`; a partitioned model only over the run's window."""
    checks = load_checks(model)
    outcomes: dict[str, CheckOutcome] = {}
    gx_checks = [c for c in checks if c.expectations]
    if gx_checks:
        from reward_assets.quality.gx import validate_frame  # lazily: see gx_expectations

        columns = sorted({c.column for c in gx_checks})
        totals = {c.name: CheckOutcome(True, 0, 0) for c in gx_checks}
        # GX compares datetimes one Python object at a time; as epoch microseconds the same
        # comparisons are vectorised, which matters on fact tables of millions of rows.
        numeric_params = {k: _epoch_us(v) for k, v in params.items()}
        for frame in _batches(warehouse, model, columns, window):
            if frame.empty:
                continue
            datetimes = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
            frame[datetimes] = frame[datetimes].apply(_epoch_us)
            planned = [(c, e) for c in gx_checks for e in c.expectations(numeric_params)]
            results = validate_frame(frame, [e for _, e in planned], f"{model.name}_checks")
            for (check, _), result in zip(planned, results, strict=True):
                total = totals[check.name]
                total.passed &= result["success"]
                total.failing_rows += result["unexpected_count"]
                room = MAX_EXAMPLES - len(total.examples)
                examples = result["examples"][:room]
                if check.column in datetimes:
                    examples = [pd.Timestamp(v, unit="us") for v in examples]
                total.examples += [mask_value(check.column, v) for v in examples]
            for check in gx_checks:
                totals[check.name].checked_rows += len(frame)
        outcomes.update(totals)
    for check in checks:
        if check.violations_sql:
            sql = check.violations_sql.format(table=model.table)
            failing = int(warehouse.scalar(f"SELECT COUNT(*) FROM ({sql}) v"))
            examples = warehouse.frame(f"SELECT * FROM ({sql}) v LIMIT {MAX_EXAMPLES}")
            outcomes[check.name] = CheckOutcome(
                failing == 0,
                failing,
                warehouse.row_count(model.table),
                examples.astype(str).to_dict("records"),
            )
    return outcomes
