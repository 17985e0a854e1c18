"""What the Dagster UI shows of the tables: the qualified table name and the column schema
each materialisation records, read back from the instance's event log on DuckDB and on
PostgreSQL; the kinds of the stores configured; the freshness policies of the schedules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from reward_assets.defs.freshness import GRACE, cron_period
from reward_assets.warehouse.store import Warehouse
from reward_assets_tests.landing_builders import write_basic_landing

# One table per layer: raw (Python load), staging and a served mart (SQL models).
TABLES = {
    "customers": "raw.customers",
    "stg_customers": "staging.stg_customers",
    "dim_customers": "marts.dim_customers",
}


def _defs() -> dg.Definitions:
    from reward_assets.definitions import defs

    return defs()


@pytest.fixture(params=["duckdb", "postgres"])
def materialized(request, tmp_path, monkeypatch):
    """The three tables materialised from a small landing folder; (instance, url)."""
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    else:
        url = request.getfixturevalue("pg_url")
    write_basic_landing(tmp_path / "data")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WAREHOUSE_URL", url)
    with dg.DagsterInstance.ephemeral() as instance:
        result = (
            _defs()
            .resolve_implicit_global_asset_job_def()
            .execute_in_process(instance=instance, asset_selection=[dg.AssetKey(k) for k in TABLES])
        )
        assert result.success
        yield instance, url


def test_each_table_shows_its_qualified_name_and_the_columns_it_holds(materialized):
    instance, url = materialized
    if url.startswith("duckdb"):
        database = Path(url.removeprefix("duckdb:///")).stem  # DuckDB's catalog: the file
    else:
        database = sa.engine.make_url(url).database
    warehouse = Warehouse(url)
    try:
        for key, table in TABLES.items():
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            metadata = event.asset_materialization.metadata
            assert metadata["dagster/table_name"].value == f"{database}.{table}"
            schema = metadata["dagster/column_schema"].value
            shown = [(column.name, column.type) for column in schema.columns]
            assert shown == warehouse.columns(table), key
        dim = dict(warehouse.columns("marts.dim_customers"))
    finally:
        warehouse.dispose()
    assert list(dim)[:2] == ["customer_id", "email"]
    assert dim["is_holdout"].upper() == "BOOLEAN"
    assert dim["signup_date"].upper() == "DATE"


@pytest.mark.parametrize(
    "warehouse_url, ops_url, warehouse_kind, ops_kind",
    [
        ("", "", "duckdb", "sqlite"),
        (
            "postgresql+psycopg://reward@db/warehouse",
            "postgresql+psycopg://reward@db/ops",
            "postgres",
            "postgres",
        ),
    ],
)
def test_kinds_name_the_configured_stores_and_code_references_stay(
    monkeypatch, warehouse_url, ops_url, warehouse_kind, ops_kind
):
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("OPS_DB_URL", ops_url)
    graph = _defs().resolve_asset_graph()
    other = {"duckdb", "postgres"} - {warehouse_kind}
    for key in ("customers", "dim_customers", "analytics_revenue", "churn_scores"):
        kinds = graph.get(dg.AssetKey(key)).kinds
        assert warehouse_kind in kinds and not kinds & other, (key, kinds)
    assert ops_kind in graph.get(dg.AssetKey("suppression_list")).kinds
    dim = graph.get(dg.AssetKey("dim_customers"))
    paths = [r.file_path for r in dim.metadata["dagster/code_references"].code_references]
    assert paths[0].endswith("dbt_like_sql/dim_customers.sql")
    churn = graph.get(dg.AssetKey("churn_scores"))
    [python] = churn.metadata["dagster/code_references"].code_references
    assert python.file_path.endswith("reward_assets/defs/ml/churn.py") and python.line_number


def test_served_tables_and_marts_are_late_one_schedule_period_after_their_last_run(
    monkeypatch,
):
    monkeypatch.setenv("ENGAGEMENT_CYCLE_CRON", "30 6 * * 1")  # a weekly cycle
    graph = _defs().resolve_asset_graph()

    def fail_window(key: str) -> dt.timedelta | None:
        policy = graph.get(dg.AssetKey(key)).freshness_policy
        return policy.fail_window.to_timedelta() if policy else None

    daily = dt.timedelta(days=1) + GRACE
    for key in ("dim_customers", "fct_transactions", "churn_scores", "analytics_revenue"):
        assert fail_window(key) == daily, key
    assert fail_window("customer_segments") == dt.timedelta(days=7) + GRACE
    for key in ("stg_customers", "churn_model", "customers", "engagement_plan"):
        assert fail_window(key) is None, key  # neither served nor a mart


@pytest.mark.parametrize(
    "cron, days",
    [("0 6 * * *", 1), ("*/10 * * * *", 1), ("0 4 * * 1", 7), ("0 0 1 * *", 31)],
)
def test_the_period_of_a_cron(cron, days):
    assert cron_period(cron) == dt.timedelta(days=days)


def test_a_cron_that_is_not_five_fields_is_refused():
    with pytest.raises(ValueError, match="five-field"):
        cron_period("@daily")
