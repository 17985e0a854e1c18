"""Loading landing files into the raw tables of the warehouse, with the quarantine.

Files are read into Arrow (`reader`), typed and checked by set-based SQL in an in-process
DuckDB (`validation`, and the rules below that need the file's date, the window or other
rows), and only the result reaches the warehouse, by its bulk path: PostgreSQL and DuckDB
receive exactly the same rows.

Snapshot entities (customers, rewards) replace their raw table, unless the new snapshot
would shrink it by more than a set share (a truncated export must not wipe every
customer). Event entities replace exactly the rows of a time window, so a partition or a
date range can be re-run and always leaves the same tables. Each load is one
transaction: a failure leaves the previous state, never half a window.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reward_assets.contact.holdout import holdout_bucket_sql
from reward_assets.ingest.contract import LINEAGE_COLUMNS, Column, Entity, sql_types
from reward_assets.ingest.landing import ContractError, LandingFile, files_for_window, scan_landing
from reward_assets.ingest.quarantine import (
    QUARANTINE_COLUMNS,
    QUARANTINE_TABLE,
    QuarantineReason,
    problem_rows,
    quarantine_rows,
)
from reward_assets.ingest.reader import Problem, ReadResult, read_file
from reward_assets.ingest.validation import (
    DETAIL,
    NULLED,
    REASON,
    latest_plausible,
    nulled_columns,
    session,
    sql_text,
    suspect_columns,
    validation_sql,
)
from reward_assets.warehouse.load_log import LOG_COLUMNS, LOG_TABLE, record_load
from reward_assets.warehouse.store import COPY_BATCH_ROWS, Warehouse

# Rows validated and written at a time: bounds memory while a long range loads.
BATCH_ROWS = 2_000_000
READ_THREADS, READ_AHEAD = 2, 8


class SnapshotShrinkError(ContractError):
    """A snapshot load that would drop more of the loaded rows than the allowed share."""


@dataclass
class LoadReport:
    entity: str
    files_read: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    nulled_optional: Counter[str] = field(default_factory=Counter)
    # Rows read from shared or neighbouring files that belong to other partitions.
    rows_other_partitions: int = 0
    # Files in the entity's folder that are not landing files, so not read.
    files_skipped: list[str] = field(default_factory=list)
    # Files quarantined whole (unreadable, or without a required column).
    files_quarantined: list[str] = field(default_factory=list)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())


def raw_columns(entity: Entity) -> list[Column]:
    extra = [Column("holdout_bucket", "integer")] if entity.name == "customers" else []
    return [*entity.columns, *extra, *LINEAGE_COLUMNS]


def _prepare(warehouse: Warehouse, entity: Entity) -> None:
    warehouse.create_table(entity.table, sql_types(raw_columns(entity)))
    warehouse.create_table(QUARANTINE_TABLE, QUARANTINE_COLUMNS)
    warehouse.create_table(LOG_TABLE, LOG_COLUMNS)


def _timestamp(value: dt.datetime) -> str:
    return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S}'"


@dataclass(frozen=True)
class _Window:
    start: dt.datetime
    end: dt.datetime
    first_day: dt.datetime

    def day(self, day: dt.date | None) -> dt.datetime | None:
        """The partition a bad row of `day` belongs to: none before the first."""
        if day is None:
            return None
        return max(dt.datetime.combine(day, dt.time()), self.first_day)

    def owns(self, day: dt.datetime | None) -> bool:
        return day is None or self.start <= day < self.end


@dataclass
class _Batch:
    table: pa.Table  # contract columns as text, __line, __file
    problems: list[tuple[int, Problem]]  # (file index, problem)


def _read_ahead(files: list[LandingFile], entity: Entity) -> Iterator[tuple[int, ReadResult]]:
    """Each file read, in order, with the next few read meanwhile on other threads (Arrow
    parses without holding the GIL; a day-per-file layout has many small files)."""
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for start in range(0, len(files), READ_AHEAD):
            chunk = files[start : start + READ_AHEAD]
            results = pool.map(read_file, chunk, [entity] * len(chunk))
            for offset, result in enumerate(results):
                yield start + offset, result


def _batches(files: list[LandingFile], entity: Entity) -> Iterator[_Batch]:
    """Landing files read and concatenated into batches of about BATCH_ROWS rows.

    Validating and writing per batch rather than per file keeps a day-per-file layout
    from paying fixed costs hundreds of times, while memory stays bounded.
    """
    tables: list[pa.Table] = []
    problems: list[tuple[int, Problem]] = []
    rows = 0
    for index, result in _read_ahead(files, entity):
        problems += [(index, p) for p in result.problems]
        tables.append(
            result.table.append_column("__file", pa.array([index] * result.rows, pa.int32()))
        )
        rows += result.rows
        if rows >= BATCH_ROWS or index == len(files) - 1:
            table = pa.concat_tables(tables)
            table = table.append_column("__row", pa.array(np.arange(table.num_rows)))
            yield _Batch(table, problems)
            tables, problems, rows = [], [], 0


def _ahead(batches: Iterator[_Batch]) -> Iterator[_Batch]:
    """`batches`, the next one read on another thread while the caller checks and writes
    this one: Arrow's readers, DuckDB and the warehouse's bulk paths release the GIL."""
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield batch


class _Load:
    """One load: its files, the in-process DuckDB that checks them, the warehouse
    transaction that receives the result, and what it did (`report`)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        warehouse: Warehouse,
        conn: Connection,
        entity: Entity,
        files: list[LandingFile],
        window: _Window | None = None,
        known_rewards: set[str] | None = None,
    ):
        self.con, self.warehouse, self.conn = con, warehouse, conn
        self.entity, self.files, self.window = entity, files, window
        self.report = LoadReport(entity.name, files_read=len(files))
        self.key = f'"{entity.key}"'
        self.latest = latest_plausible()
        # Checking ids against the warehouse only matters when it holds rows outside the
        # window; else only this load's own ids can collide.
        self.outside = bool(
            window
            and conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {entity.table})")).scalar()
        )
        con.execute("CREATE TABLE files (file_idx INTEGER, file_name VARCHAR)")
        if files:
            con.executemany(
                "INSERT INTO files VALUES (?, ?)", [[i, f.name] for i, f in enumerate(files)]
            )
        # A lookup by position, not a join: DuckDB cannot size an Arrow scan, and would
        # build the join's hash table on the batch rather than on the few files.
        days = ", ".join("NULL" if f.day is None else f"DATE '{f.day:%Y-%m-%d}'" for f in files)
        self.file_days = f"[{days}]::DATE[]"
        con.execute(f"CREATE TABLE seen ({self.key} VARCHAR)")
        con.execute("CREATE TABLE known_rewards (reward_id VARCHAR)")
        self.known = known_rewards is not None
        if self.known:
            con.register(
                "known_list", pa.table({"r": pa.array(sorted(known_rewards), pa.string())})
            )
            con.execute("INSERT INTO known_rewards SELECT r FROM known_list")
            con.unregister("known_list")

    # -- the loader's rules, as SQL over the validated rows `c` and their file's day ----

    def _rules(self) -> list[tuple[str, QuarantineReason, str]]:
        rules = []
        if self.window:
            ts = f'c."{self.entity.event_time}"'
            rules += [
                (
                    f"c.__day IS NOT NULL "
                    f"AND abs(date_diff('day', c.__day, CAST({ts} AS DATE))) > 1",
                    QuarantineReason.OUTSIDE_FILE_DATE,
                    f"{self.entity.event_time} not within a day of the file's date",
                ),
                (
                    f"{ts} < {_timestamp(self.window.first_day)}",
                    QuarantineReason.BEFORE_FIRST_PARTITION,
                    f"{self.entity.event_time} before {self.window.first_day:%Y-%m-%d}",
                ),
            ]
        if self.known:
            rules.append(
                (
                    "c.reward_id NOT IN (SELECT reward_id FROM known_rewards)",
                    QuarantineReason.UNKNOWN_REWARD,
                    "reward_id",
                )
            )
        return rules

    def _in_window(self) -> str:
        """SQL: a row whose event time falls in the window (every row of a snapshot)."""
        if not self.window:
            return "true"
        ts = f'"{self.entity.event_time}"'
        start, end = self.window.start, self.window.end
        return f"({ts} >= {_timestamp(start)} AND {ts} < {_timestamp(end)})"

    def _check(self, table: pa.Table) -> None:
        """Validate a batch into the table `ruled`: typed rows with `reason`, `detail` and
        `pday` (the day whose partition a bad row belongs to)."""
        self.con.register("batch", table)
        suspect = suspect_columns(table, self.entity)
        rules = self._rules()
        reason = " ".join(f"WHEN {cond} THEN '{r}'" for cond, r, _ in rules)
        detail = " ".join(f"WHEN {cond} THEN {sql_text(d)}" for cond, _, d in rules)
        reason = f"CASE {reason} END" if rules else "NULL"
        detail = f"CASE {detail} END" if rules else "NULL"
        pday = "NULL::DATE"
        if self.window:
            ts = f'CAST(c."{self.entity.event_time}" AS DATE)'
            # A row-level fault belongs to its file's day (or its own day, in undated
            # files); a row that reads fine, to its own day.
            pday = (
                f"CASE WHEN c.{REASON} IS NOT NULL OR ({reason}) IN "
                f"('{QuarantineReason.OUTSIDE_FILE_DATE}', "
                f"'{QuarantineReason.BEFORE_FIRST_PARTITION}') "
                f"THEN COALESCE(c.__day, {ts}) ELSE {ts} END"
            )
        self.con.execute(
            f"""CREATE OR REPLACE TABLE ruled AS
            SELECT c.* EXCLUDE ({REASON}, {DETAIL}, __day),
              COALESCE(c.{REASON}, {reason}) AS reason,
              COALESCE(c.{DETAIL}, {detail}) AS detail,
              {pday} AS pday
            FROM (
              SELECT *, ({self.file_days})[__file + 1] AS __day
              FROM ({validation_sql(self.entity, "batch", self.latest, suspect)})
            ) c"""
        )

    def _duplicates(self) -> None:
        """Repeated ids among the rows still good: the first (by file, then line) stays,
        and so does an id loaded by an earlier batch or, in the window, held outside it."""
        key, window = self.key, self._in_window()
        stored = "false"
        if self.outside:
            candidates = self.con.execute(
                f"SELECT {key} FROM ruled WHERE reason IS NULL AND {window}"
            ).fetch_df()[self.entity.key]
            found = self.warehouse.existing_keys(
                self.conn, self.entity.table, self.entity.key, candidates
            )
            self.con.register("stored", pa.table({"k": pa.array(found.tolist(), pa.string())}))
            stored = f"({key} IN (SELECT k FROM stored) AND {window})"
        # `seen` grows with every batch: it is scanned against this batch's ids (a semi
        # join that hashes the batch) rather than hashed whole for each batch, whose cost
        # grew with the load (at 22.7M transactions, 0.2 s for the first batch, 1.2 s for
        # the last).
        self.con.execute(
            f"""UPDATE ruled SET reason = '{QuarantineReason.DUPLICATE_ID}',
              detail = CASE WHEN d.repeated THEN '{self.entity.key}' ELSE 'already loaded' END
            FROM (
              WITH fresh AS (SELECT {key} FROM ruled WHERE reason IS NULL),
              earlier AS (SELECT DISTINCT {key} FROM seen SEMI JOIN fresh USING ({key}))
              SELECT __file, __line, repeated FROM (
                SELECT __file, __line, {stored} AS stored,
                  row_number() OVER (PARTITION BY {key} ORDER BY __file, __line) > 1
                    OR {key} IN (SELECT {key} FROM earlier) AS repeated
                FROM ruled WHERE reason IS NULL
              ) WHERE repeated OR stored
            ) d
            WHERE ruled.__file = d.__file AND ruled.__line = d.__line"""
        )
        self.con.execute(f"INSERT INTO seen SELECT {key} FROM ruled WHERE reason IS NULL")

    def _owned(self) -> str:
        """SQL: a bad row this load writes (its partition day in the window, or none)."""
        if not self.window:
            return "true"
        first, start, end = self.window.first_day, self.window.start, self.window.end
        day = f"greatest(CAST(pday AS TIMESTAMP), {_timestamp(first)})"
        return f"(pday IS NULL OR ({day} >= {_timestamp(start)} AND {day} < {_timestamp(end)}))"

    def batch(self, batch: _Batch) -> int:
        """Check a batch and write its good rows and quarantine rows; the good count."""
        self._check(batch.table)
        self._duplicates()
        good_sql = f"reason IS NULL AND {self._in_window()}"
        names = ", ".join(f'"{c}"' for c in self.entity.column_names)
        if self.entity.name == "customers":
            names += f", {holdout_bucket_sql('customer_id')} AS holdout_bucket"
        first = self.window.first_day if self.window else dt.datetime.min
        bad = self.con.execute(
            f"""SELECT __row, f.file_name AS source_file, __line AS source_line, reason, detail,
              CASE WHEN pday IS NULL THEN NULL
                ELSE greatest(CAST(pday AS TIMESTAMP), CAST(? AS TIMESTAMP)) END
                AS partition_date
            FROM ruled JOIN files f ON f.file_idx = ruled.__file
            WHERE reason IS NOT NULL AND {self._owned()}
            ORDER BY __file, __line""",
            [first],
        ).fetch_df()
        # The values as landed, for the quarantine's masked raw values.
        raw = batch.table.select(self.entity.column_names).take(bad["__row"].to_numpy())
        bad = pd.concat([raw.to_pandas(), bad.drop(columns="__row")], axis=1)
        nulled = nulled_columns(self.entity)
        sums = "".join(
            f', sum(CAST("{NULLED}{c}" AS INTEGER)) FILTER (WHERE {good_sql}) AS "{c}"'
            for c in nulled
        )
        counts = self.con.execute(
            f"""SELECT count(*) FILTER (WHERE NOT ({good_sql})
                AND NOT (reason IS NOT NULL AND {self._owned()})) AS other{sums}
            FROM ruled"""
        ).fetchone()
        self.con.unregister("batch")
        self.report.rows_read += batch.table.num_rows
        self.report.rows_other_partitions += counts[0]
        self.report.nulled_optional.update(
            {c: n for c, n in zip(nulled, counts[1:], strict=True) if n}
        )
        frames = [quarantine_rows(self.entity, bad), *self._problems(batch.problems)]
        frames = [f for f in frames if len(f)]
        if frames:
            quarantine = pd.concat(frames, ignore_index=True)
            self.warehouse.append(self.conn, QUARANTINE_TABLE, quarantine)
            self.report.quarantined.update(quarantine["reason"])
        # Streamed: the good rows are never all held in Arrow at once.
        good = self.con.execute(
            f"SELECT {names}, f.file_name AS source_file, __line AS source_line "
            f"FROM ruled JOIN files f ON f.file_idx = ruled.__file WHERE {good_sql}"
        ).to_arrow_reader(COPY_BATCH_ROWS)
        return self.warehouse.append(self.conn, self.entity.table, good)

    def _problems(self, problems: list[tuple[int, Problem]]) -> list[pd.DataFrame]:
        frames = []
        for index, problem in problems:
            file = self.files[index]
            day = self.window.day(file.day) if self.window else None
            if problem.line is not None:
                self.report.rows_read += 1
            if self.window and not self.window.owns(day):
                self.report.rows_other_partitions += problem.line is not None
                continue
            if problem.line is None:
                self.report.files_quarantined.append(file.name)
            frames.append(problem_rows(self.entity, file.name, [problem], day))
        return frames

    def run(self) -> LoadReport:
        for batch in _ahead(_batches(self.files, self.entity)):
            self.report.rows_loaded += self.batch(batch)
        return self.report


def _described(files: list[LandingFile]) -> str:
    names = [f.name for f in files]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(names[:5]) + more


def load_snapshot(
    warehouse: Warehouse, entity: Entity, data_dir: Path, max_shrink: float = 1.0
) -> LoadReport:
    """Replace the raw table of a snapshot entity with the valid rows of its files.

    If the table holds rows and the new snapshot would have `max_shrink` (a share) fewer,
    nothing is replaced and `SnapshotShrinkError` says why (1.0 allows any shrink).
    """
    scan = scan_landing(data_dir, entity.name)
    if not scan.files:
        raise ContractError(
            f"no {entity.name} files under {data_dir}: expected {entity.name}.csv, "
            f"{entity.name}.parquet or a {entity.name}/ folder of them"
        )
    _prepare(warehouse, entity)
    with warehouse.begin() as conn, session() as con:
        before = conn.execute(sa.text(f"SELECT COUNT(*) FROM {entity.table}")).scalar()
        conn.execute(sa.text(f"DELETE FROM {entity.table}"))
        conn.execute(
            sa.text(f"DELETE FROM {QUARANTINE_TABLE} WHERE entity = :e"), {"e": entity.name}
        )
        report = _Load(con, warehouse, conn, entity, scan.files).run()
        report.files_skipped = scan.skipped
        after = report.rows_loaded
        if before and (before - after) / before > max_shrink:
            # Raising rolls the transaction back: the previous snapshot keeps serving.
            raise SnapshotShrinkError(
                f"{entity.name}: the landing files ({_described(scan.files)}) hold {after} "
                f"valid rows where {before} are loaded, {1 - after / before:.0%} fewer; "
                f"SNAPSHOT_MAX_SHRINK allows {max_shrink:.0%}. Nothing was replaced "
                f"({report.rows_quarantined} rows quarantined, "
                f"{len(report.files_quarantined)} files unreadable)."
            )
        record_load(conn, entity.name)
    return report


def load_window(
    warehouse: Warehouse,
    entity: Entity,
    data_dir: Path,
    start: dt.datetime,
    end: dt.datetime,
    known_rewards: set[str] | None = None,
    first_day: dt.datetime | None = None,
) -> LoadReport:
    """Replace the rows of `entity` whose event time falls in [start, end).

    A duplicate of an id already loaded (in an earlier file of this load or outside the
    window) is quarantined; the row loaded first stays. Redemptions of rewards not in
    `known_rewards` are quarantined. Rows for unknown customers are loaded: the marts
    hold them back until the customer arrives (see held_rows).

    Every row read ends up loaded or quarantined by exactly one window: a bad row of a
    dated file belongs to the file's day, rows dated before `first_day` (the first
    partition) to the window that starts there.
    """
    assert entity.event_time, f"{entity.name} is a snapshot entity"
    window = _Window(start, end, first_day or start)
    scan = scan_landing(data_dir, entity.name)
    files = files_for_window(scan.files, start.date(), end.date(), window.first_day.date())
    ts = entity.event_time
    undated = [f.name for f in files if f.day is None]
    _prepare(warehouse, entity)
    with warehouse.begin() as conn, session() as con:
        params = {"start": start, "end": end, "e": entity.name}
        conn.execute(
            sa.text(f"DELETE FROM {entity.table} WHERE {ts} >= :start AND {ts} < :end"), params
        )
        conn.execute(
            sa.text(
                f"DELETE FROM {QUARANTINE_TABLE} WHERE entity = :e AND "
                "partition_date >= :start AND partition_date < :end"
            ),
            params,
        )
        if undated:
            conn.execute(
                sa.text(
                    f"DELETE FROM {QUARANTINE_TABLE} WHERE entity = :e AND partition_date IS NULL "
                    "AND source_file IN :files"
                ).bindparams(sa.bindparam("files", expanding=True)),
                {"e": entity.name, "files": undated},
            )
        report = _Load(con, warehouse, conn, entity, files, window, known_rewards).run()
        record_load(conn, entity.name, start, end)
    report.files_skipped = scan.skipped
    return report
