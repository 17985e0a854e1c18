"""The whole graph through Dagster: idempotent partitions and no look-ahead in features."""

import datetime as dt

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


def test_a_range_plans_each_asset_once_and_only_partitioned_runs_carry_it(
    tmp_path, duckdb_warehouse, monkeypatch
):
    """The per-partition bookkeeping of a range: unpartitioned assets run without the range,
    and with the planning switch `reward-assets run` sets, each asset of a range run has one
    planned event (carrying the days), not one per day."""
    import dagster as dg

    from reward_assets.definitions import defs
    from reward_assets.pipeline import RANGE_PLANNING_SWITCH, layers, materialize_all
    from reward_assets_tests.conftest import PLATFORM_GROUPS

    data = tmp_path / "data"
    write_basic_landing(data)
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("WAREHOUSE_URL", duckdb_warehouse.url)
    monkeypatch.setenv(RANGE_PLANNING_SWITCH, "true")
    duckdb_warehouse.dispose()
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    selection = dg.AssetSelection.groups(*PLATFORM_GROUPS)
    runs = layers(graph, selection)
    assert [ranged for _, ranged in runs] == [False, True, False]
    placed = {key: number for number, (keys, _) in enumerate(runs) for key in keys}
    assert set(placed) == selection.resolve(graph)
    for key, number in placed.items():
        assert graph.get(key).is_partitioned == runs[number][1], key
        assert all(placed[p] <= number for p in graph.get(key).parent_keys if p in placed), key

    with dg.DagsterInstance.ephemeral() as instance:
        summary = materialize_all(
            definitions, instance, dt.date(2023, 3, 1), dt.date(2023, 3, 3), selection
        )
        assert summary.success, summary
        run_ids = [r.run_id for r in instance.get_runs()]
        by_asset = {
            key: [
                e.event_log_entry.dagster_event.event_specific_data
                for run_id in run_ids
                for e in instance.get_records_for_run(
                    run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
                ).records
                if e.event_log_entry.dagster_event.asset_key == key
            ]
            for key in placed
        }
        materialized = instance.get_materialized_partitions(dg.AssetKey("transactions"))
    assert len(run_ids) == len(runs)
    assert materialized == {"2023-03-01", "2023-03-02", "2023-03-03"}
    for key, events in by_asset.items():
        assert len(events) == 1, (key, len(events))
        subset = events[0].partitions_subset
        if graph.get(key).is_partitioned:
            assert sorted(subset.get_partition_keys()) == sorted(materialized), key
        else:
            assert subset is None and events[0].partition is None, key


def test_a_failed_layer_stops_only_what_is_downstream_of_it(
    tmp_path, duckdb_warehouse, monkeypatch
):
    """As inside one run: without a reward catalogue `rewards` fails, so redemptions (which
    need it) wait, while the transactions of the range, in a later run, still load."""
    import dagster as dg

    from reward_assets.definitions import defs
    from reward_assets.pipeline import materialize_all
    from reward_assets_tests.conftest import PLATFORM_GROUPS

    data = tmp_path / "data"
    write_basic_landing(data)
    for path in (data / "rewards").iterdir():
        path.unlink()
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("WAREHOUSE_URL", duckdb_warehouse.url)
    duckdb_warehouse.dispose()
    with dg.DagsterInstance.ephemeral() as instance:
        summary = materialize_all(
            defs(),
            instance,
            dt.date(2023, 3, 1),
            dt.date(2023, 3, 3),
            dg.AssetSelection.groups(*PLATFORM_GROUPS),
        )
        done = {
            key
            for key in ("transactions", "stg_transactions", "fct_transactions", "redemptions")
            if instance.get_latest_materialization_event(dg.AssetKey(key))
        }
        started = {
            stats.step_key
            for run_id in summary.run_ids
            for stats in instance.get_run_step_stats(run_id)
        }
    assert not summary.success and len(summary.run_ids) == 3
    # Left out of the later runs, not started there to fail again.
    assert "rewards" in started and not {"redemptions", "stg_redemptions"} & started
    assert done == {"transactions", "stg_transactions", "fct_transactions"}
    assert duckdb_warehouse.row_count("staging.stg_transactions") > 0
