"""The operational store: small rows that must be written while anything else runs.

A SQLAlchemy URL: SQLite in WAL mode under DATA_DIR by default (readers never wait for the
one writer), PostgreSQL in production. It holds the model registry today; the email outbox
and the suppression list join it with the activation work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

metadata = sa.MetaData()

model_registry = sa.Table(
    "model_registry",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    # candidate -> approved | rejected, set by the model's blocking check.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("decided_at", sa.DateTime),
    sa.Column("artefact_path", sa.Text, nullable=False),
    sa.Column("trained_as_of", sa.Date),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("reasons", sa.JSON),
)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class OpsStore:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    def create_tables(self) -> None:
        metadata.create_all(self.engine)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def open_ops_store(url: str) -> Iterator[OpsStore]:
    store = OpsStore(url)
    try:
        store.create_tables()
        yield store
    finally:
        store.dispose()
