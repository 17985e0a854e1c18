"""Daily-cycle benchmark: seed, a full run, then one new day through the daily jobs.

    python scripts/bench_daily.py --customers 10000 [--rewards N] [--days 180]

After the seed and a full run of the graph (as `reward-assets run` does) on a persistent
instance (`DAGSTER_HOME` under the bench folder, SQLite storage as `make run` uses),
`reward-assets simulate-day` lands one more day and the daily jobs run as the schedules
and sensors start them: `daily_refresh_job` over the range `daily_refresh_schedule`
requests, `daily_scoring_job` for the day `score_after_refresh` picks, then
`engagement_cycle_job` and `delivery_job`. The weekly `model_training_job` runs last and
is reported apart, outside the daily total. Wall time and peak RSS of each stage, with
each run's steps, go to data/bench/daily-N.json and daily-N.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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

DAILY = ("simulate_day", "daily_refresh_job", "daily_scoring_job", "engagement_cycle_job")
DAILY += ("delivery_job",)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rewards", type=int, default=None, help="default as benchmark.py")
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench")
    args = parser.parse_args()
    args.rewards = args.rewards or max(200, args.customers // 1000)
    load_before = os.getloadavg()

    workdir = args.out / f"daily-run-{args.customers}"
    data_dir = bench_folder(workdir)
    persistent_home(workdir)
    seed = seed_folder(data_dir, args.customers, args.rewards, args.days, args.seed)

    from reward_assets.definitions import defs as load_definitions
    from reward_assets.defs.partitions import RANGE_END_TAG
    from reward_assets.pipeline import default_range, materialize_all
    from reward_assets.settings import Settings

    sampler = RssSampler()
    sampler.start()
    stages = Stages(sampler)
    defs = load_definitions()
    with dg.DagsterInstance.get() as instance:
        with stages.stage("full_run") as figures:
            summary = materialize_all(defs, instance, *default_range(Settings()))
            figures["success"] = summary.success
        figures["runs"] = [run_figures(instance, run_id) for run_id in summary.run_ids]
        figures["before_first_step_seconds"] = round(
            sum(run["before_first_step_seconds"] for run in figures["runs"]), 2
        )
        if not summary.success:
            raise SystemExit(f"the full run failed: {summary.failed_checks}")

        with stages.stage("simulate_day"):
            command = [sys.executable, "-m", "reward_assets", "simulate-day"]
            subprocess.run([*command, "--data", str(data_dir)], check=True)

        def run_job(name: str, **kwargs) -> dg.ExecuteInProcessResult:
            with stages.stage(name) as figures:
                result = defs.resolve_job_def(name).execute_in_process(
                    instance=instance, raise_on_error=False, **kwargs
                )
                figures["success"] = result.success
            figures.update(run_figures(instance, result.run_id))
            return result

        schedule = defs.resolve_schedule_def("daily_refresh_schedule")
        with dg.build_schedule_context(instance=instance, resources=defs.resources) as context:
            request = schedule.evaluate_tick(context).run_requests[0]
        refresh = run_job("daily_refresh_job", tags=request.tags)
        run_job("daily_scoring_job", partition_key=refresh.dagster_run.tags[RANGE_END_TAG])
        run_job("engagement_cycle_job")
        run_job("delivery_job")
        run_job("model_training_job")
    sampler.stop()

    daily = [stages.figures[name] for name in DAILY]
    result = {
        "customers": args.customers,
        "rewards": args.rewards,
        "days": args.days,
        "machine": machine(load_before),
        "seed": {"seconds": round(seed[0], 2), "peak_rss_mb": round(seed[1], 1)},
        "stages": stages.figures,
        "success": all(s.get("success", True) for s in stages.figures.values()),
        # The day's work as the schedules do it: landing, refresh, scoring, cycle, delivery.
        "total_seconds": round(sum(s["seconds"] for s in daily), 2),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in daily),
        "weekly_training_seconds": stages.figures["model_training_job"]["seconds"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"daily-{args.customers}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"daily-{args.customers}.md").write_text(render_markdown(result))
    print((args.out / f"daily-{args.customers}.md").read_text())
    return 0 if result["success"] else 1


def render_markdown(result: dict) -> str:
    load = result["machine"]["load_average_before"][0]
    lines = [
        f"Measured with `scripts/bench_daily.py` on {result['machine']['cpus']} CPUs: "
        f"{result['customers']:,} customers, {result['rewards']:,} rewards, {result['days']} "
        f"days, then one simulated day; load average {load} before the run.",
        "",
        "| stage | s | peak MB | before first step, s | slowest steps (s) |",
        "|---|---:|---:|---:|---|",
    ]
    for name, stage in result["stages"].items():
        slow = sorted(stage.get("steps", {}).items(), key=lambda item: -item[1])[:3]
        lines.append(
            f"| {name} | {stage['seconds']:,.2f} | {stage['peak_rss_mb']:,.0f} | "
            f"{stage.get('before_first_step_seconds', '')} | "
            + ", ".join(f"{k} {v:.2f}" for k, v in slow)
            + " |"
        )
    lines += [
        f"| **daily cycle (simulate_day to delivery_job)** | **{result['total_seconds']:,.1f}**"
        f" | **{result['peak_rss_mb']:,.0f}** | | |",
        "",
        "model_training_job is the weekly retraining, outside the daily total; full_run is "
        "the run before the new day (not in the total either).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
