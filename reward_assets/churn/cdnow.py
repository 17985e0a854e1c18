"""CDNOW, real purchase data nobody here generated, converted to the input contract.

CDNOW (Fader and Hardie) is the full purchase history, January 1997 to June 1998, of the
23,570 customers who first bought at the CDNOW music store in the first quarter of 1997:
69,659 purchases, each a customer, a day, a number of CDs and a dollar amount. The
`lifetimes` 0.11.3 wheel on PyPI ships it as `lifetimes/datasets/CDNOW_master.txt`;
`fetch` downloads that wheel with pip into a cache and reads the file from it, so the
repository holds the converter, not the data.

The data carries purchases only. The conversion: a customer signs up at their first
purchase (the cohort was defined by it), in the lowest tier, without marketing consent,
with the points a common earning rule gives (`POINTS_PER_DOLLAR` on their spend in the
converted window); their email is a placeholder made from the id (no one's address); each
purchase is a `music` transaction at noon UTC of its day, one file per day. There are no
redemptions and no engagement events; the catalogue is a few music rewards, so the
recommender has something to rank.

    python -m reward_assets.churn.cdnow --output DIR [--cache DIR] [--every N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd

WHEEL = "lifetimes==0.11.3"
MEMBER = "lifetimes/datasets/CDNOW_master.txt"
# Points a customer earns per dollar: CDNOW had no loyalty programme, so a common rule.
POINTS_PER_DOLLAR = 10
REWARDS = pd.DataFrame(
    {
        "reward_id": [
            "free-shipping",
            "cd-voucher-5",
            "cd-voucher-10",
            "box-set",
            "concert-ticket",
            "vinyl",
        ],
        "name": [
            "Free shipping",
            "$5 off a CD",
            "$10 off a CD",
            "A box set",
            "A concert ticket",
            "A vinyl LP",
        ],
        "category": "music",
        "points_cost": [50, 500, 1000, 3000, 5000, 2000],
        "inventory": 1000,
        "active": True,
    }
)


class CdnowUnavailable(RuntimeError):
    """The wheel could not be downloaded (no registry, no network)."""


def fetch(cache: Path) -> Path:
    """CDNOW_master.txt, extracted into `cache` from the lifetimes wheel (downloaded once)."""
    cache = Path(cache)
    target = cache / "CDNOW_master.txt"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("[Ll]ifetimes-0.11.3-*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(cache)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        wheels = list(cache.glob("[Ll]ifetimes-0.11.3-*.whl"))
        if done.returncode or not wheels:
            raise CdnowUnavailable(
                f"pip download {WHEEL} failed ({done.returncode}): {done.stderr.strip()[-300:]}"
            )
    with zipfile.ZipFile(wheels[0]) as wheel:
        target.write_bytes(wheel.read(MEMBER))
    return target


def read_master(path: Path) -> pd.DataFrame:
    """customer, day, cds, dollars: one row per purchase, in file order."""
    frame = pd.read_csv(
        path,
        sep=r"\s+",
        skiprows=1,
        names=["customer", "day", "cds", "dollars"],
        dtype={"customer": str, "day": str, "cds": int, "dollars": float},
    )
    frame["day"] = pd.to_datetime(frame["day"], format="%Y%m%d")
    return frame


def convert(
    master: Path, output: Path, every: int = 1, since: dt.date | None = None
) -> dict[str, int]:
    """Write the landing folder of the input contract to `output`; with `every` > 1, only
    the customers whose number is a multiple of it (a deterministic subset); with `since`,
    only the purchases from that day on (customers still sign up at their first one)."""
    purchases = read_master(master)
    if every > 1:
        purchases = purchases[purchases["customer"].astype(int) % every == 0]
    purchases["customer_id"] = "cdnow" + purchases["customer"]
    first = purchases.groupby("customer_id", sort=True)["day"].min()
    if since:
        purchases = purchases[purchases["day"] >= pd.Timestamp(since)]
    purchases = purchases.reset_index(drop=True)
    spend = purchases.groupby("customer_id")["dollars"].sum().reindex(first.index, fill_value=0)
    points = (spend * POINTS_PER_DOLLAR).round().astype("int64")
    output = Path(output)
    (output / "transactions").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "customer_id": first.index,
            "email": first.index + "@example.com",
            "signup_at": first.dt.strftime("%Y-%m-%dT00:00:00").to_numpy(),
            "country": "US",
            "timezone": "UTC",
            "tier": "bronze",
            "points_balance": points.to_numpy(),
            "marketing_opt_in": False,
        }
    ).to_csv(output / "customers.csv", index=False)
    REWARDS.to_csv(output / "rewards.csv", index=False)
    transactions = pd.DataFrame(
        {
            "transaction_id": "cdnow-" + purchases.index.astype(str),
            "customer_id": purchases["customer_id"],
            "occurred_at": (purchases["day"] + pd.Timedelta(hours=12)).dt.strftime(
                "%Y-%m-%dT%H:%M:%S"
            ),
            "amount": purchases["dollars"].map("{:.2f}".format),
            "currency": "USD",
            "category": "music",
            "channel": "online",
        }
    )
    for day, rows in transactions.groupby(purchases["day"].dt.strftime("%Y-%m-%d")):
        rows.to_csv(output / "transactions" / f"{day}.csv", index=False)
    return {"customers": len(first), "transactions": len(transactions)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="landing folder to write")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "cdnow")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th customer")
    parser.add_argument("--since", type=dt.date.fromisoformat, help="drop earlier purchases")
    args = parser.parse_args(argv)
    try:
        master = fetch(args.cache)
    except CdnowUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = convert(master, args.output, args.every, args.since)
    print(f"wrote {counts['customers']:,} customers, {counts['transactions']:,} transactions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
