"""Speed of churn training and scoring at scale, on synthetic customer features.

    python scripts/bench_churn.py [--customers 1000000]

Builds `customer_features`-shaped frames with a planted churn signal (recency, trend and
engagement), trains the churn model on `--customers` rows validated on a quarter as many,
then scores `--customers` customers with their drivers. Prints the seconds of each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time

import numpy as np
import pandas as pd

from reward_assets.churn.model import fit_churn


def features(rng: np.random.Generator, n: int, as_of: dt.date) -> pd.DataFrame:
    recency = rng.integers(0, 90, n)
    purchases = rng.poisson(2.0, n)
    previous = rng.poisson(2.0, n)
    opens = rng.beta(2, 2, n)
    logit = -2.5 + 0.03 * recency - 0.3 * (purchases - previous) - 2.0 * (opens - 0.5)
    return pd.DataFrame(
        {
            "customer_id": [f"cust{i}" for i in range(n)],
            "as_of": as_of,
            "has_purchased": True,
            "tier_rank": rng.integers(1, 5, n),
            "recency_days": recency,
            "purchases_30d": purchases,
            "purchases_prev_30d": previous,
            "redemptions_90d": rng.poisson(0.5, n),
            "emails_sent_90d": rng.poisson(6, n),
            "open_rate_90d": opens,
            "click_rate_90d": opens * rng.beta(2, 5, n),
            "days_since_engagement": rng.integers(0, 90, n).astype(float),
            "churned": rng.random(n) < 1 / (1 + np.exp(-logit)),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(42)
    train = features(rng, args.customers, dt.date(2023, 6, 1))
    validation = features(rng, args.customers // 4, dt.date(2023, 7, 1))

    started = time.perf_counter()
    training = fit_churn(train, validation)
    trained = time.perf_counter() - started
    started = time.perf_counter()
    scores = training.model.score(train)
    scored = time.perf_counter() - started

    print(
        f"churn training on {len(train):,} rows: {trained:.1f} s "
        f"(validation ROC-AUC {training.metrics['roc_auc']:.3f})"
    )
    print(f"churn scoring with drivers, {len(scores):,} customers: {scored:.1f} s")
    print(
        json.dumps(
            {
                "customers": len(train),
                "train_seconds": round(trained, 1),
                "score_seconds": round(scored, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
