"""The warehouse: one SQLAlchemy URL, DuckDB by default, PostgreSQL in production.

SQL goes through SQLAlchemy with bound parameters. Bulk loads use each engine's native
path (DuckDB scans the DataFrame in place, PostgreSQL takes COPY), because row-by-row
INSERTs are orders of magnitude too slow for fact tables.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reward_assets.warehouse.load_log import LOG_COLUMNS, LOG_TABLE, swap_logged

SCHEMAS = ("raw", "staging", "marts", "ml", "analytics")
COPY_BATCH_ROWS = 200_000


class Warehouse:
    def __init__(self, url: str, **engine_options: Any):
        self.url = url
        if url.startswith("duckdb:///") and url != "duckdb:///:memory:":
            Path(url.removeprefix("duckdb:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_options.setdefault("pool_pre_ping", not url.startswith("duckdb"))
        self.engine = sa.create_engine(url, **engine_options)
        self.dialect = self.engine.dialect.name  # "duckdb" or "postgresql"

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def ddl(self) -> Iterator[Connection]:
        """A short transaction for CREATE ... IF NOT EXISTS that parallel steps may race on.

        PostgreSQL's IF NOT EXISTS is not atomic across sessions (two creators can both
        pass the check), so creators queue on an advisory lock held to the commit.
        """
        with self.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('reward_assets_ddl'))"))
            yield conn

    def ensure_schemas(self) -> None:
        with self.ddl() as conn:
            for schema in SCHEMAS:
                conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))

    def create_table(self, table: str, columns: Mapping[str, str]) -> None:
        """Create `table` (columns: name -> SQL type) unless it exists."""
        ddl = ", ".join(f"{name} {sql_type}" for name, sql_type in columns.items())
        with self.ddl() as conn:
            conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {table} ({ddl})"))

    def append(
        self,
        conn: Connection,
        table: str,
        frame: pd.DataFrame | pa.Table | pa.RecordBatchReader,
    ) -> int:
        """Bulk-insert `frame` (a DataFrame, an Arrow table or a stream of Arrow batches,
        columns named as in the table) inside `conn`'s transaction; the number of rows."""
        if not isinstance(frame, pa.RecordBatchReader) and not len(frame):
            return 0
        if isinstance(frame, pd.DataFrame):
            frame = pa.Table.from_pandas(frame, preserve_index=False)
        rows = 0

        def counted(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            nonlocal rows
            for batch in batches:
                rows += batch.num_rows
                yield batch

        columns = ", ".join(frame.schema.names)
        driver = conn.connection.driver_connection
        if self.dialect == "duckdb":
            # A table is scanned in parallel; a stream is counted as DuckDB pulls it.
            source = (
                frame
                if isinstance(frame, pa.Table)
                else pa.RecordBatchReader.from_batches(frame.schema, counted(frame))
            )
            driver.register("_append_frame", source)
            try:
                conn.exec_driver_sql(
                    f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _append_frame"
                )
            finally:
                driver.unregister("_append_frame")
            return frame.num_rows if isinstance(frame, pa.Table) else rows
        batches = frame.to_batches(COPY_BATCH_ROWS) if isinstance(frame, pa.Table) else frame
        # COPY streams the rows as CSV, a batch at a time so that no copy of the whole
        # table is built in memory.
        with driver.cursor().copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
            for batch in counted(batches):
                buffer = io.BytesIO()
                pacsv.write_csv(
                    batch, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed")
                )
                copy.write(buffer.getbuffer())
        return rows

    def replace_table(
        self,
        table: str,
        columns: Mapping[str, str],
        chunks: Iterable[pd.DataFrame],
        logged_by: str | None = None,
    ) -> int:
        """Rebuild `table` (columns: name -> SQL type) from `chunks` and swap it in.

        Readers see the old rows until the commit; a failure leaves them in place.
        `logged_by`: a table incremental models read, dated by that column: only the days
        whose rows changed are replaced, and the load log records them
        (`load_log.swap_logged`).
        """
        staged = f"{table}__next"
        ddl = ", ".join(f"{name} {sql_type}" for name, sql_type in columns.items())
        if logged_by:
            self.create_table(LOG_TABLE, LOG_COLUMNS)
        with self.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {staged}"))
            conn.execute(sa.text(f"CREATE TABLE {staged} ({ddl})"))
            written = sum(self.append(conn, staged, chunk[list(columns)]) for chunk in chunks)
            if logged_by:
                swap_logged(conn, table, staged, logged_by)
                return written
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(sa.text(f"ALTER TABLE {staged} RENAME TO {table.rpartition('.')[2]}"))
        return written

    def replace_rows(
        self,
        table: str,
        columns: Mapping[str, str],
        where: str,
        params: Mapping[str, Any],
        chunks: Iterable[pd.DataFrame],
    ) -> int:
        """Delete the rows matching `where` and insert `chunks` in one transaction."""
        self.create_table(table, columns)
        with self.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {table} WHERE {where}"), dict(params))
            return sum(self.append(conn, table, chunk[list(columns)]) for chunk in chunks)

    def append_rows(
        self, table: str, columns: Mapping[str, str], chunks: Iterable[pd.DataFrame]
    ) -> int:
        """Insert `chunks` into `table` (created when missing) in one transaction."""
        self.create_table(table, columns)
        with self.begin() as conn:
            return sum(self.append(conn, table, chunk[list(columns)]) for chunk in chunks)

    def existing_keys(
        self, conn: Connection, table: str, column: str, keys: pd.Series
    ) -> pd.Series:
        """Which of `keys` already occur in `table.column` (a set-based lookup, not N queries)."""
        if keys.empty:
            return keys.iloc[:0]
        conn.execute(sa.text("CREATE TEMPORARY TABLE IF NOT EXISTS _lookup_keys (k VARCHAR)"))
        conn.execute(sa.text("DELETE FROM _lookup_keys"))
        self.append(conn, "_lookup_keys", pd.DataFrame({"k": keys.astype("string")}))
        found = conn.execute(
            sa.text(
                f"SELECT DISTINCT k FROM _lookup_keys JOIN {table} t ON t.{column} = _lookup_keys.k"
            )
        ).scalars()
        return pd.Series(list(found), dtype="string")

    def frame(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        # Read from the driver's cursor: building a DataFrame from SQLAlchemy Row objects
        # is some thirty times slower on the fact tables.
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql), dict(params or {}))
            if self.dialect == "duckdb":
                return result.cursor.fetch_df()
            return pd.DataFrame(result.cursor.fetchall(), columns=list(result.keys()))

    def text_frame(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """`frame` for results of many string (and integer and timestamp) columns, the
        same frame: DuckDB's DataFrame makes a Python object of every string, which pandas
        then converts back to Arrow; its Arrow table goes there directly, at a third of
        the cost on millions of ids. Where that would convert a column differently
        (`_converts_alike`) DuckDB converts the table, so the frame is `frame`'s. Its
        batches are joined: pandas would keep them as chunks, which some Arrow functions
        do not take."""
        if self.dialect != "duckdb":
            return self.frame(sql, params)
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql), dict(params or {}))
            table = result.cursor.to_arrow_table()
        if not all(_converts_alike(column) for column in table.columns):
            return duckdb.from_arrow(table).df()  # DuckDB's own conversion, as `frame`
        return table.combine_chunks().to_pandas()

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), dict(params or {})).scalar()

    def table_exists(self, table: str) -> bool:
        schema, _, name = table.rpartition(".")
        return sa.inspect(self.engine).has_table(name, schema=schema or None)

    def row_count(self, table: str) -> int:
        return int(self.scalar(f"SELECT COUNT(*) FROM {table}"))

    def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, SQL type) of each column of `table`, in table order, as the engine
        reports them (so the UI shows what the warehouse holds, not what was declared)."""
        schema, _, name = table.rpartition(".")
        return [
            (column["name"], str(column["type"]))
            for column in sa.inspect(self.engine).get_columns(name, schema=schema or None)
        ]

    def qualified_name(self, table: str) -> str:
        """`database.schema.table` as the engine names it: the DuckDB file's catalog or the
        PostgreSQL database."""
        return f"{self.scalar('SELECT current_database()')}.{table}"


def _converts_alike(column: pa.ChunkedArray) -> bool:
    """Whether pandas makes the same column of Arrow's values as of DuckDB's: not for a
    string column of no value (object there), an integer or boolean one with a missing
    value (a masked one there, float or object here), dates, zoned times, decimals..."""
    kind = column.type
    if pa.types.is_string(kind):
        return column.null_count < len(column)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return column.null_count == 0
    return pa.types.is_floating(kind) or (pa.types.is_timestamp(kind) and kind.tz is None)


@contextmanager
def open_warehouse(url: str) -> Iterator[Warehouse]:
    """A warehouse whose engine is disposed afterwards, so no file lock outlives the work."""
    warehouse = Warehouse(url)
    try:
        yield warehouse
    finally:
        warehouse.dispose()
