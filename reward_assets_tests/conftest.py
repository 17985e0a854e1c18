import datetime as dt
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from reward_assets.ops.store import open_ops_store
from reward_assets.seed.generate import generate, simulate_day
from reward_assets.seed.model import Model, SeedConfig
from reward_assets.warehouse.store import Warehouse

PG_URL_ENV = "REWARD_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# The data platform's asset groups, without the models built on top of it.
PLATFORM_GROUPS = ("ingestion", "staging", "warehouse")


# Under `make test` (pytest-xdist, `--dist loadfile`) a group of modules runs whole on one
# worker, in collection order. A module is its own group, except that the modules reading
# one of the session's expensive builds share one: on two workers each would build it again
# (two xdist workers, each with its own worlds, took 20 min against 16.7 serially), and
# the modules on the scored warehouse read what earlier ones left in it, as they do
# serially. Listed by name because xdist's scheduler sees node ids only (its own
# xdist_group marks do not reach it under pytest 9.2: pytest-xdist issue #1386); a
# worker's collection warns when a module is missing here or listed wrongly.
SHARED_BUILDS = {
    "seeded-worlds": (
        lambda item: "worlds" in item.fixturenames,
        {
            "test_analytics.py",
            "test_churn.py",
            "test_engagement.py",
            "test_engagement_cycle.py",
            "test_incremental_recommendations.py",
            "test_incremental_scores.py",
            "test_ml_assets.py",
            "test_ranking_quality.py",
            "test_send_time.py",
            "test_ui_webserver.py",
        },
    ),
    "api-world": (
        lambda item: hasattr(item.module, "shared_world"),
        {
            "test_api.py",
            "test_api_fuzz.py",
            "test_api_hardening.py",
            "test_api_live.py",
            "test_email_lineage.py",
            "test_experiments.py",
            "test_notebooks.py",
            "test_write_audit_publish.py",
        },
    ),
}
# The groups handed out first, slowest first (their setup included; --durations=0 on two
# workers): a long group handed out last would leave the other worker idle at the end.
# Missing one costs only balance; the rest keep collection order.
SLOW_FIRST = (
    "seeded-worlds",
    "api-world",
    "test_onboarding.py",
    "test_deploy_live.py",
    "test_production_instance.py",
    "test_pipeline.py",
    "test_cdnow.py",
    "test_celery.py",
    "test_definitions.py",
    "test_event_log.py",
    "test_dagster_instances.py",
)


def worker_group(module: str) -> str:
    """The group a test module (file name) runs in on the xdist workers."""
    for group, (_, modules) in SHARED_BUILDS.items():
        if module in modules:
            return group
    return module


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which plain `pytest` may lack
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with the groups of worker_group as its units of work."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(Path(super()._split_scope(nodeid)).name)

    return GroupScheduling(config, log)


@pytest.hookimpl(tryfirst=True)  # every collected item, before -k or -m deselect some
def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # not a pytest-xdist worker
        return
    collected = {item.path.name for item in items}
    for group, (uses, modules) in SHARED_BUILDS.items():
        using = {item.path.name for item in items if uses(item)}
        if using != modules & collected:
            # A warning, not an error: a stale list costs time (a second build), not results.
            warnings.warn(
                pytest.PytestWarning(
                    f"conftest.SHARED_BUILDS[{group!r}] is out of date: the modules using "
                    f"it are {sorted(using)}, listed are {sorted(modules & collected)}"
                ),
                stacklevel=1,
            )


# After pytest's own reordering by fixture parameters, before a worker reports its items.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    if not hasattr(session.config, "workerinput"):
        return
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    # Stable: within a group, pytest's order (by session fixture parameter) holds.
    session.items.sort(key=lambda item: rank.get(worker_group(item.path.name), len(rank)))


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path):
    """Tests never read the developer's .env or data/: settings come from here only."""
    monkeypatch.chdir(tmp_path)
    for name in ("WAREHOUSE_URL", "AS_OF", "DATA_DIR", "HOLDOUT_SHARE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    yield


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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ops_store(request, tmp_path):
    """An empty operational store on each engine: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    with open_ops_store(url) as opened:
        yield opened


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
    giving the run summary; the run must succeed. The default selection is the data
    platform (ingestion, staging, warehouse): the models need more history than these
    tests land.
    """
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
        with dg.DagsterInstance.ephemeral() as instance:
            summary = materialize_all(
                defs(),
                instance,
                dt.date.fromisoformat(start),
                dt.date.fromisoformat(end),
                selection or dg.AssetSelection.groups(*PLATFORM_GROUPS),
            )
        assert summary.success == expect_success, summary
        return summary

    return run


@pytest.fixture
def land_a_day(run_pipeline):
    """A function(data_dir, warehouse_url) that lands one more day (`simulate_day`) and
    loads it through the data platform, as the daily refresh does."""

    def land(data_dir: Path, warehouse_url: str) -> None:
        landed = simulate_day(data_dir)
        run_pipeline(data_dir, warehouse_url, str(landed.first_day), str(landed.last_day))

    return land


@dataclass(frozen=True)
class SeededWorld:
    """A seeded landing folder, its planted truth and a warehouse built from it."""

    name: str
    data_dir: Path
    warehouse_url: str
    config: SeedConfig

    @property
    def truth_dir(self) -> Path:
        return self.data_dir / "_truth"

    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_url)

    def copy_to(self, root: Path) -> tuple[Path, str]:
        """(landing folder, warehouse URL) of a copy of this world under `root`, to change."""
        shutil.copytree(self.data_dir, root / "data")
        shutil.copy(self.warehouse_url.removeprefix("duckdb:///"), root / "warehouse.duckdb")
        return root / "data", f"duckdb:///{root / 'warehouse.duckdb'}"


# The quality bars hold on the default seed and on a second one with other sizes and knobs.
SEEDS = {
    "default": dict(),
    "second": dict(
        customers=6000,
        rewards=300,
        days=200,
        seed=7,
        model=Model(
            taste_alpha=0.2,
            emails_per_month=2.5,
            purchase_rate_median=0.13,
            reward_zipf_exponent=0.65,
        ),
    ),
}


def build_world(name: str, root: Path) -> SeededWorld:
    """Seed `root`/data and load it into a DuckDB warehouse (ingestion and SQL models)."""
    import dagster as dg

    from reward_assets.definitions import defs
    from reward_assets.pipeline import materialize_all

    config = SeedConfig(output=root / "data", **SEEDS[name])
    generate(config)
    world = SeededWorld(name, config.output, f"duckdb:///{root / 'warehouse.duckdb'}", config)
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("AS_OF", "HOLDOUT_SHARE", "PARTITIONS_START_DATE"):
            patch.delenv(variable, raising=False)
        patch.setenv("DATA_DIR", str(world.data_dir))
        patch.setenv("WAREHOUSE_URL", world.warehouse_url)
        last_day = config.start_date + dt.timedelta(days=config.days - 1)
        with dg.DagsterInstance.ephemeral() as instance:
            summary = materialize_all(
                defs(),
                instance,
                config.start_date,
                last_day,
                dg.AssetSelection.groups(*PLATFORM_GROUPS),
            )
    assert summary.success, summary
    return world


@pytest.fixture(scope="session")
def worlds(tmp_path_factory):
    """A function name -> SeededWorld that builds each seed of SEEDS once per session."""
    built: dict[str, SeededWorld] = {}

    def get(name: str) -> SeededWorld:
        if name not in built:
            built[name] = build_world(name, tmp_path_factory.mktemp(f"world-{name}"))
        return built[name]

    return get


@pytest.fixture(scope="session", params=sorted(SEEDS))
def seeded_world(request, worlds) -> SeededWorld:
    """Each seed of SEEDS; tests using it run once per seed."""
    return worlds(request.param)


@pytest.fixture(scope="session")
def engagement_trainings(worlds):
    """A function name -> `train_engagement(seed=42)` on that world, fitted once per session:
    several modules check the same model, and each fit takes tens of seconds."""
    from reward_assets.engagement.model import train_engagement

    trained = {}

    def get(name: str):
        if name not in trained:
            warehouse = worlds(name).warehouse()
            try:
                trained[name] = train_engagement(warehouse, seed=42)
            finally:
                warehouse.dispose()
        return trained[name]

    return get


@pytest.fixture(scope="session")
def scored(worlds, tmp_path_factory):
    """The default world's warehouse copied, then the `ml` and `scoring` groups run on it.

    Yields (run(*groups, extra=None), warehouse, data_dir); `run` materialises more groups
    on the same stores, `extra` adding settings for that run only.
    """
    import dagster as dg

    from reward_assets.definitions import defs
    from reward_assets.pipeline import materialize_all

    root = tmp_path_factory.mktemp("scored")
    world = worlds("default")
    warehouse_file = root / "warehouse.duckdb"
    shutil.copy(world.warehouse_url.removeprefix("duckdb:///"), warehouse_file)
    env = {"DATA_DIR": str(root / "data"), "WAREHOUSE_URL": f"duckdb:///{warehouse_file}"}
    warehouse = Warehouse(env["WAREHOUSE_URL"])

    def run(*groups: str, extra: dict[str, str] | None = None):
        warehouse.dispose()  # no connection of the test's open while the run writes
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv("AS_OF", raising=False)
            for name, value in {**env, **(extra or {})}.items():
                patch.setenv(name, value)
            with dg.DagsterInstance.ephemeral() as instance:
                summary = materialize_all(
                    defs(),
                    instance,
                    world.config.start_date,
                    world.config.start_date,
                    dg.AssetSelection.groups(*groups),
                )
        return summary

    first = run("ml", "scoring")
    assert first.success, first
    yield run, warehouse, root / "data"
    warehouse.dispose()
