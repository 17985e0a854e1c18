"""Benchmark: seed a data set of the given size and materialise the whole graph.

    python scripts/benchmark.py --customers 100000 [--rewards 200] [--days 180]

The seed runs as a child process (its own peak memory); the graph runs in this process,
as `make run` does. Wall time and peak RSS of the seed, of every asset step and of the
whole go to data/bench/bench.json and data/bench/bench.md (and a copy per size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import psutil

ROOT = Path(__file__).resolve().parents[1]


class RssSampler(threading.Thread):
    """Samples this process's RSS so each step's high-water mark can be read afterwards."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()
        self._process = psutil.Process()

    def run(self) -> None:
        while not self._done.is_set():
            self.samples.append((time.time(), self._process.memory_info().rss))
            time.sleep(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def peak_mb(self, start: float, end: float) -> float:
        window = [rss for at, rss in self.samples if start <= at <= end]
        return round(max(window, default=0) / 2**20, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rewards", type=int, default=200)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench")
    args = parser.parse_args()

    workdir = args.out / f"run-{args.customers}"
    shutil.rmtree(workdir, ignore_errors=True)
    data_dir = workdir / "data"
    # The bench's own landing folder and warehouse, so it never touches the demo data.
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["WAREHOUSE_URL"] = f"duckdb:///{workdir / 'warehouse.duckdb'}"
    os.environ.pop("AS_OF", None)

    print(f"Seeding {args.customers:,} customers, {args.rewards:,} rewards, {args.days} days ...")
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "seed_data.py"),
            "--output",
            str(data_dir),
            "--customers",
            str(args.customers),
            "--rewards",
            str(args.rewards),
            "--days",
            str(args.days),
            "--seed",
            str(args.seed),
        ],
        check=True,
    )
    seed_seconds = time.perf_counter() - started
    seed_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    from reward_assets.definitions import defs
    from reward_assets.pipeline import default_range, materialize_all
    from reward_assets.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    sampler = RssSampler()
    sampler.start()
    print("Materialising every asset ...")
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        summary = materialize_all(defs(), instance, *default_range(settings))
        steps = {
            s.step_key: (s.start_time, s.end_time)
            for s in instance.get_run_step_stats(summary.run_id)
            if s.start_time and s.end_time
        }
    pipeline_seconds = time.perf_counter() - started
    sampler.stop()

    assets = {
        key: {"seconds": round(end - start, 2), "peak_rss_mb": sampler.peak_mb(start, end)}
        for key, (start, end) in sorted(steps.items(), key=lambda item: item[1][0])
    }
    pipeline_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "customers": args.customers,
        "rewards": args.rewards,
        "days": args.days,
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "run_success": summary.success,
        "failed_checks": summary.failed_checks,
        "seed": {"seconds": round(seed_seconds, 2), "peak_rss_mb": round(seed_peak_mb, 1)},
        "assets": assets,
        "pipeline_seconds": round(pipeline_seconds, 2),
        "total_seconds": round(seed_seconds + pipeline_seconds, 2),
        "peak_rss_mb": round(max(seed_peak_mb, pipeline_peak_mb), 1),
    }
    write_results(args.out, result)
    print((args.out / "bench.md").read_text())
    return 0 if summary.success else 1


def write_results(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = [("seed (child process)", result["seed"])] + list(result["assets"].items())
    lines = [
        f"Benchmark: {result['customers']:,} customers, {result['rewards']:,} rewards, "
        f"{result['days']} days; {result['machine']['cpus']} CPUs, "
        f"{result['machine']['memory_gb']} GB; DuckDB warehouse.",
        "",
        "| step | seconds | peak RSS (MB) |",
        "|---|---:|---:|",
        *(f"| {name} | {v['seconds']:.2f} | {v['peak_rss_mb']:,.0f} |" for name, v in rows),
        f"| **pipeline (all assets, one run)** | **{result['pipeline_seconds']:.2f}** | |",
        f"| **total** | **{result['total_seconds']:.2f}** | **{result['peak_rss_mb']:,.0f}** |",
        "",
        "Peak RSS per asset is the process's high-water mark while that step ran.",
    ]
    markdown = "\n".join(lines) + "\n"
    text = json.dumps(result, indent=2) + "\n"
    for name in ("bench", f"bench-{result['customers']}"):
        (out / f"{name}.json").write_text(text)
        (out / f"{name}.md").write_text(markdown)


if __name__ == "__main__":
    sys.exit(main())
