"""The operational store's schema, versioned with Alembic (`reward_assets/ops/migrations/`).

    python -m reward_assets.ops.migrate upgrade     bring OPS_DB_URL's store to the code's
    python -m reward_assets.ops.migrate current     its revision, and the code's

(`alembic upgrade head` from the project root does the same as `upgrade`.)

Opening a store (`store.open_ops_store`) checks its revision first. The embedded SQLite
store is upgraded there and then, so `make run` needs no extra step. A PostgreSQL store is
created when it is empty; one that holds tables at an older revision is left alone and
refused, because a production schema changes in a deliberate step before the new code
starts (compose's `init` service runs `deploy/init_stores.py`, which upgrades). Every
upgrade runs under the store's write lock, so processes that open an empty store at the
same moment do not race: the first creates the tables, the others find them at head.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from reward_assets.ops.locks import write_locked

SCRIPTS = Path(__file__).with_name("migrations")
# Not Alembic's default name: the store may share a database with another Alembic user
# (Dagster's own storage keeps `alembic_version`).
VERSION_TABLE = "ops_schema_version"
# The name of the write lock every upgrade holds (`locks.write_locked`).
LOCK = "reward_assets.ops.schema"
UPGRADE_HINT = (
    "run `python deploy/init_stores.py` (or `python -m reward_assets.ops.migrate upgrade`) "
    "with the same OPS_DB_URL"
)


class SchemaOutOfDate(RuntimeError):
    """The store's revision is not the one this code was written for."""


def alembic_config(conn: Connection | None = None) -> Config:
    """Alembic's configuration for the store's scripts; `conn` is a connection to the store
    in a transaction that holds the schema lock (without it, `migrations/env.py` opens
    OPS_DB_URL, or `-x url=...`, and takes the lock itself)."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


@functools.cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The revision this code expects."""
    return scripts().get_current_head()


def revision_of(conn: Connection) -> str | None:
    """The store's revision; None when it was never versioned (empty, or made before)."""
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def current(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return revision_of(conn)


def upgrade(engine: sa.Engine) -> str:
    """Bring the store to head, keeping every row; returns the revision it is at."""
    with write_locked(engine, LOCK) as conn:
        _known(revision_of(conn))
        command.upgrade(alembic_config(conn), "head")
        return revision_of(conn)


def prepare(engine: sa.Engine, tables: Collection[str]) -> None:
    """What opening the store does about its schema (see the module's docstring); `tables`
    are the store's own, to tell an empty PostgreSQL database from an outdated one."""
    if current(engine) == head():
        return
    # Decided again under the lock: another process may be creating the tables right now.
    with write_locked(engine, LOCK) as conn:
        revision = revision_of(conn)
        if revision == head():
            return
        _known(revision)
        empty = revision is None and not set(tables) & set(sa.inspect(conn).get_table_names())
        if conn.dialect.name == "sqlite" or empty:
            command.upgrade(alembic_config(conn), "head")
            return
    raise SchemaOutOfDate(
        f"the operational store at {engine.url.render_as_string(hide_password=True)} is at "
        f"revision {revision or 'none (made before revisions)'}, this code expects {head()}: "
        f"{UPGRADE_HINT}"
    )


def _known(revision: str | None) -> None:
    if revision is not None and revision not in {s.revision for s in scripts().walk_revisions()}:
        raise SchemaOutOfDate(
            f"the operational store is at revision {revision}, which this code does not know "
            f"(it expects {head()}): a newer version of the project upgraded it"
        )


def main(argv: Sequence[str] | None = None) -> int:
    from reward_assets.settings import Settings

    parser = argparse.ArgumentParser(
        prog="python -m reward_assets.ops.migrate",
        description="The operational store's schema revision (OPS_DB_URL).",
    )
    parser.add_argument("action", choices=("upgrade", "current"))
    args = parser.parse_args(argv)
    url = Settings().resolved_ops_db_url()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        revision = upgrade(engine) if args.action == "upgrade" else current(engine)
    finally:
        engine.dispose()
    print(f"operational store: revision {revision or 'none'} (code: {head()})")
    return 0 if revision == head() else 1


if __name__ == "__main__":
    sys.exit(main())
