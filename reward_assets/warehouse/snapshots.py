"""Parquet snapshots of the tables the API serves, and a reader that queries them.

DuckDB lets one process write its file and blocks every other process while it does, so
on the DuckDB default no long-lived process (the API) opens the warehouse. Instead, each
asset that writes a served table publishes a copy as Parquet once the table's checks
have approved it (`quality/publish.py`): written beside the old file, then renamed over
it, so a reader sees either the old or the new snapshot, never half of one. The reader
is an in-memory DuckDB whose views carry the warehouse's table names, so one SQL text
runs on the snapshots and, on PostgreSQL, on the warehouse itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from reward_assets.warehouse.store import SCHEMAS, Warehouse

# Ordered by the column the API looks rows up by, in small row groups, so a point
# query reads one group instead of the file.
SERVED_TABLES = {
    "marts.dim_customers": "customer_id",
    "marts.dim_rewards": "reward_id",
    "marts.fct_redemptions": "customer_id, redeemed_at",
    "ml.churn_scores": "customer_id",
    "ml.engagement_scores": "customer_id",
    "ml.send_time_preferences": "customer_id",
    "ml.recommendation_sets": "customer_id, rank",
    "ml.customer_segments": "customer_id",
    "analytics.analytics_email_funnel": "day",
    "analytics.analytics_redemptions": "day, reward_id",
    "analytics.analytics_revenue": "day, currency",
    "analytics.analytics_activity": "day",
    "analytics.analytics_churn_risk": "day, risk_band",
    "analytics.analytics_recommendations": "day",
    "analytics.analytics_uplift": "day",
    "analytics.analytics_experiments": "experiment, variant, campaign, sent_date",
}
ROW_GROUP_SIZE = 8192
SORT_MEMORY_LIMIT = "2GB"
# Connections the API's reader keeps, and how many more it opens under a burst: FastAPI
# runs plain endpoints on a pool of 40 threads.
READER_POOL, READER_OVERFLOW = 8, 40


def snapshot_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "snapshots"


def snapshot_path(data_dir: Path, table: str) -> Path:
    return snapshot_dir(data_dir) / f"{table}.parquet"


def _literal(path: Path) -> str:
    return "'" + path.as_posix().replace("'", "''") + "'"


def publish(warehouse: Warehouse, table: str, data_dir: Path) -> Path | None:
    """Copy served `table` to its snapshot (DuckDB only: on PostgreSQL readers query the
    tables)."""
    if warehouse.dialect != "duckdb":
        return None
    path = snapshot_path(data_dir, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with warehouse.begin() as conn:
        # DuckDB's default limit (80% of RAM) lets the sort hold the whole table: at
        # 1,000,000 customers the recommendation sets' snapshot added 3 GB to the run's
        # peak. Under SORT_MEMORY_LIMIT it adds 2 GB, at the same CPU (it spills little).
        conn.exec_driver_sql(f"SET memory_limit = '{SORT_MEMORY_LIMIT}'")
        try:
            conn.exec_driver_sql(
                f"COPY (SELECT * FROM {table} ORDER BY {SERVED_TABLES[table]}) "
                f"TO {_literal(staged)} (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_SIZE})"
            )
        finally:
            conn.exec_driver_sql("RESET memory_limit")
    os.replace(staged, path)
    return path


def open_reader(warehouse_url: str, data_dir: Path) -> Warehouse:
    """What the API reads: the warehouse on PostgreSQL, else the snapshots under data_dir.

    Views are (re)created whenever a connection is checked out and a snapshot has
    appeared since, so a table published after the reader started is served too.
    """
    if not warehouse_url.startswith("duckdb"):
        return Warehouse(warehouse_url, pool_size=READER_POOL, max_overflow=READER_OVERFLOW)
    # Each in-memory connection is a database of its own with its own views, lent to one
    # thread at a time. SQLAlchemy's default for :memory: (a SingletonThreadPool of 5)
    # closes connections other threads still use once more threads than that ask.
    reader = Warehouse(
        "duckdb:///:memory:",
        poolclass=sa.pool.QueuePool,
        pool_size=READER_POOL,
        max_overflow=READER_OVERFLOW,
    )
    folder = snapshot_dir(data_dir)

    def on_connect(dbapi_connection, _record) -> None:
        # One thread per query: the requests are point look-ups, and the server runs
        # many of them at once.
        dbapi_connection.execute("SET threads = 1")
        for schema in SCHEMAS:
            dbapi_connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")

    def on_checkout(dbapi_connection, record, _proxy) -> None:
        viewed: set[str] = record.info.setdefault("views", set())
        for path in folder.glob("*.*.parquet"):
            table = path.name.removesuffix(".parquet")
            if table not in viewed:
                source = f"SELECT * FROM read_parquet({_literal(path)})"
                dbapi_connection.execute(f"CREATE OR REPLACE VIEW {table} AS {source}")
                viewed.add(table)

    sa.event.listen(reader.engine, "connect", on_connect)
    sa.event.listen(reader.engine, "checkout", on_checkout)
    return reader
