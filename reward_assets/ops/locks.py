"""A transaction that holds a named write lock of the operational store until it ends.

For what must be read and then written with no other writer in between, across processes:
the schema migrations, and the frequency cap's last count before a message is queued. On
PostgreSQL it is a transaction-level advisory lock on the name, so writers under other
names and every reader go on; on SQLite it is `BEGIN IMMEDIATE`, the database's one writer
lock (SQLite has no finer one), taken when the transaction starts rather than at its first
write, so nothing can change between the transaction's first read and its writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def lock_key(name: str) -> int:
    """A signed 64-bit key for the name, the same in every process and version."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def write_locked(engine: sa.Engine, name: str) -> Iterator[Connection]:
    """A connection in a transaction that holds the lock `name`; committed on success,
    rolled back on an error, the lock released either way."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            # The driver opens a transaction lazily, before the first write; one begun
            # explicitly is the one it then commits or rolls back.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(name))))
        else:
            raise ValueError(f"the operational store needs SQLite or PostgreSQL, not {engine.url}")
        yield conn
