"""Land one more day (sign-ups, transactions, redemptions, engagement) into a seeded folder.

python scripts/simulate_day.py --data ./data/ [--new-customers N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reward_assets.seed.generate import simulate_day


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        parser.error(f"{args.data} has no _truth/params.json; run scripts/seed_data.py first")
    print(simulate_day(args.data, args.new_customers, log=progress).render())


if __name__ == "__main__":
    main()
