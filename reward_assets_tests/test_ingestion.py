import datetime as dt
import json

import pytest

from reward_assets.ingest.contract import (
    CUSTOMERS,
    ENGAGEMENT_EVENTS,
    REDEMPTIONS,
    REWARDS,
    TRANSACTIONS,
)
from reward_assets.ingest.landing import ContractError
from reward_assets.ingest.load import load_snapshot, load_window
from reward_assets_tests.landing_builders import (
    customer,
    transaction,
    write_basic_landing,
    write_rows,
)

START, END = dt.datetime(2023, 3, 1), dt.datetime(2023, 3, 4)


def quarantine(warehouse, entity):
    return warehouse.frame(
        "SELECT source_file, source_line, record_id, reason, detail, raw_values "
        "FROM raw.quarantine WHERE entity = :e ORDER BY source_file, source_line",
        {"e": entity},
    )


def test_each_kind_of_bad_customer_is_quarantined_with_reason_and_line(tmp_path, duckdb_warehouse):
    data = tmp_path / "data"
    write_rows(
        data,
        "customers",
        "customers.csv",
        [
            customer("cust001", email="jane.doe@example.com"),  # line 2: good
            customer("cust001", email="other@example.com"),  # line 3: duplicate id
            customer("cust002", email="not-an-email"),  # line 4
            customer("", email="x@example.com"),  # line 5: missing key
            customer("cust003", signup_at="2023-13-45T99:00:00"),  # line 6
            customer("cust004", tier="diamond", points_balance="lots"),  # line 7: loads, nulled
        ],
    )
    report = load_snapshot(duckdb_warehouse, CUSTOMERS, data)

    bad = quarantine(duckdb_warehouse, "customers")
    assert list(zip(bad.source_line, bad.reason, strict=True)) == [
        (3, "duplicate_id"),
        (4, "malformed_email"),
        (5, "missing_key"),
        (6, "unparseable_timestamp"),
    ]
    assert set(bad.source_file) == {"customers/customers.csv"}
    assert report.rows_loaded == 2 and report.rows_quarantined == 4
    assert report.nulled_optional == {"tier": 1, "points_balance": 1}
    loaded = duckdb_warehouse.frame("SELECT customer_id, tier FROM raw.customers ORDER BY 1")
    assert loaded.customer_id.tolist() == ["cust001", "cust004"]
    # Personal data is masked in the quarantine's raw values.
    raw = json.loads(bad.raw_values[1])
    assert raw["email"] == "n***" and raw["first_name"] == "P***"
    assert "other@example.com" not in "".join(bad.raw_values)


def test_absurd_sign_up_dates_are_quarantined_not_loaded(tmp_path, duckdb_warehouse):
    data = tmp_path / "data"
    write_rows(
        data,
        "customers",
        "customers.csv",
        [
            customer("cust001"),  # line 2: good
            customer("cust002", signup_at="2032-08-27T10:00:00Z"),  # line 3: in the future
            customer("cust003", signup_at="9999-12-31"),  # line 4
            customer("cust004", signup_at="0001-01-01T00:00:00"),  # line 5
        ],
    )
    report = load_snapshot(duckdb_warehouse, CUSTOMERS, data)

    bad = quarantine(duckdb_warehouse, "customers")
    assert bad.source_line.tolist() == [3, 4, 5]
    assert set(bad.reason) <= {"implausible_timestamp", "unparseable_timestamp"}
    assert bad.reason[0] == "implausible_timestamp"
    assert report.rows_loaded == 1


def test_an_undated_file_quarantines_events_dated_in_the_far_future(tmp_path, duckdb_warehouse):
    data = tmp_path / "data"
    write_basic_landing(data)
    write_rows(
        data,
        "transactions",
        "extra.csv",
        [
            transaction("t-future", "cust001", "2099-01-01T10:00:00Z"),
            transaction("t-ok", "cust001", "2023-03-02T10:00:00Z"),
        ],
    )
    report = load_window(duckdb_warehouse, TRANSACTIONS, data, START, END)

    bad = quarantine(duckdb_warehouse, "transactions")
    assert list(zip(bad.source_file, bad.record_id, bad.reason, strict=True)) == [
        ("transactions/extra.csv", "t-future", "implausible_timestamp")
    ]
    assert report.rows_other_partitions == 0
    # Loading the window again replaces the quarantine row instead of adding one.
    load_window(duckdb_warehouse, TRANSACTIONS, data, START, END)
    assert len(quarantine(duckdb_warehouse, "transactions")) == 1


def test_bad_event_rows_are_quarantined_and_refunds_kept(tmp_path, duckdb_warehouse):
    data = tmp_path / "data"
    write_basic_landing(data)
    write_rows(
        data,
        "transactions",
        "2023-03-02.csv",
        [
            transaction("t1", "cust001", "2023-03-02T10:00:00Z"),  # line 2
            transaction("t1", "cust001", "2023-03-02T11:00:00Z"),  # line 3: duplicate id
            transaction("t2", "cust001", "yesterday"),  # line 4
            transaction("t3", "", "2023-03-02T10:00:00Z"),  # line 5: missing key
            transaction("t4", "cust001", "2023-03-02T10:00:00Z", amount="ten"),  # line 6
            transaction("t5", "cust001", "2023-03-09T10:00:00Z"),  # line 7: far from file day
            transaction("t6", "cust001", "2023-03-02T12:00:00Z", amount="-3.50"),  # refund
            transaction("t-03-01", "cust002", "2023-03-01T12:00:00Z"),  # duplicate of other file
        ],
    )
    write_rows(
        data,
        "transactions",
        "2023-03-01.csv",
        [transaction("t-03-01", "cust002", "2023-03-01T10:00:00Z")],
    )
    report = load_window(duckdb_warehouse, TRANSACTIONS, data, START, END)

    bad = quarantine(duckdb_warehouse, "transactions")
    assert sorted(zip(bad.source_file, bad.source_line, bad.reason, strict=True)) == [
        ("transactions/2023-03-02.csv", 3, "duplicate_id"),
        ("transactions/2023-03-02.csv", 4, "unparseable_timestamp"),
        ("transactions/2023-03-02.csv", 5, "missing_key"),
        ("transactions/2023-03-02.csv", 6, "invalid_number"),
        ("transactions/2023-03-02.csv", 7, "outside_file_date"),
        ("transactions/2023-03-02.csv", 9, "duplicate_id"),
    ]
    refund = duckdb_warehouse.scalar(
        "SELECT amount FROM raw.transactions WHERE transaction_id = 't6'"
    )
    assert refund == -3.5
    # 03-01: 1 row, 03-02: t1 and t6, 03-03: 4 rows from the basic landing.
    assert report.rows_loaded == duckdb_warehouse.row_count("raw.transactions") == 7


def test_unknown_rewards_and_event_types_are_quarantined(tmp_path, duckdb_warehouse):
    data = tmp_path / "data"
    write_basic_landing(data)
    write_rows(
        data,
        "redemptions",
        "2023-03-02.csv",
        [
            {
                "redemption_id": "d1",
                "customer_id": "cust001",
                "reward_id": "rwd001",
                "redeemed_at": "2023-03-02T10:00:00Z",
                "points_spent": "500",
            },
            {
                "redemption_id": "d2",
                "customer_id": "cust001",
                "reward_id": "rwd404",
                "redeemed_at": "2023-03-02T10:00:00Z",
                "points_spent": "500",
            },
        ],
    )
    known = {"rwd001", "rwd002"}
    report = load_window(duckdb_warehouse, REDEMPTIONS, data, START, END, known_rewards=known)
    bad = quarantine(duckdb_warehouse, "redemptions")
    assert bad[["record_id", "reason"]].values.tolist() == [["d2", "unknown_reward"]]
    assert report.quarantined == {"unknown_reward": 1}

    write_rows(
        data,
        "engagement_events",
        "2023-03-02.csv",
        [
            {
                "event_id": "e1",
                "customer_id": "cust001",
                "event_type": "wave",
                "occurred_at": "2023-03-02T10:00:00Z",
            }
        ],
    )
    report = load_window(duckdb_warehouse, ENGAGEMENT_EVENTS, data, START, END)
    bad = quarantine(duckdb_warehouse, "engagement_events")
    assert bad[["record_id", "reason", "detail"]].values.tolist() == [
        ["e1", "invalid_event_type", "event_type"]
    ]


def test_a_file_missing_a_required_column_is_quarantined_and_the_rest_loads(
    tmp_path, duckdb_warehouse
):
    data = tmp_path / "data"
    write_basic_landing(data)
    path = data / "transactions" / "2023-03-02-late.csv"
    path.write_text("transaction_id,customer_id,occurred_at\nt1,cust001,2023-03-02T10:00:00Z\n")
    report = load_window(duckdb_warehouse, TRANSACTIONS, data, START, END)

    bad = quarantine(duckdb_warehouse, "transactions")
    assert bad[["source_file", "reason"]].values.tolist() == [
        ["transactions/2023-03-02-late.csv", "missing_column"]
    ]
    assert "amount" in bad.detail[0] and bad.source_line.isna().all()
    assert report.files_quarantined == ["transactions/2023-03-02-late.csv"]
    assert report.rows_loaded == duckdb_warehouse.row_count("raw.transactions") == 12


def test_missing_customers_is_a_clear_error(tmp_path, duckdb_warehouse):
    with pytest.raises(ContractError, match="no customers files"):
        load_snapshot(duckdb_warehouse, CUSTOMERS, tmp_path / "data")


def test_parquet_landing_loads_like_csv(tmp_path, duckdb_warehouse):
    import pandas as pd

    data = tmp_path / "data"
    data.mkdir()
    rows = [transaction(f"t{i}", "cust001", f"2023-03-02T1{i}:00:00Z") for i in range(3)]
    pd.DataFrame(rows).to_parquet(data / "transactions.parquet")
    report = load_window(duckdb_warehouse, TRANSACTIONS, data, START, END)
    assert report.rows_loaded == 3
    lines = duckdb_warehouse.frame("SELECT source_line FROM raw.transactions ORDER BY 1")
    assert lines.source_line.tolist() == [1, 2, 3]


def test_late_customer_rows_are_held_then_loaded(tmp_path, duckdb_warehouse, run_pipeline):
    data = tmp_path / "data"
    write_basic_landing(data)
    write_rows(
        data,
        "transactions",
        "2023-03-02.csv",
        [transaction("late1", "cust009", "2023-03-02T10:00:00Z", amount="42.00")],
    )
    url = duckdb_warehouse.url
    duckdb_warehouse.dispose()
    run_pipeline(data, url, "2023-03-01", "2023-03-03")
    held = duckdb_warehouse.frame("SELECT entity, record_id FROM marts.held_rows")
    assert held.values.tolist() == [["transactions", "late1"]]
    assert (
        duckdb_warehouse.scalar(
            "SELECT COUNT(*) FROM marts.fct_transactions WHERE customer_id = 'cust009'"
        )
        == 0
    )
    duckdb_warehouse.dispose()

    # The customer arrives in a later file; no event partition is re-run.
    write_rows(data, "customers", "2023-03-04.csv", [customer("cust009")])
    run_pipeline(
        data,
        url,
        "2023-03-01",
        "2023-03-03",
        selection="key:customers or key:stg_customers or group:warehouse",
    )
    assert duckdb_warehouse.row_count("marts.held_rows") == 0
    assert (
        duckdb_warehouse.scalar(
            "SELECT SUM(amount) FROM marts.fct_transactions WHERE customer_id = 'cust009'"
        )
        == 42.0
    )


def test_seeded_landing_loads_every_good_row_and_quarantines_every_planted_one(
    tmp_path, run_pipeline
):
    import csv

    import pandas as pd

    from reward_assets.ingest.contract import ENTITIES
    from reward_assets.seed.generate import generate
    from reward_assets.seed.model import SeedConfig
    from reward_assets.warehouse.store import Warehouse

    data = tmp_path / "data"
    generate(SeedConfig(output=data, customers=600, rewards=40, days=20, seed=3))
    url = f"duckdb:///{tmp_path / 'seeded.duckdb'}"
    run_pipeline(data, url, "2023-03-01", "2023-03-20")

    planted = pd.read_csv(data / "_truth" / "dirty_rows.csv", keep_default_na=False)
    held_kinds = planted.kind == "unknown_customer"  # loaded, then held out of the marts
    warehouse = Warehouse(url)
    try:
        for entity in ENTITIES:
            landed = 0
            for path in sorted((data / entity).glob("*.csv")):
                with path.open(newline="") as handle:
                    landed += sum(1 for _ in csv.reader(handle)) - 1
            bad = planted[(planted.entity == entity) & ~held_kinds]
            assert warehouse.row_count(f"raw.{entity}") == landed - len(bad) > 0, entity

            quarantined = warehouse.frame(
                "SELECT source_file, source_line, reason FROM raw.quarantine WHERE entity = :e",
                {"e": entity},
            )
            assert sorted(
                zip(
                    quarantined.source_file,
                    quarantined.source_line,
                    quarantined.reason,
                    strict=True,
                )
            ) == sorted(zip(bad.file, bad.line.astype(int), bad.kind, strict=True)), entity

        held = warehouse.frame("SELECT entity, COUNT(*) AS n FROM marts.held_rows GROUP BY entity")
        expected = planted[held_kinds].groupby("entity").size().to_dict()
        assert dict(zip(held.entity, held.n, strict=True)) == expected
        assert sum(expected.values()) > 0
    finally:
        warehouse.dispose()


def test_every_row_is_loaded_or_quarantined_by_exactly_one_day(tmp_path, duckdb_warehouse):
    """Day-by-day loads: far-dated bad rows, rows before the first partition, re-sends."""
    data = tmp_path / "data"
    write_rows(
        data,
        "transactions",
        "2023-02-28.csv",
        [transaction("early", "cust001", "2023-02-28T10:00:00Z")],  # before the first day
    )
    write_rows(
        data,
        "transactions",
        "2023-03-02.csv",
        [
            transaction("far", "", "2023-03-20T10:00:00Z"),  # bad and far from its file
            transaction("fixed", "cust001", "2023-03-02T10:00:00Z", amount="abc"),
            transaction("fixed", "cust001", "2023-03-02T10:05:00Z", amount="12.50"),  # re-send
            transaction("huge", "cust001", "2023-03-02T11:00:00Z", points_earned="1e30"),
        ],
    )
    first = dt.datetime(2023, 3, 1)
    for day in range(1, 5):
        start = dt.datetime(2023, 3, day)
        load_window(
            duckdb_warehouse,
            TRANSACTIONS,
            data,
            start,
            start + dt.timedelta(days=1),
            first_day=first,
        )
    loaded = duckdb_warehouse.frame(
        "SELECT transaction_id, amount, points_earned FROM raw.transactions"
    )
    assert sorted(loaded.transaction_id) == ["fixed", "huge"]
    assert loaded.set_index("transaction_id").loc["fixed", "amount"] == 12.5
    assert loaded.points_earned.isna().sum() == 1  # the optional overflow loads as NULL
    bad = quarantine(duckdb_warehouse, "transactions")
    assert sorted(zip(bad.record_id, bad.reason, strict=True)) == [
        ("early", "before_first_partition"),
        ("far", "missing_key"),
        ("fixed", "invalid_number"),
    ]


def test_oversized_required_integer_is_quarantined_not_wrapped(tmp_path, duckdb_warehouse):
    data = tmp_path / "data"
    write_rows(
        data,
        "rewards",
        "rewards.csv",
        [
            {"reward_id": "r1", "name": "A", "category": "travel", "points_cost": "1e30"},
            {"reward_id": "r2", "name": "B", "category": "travel", "points_cost": "100"},
        ],
    )
    load_snapshot(duckdb_warehouse, REWARDS, data)
    assert duckdb_warehouse.frame("SELECT reward_id FROM raw.rewards").reward_id.tolist() == ["r2"]
    assert quarantine(duckdb_warehouse, "rewards").reason.tolist() == ["invalid_number"]
