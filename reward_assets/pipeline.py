"""Materialise the whole code location in one run, as `make run` and `make bench` do.

The event assets take every day from the first partition to the latest landed day in a
single run (their backfill policy allows it), so a fresh data folder becomes a full
warehouse in one step that then shows in the Dagster UI like any other run.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import dagster as dg

from reward_assets.data.contract import ENTITIES
from reward_assets.data.landing import landing_files
from reward_assets.settings import Settings

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def latest_landed_day(settings: Settings) -> dt.date | None:
    """The day of the newest dated landing file of an event entity, if there is one."""
    days = [
        f.day
        for entity in ENTITIES.values()
        if entity.partitioned
        for f in landing_files(settings.data_dir, entity.name)
        if f.day
    ]
    return max(days, default=None)


def default_range(settings: Settings) -> tuple[dt.date, dt.date]:
    """First partition to the newest landed day (or AS_OF): data time, never wall time."""
    end = latest_landed_day(settings) or settings.as_of
    if end is None:
        raise ValueError(
            f"no dated landing files under {settings.data_dir}/ to take the last day from: "
            "set AS_OF or pass the range explicitly"
        )
    return settings.partitions_start_date, end


@dataclass
class RunSummary:
    success: bool
    run_id: str
    checks: Counter[str] = field(default_factory=Counter)
    failed_checks: list[str] = field(default_factory=list)


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    start: dt.date,
    end: dt.date,
    selection: str | None = None,
) -> RunSummary:
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()}
    result = job.execute_in_process(
        instance=instance,
        tags=tags,
        raise_on_error=False,
        asset_selection=(
            list(dg.AssetSelection.from_coercible(selection).resolve(defs.resolve_asset_graph()))
            if selection
            else None
        ),
    )
    summary = RunSummary(result.success, result.run_id)
    for evaluation in result.get_asset_check_evaluations():
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        if evaluation.passed:
            summary.checks["passed"] += 1
        else:
            summary.checks["failed"] += 1
            summary.failed_checks.append(name)
    return summary


def warehouse_summary(warehouse) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """Rows per table of the warehouse, and quarantined rows per entity and reason."""
    tables = warehouse.frame(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('raw', 'staging', 'marts') ORDER BY 1, 2"
    )
    counts = {
        f"{schema}.{name}": warehouse.row_count(f"{schema}.{name}")
        for schema, name in tables.itertuples(index=False)
    }
    quarantine = []
    if "raw.quarantine" in counts:
        quarantine = list(
            warehouse.frame(
                "SELECT entity, reason, COUNT(*) AS n FROM raw.quarantine "
                "GROUP BY entity, reason ORDER BY entity, reason"
            ).itertuples(index=False, name=None)
        )
    return counts, quarantine


def refresh_job() -> dg.JobDefinition:
    """The daily refresh job (every asset so far), importable by name.

    `dg.reconstructable(refresh_job)` is what the multiprocess and Celery executors need:
    each step's process, or Celery worker, loads the job again from this function.
    """
    from reward_assets.definitions import defs

    return defs().resolve_job_def("daily_refresh_job")
