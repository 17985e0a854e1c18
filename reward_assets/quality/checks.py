"""The data-quality checks on the served and cleaned tables: declared in
`dbt_like_sql/<table>.yml` (beside a SQL model's `.sql`, or alone for a table a Python
asset writes), built and run here on a build before it is swapped in (`quality/publish.py`).

Each rule runs where it can see what it judges:

- Rules about the whole table (unique ids, referential integrity, any `violations` SQL)
  run in the database as one set-based query over the table as it will read once the
  build is swapped in: a partitioned model's new window together with every row it keeps
  outside the window. Plain SQL, the same on DuckDB and PostgreSQL. (GX Core's SQL data
  sources would run them in the database too, but its SQL engine returns no rows through
  duckdb-engine, GX issue #11579, so they could not run on the default warehouse.)
- Rules about one row at a time (present, a well-formed email, within bounds, inside the
  period) are GX expectations on the build's rows, read in bounded batches: one row is
  right or wrong whatever batch it falls in, and the email rule is the very regex (Python
  `re`) the ingestion validates with.

Each check reports how many rows fail, how many it read, and a few masked examples.
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
from reward_assets.privacy import mask_record, mask_value
from reward_assets.warehouse.sql_models import SQL_DIR, SqlModel, SqlModelError
from reward_assets.warehouse.staging import Staged, Window
from reward_assets.warehouse.store import Warehouse

# Expectations are built when a check runs: importing GX costs seconds, which every
# process that merely loads the definitions (UI, sensors, each step) would pay.
Expectations = Callable[[Mapping[str, Any]], list]


def gx_expectations():
    from great_expectations import expectations

    return expectations


MAX_EXAMPLES = 5
CHECK_BATCH_ROWS = 1_000_000
# The name a table rule's SQL reads the table by ({table} in a `violations` rule).
CHECKED = "checked_table"


@dataclass(frozen=True)
class TableCheck:
    name: str
    description: str
    blocking: bool
    column: str | None = None
    # A row rule: GX expectations, given the run's parameters.
    expectations: Expectations | None = None
    # A table rule: every value of `column` present and unique.
    unique: bool = False
    # A table rule: SQL selecting the offending rows ({table} is the table checked).
    violations_sql: str | None = None
    declared: str = ""  # the check as declared, for what a remembered pass depends on


@dataclass
class CheckOutcome:
    passed: bool
    failing_rows: int
    checked_rows: int
    examples: list[Any] = field(default_factory=list)


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
    # The period ends with the run's window (a view's, with the last daily window): days
    # loaded beyond AS_OF are legitimate data.
    column = spec["column"]
    return lambda p: [
        gx_expectations().ExpectColumnValuesToBeBetween(
            column=column,
            min_value=p["period_start"],
            max_value=p.get("partition_end", p.get("period_end", p["as_of_end"])),
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


# The parameters of the period's end. Every row rule below admits at least the same rows
# when they grow (`in_period`, `before_as_of_end`: a row inside a period is inside a later
# one), so a view's row rules read only the windows loaded since a pass under smaller ends
# (`quality/publish.py`). A kind that a growing end could fail must not be added as it is.
GROWING_PARAMS = ("as_of", "as_of_end", "period_end", "partition_end")

# The kinds a `<table>.yml` may use: the row rule's expectations (None for a table rule),
# and the description a check gets by default.
KINDS: dict[str, tuple[Callable[[Mapping[str, Any]], Expectations] | None, str]] = {
    "unique_not_null": (None, "Every {column} is present and unique."),
    "email": (_email, "Every {column} is present and well formed."),
    "at_least": (_at_least, "{column} is at least {min}."),
    "in_period": (
        _in_period,
        "{column} falls between the first partition and the end of the run's window "
        "(of the last daily window, for a view).",
    ),
    "before_as_of_end": (_before_as_of_end, "No {column} falls after AS_OF."),
    # SQL selecting the offending rows ({table} is the table checked), for what GX cannot say.
    "violations": (None, "No row breaks this rule."),
}


def checks_path(model: SqlModel) -> Path:
    """Where a model's checks are declared: beside its .sql file."""
    return model.path.with_suffix(".yml")


def table_checks_path(table: str) -> Path:
    """Where the checks of a table a Python asset writes are declared: dbt_like_sql/<name>.yml."""
    return SQL_DIR / f"{table.rpartition('.')[2]}.yml"


def load_checks(path: Path) -> list[TableCheck]:
    """The checks declared in the YAML file at `path` (none without one)."""
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
        if (kind == "violations") != bool(spec.get("sql")) or (
            kind != "violations" and not spec.get("column")
        ):
            raise SqlModelError(
                f"{path}: check '{spec['name']}': a violations check needs `sql`, "
                "every other kind a `column`"
            )
        build, description = KINDS[kind]
        checks.append(
            TableCheck(
                name=spec["name"],
                description=spec.get("description") or description.format(**spec),
                blocking=spec.get("blocking", True),
                column=spec.get("column"),
                expectations=build(spec) if build else None,
                unique=kind == "unique_not_null",
                declared=repr(sorted(spec.items())),
                violations_sql=spec.get("sql"),
            )
        )
    return checks


def run_checks(
    warehouse: Warehouse,
    checks: Sequence[TableCheck],
    build: Staged,
    params: Mapping[str, Any],
) -> dict[str, CheckOutcome]:
    """Run `checks` on `build`: the row rules on its rows, the table rules on the table as
    it will read once the build is swapped in."""
    outcomes = _row_rules(warehouse, [c for c in checks if c.expectations], build, params)
    table_rules = [c for c in checks if not c.expectations]
    if table_rules:
        published = f"WITH {CHECKED} AS ({build.published_rows(warehouse)}) "
        bound = {**params, **build.params}
        checked_rows = int(warehouse.scalar(f"{published}SELECT COUNT(*) FROM {CHECKED}", bound))
        for check in table_rules:
            rule = _duplicates if check.unique else _violations
            outcomes[check.name] = rule(warehouse, check, published, bound, checked_rows)
    return outcomes


def _duplicates(
    warehouse: Warehouse, check: TableCheck, published: str, params, checked_rows: int
) -> CheckOutcome:
    """Rows whose `column` is missing or shared with another row, over the whole table."""
    column = check.column
    offending = warehouse.frame(
        f"{published}, offending AS ("
        f"SELECT {column} AS value, COUNT(*) AS n FROM {CHECKED} GROUP BY {column} "
        f"HAVING COUNT(*) > 1 OR {column} IS NULL) "
        "SELECT value, n, SUM(n) OVER () AS failing FROM offending "
        f"ORDER BY value NULLS FIRST LIMIT {MAX_EXAMPLES}",
        params,
    )
    failing = int(offending.failing.iloc[0]) if len(offending) else 0
    examples: list[Any] = []
    for value, n in zip(offending.value, offending.n, strict=True):
        value = None if pd.isna(value) else value
        examples += [mask_value(column, value)] * min(int(n), MAX_EXAMPLES - len(examples))
    return CheckOutcome(failing == 0, failing, checked_rows, examples)


def _violations(
    warehouse: Warehouse, check: TableCheck, published: str, params, checked_rows: int
) -> CheckOutcome:
    sql = check.violations_sql.format(table=CHECKED)
    failing = int(warehouse.scalar(f"{published}SELECT COUNT(*) FROM ({sql}) v", params))
    if not failing:
        # Nothing to show: reading the whole table a second time (an aggregate over
        # millions of rows, for some rules) would find no example.
        return CheckOutcome(True, 0, checked_rows, [])
    examples = warehouse.frame(f"{published}SELECT * FROM ({sql}) v LIMIT {MAX_EXAMPLES}", params)
    records = examples.astype(str).to_dict("records")
    return CheckOutcome(failing == 0, failing, checked_rows, [mask_record(r) for r in records])


def _row_rules(
    warehouse: Warehouse,
    checks: Sequence[TableCheck],
    build: Staged,
    params: Mapping[str, Any],
) -> dict[str, CheckOutcome]:
    if not checks:
        return {}
    from reward_assets.quality.gx import validate_frame  # lazily: see gx_expectations

    columns = sorted({c.column for c in checks})
    totals = {c.name: CheckOutcome(True, 0, 0) for c in checks}
    # GX compares datetimes one Python object at a time; as epoch microseconds the same
    # comparisons are vectorised, which matters on fact tables of millions of rows.
    numeric_params = {k: _epoch_us(v) for k, v in params.items()}
    for frame in _batches(warehouse, build, columns):
        if frame.empty:
            continue
        datetimes = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
        frame[datetimes] = frame[datetimes].apply(_epoch_us)
        planned = [(c, e) for c in checks for e in c.expectations(numeric_params)]
        results = validate_frame(frame, [e for _, e in planned], "row_rules")
        for (check, _), result in zip(planned, results, strict=True):
            total = totals[check.name]
            total.passed &= result["success"]
            total.failing_rows += result["unexpected_count"]
            room = MAX_EXAMPLES - len(total.examples)
            examples = result["examples"][:room]
            if check.column in datetimes:
                examples = [pd.Timestamp(v, unit="us") for v in examples]
            total.examples += [mask_value(check.column, v) for v in examples]
        for check in checks:
            totals[check.name].checked_rows += len(frame)
    return totals


def _batches(warehouse: Warehouse, build: Staged, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
    """The build's rows: a whole table (or an incremental build's slice) at once, a
    window in runs of whole days.

    Days are grouped up to CHECK_BATCH_ROWS rows, so a range of small days costs a few
    validations while a day is never split and memory stays bounded on large tables.
    """
    # A build keeping served rows in place (`Kept`) reads them with its own.
    source = f"({build.build_rows()}) b" if build.kept else build.staged
    select = f"SELECT {', '.join(columns)} FROM {source}"
    window = build.window
    if not isinstance(window, Window):
        yield warehouse.frame(select)
        return
    column = window.column
    in_range = f"{column} >= :start AND {column} < :end"
    days = warehouse.frame(
        f"SELECT CAST({column} AS DATE) AS day, COUNT(*) AS n FROM {build.staged} "
        f"WHERE {in_range} GROUP BY 1 ORDER BY 1",
        {"start": window.start, "end": window.end},
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
            batch_start = max(day_start, window.start)
        rows += n
    if batch_start is not None:
        yield warehouse.frame(
            f"{select} WHERE {in_range}", {"start": batch_start, "end": window.end}
        )


def _epoch_us(value):
    """Datetimes (scalars or a column) as integer microseconds since the epoch."""
    if isinstance(value, pd.Series):
        return value.astype("datetime64[us]").astype("int64").where(value.notna())
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    return value
