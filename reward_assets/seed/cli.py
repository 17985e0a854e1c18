"""The seed generator's commands: `reward-assets seed` and `reward-assets simulate-day`.

    reward-assets seed --output ./data/ [--customers 10000] [--rewards 200]
        [--days 180] [--start-date 2023-03-01] [--seed 42] [--format csv|parquet]
        [--dirty-fraction 0.01] [--holdout-share 0.05] [--uplift 0.5] [--set NAME=VALUE ...]
    reward-assets simulate-day --data ./data/ [--new-customers N]

--set changes one knob of the generative model (see `Model` in reward_assets/seed/model.py),
e.g. `--set taste_alpha=0.4 --set emails_per_month=3`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import date
from pathlib import Path

from reward_assets.seed.generate import generate
from reward_assets.seed.generate import simulate_day as land_one_day
from reward_assets.seed.model import Model, SeedConfig


def parse_args(argv: list[str] | None = None) -> SeedConfig:
    defaults = SeedConfig(output=Path("data"))
    parser = argparse.ArgumentParser(
        prog="reward-assets seed", description="Seed a data folder with synthetic landing data."
    )
    parser.add_argument("--output", type=Path, required=True, help="data folder to (re)seed")
    parser.add_argument("--customers", type=int, default=defaults.customers)
    parser.add_argument("--rewards", type=int, default=defaults.rewards)
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument(
        "--start-date", type=date.fromisoformat, default=defaults.start_date, help="YYYY-MM-DD"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--format", choices=("csv", "parquet"), default=defaults.format)
    parser.add_argument(
        "--dirty-fraction",
        type=float,
        default=defaults.dirty_fraction,
        help="share of rows per entity that break the contract",
    )
    parser.add_argument("--holdout-share", type=float, default=defaults.holdout_share)
    parser.add_argument(
        "--uplift",
        type=float,
        default=defaults.uplift,
        help="relative redemption-rate increase in the 7 days after a delivered email",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a generative-model knob (JSON value); repeatable",
    )
    args = parser.parse_args(argv)
    knobs = {f.name for f in dataclasses.fields(Model)}
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in knobs or not value:
            parser.error(f"--set {item!r}: expected NAME=VALUE with NAME one of {sorted(knobs)}")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--set {item!r}: {value!r} is not a JSON value")
    if args.customers < 1 or args.rewards < 1 or args.days < 1:
        parser.error("--customers, --rewards and --days must be positive")
    if not 0 <= args.dirty_fraction < 1 or not 0 <= args.holdout_share <= 1:
        parser.error("--dirty-fraction must be in [0, 1) and --holdout-share in [0, 1]")
    if args.uplift < 0:
        parser.error("--uplift must be >= 0")
    return SeedConfig(
        output=args.output,
        customers=args.customers,
        rewards=args.rewards,
        days=args.days,
        start_date=args.start_date,
        seed=args.seed,
        format=args.format,
        dirty_fraction=args.dirty_fraction,
        holdout_share=args.holdout_share,
        uplift=args.uplift,
        model=Model.from_json({**dataclasses.asdict(Model()), **overrides}),
    )


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def seed(argv: list[str] | None = None) -> int:
    print(generate(parse_args(argv), log=progress).render())
    return 0


def simulate_day(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reward-assets simulate-day",
        description="Land one more day (sign-ups, transactions, redemptions, engagement) "
        "into a seeded folder.",
    )
    parser.add_argument("--data", type=Path, required=True, help="a folder seed_data.py wrote")
    parser.add_argument(
        "--new-customers",
        type=int,
        default=None,
        help="sign-ups on the new day (default: the seed's average per day)",
    )
    args = parser.parse_args(argv)
    if args.new_customers is not None and args.new_customers < 0:
        parser.error("--new-customers must be >= 0")
    if not (args.data / "_truth" / "params.json").is_file():
        parser.error(f"{args.data} has no _truth/params.json; run `reward-assets seed` first")
    print(land_one_day(args.data, args.new_customers, log=progress).render())
    return 0
