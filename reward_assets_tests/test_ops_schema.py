"""The operational store's schema revisions, on SQLite and PostgreSQL.

A store made before revisions (the DDL of `ops_store_before_revisions/`) is upgraded with
every row kept, by `alembic upgrade head`, by compose's init script and, embedded, by
opening it; a fresh store gets exactly the code's schema; processes opening an empty store
at once do not race; an outdated PostgreSQL store is refused until upgraded; a later
revision that alters a filled table keeps its rows; and the installed package carries the
migrations.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from reward_assets.ops import migrate
from reward_assets.ops.locks import write_locked
from reward_assets.ops.store import OpsStore, metadata, open_ops_store

ROOT = Path(__file__).resolve().parents[1]
BEFORE_REVISIONS = Path(__file__).with_name("ops_store_before_revisions")
# Tables of later revisions: a store made before revisions has none to fill or keep.
ADDED_BY_REVISIONS = {"provider_events", "sent_alerts"}
NOW = dt.datetime(2024, 5, 1, 12, 30)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    """An empty store on each engine: a new SQLite file, a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ops.sqlite'}"
    else:
        yield request.getfixturevalue("pg_url")


def make_store_before_revisions(url: str) -> None:
    """The store as the code before revisions created it (its `metadata.create_all`)."""
    dialect = sa.engine.make_url(url).get_backend_name()
    ddl = (BEFORE_REVISIONS / f"{dialect}.sql").read_text()
    store = OpsStore(url)
    with store.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
    store.dispose()


def fill_every_table(url: str) -> None:
    """Rows of every kind the product writes, in every table, JSON and dates included."""
    rows = {
        "model_registry": [
            {
                "name": "churn",
                "version": f"v{i}",
                "status": "approved",
                "created_at": NOW,
                "decided_at": NOW,
                "artefact_path": f"/models/churn/v{i}",
                "trained_as_of": dt.date(2024, 4, 30),
                "metrics": {"auc": 0.7 + i / 100},
                "features": ["recency", "frequency"],
                "params": {"depth": i},
                "reasons": None,
            }
            for i in range(3)
        ],
        "outbox": [
            {
                "idempotency_key": f"c{i}:rewards_digest:2024-05-01",
                "customer_id": f"c{i}",
                "campaign": "rewards_digest",
                "occurrence": "2024-05-01",
                "status": status,
                "reason": None,
                "send_at": NOW,
                "timezone": "Europe/Paris",
                "to_address": f"c{i}@example.com",
                "subject": "Your rewards",
                "text_body": "Hello",
                "html_body": "<p>Hello</p>",
                "reward_ids": ["r1", "r2"],
                "content_source": "template",
                "attempts": i,
                "created_at": NOW,
                "updated_at": NOW,
                "sent_at": NOW if status == "sent" else None,
            }
            for i, status in enumerate(("queued", "sent", "uncertain"))
        ],
        "suppressions": [
            {"customer_id": f"c{i}", "reason": "unsubscribe", "source": "api", "created_at": NOW}
            for i in range(3)
        ],
        "followups": [
            {
                "customer_id": f"c{i}",
                "campaign": "followup_3",
                "due_date": dt.date(2024, 5, 4),
                "status": "pending",
                "signup_at": NOW,
                "updated_at": NOW,
            }
            for i in range(3)
        ],
        "switches": [
            {"name": "kill_switch", "value": "on", "updated_at": NOW, "updated_by": "ops"}
        ],
        "llm_cache": [
            {"key": f"k{i}", "model": "m", "draft": {"subject": f"s{i}"}, "created_at": NOW}
            for i in range(3)
        ],
        "api_idempotency": [
            {
                "key": f"key-{i}",
                "fingerprint": "f" * 64,
                "status_code": 200,
                "response": {"queued": True},
                "created_at": NOW,
                "completed_at": NOW,
            }
            for i in range(3)
        ],
    }
    assert set(rows) == set(metadata.tables) - ADDED_BY_REVISIONS
    store = OpsStore(url)
    with store.begin() as conn:
        for name, table_rows in rows.items():
            conn.execute(sa.insert(metadata.tables[name]), table_rows)
    store.dispose()


def store_columns(url: str) -> dict[str, list[str]]:
    """The code's tables the store has, with the code's columns it has of each."""
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    found = {
        name: [
            column["name"]
            for column in inspector.get_columns(name)
            if column["name"] in metadata.tables[name].c
        ]
        for name in metadata.tables
        if inspector.has_table(name)
    }
    engine.dispose()
    return found


def every_row(url: str, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of the store, read through `columns` (default: all it has), so a store
    upgraded since can be compared with what it held before the columns were added."""
    columns = columns or store_columns(url)
    store = OpsStore(url)
    with store.begin() as conn:
        found = {
            name: sorted(
                tuple(row)
                for row in conn.execute(sa.select(*(metadata.tables[name].c[c] for c in names)))
            )
            for name, names in columns.items()
        }
    store.dispose()
    return found


def schema_differences(url: str) -> list:
    """What Alembic's autogenerate would change to make the store match the code: []."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": migrate.VERSION_TABLE}
        )
        differences = compare_metadata(context, metadata)
    engine.dispose()
    return differences


def revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        return migrate.current(engine)
    finally:
        engine.dispose()


def run_python(args: list[str], env: dict[str, str], cwd: Path = ROOT):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.postgres
@pytest.mark.parametrize("way", ["alembic upgrade head", "compose init"])
def test_upgrading_a_postgresql_store_made_before_revisions_keeps_every_row(way, pg_url, tmp_path):
    make_store_before_revisions(pg_url)
    fill_every_table(pg_url)
    columns = store_columns(pg_url)
    before = every_row(pg_url)
    assert sum(map(len, before.values())) == 19

    if way == "alembic upgrade head":
        # From the project root, as a developer or an operator runs it.
        done = run_python(["-m", "alembic", "-x", f"url={pg_url}", "upgrade", "head"], {})
    else:
        env = {"OPS_DB_URL": pg_url, "WAREHOUSE_URL": f"duckdb:///{tmp_path / 'w.duckdb'}"}
        # With the public unsubscribe secret init stops before touching anything.
        refused = run_python(["deploy/init_stores.py"], {**env, "UNSUBSCRIBE_SECRET": ""})
        assert refused.returncode == 1 and "UNSUBSCRIBE_SECRET" in refused.stderr
        assert revision(pg_url) is None
        done = run_python(["deploy/init_stores.py"], {**env, "UNSUBSCRIBE_SECRET": "a-secret"})
        assert f"revision none -> {migrate.head()}" in done.stdout
    assert done.returncode == 0, done.stderr

    assert revision(pg_url) == migrate.head()
    assert every_row(pg_url, columns) == before
    assert schema_differences(pg_url) == []
    # Upgrading again changes nothing.
    engine = sa.create_engine(pg_url)
    assert migrate.upgrade(engine) == migrate.head()
    engine.dispose()
    assert every_row(pg_url, columns) == before


def test_opening_an_embedded_store_made_before_revisions_upgrades_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    make_store_before_revisions(url)
    fill_every_table(url)
    columns = store_columns(url)
    before = every_row(url)
    assert revision(url) is None

    with open_ops_store(url):
        pass

    assert revision(url) == migrate.head()
    assert every_row(url, columns) == before
    assert schema_differences(url) == []


@pytest.mark.postgres
def test_an_outdated_postgresql_store_is_refused_until_it_is_upgraded(pg_url):
    make_store_before_revisions(pg_url)
    fill_every_table(pg_url)
    with (
        pytest.raises(migrate.SchemaOutOfDate, match="deploy/init_stores.py"),
        open_ops_store(pg_url),
    ):
        pass
    # Refusing changed nothing.
    assert revision(pg_url) is None

    engine = sa.create_engine(pg_url)
    migrate.upgrade(engine)
    engine.dispose()
    outbox = metadata.tables["outbox"]
    with open_ops_store(pg_url) as store, store.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar() == 3


def test_the_migrate_command_shows_and_upgrades_the_store_of_ops_db_url(tmp_path):
    env = {"OPS_DB_URL": f"sqlite:///{tmp_path / 'new' / 'ops.sqlite'}"}
    before = run_python(["-m", "reward_assets.ops.migrate", "current"], env, cwd=tmp_path)
    assert (before.returncode, before.stdout.split(":")[1].split("(")[0].strip()) == (
        1,
        "revision none",
    )
    done = run_python(["-m", "reward_assets.ops.migrate", "upgrade"], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"revision {migrate.head()} (code: {migrate.head()})" in done.stdout


def test_a_store_at_a_revision_the_code_does_not_know_is_refused(empty_url):
    with open_ops_store(empty_url):
        pass
    engine = sa.create_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'future'"))
    engine.dispose()
    with pytest.raises(migrate.SchemaOutOfDate, match="newer version"), open_ops_store(empty_url):
        pass


def test_a_new_store_has_exactly_the_schema_of_the_code(empty_url):
    with open_ops_store(empty_url) as store:
        assert revision(empty_url) == migrate.head()
        assert set(metadata.tables) <= set(sa.inspect(store.engine).get_table_names())
    assert schema_differences(empty_url) == []


def test_processes_opening_an_empty_store_at_once_all_succeed(empty_url):
    """On an empty PostgreSQL database, processes that each created the tables used to
    collide in the catalogue; under the schema lock one creates them, the others wait."""
    opener = (
        "from reward_assets.ops.store import open_ops_store\n"
        f"with open_ops_store({empty_url!r}):\n    pass\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", opener],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    failures = [p.stderr.read()[-500:] for p in processes if p.wait(timeout=120) != 0]
    assert failures == []
    assert revision(empty_url) == migrate.head()
    assert schema_differences(empty_url) == []


LATER_REVISION = '''
"""A later change: a column added to a filled table."""
import sqlalchemy as sa
from alembic import op

revision = "test_later"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
'''


def test_a_later_revision_that_alters_a_filled_table_keeps_its_rows(empty_url, tmp_path):
    """What the next schema change will do, through the project's own env.py and lock: a
    table altered in place (SQLite rebuilds it in batch mode) with every row kept."""
    with open_ops_store(empty_url):
        pass
    fill_every_table(empty_url)
    before = every_row(empty_url)
    later = tmp_path / "later_versions"
    later.mkdir()
    (later / "test_later.py").write_text(LATER_REVISION.format(head=migrate.head()))

    config = Config()
    config.set_main_option("script_location", str(migrate.SCRIPTS))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations", os.pathsep.join([str(migrate.SCRIPTS / "versions"), str(later)])
    )
    store = OpsStore(empty_url)
    with write_locked(store.engine, migrate.LOCK) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "heads")
    with store.begin() as conn:
        outbox = sa.Table("outbox", sa.MetaData(), autoload_with=conn)
        rows = conn.execute(sa.select(outbox).order_by(outbox.c.idempotency_key)).mappings().all()
        version = conn.execute(sa.text(f"SELECT version_num FROM {migrate.VERSION_TABLE}")).scalar()
    store.dispose()

    assert version == "test_later"
    assert [row["priority"] for row in rows] == [0, 0, 0]
    assert (
        sorted(tuple(r[c.name] for c in metadata.tables["outbox"].columns) for r in rows)
        == (before["outbox"])
    )
    assert {k: v for k, v in every_row(empty_url).items() if k != "outbox"} == {
        k: v for k, v in before.items() if k != "outbox"
    }


def test_the_built_package_carries_the_migrations(tmp_path):
    """What setuptools puts in an installed package (its build_py step, from
    pyproject.toml) holds env.py, the revision template and every revision, so an
    installed project can upgrade its store."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "dbt_like_sql", source / "dbt_like_sql")
    shutil.copytree(
        ROOT / "reward_assets",
        source / "reward_assets",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    build = tmp_path / "build"
    built = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "build_py", "-d", build],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    installed = build / "reward_assets" / "ops" / "migrations"
    shipped = {
        path.relative_to(migrate.SCRIPTS)
        for path in migrate.SCRIPTS.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {Path("env.py"), Path("script.py.mako"), Path("versions/0001_baseline.py")} <= shipped
    assert {path.relative_to(installed) for path in installed.rglob("*")} >= shipped
