"""The whole graph through Dagster: idempotent partitions and no look-ahead in features."""

import pandas as pd

from reward_assets_tests.landing_builders import (
    customer,
    transaction,
    write_basic_landing,
    write_rows,
)

TABLES = [
    "raw.customers",
    "raw.transactions",
    "raw.quarantine",
    "staging.stg_transactions",
    "staging.stg_redemptions",
    "staging.stg_engagement_events",
    "marts.dim_customers",
    "marts.fct_transactions",
    "marts.customer_features",
]


def snapshot(warehouse, table: str) -> pd.DataFrame:
    frame = warehouse.frame(f"SELECT * FROM {table}").astype(str)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_rerunning_a_partition_leaves_identical_tables(tmp_path, duckdb_warehouse, run_pipeline):
    data = tmp_path / "data"
    write_basic_landing(data)
    write_rows(  # a bad row, so the quarantine is part of what must not double
        data,
        "transactions",
        "2023-03-02.csv",
        [transaction("a", "cust001", "2023-03-02T10:00:00Z"), transaction("b", "cust001", "never")],
    )
    url = duckdb_warehouse.url
    duckdb_warehouse.dispose()
    run_pipeline(data, url, "2023-03-01", "2023-03-03")
    run_pipeline(data, url, "2023-03-02", "2023-03-02")
    before = {t: snapshot(duckdb_warehouse, t) for t in TABLES}
    assert all(len(frame) > 0 for frame in before.values()), {t: len(f) for t, f in before.items()}
    assert (before["raw.transactions"].transaction_id == "a").sum() == 1
    duckdb_warehouse.dispose()

    run_pipeline(data, url, "2023-03-02", "2023-03-02")
    for table, frame in before.items():
        pd.testing.assert_frame_equal(snapshot(duckdb_warehouse, table), frame, obj=table)


def test_data_after_as_of_does_not_change_customer_features(
    tmp_path, duckdb_warehouse, run_pipeline
):
    data = tmp_path / "data"
    write_basic_landing(data)
    url = duckdb_warehouse.url
    duckdb_warehouse.dispose()
    run_pipeline(data, url, "2023-03-01", "2023-03-04", as_of="2023-03-02")
    features = snapshot(duckdb_warehouse, "marts.customer_features")
    assert len(features) == 3 and set(features.as_of) == {"2023-03-02"}
    duckdb_warehouse.dispose()

    # Everything below happens after AS_OF: more purchases, changed amounts, a new sign-up.
    write_rows(
        data,
        "transactions",
        "2023-03-03.csv",
        [
            transaction(f"x{i}", "cust002", "2023-03-03T10:00:00Z", amount="999.00")
            for i in range(5)
        ],
    )
    write_rows(
        data,
        "transactions",
        "2023-03-04.csv",
        [transaction("y", "cust003", "2023-03-04T08:00:00Z")],
    )
    write_rows(
        data, "customers", "late.csv", [customer("cust004", signup_at="2023-03-03T09:00:00Z")]
    )
    run_pipeline(data, url, "2023-03-01", "2023-03-04", as_of="2023-03-02")
    pd.testing.assert_frame_equal(snapshot(duckdb_warehouse, "marts.customer_features"), features)
    duckdb_warehouse.dispose()

    # The same change does move the features of a later AS_OF, so the test can fail.
    run_pipeline(data, url, "2023-03-01", "2023-03-04", as_of="2023-03-04")
    later = snapshot(duckdb_warehouse, "marts.customer_features")
    assert len(later) == 4
    assert not later.drop(columns="as_of").head(3).equals(features.drop(columns="as_of"))
