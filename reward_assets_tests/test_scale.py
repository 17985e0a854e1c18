"""The shortcuts taken for scale give exactly the answers of the straightforward code."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from reward_assets.ingest import load as ingest
from reward_assets.ingest.contract import REDEMPTIONS, TRANSACTIONS
from reward_assets.ingest.load import load_window
from reward_assets.ml.cells import cells, distinct, split_points
from reward_assets.recommend.inputs import member_of, positions
from reward_assets.warehouse.store import Warehouse
from reward_assets_tests.landing_builders import transaction, write_rows

START = dt.datetime(2023, 3, 1)


def redemption(redemption_id: str, reward_id: str, redeemed_at: str) -> dict:
    return {
        "redemption_id": redemption_id,
        "customer_id": "c1",
        "reward_id": reward_id,
        "redeemed_at": redeemed_at,
    }


def _landing(data):
    days = {
        "2023-03-01.csv": [
            transaction("t1", "c1", "2023-03-01T10:00:00Z"),
            transaction("t2", "c1", "2023-03-01T11:00:00Z"),
        ],
        "2023-03-02.csv": [
            transaction("t1", "c2", "2023-03-02T10:00:00Z"),  # line 2: t1 again
            transaction("t3", "c2", "2023-03-02T11:00:00Z"),
        ],
        "2023-03-03.csv": [
            transaction("t3", "c3", "2023-03-03T10:00:00Z"),  # line 2: t3 again
            transaction("t4", "c3", "2023-03-03T11:00:00Z"),
        ],
    }
    for name, rows in days.items():
        write_rows(data, "transactions", name, rows)


def _state(warehouse):
    loaded = warehouse.frame(
        "SELECT transaction_id, customer_id, source_file FROM raw.transactions "
        "ORDER BY transaction_id"
    )
    bad = warehouse.frame(
        "SELECT source_file, source_line, record_id, reason FROM raw.quarantine "
        "ORDER BY source_file, source_line"
    )
    return loaded.to_dict("records"), bad.to_dict("records")


@pytest.mark.parametrize("batch_rows", [1, 1_000_000])
def test_ids_repeated_across_batches_are_quarantined_as_in_one_batch(
    tmp_path, monkeypatch, batch_rows
):
    data = tmp_path / "data"
    _landing(data)
    monkeypatch.setattr(ingest, "BATCH_ROWS", batch_rows)
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    warehouse.ensure_schemas()
    end = START + dt.timedelta(days=3)
    report = load_window(warehouse, TRANSACTIONS, data, START, end)
    loaded, bad = _state(warehouse)
    assert [(r["transaction_id"], r["customer_id"]) for r in loaded] == [
        ("t1", "c1"),
        ("t2", "c1"),
        ("t3", "c2"),
        ("t4", "c3"),
    ]
    assert [(b["source_file"], b["source_line"], b["reason"]) for b in bad] == [
        ("transactions/2023-03-02.csv", 2, "duplicate_id"),
        ("transactions/2023-03-03.csv", 2, "duplicate_id"),
    ]
    assert report.rows_loaded == 4

    # Re-running the last two days with rows outside the window in the table takes the
    # warehouse lookup: the same rows stay, the same ones are quarantined.
    load_window(warehouse, TRANSACTIONS, data, START + dt.timedelta(days=1), end, first_day=START)
    assert _state(warehouse) == (loaded, bad)
    warehouse.dispose()


def test_in_memory_and_warehouse_duplicate_lookups_agree(tmp_path, monkeypatch):
    """One file per batch. The first row of r1 is quarantined for its unknown reward, so
    it was never loaded and the later r1 is not a duplicate, whether the load looks ids up
    in memory (nothing outside the window) or in the warehouse (a row outside it)."""
    data = tmp_path / "data"
    first = redemption("r1", "nope", "2023-03-01T10:00:00Z")
    write_rows(data, "redemptions", "2023-03-01.csv", [first])
    write_rows(
        data, "redemptions", "2023-03-02.csv", [redemption("r1", "w1", "2023-03-02T10:00:00Z")]
    )
    write_rows(
        data, "redemptions", "2023-03-03.csv", [redemption("r1", "w1", "2023-03-03T10:00:00Z")]
    )
    write_rows(
        data, "redemptions", "2023-03-09.csv", [redemption("r9", "w1", "2023-03-09T10:00:00Z")]
    )
    monkeypatch.setattr(ingest, "BATCH_ROWS", 1)
    outcomes = []
    for outside in (False, True):
        warehouse = Warehouse(f"duckdb:///{tmp_path / f'wh{outside}.duckdb'}")
        warehouse.ensure_schemas()
        if outside:
            day = dt.datetime(2023, 3, 9)
            load_window(
                warehouse, REDEMPTIONS, data, day, day + dt.timedelta(days=1), {"w1"}, START
            )
        load_window(warehouse, REDEMPTIONS, data, START, START + dt.timedelta(days=3), {"w1"})
        outcomes.append(
            (
                warehouse.frame(
                    "SELECT redemption_id, reward_id, source_file FROM raw.redemptions "
                    "WHERE redemption_id = 'r1'"
                ).to_dict("records"),
                warehouse.frame(
                    "SELECT record_id, source_file, reason FROM raw.quarantine ORDER BY source_file"
                ).to_dict("records"),
            )
        )
        warehouse.dispose()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == (
        [{"redemption_id": "r1", "reward_id": "w1", "source_file": "redemptions/2023-03-02.csv"}],
        [
            {
                "record_id": "r1",
                "source_file": "redemptions/2023-03-01.csv",
                "reason": "unknown_reward",
            },
            {
                "record_id": "r1",
                "source_file": "redemptions/2023-03-03.csv",
                "reason": "duplicate_id",
            },
        ],
    )


def test_arrow_lookups_match_pandas():
    ids = pd.Series([f"c{i:04d}" for i in range(2000)], dtype="str")
    values = pd.Series(["c0003", "x", "c1999", "c0003", "c2000"], dtype="str")
    assert member_of(values, ids).tolist() == values.isin(ids).tolist()
    assert positions(values, ids).tolist() == pd.Index(ids).get_indexer(values).tolist()


def test_customers_on_the_same_tree_paths_share_exact_contributions():
    rng = np.random.default_rng(3)
    n = 20_000
    frame = pd.DataFrame(
        {
            "a": rng.integers(0, 30, n).astype(float),
            "b": np.round(rng.random(n), 2),
            "c": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 5, n)),
        }
    )
    target = (frame.a / 30 + frame.b + rng.normal(0, 0.3, n) > 1).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(frame, label=target),
        num_boost_round=20,
    )
    group, first = distinct(cells(frame.to_numpy(np.float32), split_points([booster], 3)))
    assert len(first) < n  # shared paths are the point
    data = xgb.DMatrix(frame)
    direct = booster.predict(data, pred_contribs=True)
    shared = booster.predict(xgb.DMatrix(frame.iloc[first]), pred_contribs=True)[group]
    assert np.array_equal(direct, shared)
    assert np.array_equal(
        booster.predict(data), booster.predict(xgb.DMatrix(frame.iloc[first]))[group]
    )
