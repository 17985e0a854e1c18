"""The API over real HTTP in its own process keeps answering while a Dagster run rewrites
the warehouse: on the DuckDB default (it reads the snapshots, never the locked file) and
on PostgreSQL (it reads the tables the run swaps)."""

import datetime as dt
import sqlite3
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from reward_assets.api.main import create_app
from reward_assets.email.unsubscribe import make_token
from reward_assets.settings import Settings
from reward_assets.warehouse.snapshots import SERVED_TABLES, snapshot_path
from reward_assets.warehouse.store import Warehouse
from reward_assets_tests.api_world import (
    ApiWorld,
    copy_ops_store,
    copy_world,
    materialize,
    serve,
    shared_world,
)

# The tables the PostgreSQL test copies: what the API serves and what the SQL models of
# dim_customers and dim_rewards read.
STAGING = ("staging.stg_customers", "staging.stg_rewards")
PG_TYPES = {"DOUBLE": "DOUBLE PRECISION", "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
PRODUCTION_SECRET = "live-test-unsubscribe-secret-5e6f"


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return shared_world(tmp_path_factory)


class Hammer:
    """Threads asking the API for recommendations and profiles until stopped."""

    def __init__(self, url: str, customers: list[str], threads: int = 2):
        self.url = url
        self.customers = customers
        self.bodies: dict[str, list[dict]] = defaultdict(list)
        self.failures: list[tuple[str, int, str]] = []
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                for customer_id in self.customers:
                    for path in (
                        f"/api/customers/{customer_id}/recommended_rewards?limit=10",
                        f"/api/customers/{customer_id}",
                    ):
                        response = client.get(path)
                        with self._lock:
                            self.requests += 1
                            if response.status_code != 200:
                                self.failures.append((path, response.status_code, response.text))
                            elif path.endswith("limit=10"):
                                self.bodies[customer_id].append(response.json())


def recommended(url: str, customers: list[str]) -> dict[str, dict]:
    with httpx.Client(base_url=url) as client:
        return {
            c: client.get(f"/api/customers/{c}/recommended_rewards?limit=10").json()
            for c in customers
        }


def sample_customers(world: ApiWorld, n: int = 8) -> list[str]:
    """Customers with a recommendation set and not on the suppression list."""
    sets = pd.read_parquet(world.snapshots / "ml.recommendation_sets.parquet")
    with sqlite3.connect(world.ops_db) as conn:
        suppressed = {row[0] for row in conn.execute("SELECT customer_id FROM suppressions")}
    candidates = sets.customer_id.drop_duplicates()
    return sorted(candidates[~candidates.isin(suppressed)].sample(n, random_state=3))


def reward_ids(body: dict) -> list[str]:
    return [item["reward"]["reward_id"] for item in body["items"]]


def test_duckdb_default_keeps_answering_while_a_run_writes(world, tmp_path):
    copy = copy_world(world, tmp_path)
    customers = sample_customers(copy)
    target = recommended_reward_of(copy, customers[0])
    # The run below rebuilds dim_rewards from staging: this reward is gone when it is done.
    with Warehouse(copy.warehouse_url).begin() as conn:
        conn.execute(
            sa.text("UPDATE staging.stg_rewards SET active = FALSE WHERE reward_id = :r"),
            {"r": target},
        )
    published = {t: snapshot_path(copy.data_dir, t).stat().st_mtime_ns for t in SERVED_TABLES}
    env = {"DATA_DIR": str(copy.data_dir), "WAREHOUSE_URL": copy.warehouse_url}
    with serve(env) as url:
        before = recommended(url, customers)
        with Hammer(url, customers) as hammer:
            materialize(
                copy,
                dg.AssetSelection.assets("dim_customers", "dim_rewards", "recommendation_sets"),
                copy.config.start_date,
                copy.last_day,
            )
            time.sleep(1)  # some requests after the publish too
        after = recommended(url, customers)

    for table in ("marts.dim_customers", "marts.dim_rewards", "ml.recommendation_sets"):
        assert snapshot_path(copy.data_dir, table).stat().st_mtime_ns > published[table]
    assert hammer.failures == []
    assert hammer.requests > 50
    assert set(hammer.bodies) == set(customers)
    for customer_id, bodies in hammer.bodies.items():
        # Tables are published one after the other, so an answer may pair the new rewards
        # with the old sets; but it always holds rewards of a whole snapshot, never none.
        known = set(reward_ids(before[customer_id])) | set(reward_ids(after[customer_id]))
        assert all(b["items"] and set(reward_ids(b)) <= known for b in bodies)
    assert target in reward_ids(before[customers[0]])
    assert target not in reward_ids(after[customers[0]])


def recommended_reward_of(world: ApiWorld, customer_id: str) -> str:
    sets = pd.read_parquet(world.snapshots / "ml.recommendation_sets.parquet")
    return sets[sets.customer_id == customer_id].sort_values("rank").reward_id.iloc[0]


def copy_tables(source: Warehouse, target: Warehouse, tables) -> None:
    target.ensure_schemas()
    for table in tables:
        schema, _, name = table.partition(".")
        described = source.frame(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = :schema AND table_name = :name ORDER BY ordinal_position",
            {"schema": schema, "name": name},
        )
        columns = {
            row.column_name: PG_TYPES.get(row.data_type, row.data_type)
            for row in described.itertuples()
        }
        target.replace_table(table, columns, [source.frame(f"SELECT * FROM {table}")])


@pytest.mark.postgres
def test_postgresql_serves_the_same_answers_while_a_run_swaps_tables(
    world, pg_url, tmp_path, monkeypatch
):
    source, warehouse = Warehouse(world.warehouse_url), Warehouse(pg_url)
    copy_tables(source, warehouse, [*SERVED_TABLES, *STAGING])
    source.dispose()
    customers = sample_customers(world)
    target = recommended_reward_of(world, customers[0])
    with warehouse.begin() as conn:
        conn.execute(
            sa.text("UPDATE staging.stg_rewards SET active = FALSE WHERE reward_id = :r"),
            {"r": target},
        )
    env = {
        "WAREHOUSE_URL": pg_url,
        "DATA_DIR": str(tmp_path / "no-snapshots"),
        "OPS_DB_URL": copy_ops_store(world, tmp_path / "ops.sqlite"),
        # Not the embedded demo: the default secret would be refused.
        "UNSUBSCRIBE_SECRET": PRODUCTION_SECRET,
    }

    monkeypatch.setenv("DATA_DIR", str(world.data_dir))
    monkeypatch.setenv("WAREHOUSE_URL", world.warehouse_url)
    monkeypatch.setenv("OPS_DB_URL", copy_ops_store(world, tmp_path / "ops-snapshots.sqlite"))
    with TestClient(create_app()) as on_snapshots:
        expected = {
            path: on_snapshots.get(path).json()
            for c in customers
            for path in (f"/api/customers/{c}/recommended_rewards?limit=10", f"/api/customers/{c}")
        }
        expected["/api/rewards?limit=50&tier=gold"] = on_snapshots.get(
            "/api/rewards?limit=50&tier=gold"
        ).json()

    with serve(env) as url:
        health = httpx.get(f"{url}/health").json()
        assert (health["backend"], health["status"]) == ("postgresql", "ok")
        with httpx.Client(base_url=url) as client:
            for path, body in expected.items():
                assert client.get(path).json() == body, path
        before = recommended(url, customers)
        with Hammer(url, customers) as hammer:
            materialize(
                ApiWorld(tmp_path / "no-snapshots", pg_url, world.config),
                dg.AssetSelection.assets("dim_customers", "dim_rewards"),
                world.config.start_date,
                world.last_day,
            )
            time.sleep(1)
        after = recommended(url, customers)
    warehouse.dispose()

    assert hammer.failures == []
    assert hammer.requests > 50
    assert set(hammer.bodies) == set(customers)
    for customer_id, bodies in hammer.bodies.items():
        # Each table is swapped in one transaction: an answer is the old state or the new.
        assert all(b in (before[customer_id], after[customer_id]) for b in bodies)
    assert target in reward_ids(before[customers[0]])
    assert target not in reward_ids(after[customers[0]])
    assert after[customers[0]]["dropped"]["reasons"] == {"reward_inactive": 1}


def every_endpoint(
    world: ApiWorld, customers: list[str], secret: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """One request of each endpoint's kind: (method, path, what the request sends). The
    unsubscribe link comes last: it suppresses the first customer."""
    start = world.last_day - dt.timedelta(days=29)
    stages = ("active", "at_risk", "dormant", None)
    unsubscribe = f"/api/unsubscribe?token={make_token(customers[0], secret)}"
    return [
        *[("GET", f"/api/customers/{c}/recommended_rewards?limit=3", {}) for c in customers],
        *[("GET", f"/api/customers/{c}", {}) for c in customers],
        ("GET", "/api/rewards?limit=20&available=true", {}),
        ("GET", "/api/rewards?tier=gold&limit=50", {}),
        ("GET", f"/api/analytics/report?start_date={start}&end_date={world.last_day}", {}),
        ("GET", "/health", {}),
        ("GET", "/openapi.json", {}),
        *[
            (
                "POST",
                f"/api/customers/{c}/engagement",
                {"json": {"engagement_type": "email", "context": {"journey_stage": stage}}},
            )
            for c, stage in zip(customers, stages * len(customers), strict=False)
        ],
        ("GET", unsubscribe, {}),
        ("POST", unsubscribe, {"data": {"List-Unsubscribe": "One-Click"}}),
    ]


def fire(url: str, requests: list[tuple[str, str, dict[str, Any]]], copies: int = 50):
    """Each request `copies` times, all at once from as many threads; (path, status) pairs
    of every answer that is not a success."""
    barrier = threading.Barrier(copies)

    def one(method: str, path: str, sent: dict[str, Any]) -> list[tuple[str, int]]:
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait()
            response = client.request(method, path, **sent)
            return [] if response.status_code < 400 else [(path, response.status_code)]

    failures = []
    with ThreadPoolExecutor(copies) as pool:
        for method, path, sent in requests:
            answers = [pool.submit(one, method, path, sent) for _ in range(copies)]
            failures.extend(f for answer in answers for f in answer.result())
    return failures


def test_fifty_parallel_requests_on_every_endpoint_on_snapshots(world, tmp_path):
    customers = sample_customers(world, 4)
    env = {
        "DATA_DIR": str(world.data_dir),
        "WAREHOUSE_URL": world.warehouse_url,
        "OPS_DB_URL": copy_ops_store(world, tmp_path / "ops.sqlite"),
        "AS_OF": "",
    }
    with serve(env) as url:
        failures = fire(url, every_endpoint(world, customers, Settings().unsubscribe_secret))
    assert failures == []


@pytest.mark.postgres
def test_fifty_parallel_requests_on_every_endpoint_on_postgresql(world, pg_url, tmp_path):
    source, warehouse = Warehouse(world.warehouse_url), Warehouse(pg_url)
    copy_tables(source, warehouse, SERVED_TABLES)
    source.dispose()
    warehouse.dispose()
    customers = sample_customers(world, 4)
    env = {
        "WAREHOUSE_URL": pg_url,
        "DATA_DIR": str(tmp_path / "no-snapshots"),
        # Both stores on PostgreSQL: the operational store's tables are created in the
        # same database when the API opens it.
        "OPS_DB_URL": pg_url,
        "MODELS_DIR": str(world.data_dir / "models"),
        "UNSUBSCRIBE_SECRET": PRODUCTION_SECRET,
        "AS_OF": "",
    }
    with serve(env) as url:
        failures = fire(url, every_endpoint(world, customers, PRODUCTION_SECRET))
    assert failures == []
