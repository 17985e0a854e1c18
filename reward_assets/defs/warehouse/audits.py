"""A table's declared checks as Dagster asset checks, and an audit's outcomes as their
results, for the SQL model assets and for the assets that write a served table in Python.

A blocking check that fails is an ERROR result: Dagster skips what is downstream in the
run, while the table and its snapshot stay as they were (`quality/publish.py`).
"""

import json
from collections.abc import Sequence

import dagster as dg

from reward_assets.quality.checks import TableCheck, load_checks, table_checks_path
from reward_assets.quality.publish import Audited


def check_specs(asset: str, checks: Sequence[TableCheck]) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(c.name, asset=asset, description=c.description, blocking=c.blocking)
        for c in checks
    ]


def served_check_specs(table: str) -> list[dg.AssetCheckSpec]:
    """The checks `dbt_like_sql/<name>.yml` declares on a table the asset <name> writes."""
    return check_specs(table.rpartition(".")[2], load_checks(table_checks_path(table)))


def check_results(audited: Audited) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            asset_key=audited.table.rpartition(".")[2],
            check_name=check.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN,
            metadata={
                "failing_rows": outcome.failing_rows,
                "checked_rows": outcome.checked_rows,
                "examples": json.dumps(outcome.examples, default=str),
            },
        )
        for check in audited.checks
        for outcome in [audited.outcomes[check.name]]
    ]
