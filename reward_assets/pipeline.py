"""Materialise the whole code location, as `make run` (`reward-assets run`) and
`make bench` do.

The event assets take every day from the first partition to the latest landed day in a
single run each (their backfill policy allows it), so a fresh data folder becomes a full
warehouse in a handful of runs, in dependency order (`layers`), that then show in the
Dagster UI like any other runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import dagster as dg

from reward_assets.defs.event_log import EVENT_BATCH_SIZE, EVENT_BATCH_SWITCH
from reward_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from reward_assets.email.outbox import Outbox
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.ingest.contract import ENTITIES
from reward_assets.ingest.landing import landing_files
from reward_assets.ops.store import open_ops_store
from reward_assets.quality.publish import VIEW_CHECKS_TABLE
from reward_assets.settings import Settings
from reward_assets.warehouse.load_log import LOG_TABLE
from reward_assets.warehouse.store import open_warehouse


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


# Dagster's switch for one planned event per asset of a range run, carrying the range,
# instead of one per asset and day (Dagster issue 32242): 180 days of 13 partitioned assets
# were 2,340 SQLite writes before the first steps. The cost: the partitions of a range run
# that fails show as missing, not failed, in the UI (the run itself shows as failed).
# `reward-assets run` and the Makefile set it unless the environment says otherwise.
RANGE_PLANNING_SWITCH = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
# With the batch switch, a range run's materialisations of an asset reach the local event
# log as one batch (reward_assets/defs/event_log.py).
DAGSTER_SWITCHES = {RANGE_PLANNING_SWITCH: "true", EVENT_BATCH_SWITCH: EVENT_BATCH_SIZE}


def set_dagster_switches() -> None:
    """Dagster's switches as the Makefile sets them, unless the environment already does."""
    for name, value in DAGSTER_SWITCHES.items():
        os.environ.setdefault(name, value)


@dataclass
class RunSummary:
    success: bool
    run_id: str  # the first run's
    run_ids: list[str] = field(default_factory=list)  # every run, in order
    checks: Counter[str] = field(default_factory=Counter)
    failed_checks: list[str] = field(default_factory=list)
    report: str | None = None  # the analytics report's HTML page, when the run wrote one


# Daily history of what was scored: written for the as-of day only, never for a range.
HISTORY_ASSETS = dg.AssetSelection.assets("score_history", "recommendation_log")


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    start: dt.date,
    end: dt.date,
    selection: str | dg.AssetSelection | None = None,
) -> RunSummary:
    """Runs over `start`..`end` for the selection, then the history day it scored, then
    what reads that history over the range.

    Only the runs of daily partitioned assets carry the range: Dagster records a planned
    materialisation per asset and day of a ranged run, unpartitioned assets included, so
    one run of everything over 180 days wrote 36 x 180 planned events before its first
    step. The selection goes in layers instead, alternating unpartitioned and partitioned
    assets in dependency order (see docs/architecture.md, "Per-partition overhead").
    """
    graph = defs.resolve_asset_graph()
    chosen = dg.AssetSelection.from_coercible(selection) if selection else dg.AssetSelection.all()
    on_history = HISTORY_ASSETS.downstream() - HISTORY_ASSETS
    job = defs.resolve_implicit_global_asset_job_def()
    ranged = {"tags": {RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()}}
    # What reads the history (analytics) runs over the range once the day is recorded.
    steps = [
        *(
            (keys, ranged if part else {})
            for keys, part in layers(graph, chosen - HISTORY_ASSETS - on_history)
        ),
        (list((chosen & HISTORY_ASSETS).resolve(graph)), None),
        *((keys, ranged if part else {}) for keys, part in layers(graph, chosen & on_history)),
    ]
    results = []
    # As inside one run, a failure stops only what is downstream of it: the later layers
    # go on without the assets downstream of one that did not materialise or failed a
    # blocking check. The scored day's history and what follows it need a clean run.
    blocked: set[dg.AssetKey] = set()
    for keys, kwargs in steps:
        if kwargs is None and not all(r.success for r in results):
            break
        keys = [key for key in keys if key not in blocked]
        if not keys:
            continue
        if kwargs is None:
            kwargs = {"partition_key": _scored_day(project_settings(defs)).isoformat()}
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, asset_selection=keys, **kwargs
        )
        results.append(result)
        if not result.success:
            failed = set(keys) - {e.asset_key for e in result.get_asset_materialization_events()}
            failed |= {
                e.asset_key
                for e in result.get_asset_check_evaluations()
                if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
            }
            blocked |= dg.AssetSelection.assets(*failed).downstream().resolve(graph)
    summary = RunSummary(
        all(r.success for r in results), results[0].run_id, [r.run_id for r in results]
    )
    for result in results:
        for event in result.get_asset_materialization_events():
            if event.asset_key == dg.AssetKey("analytics_report"):
                summary.report = event.materialization.metadata["html"].value
        for evaluation in result.get_asset_check_evaluations():
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            if evaluation.passed:
                summary.checks["passed"] += 1
            else:
                summary.checks["failed"] += 1
                summary.failed_checks.append(name)
    return summary


def layers(graph, selection: dg.AssetSelection) -> list[tuple[list[dg.AssetKey], bool]]:
    """The selection's assets as runs in dependency order, each all partitioned or all not.

    An asset joins the earliest layer of its kind (unpartitioned layers even, partitioned
    odd) that comes no earlier than any of its parents in the selection, so each run only
    reads what earlier runs (or its own earlier steps) wrote.
    """
    keys = selection.resolve(graph)
    layer: dict[dg.AssetKey, int] = {}
    for key in graph.toposorted_asset_keys:
        if key not in keys:
            continue
        parity = 1 if graph.get(key).is_partitioned else 0
        after = max((layer[p] for p in graph.get(key).parent_keys if p in layer), default=0)
        layer[key] = after + ((after % 2) != parity)
    return [
        ([k for k, n in layer.items() if n == number], bool(number % 2))
        for number in sorted(set(layer.values()))
    ]


@dataclass
class ActivationSummary:
    onboarding_runs: int = 0
    delivery_success: bool = True
    outbox: dict[str, int] = field(default_factory=dict)


def activate(defs: dg.Definitions, instance: dg.DagsterInstance) -> ActivationSummary:
    """One tick of the onboarding sensor, its runs, then one delivery run: what the daemon
    does with the sensor and the delivery schedule switched on."""
    summary = ActivationSummary()
    sensor = defs.resolve_sensor_def("new_customer_sensor")
    onboarding = defs.resolve_job_def("onboarding_job")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        result = sensor(context)
    for request in getattr(result, "run_requests", None) or []:
        onboarding.execute_in_process(
            run_config=request.run_config, instance=instance, tags=request.tags
        )
        summary.onboarding_runs += 1
    delivery = defs.resolve_job_def("delivery_job").execute_in_process(
        instance=instance, raise_on_error=False
    )
    summary.delivery_success = delivery.success
    with open_ops_store(project_settings(defs).resolved_ops_db_url()) as store:
        summary.outbox = Outbox(store).status_counts()
    return summary


def project_settings(defs: dg.Definitions) -> Settings:
    """The settings the definitions' resources run with."""
    return defs.resources["settings"].get()


def _scored_day(settings: Settings) -> dt.date:
    """The as-of day the scoring assets use: AS_OF, else the latest event loaded."""
    with open_warehouse(settings.resolved_warehouse_url()) as warehouse:
        return resolve_as_of(warehouse, settings.as_of)


def _bookkeeping(table: str) -> bool:
    """What the incremental builds and the views' checks record about the data they read
    (`load_log.py`, `sql_models.py`, `quality/publish.py`), not data a user asked for."""
    return table in (LOG_TABLE, VIEW_CHECKS_TABLE) or "__state" in table or "__seen_" in table


def warehouse_summary(warehouse) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """Rows per table of the warehouse, and quarantined rows per entity and reason."""
    tables = warehouse.frame(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('raw', 'staging', 'marts', 'ml', 'analytics') ORDER BY 1, 2"
    )
    counts = {
        f"{schema}.{name}": warehouse.row_count(f"{schema}.{name}")
        for schema, name in tables.itertuples(index=False)
        if not _bookkeeping(f"{schema}.{name}")
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


def main(argv: list[str] | None = None) -> int:
    """`reward-assets run [--start D] [--end D]`: every asset on the configured stores, then
    a summary. The run is recorded in DAGSTER_HOME, so it shows in the Dagster UI."""
    from reward_assets.definitions import defs as load_definitions

    set_dagster_switches()
    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="reward-assets run",
        description="Materialise every asset on the configured stores and print what came out.",
    )
    parser.add_argument(
        "--start", type=dt.date.fromisoformat, help="first day (default: first partition)"
    )
    parser.add_argument(
        "--end", type=dt.date.fromisoformat, help="last day, inclusive (default: newest landed)"
    )
    args = parser.parse_args(argv)
    try:
        start, end = default_range(settings) if not (args.start and args.end) else (None, None)
    except ValueError as error:
        parser.error(str(error))
    start, end = args.start or start, args.end or end

    started = time.perf_counter()
    print(f"Materialising every asset, partitions {start}..{end}, data from {settings.data_dir}/")
    with dg.DagsterInstance.get() as instance:
        definitions = load_definitions()
        summary = materialize_all(definitions, instance, start, end)
        elapsed = time.perf_counter() - started
        activation = activate(definitions, instance) if summary.success else None

    with open_warehouse(settings.resolved_warehouse_url()) as warehouse:
        counts, quarantine = warehouse_summary(warehouse)
    outcome = "succeeded" if summary.success else "FAILED"
    more = len(summary.run_ids) - 1
    print(f"\nRun {summary.run_id} and {more} more: {outcome} in {elapsed:.1f}s\n")
    print("Rows per table")
    for table, rows in counts.items():
        print(f"  {table:<34} {rows:>12,}")
    print("\nQuarantined rows (raw.quarantine)")
    for entity, reason, rows in quarantine or [("-", "none", 0)]:
        print(f"  {entity:<20} {reason:<24} {rows:>8,}")
    print(
        f"\nAsset checks: {summary.checks['passed']} passed, {summary.checks['failed']} failed"
        + "".join(f"\n  failed: {name}" for name in summary.failed_checks)
    )
    if activation:
        folder = "SMTP" if settings.smtp_host else f"{settings.resolved_outbox_dir()}/"
        print(f"\nActivation: {activation.onboarding_runs} onboarding run(s), delivery to {folder}")
        for status, rows in sorted(activation.outbox.items()):
            print(f"  outbox {status:<27} {rows:>12,}")
    if summary.report:
        print(f"\nAnalytics report: {summary.report}")
    print("\nNext: `make dev` opens the Dagster UI on the same storage (http://127.0.0.1:3000).")
    return 0 if summary.success and (activation is None or activation.delivery_success) else 1
