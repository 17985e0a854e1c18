"""Speed of the recommendation sets: the chunked batch path against one customer at a time.

    python scripts/bench_recommendations.py [--customers 1000000] [--rewards 1000]
                                            [--item-item] [--history 4]

Synthetic customers and rewards with the taste model's block layout (taste, segment,
latent; d = 50). Prints the batch time and peak RSS, the one-customer latency (as an API
serves a request, the reward catalogue prepared once) and the ratio of N one-customer
calls to the batch, then the same as one JSON line. `--item-item` adds the served ranker's
item-item term (a dense R x R weight matrix times each customer's redemption row, with
`--history` redemptions per customer), as when validation serves EASE or the blend.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time

import numpy as np
import pandas as pd
import psutil
import scipy.sparse as sp

from reward_assets.ingest import contract
from reward_assets.recommend.sets import (
    RewardCatalog,
    SetRules,
    build_sets,
    recommend_one,
)

CATEGORIES = [f"category_{i}" for i in range(10)]
TIERS = np.array(contract.TIERS)
LATENT_DIMS = 36


class PeakRss(threading.Thread):
    """This process's highest RSS while running (ru_maxrss would include the setup)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        process = psutil.Process()
        while not self._done.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.02)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def synthetic(customers: int, rewards: int, seed: int):
    rng = np.random.default_rng(seed)
    blocks = {
        "taste": slice(0, len(CATEGORIES)),
        "segment": slice(len(CATEGORIES), len(CATEGORIES) + len(TIERS)),
        "latent": slice(len(CATEGORIES) + len(TIERS), len(CATEGORIES) + len(TIERS) + LATENT_DIMS),
    }
    dims = blocks["latent"].stop
    category = rng.integers(len(CATEGORIES), size=rewards)
    reward_frame = pd.DataFrame(
        {
            "reward_id": [f"rwd{i:05d}" for i in range(rewards)],
            "name": [f"Reward {i}" for i in range(rewards)],
            "category": np.array(CATEGORIES)[category],
            "points_cost": np.round(rng.lognormal(7.8, 0.8, rewards), -1),
            "min_tier_rank": rng.choice(4, rewards, p=[0.55, 0.25, 0.15, 0.05]) + 1,
            "is_available": rng.random(rewards) < 0.9,
            # About 5% of the catalogue is new (at most 5 redemptions), as in the seeded worlds.
            "redemptions": rng.negative_binomial(1, 1 / 100, rewards),
        }
    )
    reward_vectors = np.zeros((rewards, dims), np.float32)
    reward_vectors[np.arange(rewards), category] = 1
    reward_vectors[:, blocks["segment"]] = rng.random((rewards, len(TIERS)))
    reward_vectors[:, blocks["latent"]] = rng.normal(0, 0.3, (rewards, LATENT_DIMS))

    rank = rng.choice(4, customers, p=[0.5, 0.3, 0.15, 0.05]) + 1
    customer_frame = pd.DataFrame(
        {
            "customer_id": [f"cus{i:07d}" for i in range(customers)],
            "tier": TIERS[rank - 1],
            "tier_rank": rank,
            "points_balance": np.round(rng.lognormal(6.5, 1.0, customers) * rank**1.5),
        }
    )
    customer_vectors = np.zeros((customers, dims), np.float32)
    customer_vectors[:, blocks["taste"]] = rng.dirichlet(np.full(len(CATEGORIES), 0.5), customers)
    customer_vectors[np.arange(customers), blocks["segment"].start + rank - 1] = 1
    customer_vectors[:, blocks["latent"]] = rng.normal(0, 0.3, (customers, LATENT_DIMS))

    pairs = customers // 5
    recent = pd.DataFrame(
        {
            "customer_id": customer_frame["customer_id"].to_numpy()[
                rng.integers(customers, size=pairs)
            ],
            "reward_id": reward_frame["reward_id"].to_numpy()[rng.integers(rewards, size=pairs)],
        }
    ).drop_duplicates()
    last_redeemed = pd.DataFrame(
        {
            "customer_id": customer_frame["customer_id"].to_numpy()[
                rng.integers(customers, size=pairs)
            ],
            "category": np.array(CATEGORIES)[rng.integers(len(CATEGORIES), size=pairs)],
            "reward_name": "Reward 0",
        }
    ).drop_duplicates(["customer_id", "category"])
    return (
        customer_frame,
        customer_vectors,
        reward_frame,
        reward_vectors,
        blocks,
        recent,
        last_redeemed,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rewards", type=int, default=1_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--one-customer-calls", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--item-item", action="store_true", help="add the item-item term")
    parser.add_argument("--history", type=int, default=4, help="redemptions per customer")
    args = parser.parse_args()

    customers, vectors, rewards, reward_vectors, blocks, recent, last_redeemed = synthetic(
        args.customers, args.rewards, args.seed
    )
    rules, as_of, version = SetRules(), dt.date(2024, 1, 1), "bench"
    weights = history = None
    if args.item_item:
        rng = np.random.default_rng(args.seed + 1)
        weights = rng.normal(0, 0.05, (args.rewards, args.rewards)).astype(np.float32)
        columns = rng.integers(args.rewards, size=args.customers * args.history)
        history = sp.csr_matrix(
            (
                np.ones(columns.size, np.float32),
                columns,
                np.arange(0, columns.size + 1, args.history),
            ),
            shape=(args.customers, args.rewards),
        )
        history.sum_duplicates()
    baseline = psutil.Process().memory_info().rss
    sampler = PeakRss()
    sampler.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    rows = sum(
        len(chunk)
        for chunk in build_sets(
            customers,
            vectors,
            rewards,
            reward_vectors,
            blocks,
            recent,
            last_redeemed,
            rules,
            version,
            as_of,
            args.seed,
            args.chunk_size,
            item_weights=weights,
            history=history,
        )
    )
    batch_seconds = time.perf_counter() - started
    batch_cpu_seconds = time.process_time() - cpu_started
    peak = sampler.stop()

    # An API looks the customer's rows up in its stores: that is outside the timing.
    catalog = RewardCatalog.build(rewards, reward_vectors, blocks, weights)
    item_columns = catalog.item_columns(rewards)
    calls = min(args.one_customer_calls, args.customers)
    picked = np.random.default_rng(args.seed).choice(args.customers, calls, replace=False)
    latencies = []
    for i in picked:
        customer = customers.iloc[i]
        own_recent = recent[recent["customer_id"] == customer["customer_id"]]
        own_latest = last_redeemed[last_redeemed["customer_id"] == customer["customer_id"]]
        redeemed = None if history is None else item_columns[history[i].indices]
        started = time.perf_counter()
        recommend_one(
            customer.to_dict(),
            vectors[i],
            catalog,
            own_recent,
            own_latest,
            rules,
            version,
            as_of,
            redeemed_columns=redeemed,
        )
        latencies.append(time.perf_counter() - started)
    per_customer_ms = 1000 * float(np.mean(latencies))

    result = {
        "customers": args.customers,
        "rewards": args.rewards,
        "dims": reward_vectors.shape[1],
        "item_item": args.item_item,
        "chunk_size": args.chunk_size,
        "rows": rows,
        "batch_seconds": round(batch_seconds, 2),
        # CPU time of all threads (BLAS uses both cores): a shared box inflates the wall time.
        "batch_cpu_seconds": round(batch_cpu_seconds, 2),
        "batch_peak_rss_mb": round(peak / 2**20),
        "rss_before_batch_mb": round(baseline / 2**20),
        "per_customer_ms_mean": round(per_customer_ms, 3),
        "per_customer_ms_p50": round(1000 * float(np.median(latencies)), 3),
        "per_customer_ms_p99": round(1000 * float(np.quantile(latencies, 0.99)), 3),
        "one_by_one_over_batch": round(per_customer_ms * args.customers / 1000 / batch_seconds, 1),
    }
    print(
        f"batch: {args.customers:,} customers x {args.rewards:,} rewards, {rows:,} rows: "
        f"{batch_seconds:.1f} s ({batch_cpu_seconds:.1f} s CPU), "
        f"peak RSS {result['batch_peak_rss_mb']:,} MB ({result['rss_before_batch_mb']:,} before)"
    )
    print(
        f"one customer: {per_customer_ms:.2f} ms mean, p99 {result['per_customer_ms_p99']:.2f} ms;"
        f" {args.customers:,} one by one take {result['one_by_one_over_batch']}x the batch time"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
