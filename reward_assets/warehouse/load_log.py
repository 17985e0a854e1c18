"""The loads' log: which window of which raw table each load replaced, in commit order.

A raw load replaces a window of its table (a snapshot load, the whole table) and appends
one row here in the same transaction. So what changed since a reader last looked is a
question about this small table, not about the raw tables: a staging view's checks run
once per state of its sources (`quality/publish.py`), and an incremental model rebuilds
only the windows loaded since its last build (`sql_models.py`).

Numbers follow commit order: on PostgreSQL a load takes a transaction lock before it
numbers its row and holds it to its commit, so no row ever becomes visible below a
number a reader has already seen. A table written by anything but the loads is outside
the log; a reader that finds no row for an entity must treat it as unknown (seq 0).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

LOG_TABLE = "raw.load_log"
LOG_COLUMNS = {
    "seq": "BIGINT",
    "entity": "VARCHAR",
    # NULL for a load that replaced the whole table.
    "window_start": "TIMESTAMP",
    "window_end": "TIMESTAMP",
}
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('reward_assets.load_log'))"


def record_load(
    conn: Connection,
    entity: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> None:
    """Log, in the load's own transaction (`conn`), that it replaced [start, end) of
    `entity` (the whole table without a window). Call it last: on PostgreSQL it holds a
    lock until the commit."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(_LOCK))
    conn.execute(
        sa.text(
            f"INSERT INTO {LOG_TABLE} (seq, entity, window_start, window_end) "
            f"SELECT COALESCE(MAX(seq), 0) + 1, :entity, :start, :end FROM {LOG_TABLE}"
        ),
        {"entity": entity, "start": start, "end": end},
    )


def swap_logged(conn: Connection, table: str, replacement: str, dated_by: str) -> None:
    """Put the rows of the table `replacement` in place of `table`'s and log the days of
    `dated_by` whose rows differ (added, removed or changed; a window per run of
    consecutive days), in the caller's transaction. Only those days' rows are deleted and
    inserted: the other rows are the same, and on PostgreSQL the views over `table` stay
    bound to it. A new table, other columns or a changed row without a day replace and log
    the whole table."""
    entity = table.rpartition(".")[2]
    inspector = sa.inspect(conn)

    def columns(name: str) -> list[str]:
        schema, _, bare = name.rpartition(".")
        return [c["name"] for c in inspector.get_columns(bare, schema=schema)]

    schema, _, bare = table.rpartition(".")
    if not inspector.has_table(bare, schema=schema) or columns(table) != columns(replacement):
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(sa.text(f"ALTER TABLE {replacement} RENAME TO {bare}"))
        record_load(conn, entity)
        return
    days = list(
        conn.execute(
            sa.text(
                f"SELECT DISTINCT CAST({dated_by} AS DATE) AS day FROM ("
                f"(SELECT * FROM {table} EXCEPT ALL SELECT * FROM {replacement}) UNION ALL "
                f"(SELECT * FROM {replacement} EXCEPT ALL SELECT * FROM {table})) changed"
            )
        ).scalars()
    )
    windows: list[tuple[dt.datetime | None, dt.datetime | None]] = [(None, None)]
    if None not in days:
        windows = []
        for day in sorted(days):
            midnight = dt.datetime.combine(day, dt.time())
            if windows and windows[-1][1] == midnight:
                windows[-1] = (windows[-1][0], midnight + dt.timedelta(days=1))
            else:
                windows.append((midnight, midnight + dt.timedelta(days=1)))
    for start, end in windows:
        inside = f"{dated_by} >= :start AND {dated_by} < :end" if start else "TRUE"
        bounds = {"start": start, "end": end}
        conn.execute(sa.text(f"DELETE FROM {table} WHERE {inside}"), bounds)
        conn.execute(
            sa.text(f"INSERT INTO {table} SELECT * FROM {replacement} WHERE {inside}"), bounds
        )
    conn.execute(sa.text(f"DROP TABLE {replacement}"))
    for start, end in windows:
        record_load(conn, entity, start, end)


def _logged(conn: Connection) -> bool:
    schema, _, name = LOG_TABLE.partition(".")
    return sa.inspect(conn).has_table(name, schema=schema)


def latest_seq(conn: Connection, entities: Sequence[str]) -> int:
    """The last load of any of `entities`, 0 when none is logged (unknown state)."""
    if not entities or not _logged(conn):
        return 0
    found = conn.execute(
        sa.text(f"SELECT MAX(seq) FROM {LOG_TABLE} WHERE entity IN :entities").bindparams(
            sa.bindparam("entities", expanding=True)
        ),
        {"entities": list(entities)},
    ).scalar()
    return int(found or 0)


def windows_since(
    conn: Connection, entities: Sequence[str], after: int, upto: int
) -> list[tuple[dt.datetime, dt.datetime] | None]:
    """The windows the loads of `entities` numbered (after, upto] replaced, overlapping
    ones merged, in order; None in the list means one replaced a whole table."""
    rows = conn.execute(
        sa.text(
            f"SELECT window_start, window_end FROM {LOG_TABLE} "
            "WHERE entity IN :entities AND seq > :after AND seq <= :upto"
        ).bindparams(sa.bindparam("entities", expanding=True)),
        {"entities": list(entities), "after": after, "upto": upto},
    ).all()
    if any(start is None or end is None for start, end in rows):
        return [None]
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for start, end in sorted(rows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return list(merged)
