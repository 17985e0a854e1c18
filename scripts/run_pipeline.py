"""Materialise every asset on the configured stores and print what came out.

    python scripts/run_pipeline.py [--start 2023-03-01] [--end 2023-08-27]

The run is recorded in DAGSTER_HOME, so it shows in the Dagster UI (`make dev`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import dagster as dg

from reward_assets.definitions import defs as load_defs
from reward_assets.pipeline import activate, default_range, materialize_all, warehouse_summary
from reward_assets.settings import Settings
from reward_assets.warehouse.store import open_warehouse


def main() -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--start", type=dt.date.fromisoformat, help="first day (default: first partition)"
    )
    parser.add_argument(
        "--end", type=dt.date.fromisoformat, help="last day, inclusive (default: newest landed)"
    )
    args = parser.parse_args()
    try:
        start, end = default_range(settings) if not (args.start and args.end) else (None, None)
    except ValueError as error:
        parser.error(str(error))
    start, end = args.start or start, args.end or end

    started = time.perf_counter()
    print(f"Materialising every asset, partitions {start}..{end}, data from {settings.data_dir}/")
    with dg.DagsterInstance.get() as instance:
        definitions = load_defs()
        summary = materialize_all(definitions, instance, start, end)
        elapsed = time.perf_counter() - started
        activation = activate(definitions, instance) if summary.success else None

    with open_warehouse(settings.resolved_warehouse_url()) as warehouse:
        counts, quarantine = warehouse_summary(warehouse)
    outcome = "succeeded" if summary.success else "FAILED"
    print(f"\nRun {summary.run_id}: {outcome} in {elapsed:.1f}s\n")
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


if __name__ == "__main__":
    sys.exit(main())
