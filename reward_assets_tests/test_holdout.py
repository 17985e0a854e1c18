"""The holdout hash computed in the engine gives every customer the bucket it always had."""

import numpy as np

from reward_assets.contact.holdout import (
    BUCKETS,
    holdout_bucket,
    holdout_buckets,
    holdout_mask,
    holdout_threshold,
)
from reward_assets.ingest.contract import CUSTOMERS
from reward_assets.ingest.load import load_snapshot
from reward_assets_tests.landing_builders import customer, write_rows

IDS = [f"cust{n:06d}" for n in range(20_000)] + ["", "ünï-çødé 顧客", " padded ", "a" * 300]


def test_engine_buckets_equal_the_python_hash():
    expected = np.array([holdout_bucket(c) for c in IDS])
    buckets = holdout_buckets(IDS)
    np.testing.assert_array_equal(buckets, expected)
    assert buckets.min() >= 0 and buckets.max() < BUCKETS
    share = 0.05
    np.testing.assert_array_equal(holdout_mask(IDS, share), expected < holdout_threshold(share))
    assert 0.04 < holdout_mask(IDS, share).mean() < 0.06


def test_loaded_customers_carry_the_python_bucket(tmp_path, duckdb_warehouse):
    ids = IDS[:500] + ["ünï-çødé"]
    write_rows(
        tmp_path,
        "customers",
        "customers.csv",
        [customer(c, email=f"c{n}@example.com") for n, c in enumerate(ids)],
    )
    report = load_snapshot(duckdb_warehouse, CUSTOMERS, tmp_path)
    loaded = duckdb_warehouse.frame("SELECT customer_id, holdout_bucket FROM raw.customers")
    assert report.rows_loaded == len(ids) == len(loaded)
    expected = loaded["customer_id"].map(holdout_bucket)
    assert (loaded["holdout_bucket"] == expected).all()
