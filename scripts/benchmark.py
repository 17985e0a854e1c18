"""Benchmark: seed a data set of the given size and materialise the whole graph.

    python scripts/benchmark.py --customers 100000 [--rewards N] [--days 180]

The seed runs as a child process (its own peak memory); the graph runs in this process,
as `make run` does. Wall time and peak RSS of the seed, of every asset step and of the
whole go to data/bench/bench.json and data/bench/bench.md (and a copy per size), and
data/bench/bench-table.md puts every size measured so far side by side (the README's
table). The total is the seed plus every run of the graph.
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
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psutil

from reward_assets.pipeline import set_dagster_switches

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


class Stages:
    """Wall time and peak RSS of named stages of this process, in the order they ran."""

    def __init__(self, sampler: RssSampler):
        self.sampler = sampler
        self.figures: dict[str, dict] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.time()
        figures: dict = {}
        yield figures  # the stage may add its own figures (step times, event counts)
        end = time.time()
        figures.update(seconds=round(end - start, 2), peak_rss_mb=self.sampler.peak_mb(start, end))
        self.figures[name] = figures  # the same dict: figures added after the stage count


def bench_folder(workdir: Path) -> Path:
    """A fresh `workdir` with its own landing folder and warehouse, so a bench never
    touches the demo data; the landing folder's path."""
    shutil.rmtree(workdir, ignore_errors=True)
    os.environ["DATA_DIR"] = str(workdir / "data")
    os.environ["WAREHOUSE_URL"] = f"duckdb:///{workdir / 'warehouse.duckdb'}"
    os.environ.pop("AS_OF", None)
    # As `reward-assets run` and the Makefile run the graph.
    set_dagster_switches()
    return workdir / "data"


def persistent_home(workdir: Path) -> Path:
    """A fresh DAGSTER_HOME under `workdir` with the project's dagster.yaml: the SQLite
    run and event storage `make run` and `make dev` use, not an ephemeral instance."""
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_figures(instance: dg.DagsterInstance, run_id: str) -> dict:
    """A run's time before its first step, its step times and its event counts by type."""
    records = instance.all_logs(run_id)
    windows = step_windows(instance, [run_id])
    first = min((start for start, _ in windows.values()), default=records[-1].timestamp)
    counts: dict[str, int] = {}
    for record in records:
        kind = record.dagster_event_type.value if record.dagster_event_type else "LOG"
        counts[kind] = counts.get(kind, 0) + 1
    return {
        "before_first_step_seconds": round(first - records[0].timestamp, 2),
        "events": dict(sorted(counts.items(), key=lambda item: -item[1])),
        "steps": {k: round(end - start, 2) for k, (start, end) in windows.items()},
    }


def seed_folder(data_dir: Path, customers: int, rewards: int, days: int, seed: int):
    """Seed `data_dir` in a child process (its own peak memory): (seconds, peak RSS MB)."""
    print(f"Seeding {customers:,} customers, {rewards:,} rewards, {days} days ...")
    started = time.perf_counter()
    command = [sys.executable, str(ROOT / "scripts" / "seed_data.py"), "--output", str(data_dir)]
    for option, value in (("customers", customers), ("rewards", rewards), ("days", days)):
        command += [f"--{option}", str(value)]
    subprocess.run([*command, "--seed", str(seed)], check=True)
    seconds = time.perf_counter() - started
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def step_windows(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, tuple]:
    """(start, end) wall time of every finished step of the runs, by step key."""
    return {
        s.step_key: (s.start_time, s.end_time)
        for run_id in run_ids
        for s in instance.get_run_step_stats(run_id)
        if s.start_time and s.end_time
    }


def machine(load_before: tuple[float, ...]) -> dict:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other processes share the machine: its load says how far to trust the times.
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument(
        "--rewards",
        type=int,
        default=None,
        help="default: one per 1,000 customers, at least 200 (1,000 at 1,000,000 customers)",
    )
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench")
    args = parser.parse_args()
    if args.rewards is None:
        args.rewards = max(200, args.customers // 1000)
    load_before = os.getloadavg()

    data_dir = bench_folder(args.out / f"run-{args.customers}")
    seed_seconds, seed_peak_mb = seed_folder(
        data_dir, args.customers, args.rewards, args.days, args.seed
    )

    from reward_assets.definitions import defs
    from reward_assets.pipeline import default_range, materialize_all
    from reward_assets.settings import Settings
    from reward_assets.warehouse.store import open_warehouse

    settings = Settings()
    sampler = RssSampler()
    sampler.start()
    print("Materialising every asset ...")
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        summary = materialize_all(defs(), instance, *default_range(settings))
        # materialize_all may take more than one run (the scored day's history and what
        # reads it come after the range): every step of every run is reported.
        steps = step_windows(instance, [r.run_id for r in instance.get_runs()])
    pipeline_seconds = time.perf_counter() - started
    sampler.stop()
    with open_warehouse(settings.resolved_warehouse_url()) as wh:
        volumes = {
            "customers": wh.row_count("marts.dim_customers"),
            "transactions": wh.row_count("marts.fct_transactions"),
            "redemptions": wh.row_count("marts.fct_redemptions"),
            "engagement_events": wh.row_count("marts.fct_engagement_events"),
        }

    assets = {
        key: {"seconds": round(end - start, 2), "peak_rss_mb": sampler.peak_mb(start, end)}
        for key, (start, end) in sorted(steps.items(), key=lambda item: item[1][0])
    }
    pipeline_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "customers": args.customers,
        "rewards": args.rewards,
        "days": args.days,
        "machine": machine(load_before),
        "volumes": volumes,
        "transactions_per_customer": round(
            volumes["transactions"] / max(volumes["customers"], 1), 1
        ),
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
    text = json.dumps(result, indent=2) + "\n"
    markdown = render_markdown([result])
    for name in ("bench", f"bench-{result['customers']}"):
        (out / f"{name}.json").write_text(text)
        (out / f"{name}.md").write_text(markdown)
    measured = [json.loads(p.read_text()) for p in out.glob("bench-*.json")]
    measured.sort(key=lambda r: r["customers"])
    (out / "bench-table.md").write_text(render_markdown(measured))


def render_markdown(results: list[dict]) -> str:
    """One table, a pair of columns (seconds, peak RSS in MB) per size measured."""
    machine = results[-1]["machine"]
    sizes = ", ".join(
        f"{r['customers']:,} customers ({r['rewards']:,} rewards, {r['days']} days, "
        f"{r.get('transactions_per_customer', '?')} transactions per customer, load average "
        f"{r['machine'].get('load_average_before', ['?'])[0]} before the run)"
        for r in results
    )
    steps = list(dict.fromkeys(k for r in results for k in r["assets"]))

    def cells(row) -> str:
        return " | ".join(
            f"{v['seconds']:,.2f} | {v['peak_rss_mb']:,.0f}" if v else " | " for v in row
        )

    lines = [
        f"Measured with `scripts/benchmark.py` on {machine['cpus']} CPUs, "
        f"{machine['memory_gb']} GB, Python {machine['python']}; DuckDB warehouse: {sizes}.",
        "",
        "| step | " + " | ".join(f"{r['customers']:,}: s | MB" for r in results) + " |",
        "|---|" + "---:|---:|" * len(results),
        f"| seed (child process) | {cells([r['seed'] for r in results])} |",
        *(f"| {k} | {cells([r['assets'].get(k) for r in results])} |" for k in steps),
        "| **pipeline (all assets)** | "
        + " | ".join(f"**{r['pipeline_seconds']:,.1f}** | " for r in results)
        + " |",
        "| **total (seed + pipeline)** | "
        + " | ".join(
            f"**{r['total_seconds']:,.1f}** | **{r['peak_rss_mb']:,.0f}**" for r in results
        )
        + " |",
        "",
        "An asset's MB is the process's high-water mark while that step ran; the total's is "
        "the highest of the seed's and the pipeline's.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
