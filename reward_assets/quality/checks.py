"""The data-quality checks on the cleaned tables, as plain definitions and a runner.

GX expectations cover what a column says about itself; referential integrity, which GX
has no expectation for across tables, is plain SQL returning the offending rows. Each
check reports how many rows fail and a few masked examples.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reward_assets.ingest.validation import EMAIL_PATTERN
from reward_assets.privacy import mask_value
from reward_assets.warehouse.sql_models import SqlModel
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


def _unique_ids(column: str) -> Expectations:
    return lambda p: [
        gx_expectations().ExpectColumnValuesToNotBeNull(column=column),
        gx_expectations().ExpectColumnValuesToBeUnique(column=column),
    ]


def _in_period(column: str) -> Expectations:
    # The period ends with the run's window: days loaded beyond AS_OF are legitimate data.
    return lambda p: [
        gx_expectations().ExpectColumnValuesToBeBetween(
            column=column,
            min_value=p["period_start"],
            max_value=p.get("partition_end", p["as_of_end"]),
            strict_max=True,  # window ends are exclusive, as in the SQL models
        )
    ]


def _at_least(column: str, minimum: int) -> Expectations:
    return lambda p: [
        gx_expectations().ExpectColumnValuesToBeBetween(column=column, min_value=minimum)
    ]


def _unique_id_check(column: str) -> TableCheck:
    return TableCheck(
        f"{column}_unique_not_null",
        f"Every {column} is present and unique.",
        True,
        column,
        _unique_ids(column),
    )


def _period_check(column: str) -> TableCheck:
    return TableCheck(
        f"{column}_in_period",
        f"{column} falls between the first partition and the end of the run's window.",
        True,
        column,
        _in_period(column),
    )


CHECKS: dict[str, list[TableCheck]] = {
    "dim_customers": [
        _unique_id_check("customer_id"),
        TableCheck(
            "email_valid",
            "Every email is present and well formed.",
            True,
            "email",
            lambda p: [
                gx_expectations().ExpectColumnValuesToNotBeNull(column="email"),
                gx_expectations().ExpectColumnValuesToMatchRegex(
                    column="email", regex=f"^{EMAIL_PATTERN}$"
                ),
            ],
        ),
        TableCheck(
            "points_balance_non_negative",
            "No customer has a negative points balance.",
            True,
            "points_balance",
            _at_least("points_balance", 0),
        ),
        TableCheck(
            "signup_at_not_after_as_of",
            "No customer signs up after AS_OF.",
            False,
            "signup_at",
            lambda p: [
                gx_expectations().ExpectColumnValuesToBeBetween(
                    column="signup_at", max_value=p["as_of_end"], strict_max=True
                )
            ],
        ),
    ],
    "dim_rewards": [
        _unique_id_check("reward_id"),
        TableCheck(
            "points_cost_positive",
            "Every reward costs at least one point.",
            True,
            "points_cost",
            _at_least("points_cost", 1),
        ),
        TableCheck(
            "inventory_non_negative",
            "No reward has negative stock.",
            True,
            "inventory",
            _at_least("inventory", 0),
        ),
    ],
    "stg_transactions": [_unique_id_check("transaction_id"), _period_check("occurred_at")],
    "stg_redemptions": [
        _unique_id_check("redemption_id"),
        _period_check("redeemed_at"),
        TableCheck(
            "points_spent_non_negative",
            "No redemption spends negative points.",
            True,
            "points_spent",
            _at_least("points_spent", 0),
        ),
    ],
    "stg_engagement_events": [
        _unique_id_check("event_id"),
        _period_check("occurred_at"),
    ],
    "fct_transactions": [
        TableCheck(
            "customer_id_in_dim_customers",
            "Every transaction's customer is in dim_customers.",
            True,
            violations_sql=(
                "SELECT t.transaction_id FROM {table} t LEFT JOIN marts.dim_customers c "
                "ON c.customer_id = t.customer_id WHERE c.customer_id IS NULL"
            ),
        )
    ],
    "fct_redemptions": [
        TableCheck(
            "reward_id_in_dim_rewards",
            "Every redeemed reward is in dim_rewards.",
            False,  # a reward retired from the catalogue keeps its history
            violations_sql=(
                "SELECT r.redemption_id, r.reward_id FROM {table} r LEFT JOIN marts.dim_rewards w "
                "ON w.reward_id = r.reward_id WHERE w.reward_id IS NULL"
            ),
        )
    ],
    "customer_features": [
        _unique_id_check("customer_id"),
        TableCheck(
            "no_look_ahead",
            "Recency and tenure are never negative (no data after AS_OF).",
            True,
            violations_sql=(
                "SELECT customer_id, recency_days, tenure_days FROM {table} "
                "WHERE recency_days < 0 OR tenure_days < 0"
            ),
        ),
    ],
}


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
    checks = CHECKS.get(model.name, [])
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
