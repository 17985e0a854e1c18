"""Alembic's environment for the operational store.

Run by `reward_assets.ops.migrate` (with a connection in a transaction that holds the
store's schema lock, in `config.attributes`) or by the `alembic` command from the project
root (pyproject.toml's [tool.alembic]; the store is OPS_DB_URL's, or `-x url=...`, and the
lock is taken here). Either way every step runs in that one transaction, so processes that
upgrade at once take turns and a failed step leaves the store as it was.

A new revision: `alembic revision --autogenerate -m "what changes"` against a store at
head, then read and edit it; on SQLite, column changes need `op.batch_alter_table`.
"""

import sqlalchemy as sa
from alembic import context

from reward_assets.ops.locks import write_locked
from reward_assets.ops.migrate import LOCK, VERSION_TABLE
from reward_assets.ops.store import metadata

config = context.config


def store_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    from reward_assets.settings import Settings

    return Settings().resolved_ops_db_url()


def run() -> None:
    options = {"target_metadata": metadata, "version_table": VERSION_TABLE, "compare_type": True}
    if context.is_offline_mode():
        context.configure(url=store_url(), literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    conn = config.attributes.get("connection")
    if conn is not None:
        migrate(conn, options)
        return
    engine = sa.create_engine(store_url())
    try:
        with write_locked(engine, LOCK) as conn:
            migrate(conn, options)
    finally:
        engine.dispose()


def migrate(conn, options: dict) -> None:
    # The transaction is the caller's: Alembic runs every step inside it.
    context.configure(connection=conn, render_as_batch=True, **options)
    with context.begin_transaction():
        context.run_migrations()


run()
