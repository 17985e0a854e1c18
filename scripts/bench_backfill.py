"""Backfill benchmark: a year of a small data set through `reward-assets run`'s runs on a
persistent instance, where the cost per partition shows.

    python scripts/bench_backfill.py [--customers 1000] [--days 365]

Seeds a small data set (by default 1,000 customers over 365 days, about 45,000
transaction lines) and materialises every asset over the whole range as `reward-assets
run` does, on a fresh `DAGSTER_HOME` with the project's dagster.yaml (SQLite run and event
storage, as `make run` and `make dev` use). Reports the wall time and peak RSS of the
whole, and per run the time before its first step, its event counts and its step times,
in data/bench/backfill.json and backfill.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import dagster as dg
from benchmark import (
    ROOT,
    RssSampler,
    Stages,
    bench_folder,
    machine,
    persistent_home,
    run_figures,
    seed_folder,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--rewards", type=int, default=200)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench")
    args = parser.parse_args()
    load_before = os.getloadavg()

    workdir = args.out / "backfill-run"
    data_dir = bench_folder(workdir)
    persistent_home(workdir)
    seed = seed_folder(data_dir, args.customers, args.rewards, args.days, args.seed)

    sampler = RssSampler()
    sampler.start()
    stages = Stages(sampler)
    with stages.stage("definitions"):  # importing the code location is part of the cost
        from reward_assets.definitions import defs as load_definitions
        from reward_assets.pipeline import default_range, materialize_all
        from reward_assets.settings import Settings
        from reward_assets.warehouse.store import open_warehouse

        defs = load_definitions()
    with dg.DagsterInstance.get() as instance:
        with stages.stage("materialize_all") as figures:
            summary = materialize_all(defs, instance, *default_range(Settings()))
            figures["success"] = summary.success
        runs = {
            f"{i}: {len(figures['steps'])} steps": figures
            for i, figures in enumerate(
                run_figures(instance, run.run_id) for run in reversed(instance.get_runs())
            )
        }
    sampler.stop()
    with open_warehouse(Settings().resolved_warehouse_url()) as warehouse:
        lines = warehouse.row_count("raw.transactions")

    result = {
        "customers": args.customers,
        "rewards": args.rewards,
        "days": args.days,
        "transaction_lines": lines,
        "machine": machine(load_before),
        "seed": {"seconds": round(seed[0], 2), "peak_rss_mb": round(seed[1], 1)},
        "stages": stages.figures,
        "runs": runs,
        "success": summary.success,
        "total_seconds": round(sum(s["seconds"] for s in stages.figures.values()), 2),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.figures.values()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backfill.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "backfill.md").write_text(render_markdown(result))
    print((args.out / "backfill.md").read_text())
    return 0 if summary.success else 1


def render_markdown(result: dict) -> str:
    load = result["machine"]["load_average_before"][0]
    lines = [
        f"Measured with `scripts/bench_backfill.py` on {result['machine']['cpus']} CPUs: "
        f"{result['customers']:,} customers, {result['days']} days, "
        f"{result['transaction_lines']:,} transaction lines; load average {load} before the run.",
        "",
        "| run | before first step, s | steps, s | planned events | materialisations |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in result["runs"].items():
        events = run["events"]
        lines.append(
            f"| {name} | {run['before_first_step_seconds']:.2f} | "
            f"{sum(run['steps'].values()):.2f} | "
            f"{events.get('ASSET_MATERIALIZATION_PLANNED', 0):,} | "
            f"{events.get('ASSET_MATERIALIZATION', 0):,} |"
        )
    stages = result["stages"]
    lines += [
        "",
        f"Loading the definitions {stages['definitions']['seconds']:.1f} s; every run "
        f"{stages['materialize_all']['seconds']:.1f} s; **total {result['total_seconds']:.1f} s"
        f"**, peak {result['peak_rss_mb']:,.0f} MB (the seed, {result['seed']['seconds']:.1f} s, "
        "is not counted).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
