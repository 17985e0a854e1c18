"""What the API reads: the served tables, through one SQL text on either backend.

On the DuckDB default the tables are the snapshots the assets publish (an in-memory
DuckDB with views over them); on PostgreSQL they are the warehouse's own tables. A table
that is not there yet is `NotPublished` (HTTP 503), not an error of the request.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from reward_assets.warehouse.snapshots import SERVED_TABLES, open_reader, snapshot_path

SNAPSHOTS, POSTGRESQL = "snapshots", "postgresql"


class NotPublished(LookupError):
    """A table a request needs has not been materialised (and published) yet."""

    def __init__(self, table: str):
        self.table = table
        super().__init__(
            f"{table} is not available yet: materialise the {table.partition('.')[2]} asset "
            "(e.g. `make run`) and retry"
        )


class ServedData:
    def __init__(self, warehouse_url: str, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.backend = SNAPSHOTS if warehouse_url.startswith("duckdb") else POSTGRESQL
        self.reader = open_reader(warehouse_url, self.data_dir)

    def dispose(self) -> None:
        self.reader.dispose()

    def versions(self, tables: Sequence[str]) -> dict[str, Hashable | None]:
        """A token per table that changes whenever the table is replaced; None if missing.

        Snapshots are replaced by a rename, so the file's identity and mtime tell. The
        assets rebuild served tables on PostgreSQL under a new name and rename it into
        place (`Warehouse.replace_table`, the SQL models), so the table's OID tells there.
        """
        if self.backend == SNAPSHOTS:
            return {table: self._file_version(table) for table in tables}
        columns = ", ".join(f"to_regclass(:t{i})::oid::bigint" for i in range(len(tables)))
        params = {f"t{i}": table for i, table in enumerate(tables)}
        with self.reader.engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT {columns}"), params).one()
        return dict(zip(tables, row, strict=True))

    def _file_version(self, table: str) -> Hashable | None:
        try:
            stat = snapshot_path(self.data_dir, table).stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def require(self, *tables: str) -> dict[str, Hashable]:
        found = self.versions(tables)
        for table in tables:
            if found[table] is None:
                raise NotPublished(table)
        return found

    def published(self, table: str) -> bool:
        return self.versions([table])[table] is not None

    def frame(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return self.reader.frame(sql, params)

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.reader.scalar(sql, params)

    def snapshot_ages(self) -> dict[str, float | None]:
        """Seconds since each served table was published (None: not yet); snapshots only."""
        now = time.time()
        ages: dict[str, float | None] = {}
        for table in SERVED_TABLES:
            try:
                ages[table] = round(now - snapshot_path(self.data_dir, table).stat().st_mtime, 1)
            except FileNotFoundError:
                ages[table] = None
        return ages


def as_date(value: Any) -> dt.date | None:
    """A DATE column's value from either backend (pandas Timestamp, date or missing)."""
    if value is None or pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.date()
    return value
