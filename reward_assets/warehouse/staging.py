"""Write, audit, publish: every served table is built beside the one readers see, checked,
and only then swapped in.

A build goes to `<table>__next`. An audit (the table's checks, supplied by the caller)
reads it there; only if the audit approves is it swapped in, in one transaction, so a
reader sees the previous table or the new one, never half of either. A rejected build is
left in `<table>__next` for inspection (the checks report a few masked examples; the
table holds every offending row) until the next build of the table replaces it.

A build replaces the whole table, or one window of it (`Window`: a partitioned model's
days), or a slice (`Slice`: an incremental model's windows loaded since its last build and
the rows of keys whose dimension rows changed). A window's audit sees the table as it
would read after the swap: the rows outside the window that stay, plus the new window, so
a rule over the whole table (unique ids) holds across windows too.

A whole-table build may keep some of the served rows (`Carry`: an incremental asset's
customers whose inputs did not change): only their keys are staged, beside the table
(`Kept`), so their payload never travels through Python nor is copied. The audit reads
them with the build's rows, the table as it will serve; the swap deletes the rows not
kept, updates the kept rows' columns computed today and adds the build's rows, in one
transaction. A rejected build copies them into `<table>__next`, whole for inspection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reward_assets.warehouse.store import Warehouse

STAGED_SUFFIX = "__next"
# Beside a staged build that keeps served rows in place: their keys (`Kept`).
KEPT_SUFFIX = "__kept"


def staged_name(table: str) -> str:
    return f"{table}{STAGED_SUFFIX}"


@dataclass(frozen=True)
class Window:
    """The slice `start <= column < end` that a partitioned build replaces."""

    column: str
    start: dt.datetime
    end: dt.datetime

    @property
    def params(self) -> dict[str, dt.datetime]:
        return {"window_start": self.start, "window_end": self.end}

    def inside(self, alias: str = "") -> str:
        column = f"{alias}.{self.column}" if alias else self.column
        return f"{column} >= :window_start AND {column} < :window_end"

    def outside(self) -> str:
        # NULL is outside every window: a DELETE of the window keeps those rows.
        return f"({self.column} IS NULL OR NOT ({self.inside()}))"


@dataclass(frozen=True)
class Slice:
    """The rows an incremental build replaces: those whose `column` falls in one of
    `ranges`, and those whose key column holds a value listed in a table of `keys`
    ((column, table) pairs)."""

    column: str
    ranges: tuple[tuple[dt.datetime, dt.datetime], ...]
    keys: tuple[tuple[str, str], ...]

    @property
    def params(self) -> dict[str, dt.datetime]:
        params = {}
        for i, (start, end) in enumerate(self.ranges):
            params |= {f"slice_start_{i}": start, f"slice_end_{i}": end}
        return params

    def in_ranges(self, alias: str = "") -> str:
        column = f"{alias}.{self.column}" if alias else self.column
        spans = [
            f"({column} >= :slice_start_{i} AND {column} < :slice_end_{i})"
            for i in range(len(self.ranges))
        ]
        return f"({' OR '.join(spans)})" if spans else "FALSE"

    def of_keys(self, alias: str = "") -> str:
        prefix = f"{alias}." if alias else ""
        keyed = [f"{prefix}{key} IN (SELECT {key} FROM {table})" for key, table in self.keys]
        return f"({' OR '.join(keyed)})" if keyed else "FALSE"

    def inside(self, alias: str = "") -> str:
        return f"({self.in_ranges(alias)} OR {self.of_keys(alias)})"

    def outside(self) -> str:
        # A NULL time or key is in no range and no key list: such a row stays.
        return f"NOT COALESCE({self.inside()}, FALSE)"


@dataclass(frozen=True)
class Carry:
    """The served rows a build keeps: those whose `key` is one of `rows[key]` (each listed
    once). A column of `rows` besides the key replaces the served one (today's `as_of`, a
    value computed afresh); every other column stays as served."""

    rows: pd.DataFrame
    key: str = "customer_id"

    def stage(
        self,
        warehouse: Warehouse,
        conn: Connection,
        table: str,
        staged: str,
        columns: Mapping[str, str],
    ) -> Kept | None:
        """Write the kept keys, with their replacing columns, beside `table` (columns:
        name -> SQL type), in `conn`'s transaction: the kept rows then stay in `table`
        until the swap (`Kept`). When `table` was declared otherwise than the build
        (`staged`), they are copied into the build instead, which then holds the whole
        table. None when nothing is kept in `table`."""
        schema, _, name = table.rpartition(".")
        if self.rows.empty or not sa.inspect(conn).has_table(name, schema=schema or None):
            return None
        kept = Kept(table, f"{table}{KEPT_SUFFIX}", self.key, tuple(self.rows), tuple(columns))
        ddl = ", ".join(f"{column} {columns[column]}" for column in self.rows.columns)
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {kept.keys}"))
        conn.execute(sa.text(f"CREATE TABLE {kept.keys} ({ddl})"))
        warehouse.append(conn, kept.keys, self.rows)
        if _declared(conn, table) != _declared(conn, staged):
            kept.copy_into(conn, staged)
            return None
        return kept


def _declared(conn: Connection, table: str) -> list[tuple[str, str]]:
    # information_schema rather than SQLAlchemy's inspector: on DuckDB that answers from
    # pg_catalog emulation, some twenty times slower.
    schema, _, name = table.rpartition(".")
    found = conn.execute(
        sa.text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = COALESCE(NULLIF(:schema, ''), current_schema()) "
            "AND table_name = :name ORDER BY ordinal_position"
        ),
        {"schema": schema, "name": name},
    )
    return [tuple(row) for row in found]


@dataclass(frozen=True)
class Kept:
    """The served rows a staged build keeps, left in `table`: those whose `key` is listed
    in `keys` (a table beside it), the other columns of `keys` replacing the served ones.

    The audit reads them together with the build's own rows; the swap deletes the other
    rows, updates the replaced columns and adds the build's rows, in one transaction.
    That writes a fraction of what copying every kept row into the build would."""

    table: str
    keys: str
    key: str
    replaced: tuple[str, ...]  # the columns of `keys`: the key and those it replaces
    columns: tuple[str, ...]  # the table's, in order

    def select(self) -> str:
        """SQL selecting the kept rows as they will read."""
        values = ", ".join(f"{'c' if c in self.replaced else 't'}.{c}" for c in self.columns)
        key = self.key
        return f"SELECT {values} FROM {self.table} t JOIN {self.keys} c ON t.{key} = c.{key}"

    def apply(self, conn: Connection) -> None:
        """Leave only the kept rows in `table`, as they will read, in `conn`'s transaction."""
        key = self.key
        conn.execute(
            sa.text(
                f"DELETE FROM {self.table} t WHERE NOT EXISTS "
                f"(SELECT 1 FROM {self.keys} c WHERE c.{key} = t.{key})"
            )
        )
        values = ", ".join(f"{c} = c.{c}" for c in self.replaced if c != key)
        if values:
            conn.execute(
                sa.text(
                    f"UPDATE {self.table} AS t SET {values} "
                    f"FROM {self.keys} c WHERE t.{key} = c.{key}"
                )
            )
        conn.execute(sa.text(f"DROP TABLE {self.keys}"))

    def copy_into(self, conn: Connection, staged: str) -> None:
        """Copy the kept rows into `staged`, which then holds them too, and drop `keys`,
        in `conn`'s transaction."""
        names = ", ".join(self.columns)
        conn.execute(sa.text(f"INSERT INTO {staged} ({names}) {self.select()}"))
        conn.execute(sa.text(f"DROP TABLE {self.keys}"))


@dataclass(frozen=True)
class Staged:
    """A build of `table` in `staged`, not yet visible to readers."""

    table: str
    staged: str
    rows: int
    window: Window | Slice | None = None
    # Statements (SQL, parameters) run in the swap's transaction: an incremental build's
    # record of what it was built from, which must advance only if the build serves.
    after_swap: tuple[tuple[str, dict[str, Any]], ...] = ()
    kept: Kept | None = None  # served rows the build keeps where they are

    @property
    def params(self) -> dict[str, Any]:
        return self.window.params if self.window else {}

    def build_rows(self) -> str:
        """SQL selecting the build's own rows (what a row-level check reads)."""
        if self.kept:
            columns = ", ".join(self.kept.columns)
            return f"{self.kept.select()} UNION ALL SELECT {columns} FROM {self.staged}"
        where = f" WHERE {self.window.inside()}" if self.window else ""
        return f"SELECT * FROM {self.staged}{where}"

    def published_rows(self, warehouse: Warehouse) -> str:
        """SQL selecting the table as it will read once this build is swapped in."""
        if self.staged == self.table:  # checked in place: the table is what it is
            return f"SELECT * FROM {self.table}"
        if self.kept or not self.window or not warehouse.table_exists(self.table):
            return self.build_rows()
        return (
            f"SELECT * FROM {self.table} WHERE {self.window.outside()} "
            f"UNION ALL {self.build_rows()}"
        )


@dataclass(frozen=True)
class Built:
    """What a write-audit-publish did: the build, and whether it now serves."""

    staged: Staged
    published: bool

    @property
    def rows(self) -> int:
        return self.staged.rows


Audit = Callable[[Staged], bool]


@contextmanager
def build_lock(warehouse: Warehouse, table: str) -> Iterator[None]:
    """One build of `table` at a time, from stage to swap.

    On PostgreSQL two runs may build the same table at once (a schedule and a backfill
    of other days): without the lock one would swap in the other's `__next`, or two
    windows would each pass a whole-table check the pair breaks. DuckDB admits one
    writing process, so there is nothing to wait for.
    """
    if warehouse.dialect != "postgresql":
        yield
        return
    key = {"key": f"reward_assets.build:{table}"}
    with warehouse.engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:key))"), key)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
            conn.commit()


def write_audit_swap(
    warehouse: Warehouse, table: str, build: Callable[[], Staged], audit: Audit | None
) -> Built:
    """Stage with `build`, ask `audit`, and swap the build in only if it approves."""
    with build_lock(warehouse, table):
        staged = build()
        approved = audit is None or audit(staged)
        if approved:
            swap(warehouse, staged)
        elif staged.kept:  # the rejected build, whole, for inspection
            with warehouse.begin() as conn:
                staged.kept.copy_into(conn, staged.staged)
    return Built(staged, approved)


def swap(warehouse: Warehouse, staged: Staged) -> None:
    """Put an approved build in place of the table (or of its window), in one transaction."""
    if staged.staged == staged.table:  # built in place (a view): nothing to swap
        return
    with warehouse.begin() as conn:
        replace_rows(conn, staged.table, staged.staged, window=staged.window, kept=staged.kept)
        for sql, params in staged.after_swap:
            conn.execute(sa.text(sql), params)


def replace_rows(
    conn: Connection,
    table: str,
    rows: str,
    params: Mapping[str, Any] | None = None,
    window: Window | Slice | None = None,
    kept: Kept | None = None,
) -> None:
    """Replace `table`'s rows (all, those of `window`, or all but the `kept`) with `rows`, in
    `conn`'s transaction: its build beside it (`staged_name`), which this consumes, or a
    SELECT taking `params`. When none stays, the table is made anew: nothing to delete."""
    staged = rows == staged_name(table)
    if kept is None and (window is None or not _rows_outside(conn, table, window)):
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        name = table.rpartition(".")[2]
        made = (
            f"ALTER TABLE {rows} RENAME TO {name}" if staged else f"CREATE TABLE {table} AS {rows}"
        )
        conn.execute(sa.text(made), params)
        return
    select = f"SELECT * FROM {rows}" if staged else rows
    if kept:
        kept.apply(conn)
    else:
        conn.execute(sa.text(f"DELETE FROM {table} WHERE {window.inside()}"), window.params)
    conn.execute(sa.text(f"INSERT INTO {table} {select}"), params)
    if staged:
        conn.execute(sa.text(f"DROP TABLE {rows}"))


def _rows_outside(conn: Connection, table: str, window: Window | Slice) -> bool:
    """Whether `table` exists and keeps rows outside `window` (else it can be made anew)."""
    schema, _, name = table.rpartition(".")
    if not sa.inspect(conn).has_table(name, schema=schema or None):
        return False
    query = sa.text(f"SELECT 1 FROM {table} WHERE {window.outside()} LIMIT 1")
    return conn.execute(query, window.params).first() is not None


def stage_frames(
    warehouse: Warehouse,
    table: str,
    columns: Mapping[str, str],
    chunks: Iterable[pd.DataFrame],
    carry: Carry | None = None,
) -> Staged:
    """Write `chunks` (columns: name -> SQL type) to a fresh build of `table`, and the
    served rows `carry` keeps."""
    staged = staged_name(table)
    ddl = ", ".join(f"{name} {sql_type}" for name, sql_type in columns.items())
    with warehouse.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {staged}"))
        conn.execute(sa.text(f"CREATE TABLE {staged} ({ddl})"))
        rows = sum(warehouse.append(conn, staged, chunk[list(columns)]) for chunk in chunks)
        if carry is None:
            return Staged(table, staged, rows)
        kept = carry.stage(warehouse, conn, table, staged, columns)
        built = Staged(table, staged, rows, kept=kept)
        rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM ({built.build_rows()}) b")).scalar()
    return replace(built, rows=rows)
