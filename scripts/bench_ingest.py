"""Time the ingestion loads alone on a landing folder (no Dagster, no SQL models).

    python scripts/bench_ingest.py /tmp/ingest-100k [--warehouse-url URL] [--days 180]

Loads customers and rewards (snapshots), then each event entity over the whole range in
one window, as a single-run backfill does, into a fresh warehouse (a DuckDB file beside
the folder by default), and prints wall and CPU seconds (CPU time compares runs on a busy
machine), rows loaded and quarantined per entity, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import time
from pathlib import Path

from reward_assets.ingest.contract import ENTITIES
from reward_assets.ingest.load import load_snapshot, load_window
from reward_assets.warehouse.store import open_warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--warehouse-url", default="")
    parser.add_argument("--start", default="2023-03-01")
    parser.add_argument("--days", type=int, default=180)
    args = parser.parse_args()
    url = args.warehouse_url
    if not url:
        path = args.data_dir.with_name(args.data_dir.name + "-bench.duckdb")
        path.unlink(missing_ok=True)
        url = f"duckdb:///{path}"
    start = dt.datetime.fromisoformat(args.start)
    end = start + dt.timedelta(days=args.days)
    with open_warehouse(url) as warehouse:
        warehouse.ensure_schemas()
        for table in ("raw.quarantine", *(e.table for e in ENTITIES.values())):
            warehouse.engine.dispose()
            with warehouse.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        for entity in ENTITIES.values():
            began, cpu = time.perf_counter(), time.process_time()
            if entity.partitioned:
                known = None
                if entity.name == "redemptions":
                    known = set(warehouse.frame("SELECT reward_id FROM raw.rewards")["reward_id"])
                report = load_window(
                    warehouse, entity, args.data_dir, start, end, known, first_day=start
                )
            else:
                report = load_snapshot(warehouse, entity, args.data_dir)
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            print(
                f"{entity.name:<18} {seconds:7.2f} s ({cpu:6.2f} s CPU)  "
                f"{report.rows_loaded:>10,} loaded  "
                f"{report.rows_quarantined:>7,} quarantined  {report.files_read} files"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
