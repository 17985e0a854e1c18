"""Ingestion under broken input: every good row loads, every bad row or file is quarantined
with a reason naming its file, the run succeeds, and no personal value leaks."""

import datetime as dt
import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from reward_assets.ingest.contract import CUSTOMERS, MAX_AMOUNT, REWARDS, TRANSACTIONS
from reward_assets.ingest.load import SnapshotShrinkError, load_snapshot, load_window
from reward_assets.ingest.validation import suspect_columns
from reward_assets_tests.landing_builders import (
    PLANTED_EMAIL,
    PLANTED_NAME,
    customer,
    transaction,
    write_basic_landing,
    write_broken_landing,
    write_rows,
)

START, END = dt.datetime(2023, 3, 1), dt.datetime(2023, 3, 4)
PII = (PLANTED_EMAIL, PLANTED_NAME, PLANTED_NAME.lower())


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request):
    return request.getfixturevalue(
        {"duckdb": "duckdb_warehouse", "postgres": "pg_warehouse"}[request.param]
    )


def quarantined(warehouse, entity):
    return warehouse.frame(
        "SELECT source_file, source_line, record_id, reason, detail, raw_values, partition_date "
        "FROM raw.quarantine WHERE entity = :e ORDER BY source_file, source_line",
        {"e": entity},
    )


def triples(frame):
    return {
        (f, None if pd.isna(n) else int(n), r)
        for f, n, r in zip(frame.source_file, frame.source_line, frame.reason, strict=True)
    }


def test_a_folder_of_broken_files_loads_every_good_row_and_quarantines_the_rest(
    tmp_path, warehouse
):
    data = tmp_path / "data"
    expected = write_broken_landing(data)

    report = load_snapshot(warehouse, CUSTOMERS, data)

    loaded = warehouse.frame("SELECT customer_id FROM raw.customers ORDER BY 1").customer_id
    assert loaded.tolist() == expected["loaded"]
    bad = quarantined(warehouse, "customers")
    assert triples(bad) == expected["quarantined"]
    assert report.files_skipped == expected["skipped"]
    assert sorted(report.files_quarantined) == sorted(
        f for f, line, _ in expected["quarantined"] if line is None
    )
    # Rows after a quoted line break keep their physical line; a BOM does not hide a column.
    lines = warehouse.frame("SELECT customer_id, source_line FROM raw.customers")
    assert dict(zip(lines.customer_id, lines.source_line, strict=True))["g05"] == 4
    # Nothing personal is stored unmasked, and a 3 MB value is not stored whole.
    stored = (
        "".join(bad.raw_values.dropna()) + "".join(bad.detail) + "".join(bad.record_id.dropna())
    )
    assert not any(value in stored for value in PII)
    assert len(stored) < 20_000
    # A NUL byte never reaches the warehouse, whichever it is.
    assert "\x00" not in stored
    nul = bad[bad.source_line == 5].iloc[0]
    assert (nul.reason, nul.detail) == ("malformed_row", "NUL byte in first_name")

    # Loading again gives the same tables: the quarantine is replaced, not added to.
    load_snapshot(warehouse, CUSTOMERS, data)
    assert triples(quarantined(warehouse, "customers")) == expected["quarantined"]
    assert warehouse.row_count("raw.customers") == len(expected["loaded"])


def test_out_of_range_values_are_quarantined_not_loaded(tmp_path, warehouse):
    data = tmp_path / "data"
    write_rows(
        data,
        "rewards",
        "rewards.csv",
        [
            {"reward_id": "r1", "name": "A", "category": "travel", "points_cost": "0"},
            {"reward_id": "r2", "name": "B", "category": "travel", "points_cost": "100"},
            {
                "reward_id": "r3",
                "name": "C",
                "category": "travel",
                "points_cost": "5",
                "inventory": "-3",
            },
        ],
    )
    load_snapshot(warehouse, REWARDS, data)
    assert warehouse.frame("SELECT reward_id FROM raw.rewards").reward_id.tolist() == ["r2"]
    bad = quarantined(warehouse, "rewards")
    assert bad[["record_id", "reason", "detail"]].values.tolist() == [
        ["r1", "out_of_range", "points_cost below 1"],
        ["r3", "out_of_range", "inventory below 0"],
    ]


def test_an_amount_beyond_the_contracts_magnitude_is_quarantined_not_loaded(tmp_path, warehouse):
    data = tmp_path / "data"
    write_rows(
        data,
        "transactions",
        "2023-03-02.csv",
        [
            transaction("t1", "cust001", "2023-03-02T10:00:00Z", amount="1e15"),
            transaction("t2", "cust001", "2023-03-02T11:00:00Z", amount="-2e14"),
            transaction("t3", "cust001", "2023-03-02T12:00:00Z", amount="999999999999.5"),
            transaction("t4", "cust001", "2023-03-02T13:00:00Z", amount="-12.5"),
        ],
    )
    report = load_window(warehouse, TRANSACTIONS, data, START, END)
    assert report.rows_loaded == 2
    loaded = warehouse.frame("SELECT amount FROM raw.transactions ORDER BY transaction_id")
    assert loaded.amount.tolist() == [999999999999.5, -12.5]
    bad = quarantined(warehouse, "transactions")
    assert bad[["record_id", "reason"]].values.tolist() == [
        ["t1", "out_of_range"],
        ["t2", "out_of_range"],
    ]
    assert bad.detail.str.startswith("amount beyond").all()
    # What is loaded, the marts can sum exactly (customer_features, analytics_revenue).
    total = warehouse.frame(
        "SELECT CAST(SUM(CAST(amount AS DECIMAL(18, 4))) AS DOUBLE PRECISION) AS total "
        "FROM raw.transactions"
    ).total.iloc[0]
    assert total == 999999999987.0


def test_a_nul_byte_in_an_event_row_quarantines_that_row_on_both_warehouses(tmp_path, warehouse):
    data = tmp_path / "data"
    path = write_rows(
        data,
        "transactions",
        "2023-03-02.csv",
        [
            transaction("t1", "cust001", "2023-03-02T10:00:00Z", category="tra\x00vel"),
            transaction("t2", "cust001", "2023-03-02T11:00:00Z"),
        ],
    )
    assert b"\x00" in path.read_bytes()
    report = load_window(warehouse, TRANSACTIONS, data, START, END)
    assert report.rows_loaded == 1
    assert warehouse.frame(
        "SELECT transaction_id FROM raw.transactions"
    ).transaction_id.tolist() == ["t2"]
    bad = quarantined(warehouse, "transactions")
    assert bad[["source_line", "record_id", "reason", "detail"]].values.tolist() == [
        [2, "t1", "malformed_row", "NUL byte in category"]
    ]
    assert json.loads(bad.raw_values[0])["category"] == "tra\x00vel"


def test_nul_bytes_outside_every_value_do_not_make_a_column_suspect():
    # Bytes under a null or outside a slice sit in the data buffer but in no value.
    data = pa.py_buffer(b"a\x00bcd")
    offsets = pa.py_buffer(np.array([0, 3, 5], np.int32))
    under_null = pa.Array.from_buffers(pa.string(), 2, [pa.py_buffer(bytes([0b10])), offsets, data])
    sliced = pa.array(["x\x00y", "plain", "text"]).slice(1)
    columns = {c: pa.nulls(2, pa.string()) for c in TRANSACTIONS.column_names}
    columns |= {"transaction_id": under_null, "customer_id": sliced}
    columns["category"] = pa.array(["ok", "tra\x00vel"])
    table = pa.table(columns)
    assert table.column("transaction_id").to_pylist() == [None, "cd"]
    for name in ("transaction_id", "customer_id", "category"):
        assert b"\x00" in table.column(name).chunk(0).buffers()[2].to_pybytes()
    assert suspect_columns(table, TRANSACTIONS) == ["category"]


def test_malformed_rows_of_a_dated_file_belong_to_its_day_and_are_written_once(
    tmp_path, duckdb_warehouse
):
    """Day by day or as one range: the same rows loaded, the same quarantine, once each."""
    data = tmp_path / "data"
    write_basic_landing(data)
    path = write_rows(
        data,
        "transactions",
        "2023-03-02.csv",
        [transaction("t1", "cust001", "2023-03-02T10:00:00Z")],
    )
    with path.open("a") as handle:
        handle.write("t2,cust001,2023-03-02T10:00:00Z,10.00,USD,travel,app,10,surplus\n")
        handle.write('t3,cust001,"2023-03-02T10:00:00Z,10.00\n')
        handle.write("t4,cust001,2023-03-02T12:00:00Z,10.00,USD,travel,app,10\n")

    def state():
        return (
            sorted(
                duckdb_warehouse.frame("SELECT transaction_id FROM raw.transactions").transaction_id
            ),
            sorted(triples(quarantined(duckdb_warehouse, "transactions"))),
            quarantined(duckdb_warehouse, "transactions").partition_date.tolist(),
        )

    load_window(duckdb_warehouse, TRANSACTIONS, data, START, END)
    whole = state()
    assert ("transactions/2023-03-02.csv", 3, "malformed_row") in whole[1]
    assert ("transactions/2023-03-02.csv", 4, "malformed_row") in whole[1]
    assert {"t1", "t4"} <= set(whole[0])
    assert whole[2] == [pd.Timestamp("2023-03-02")] * 2
    for day in range(1, 4):
        start = dt.datetime(2023, 3, day)
        for _ in range(2):  # each day loaded twice: the rerun changes nothing
            load_window(
                duckdb_warehouse,
                TRANSACTIONS,
                data,
                start,
                start + dt.timedelta(days=1),
                first_day=START,
            )
    assert state() == whole


def test_a_snapshot_that_would_wipe_the_customers_fails_and_keeps_them(tmp_path, warehouse):
    data = tmp_path / "data"
    write_rows(data, "customers", "customers.csv", [customer(f"c{i}") for i in range(10)])
    load_snapshot(warehouse, CUSTOMERS, data, max_shrink=0.5)
    before = quarantined(warehouse, "customers")

    write_rows(data, "customers", "customers.csv", [])  # a header-only export
    with pytest.raises(SnapshotShrinkError) as error:
        load_snapshot(warehouse, CUSTOMERS, data, max_shrink=0.5)
    message = str(error.value)
    assert "customers/customers.csv" in message and "0 valid rows where 10" in message
    assert warehouse.row_count("raw.customers") == 10
    pd.testing.assert_frame_equal(quarantined(warehouse, "customers"), before)

    # Within the allowed share, or with the guard off, the new snapshot replaces the old.
    write_rows(data, "customers", "customers.csv", [customer(f"c{i}") for i in range(6)])
    load_snapshot(warehouse, CUSTOMERS, data, max_shrink=0.5)
    assert warehouse.row_count("raw.customers") == 6
    write_rows(data, "customers", "customers.csv", [])
    load_snapshot(warehouse, CUSTOMERS, data, max_shrink=1.0)
    assert warehouse.row_count("raw.customers") == 0


def test_far_future_dates_are_implausible_whatever_the_rest_of_the_batch(
    tmp_path, duckdb_warehouse
):
    data = tmp_path / "data"
    for rows in (
        [customer("c1", signup_at="9999-12-31")],
        [
            customer("c0"),
            customer("c1", signup_at="9999-12-31"),
            customer("c2", signup_at="2023-01-01 10:00"),
        ],
    ):
        write_rows(data, "customers", "customers.csv", rows)
        load_snapshot(duckdb_warehouse, CUSTOMERS, data)
        bad = quarantined(duckdb_warehouse, "customers")
        assert bad[["record_id", "reason"]].values.tolist() == [["c1", "implausible_timestamp"]]


def test_ingestion_assets_succeed_on_broken_files_and_log_no_personal_data(
    tmp_path, monkeypatch, caplog, capfd
):
    """The Dagster assets in-process on the broken folder: the run succeeds, the event log,
    the compute logs and the Python logs hold no planted email or name."""
    import dagster as dg

    from reward_assets.definitions import defs
    from reward_assets.pipeline import materialize_all

    data = tmp_path / "data"
    expected = write_broken_landing(data)
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{tmp_path / 'wh.duckdb'}")
    caplog.set_level(logging.DEBUG)
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        summary = materialize_all(
            defs(),
            instance,
            dt.date(2023, 3, 1),
            dt.date(2023, 3, 3),
            dg.AssetSelection.groups("ingestion")
            - dg.AssetSelection.keys("email_sends", "provider_events"),
        )
        assert summary.success, summary
        records = instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        )
        metadata = {
            r.event_log_entry.dagster_event.asset_key.to_user_string(): (
                r.event_log_entry.dagster_event.step_materialization_data.materialization.metadata
            )
            for r in records
        }
        logs = [
            str(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id)
        ]
    customers = metadata["customers"]
    assert customers["files_skipped"].value == expected["skipped"]
    assert customers["quarantined_by_reason"].value["malformed_row"] == 6
    assert any("notes.txt is not read" in line for line in logs)
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    # The search does cover the compute logs and the event log: the warnings are there.
    assert list(home.rglob("compute_logs/*.err")) and b"notes.txt is not read" in stored
    captured = capfd.readouterr()
    text = "\n".join([*logs, caplog.text, captured.out, captured.err])
    for value in PII:
        assert value not in text
        assert value.encode() not in stored


@pytest.mark.parametrize("column", ["amount", "points_earned"])
def test_numbers_read_as_pandas_reads_plain_decimals_and_refuse_the_rest(column):
    """The SQL rules keep pandas' reading of plain decimal numbers (what the pandas
    validation did), and refuse what DuckDB's casts alone would take."""
    from reward_assets.ingest.validation import validate

    integer = column == "points_earned"
    plain = ["0", "12", "-7", "+3", "1e3", "1.0", "9223372036854775807", "1."]
    refused = ["ten", "1_000", "0x10", "1,5", "inf", "NaN", "1e400"]
    fractions = ["0.25", ".5", "99999999999999999999", "1e30"]
    if integer:  # beyond 64 bits a value would wrap around when stored
        refused += fractions
    else:
        plain += fractions
    values = plain + refused
    # Plain numbers all the same, but beyond any amount the contract takes.
    beyond = [] if integer else [v for v in plain if abs(float(v)) > MAX_AMOUNT]
    assert integer or len(beyond) == 3
    rows = [
        transaction(f"t{i}", "c1", "2023-03-02T10:00:00Z", **{column: v})
        for i, v in enumerate(values)
    ]
    frame = pd.DataFrame(rows).assign(source_file="f.csv", source_line=range(2, len(rows) + 2))
    result = validate(TRANSACTIONS, frame)
    if integer:  # optional: unreadable values load as NULL and are counted
        read = result.good.set_index("transaction_id")[column]
        assert result.nulled == {column: len(refused)}
    else:  # required: unreadable values are quarantined, and readable ones out of range
        read = result.good.set_index("transaction_id")[column]
        reasons = dict(zip(result.quarantine.record_id, result.quarantine.reason, strict=True))
        assert reasons == {
            **{f"t{i}": "invalid_number" for i, v in enumerate(values) if v in refused},
            **{f"t{i}": "out_of_range" for i, v in enumerate(values) if v in beyond},
        }
    for i, value in enumerate(plain):
        if value in beyond:
            continue
        expected = pd.to_numeric(pd.Series([value])).iloc[0]
        assert read[f"t{i}"] == expected, value
    if integer:
        assert read[[f"t{i}" for i, v in enumerate(values) if v in refused]].isna().all()


def test_every_file_in_an_entity_folder_is_read_or_reported(tmp_path):
    from reward_assets.ingest.landing import scan_landing

    data = tmp_path / "data"
    (data / "transactions" / "2023").mkdir(parents=True)
    for name in (
        "transactions/2023-03-01.CSV",
        "transactions/2023-03-02.csv.GZ",
        "transactions/2023/2023-03-03.parquet",
        "transactions/2023-03-04.csv ",
        "transactions/2023-03-05.xlsx",
        "transactions/README",
        "transactions.Csv",
        "transactions_old.csv",
    ):
        (data / name).write_bytes(b"")
    scan = scan_landing(data, "transactions")
    assert [(f.name.strip(), f.day) for f in scan.files] == [
        ("transactions.Csv", None),
        ("transactions/2023-03-01.CSV", dt.date(2023, 3, 1)),
        ("transactions/2023-03-02.csv.GZ", dt.date(2023, 3, 2)),
        ("transactions/2023-03-04.csv", dt.date(2023, 3, 4)),
        ("transactions/2023/2023-03-03.parquet", dt.date(2023, 3, 3)),
    ]
    assert scan.skipped == ["transactions/2023-03-05.xlsx", "transactions/README"]
