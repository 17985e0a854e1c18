import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from reward_assets.settings import get_settings
from reward_assets.storage.warehouse import Warehouse

PG_URL_ENV = "REWARD_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path):
    """Tests never read the developer's .env or data/: settings come from here only."""
    monkeypatch.chdir(tmp_path)
    for name in ("WAREHOUSE_URL", "AS_OF", "DATA_DIR", "HOLDOUT_SHARE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def duckdb_warehouse(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    warehouse.ensure_schemas()
    yield warehouse
    warehouse.dispose()


@pytest.fixture(scope="session")
def pg_server_url():
    """The PostgreSQL server for parity tests; skipped (visibly) when none is reachable.

    CI sets REQUIRE_POSTGRES=1, which turns the skip into a failure.
    """
    url = os.environ.get(PG_URL_ENV, DEFAULT_PG_URL)
    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except sa.exc.OperationalError as error:
        message = f"PostgreSQL not reachable at {url} ({error.orig}); set {PG_URL_ENV}"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database on the PostgreSQL server (its URL), dropped afterwards."""
    name = f"reward_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield sa.engine.make_url(server_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def pg_url(pg_server_url):
    """A fresh database on the PostgreSQL server, dropped after the test."""
    with fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture
def pg_warehouse(pg_url):
    warehouse = Warehouse(pg_url)
    warehouse.ensure_schemas()
    yield warehouse
    warehouse.dispose()


@pytest.fixture
def run_pipeline(monkeypatch):
    """Materialise the real code location in-process against the given stores.

    Returns a function(data_dir, warehouse_url, start, end, as_of=None, selection=None)
    giving the run summary; the run must succeed.
    """
    import datetime as dt

    import dagster as dg

    from reward_assets.definitions import defs
    from reward_assets.pipeline import materialize_all

    def run(data_dir, warehouse_url, start, end, as_of=None, selection=None, expect_success=True):
        monkeypatch.setenv("DATA_DIR", str(data_dir))
        monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
        if as_of:
            monkeypatch.setenv("AS_OF", as_of)
        else:
            monkeypatch.delenv("AS_OF", raising=False)
        get_settings.cache_clear()
        with dg.DagsterInstance.ephemeral() as instance:
            summary = materialize_all(
                defs(),
                instance,
                dt.date.fromisoformat(start),
                dt.date.fromisoformat(end),
                selection,
            )
        assert summary.success == expect_success, summary
        return summary

    return run
