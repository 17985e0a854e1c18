"""Loading landing files into the raw tables of the warehouse, with the quarantine.

Snapshot entities (customers, rewards) replace their raw table. Event entities replace
exactly the rows of a time window, so a partition or a date range can be re-run and
always leaves the same tables. Each load is one transaction: a failure leaves the
previous state, never half a window.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from reward_assets.contact.holdout import holdout_bucket
from reward_assets.ingest.contract import LINEAGE_COLUMNS, Column, Entity, sql_types
from reward_assets.ingest.landing import (
    ContractError,
    LandingFile,
    files_for_window,
    landing_files,
    read_landing_file,
)
from reward_assets.ingest.quarantine import (
    QUARANTINE_COLUMNS,
    QUARANTINE_TABLE,
    QuarantineReason,
    quarantine_frame,
)
from reward_assets.ingest.validation import validate
from reward_assets.warehouse.store import Warehouse

BATCH_ROWS = 500_000


@dataclass
class LoadReport:
    entity: str
    files_read: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    nulled_optional: Counter[str] = field(default_factory=Counter)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    @property
    def rows_other_partitions(self) -> int:
        """Rows read from shared or neighbouring files that belong to other partitions."""
        return self.rows_read - self.rows_loaded - self.rows_quarantined


class _LoadedKeys:
    """Ids inserted by the current load, kept as two independent 64-bit hashes.

    Asking the warehouse whether each batch's ids are already in the table scans the
    whole table once per batch, which grows quadratically over a long range; when the
    table held nothing outside the window, only this load's own ids can collide, and
    these hashes answer that in memory (a match needs both hashes to agree). They are
    kept sorted in buckets by their leading byte, so adding a batch moves small arrays
    and each lookup stays within cache.
    """

    _KEYS = ("reward-assets-k1", "reward-assets-k2")
    _EDGES = np.arange(1, 256, dtype=np.uint64) << np.uint64(56)

    def __init__(self) -> None:
        empty = np.empty(0, dtype=np.uint64)
        self.first = [empty] * 256
        self.second = [empty] * 256

    def hashes(self, keys: pd.Series) -> pd.DataFrame:
        """Both hashes of each key, on the keys' index (hash once, look up, then add)."""
        values = keys.to_numpy(dtype=object)
        # Ids are nearly all distinct: categorising them first would only cost time.
        first, second = (
            pd.util.hash_array(values, hash_key=k, categorize=False) for k in self._KEYS
        )
        return pd.DataFrame({"first": first, "second": second}, index=keys.index)

    def _sorted(self, hashes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        first, second = hashes["first"].to_numpy(), hashes["second"].to_numpy()
        order = np.argsort(first, kind="stable")
        return order, first[order], second[order]

    def _buckets(self, first: np.ndarray) -> list[tuple[int, int, int]]:
        bounds = [0, *np.searchsorted(first, self._EDGES).tolist(), len(first)]
        return [(b, lo, hi) for b, (lo, hi) in enumerate(pairwise(bounds)) if hi > lo]

    def contains(self, hashes: pd.DataFrame) -> pd.Series:
        order, first, second = self._sorted(hashes)
        found = np.zeros(len(hashes), dtype=bool)
        for bucket, lo, hi in self._buckets(first):
            known = self.first[bucket]
            if not len(known):
                continue
            start = np.searchsorted(known, first[lo:hi], side="left")
            stop = np.searchsorted(known, first[lo:hi], side="right")
            for row in np.flatnonzero(stop > start):
                seconds = self.second[bucket][start[row] : stop[row]]
                found[lo + row] = bool((seconds == second[lo + row]).any())
        result = np.empty_like(found)
        result[order] = found
        return pd.Series(result, index=hashes.index)

    def add(self, hashes: pd.DataFrame) -> None:
        _, first, second = self._sorted(hashes)
        for bucket, lo, hi in self._buckets(first):
            at = np.searchsorted(self.first[bucket], first[lo:hi])
            self.first[bucket] = np.insert(self.first[bucket], at, first[lo:hi])
            self.second[bucket] = np.insert(self.second[bucket], at, second[lo:hi])


def raw_columns(entity: Entity) -> list[Column]:
    extra = [Column("holdout_bucket", "integer")] if entity.name == "customers" else []
    return [*entity.columns, *extra, *LINEAGE_COLUMNS]


def _prepare(warehouse: Warehouse, entity: Entity) -> None:
    warehouse.create_table(entity.table, sql_types(raw_columns(entity)))
    warehouse.create_table(QUARANTINE_TABLE, QUARANTINE_COLUMNS)


def _raw_frame(entity: Entity, good: pd.DataFrame) -> pd.DataFrame:
    if entity.name == "customers":
        good = good.assign(holdout_bucket=[holdout_bucket(c) for c in good["customer_id"]])
    return good[[c.name for c in raw_columns(entity)]]


def load_snapshot(warehouse: Warehouse, entity: Entity, data_dir: Path) -> LoadReport:
    files = landing_files(data_dir, entity.name)
    if not files:
        raise ContractError(
            f"no {entity.name} files under {data_dir}: expected {entity.name}.csv, "
            f"{entity.name}.parquet or a {entity.name}/ folder of them"
        )
    report = LoadReport(entity.name, files_read=len(files))
    frame = pd.concat(
        [read_landing_file(f, entity.column_names, entity.required) for f in files],
        ignore_index=True,
    )
    report.rows_read = len(frame)
    result = validate(entity, frame)
    _prepare(warehouse, entity)
    with warehouse.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {entity.table}"))
        conn.execute(
            sa.text(f"DELETE FROM {QUARANTINE_TABLE} WHERE entity = :e"), {"e": entity.name}
        )
        report.rows_loaded = warehouse.append(conn, entity.table, _raw_frame(entity, result.good))
        warehouse.append(conn, QUARANTINE_TABLE, result.quarantine)
    report.quarantined.update(result.quarantine["reason"])
    report.nulled_optional.update(result.nulled)
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
    first_day = first_day or start
    files = files_for_window(
        landing_files(data_dir, entity.name), start.date(), end.date(), first_day.date()
    )
    report = LoadReport(entity.name, files_read=len(files))
    ts = entity.event_time
    undated = [f.name for f in files if f.day is None]
    days = {f.name: f.day for f in files}
    _prepare(warehouse, entity)
    with warehouse.begin() as conn:
        window = {"start": start, "end": end, "e": entity.name}
        conn.execute(
            sa.text(f"DELETE FROM {entity.table} WHERE {ts} >= :start AND {ts} < :end"), window
        )
        conn.execute(
            sa.text(
                f"DELETE FROM {QUARANTINE_TABLE} WHERE entity = :e AND "
                "partition_date >= :start AND partition_date < :end"
            ),
            window,
        )
        if undated:
            conn.execute(
                sa.text(
                    f"DELETE FROM {QUARANTINE_TABLE} WHERE entity = :e AND partition_date IS NULL "
                    "AND source_file IN :files"
                ).bindparams(sa.bindparam("files", expanding=True)),
                {"e": entity.name, "files": undated},
            )
        outside = conn.execute(sa.text(f"SELECT COUNT(*) FROM {entity.table}")).scalar()
        loaded = None if outside else _LoadedKeys()
        for frame in _read_batches(files, entity):
            report.rows_read += len(frame)
            result = validate(entity, frame)
            # A row-level fault belongs to its file's day (or its own day, in undated files).
            file_day = pd.to_datetime(result.quarantine["source_file"].map(days))
            quarantine = [
                result.quarantine.assign(
                    partition_date=file_day.fillna(result.quarantine["partition_date"])
                )
            ]
            good = result.good
            file_day = pd.to_datetime(good["source_file"].map(days))
            far = (good[ts].dt.floor("D") - file_day).abs() > pd.Timedelta(days=1)
            early = ~far & (good[ts] < first_day)
            for mask, reason, detail in (
                (
                    far,
                    QuarantineReason.OUTSIDE_FILE_DATE,
                    f"{ts} not within a day of the file's date",
                ),
                (
                    early,
                    QuarantineReason.BEFORE_FIRST_PARTITION,
                    f"{ts} before {first_day:%Y-%m-%d}",
                ),
            ):
                quarantine.append(
                    quarantine_frame(entity, good[mask], reason, detail, day=file_day[mask])
                )
            good = good[~far & ~early & (good[ts] >= start) & (good[ts] < end)]
            if loaded is None:
                seen = warehouse.existing_keys(conn, entity.table, entity.key, good[entity.key])
                dup = good[entity.key].isin(seen)
            else:
                hashes = loaded.hashes(good[entity.key])
                dup = loaded.contains(hashes)
            quarantine.append(
                _by_event_day(entity, good[dup], QuarantineReason.DUPLICATE_ID, "already loaded")
            )
            good = good[~dup]
            if known_rewards is not None:
                unknown = ~good["reward_id"].isin(known_rewards)
                quarantine.append(
                    _by_event_day(
                        entity, good[unknown], QuarantineReason.UNKNOWN_REWARD, "reward_id"
                    )
                )
                good = good[~unknown]
            bad = pd.concat(quarantine, ignore_index=True)
            bad["partition_date"] = bad["partition_date"].clip(lower=first_day)
            # Bad rows of neighbouring days belong to their own partition's load.
            ours = bad["partition_date"].isna() | (
                (bad["partition_date"] >= start) & (bad["partition_date"] < end)
            )
            bad = bad[ours]
            warehouse.append(conn, QUARANTINE_TABLE, bad[list(QUARANTINE_COLUMNS)])
            report.rows_loaded += warehouse.append(conn, entity.table, _raw_frame(entity, good))
            if loaded is not None:
                loaded.add(hashes.loc[good.index])
            report.quarantined.update(bad["reason"])
            report.nulled_optional.update(result.nulled)
    return report


def _by_event_day(
    entity: Entity, rows: pd.DataFrame, reason: QuarantineReason, detail: str
) -> pd.DataFrame:
    day = rows[entity.event_time].dt.floor("D")
    return quarantine_frame(entity, rows, reason, detail, day=day)


def _read_batches(files: list[LandingFile], entity: Entity) -> Iterator[pd.DataFrame]:
    """Landing files concatenated into batches of about BATCH_ROWS rows.

    Validating and inserting per batch rather than per file keeps a day-per-file layout
    from paying fixed costs hundreds of times, while memory stays bounded.
    """
    frames, rows = [], 0
    for file in files:
        frame = read_landing_file(file, entity.column_names, entity.required)
        frames.append(frame)
        rows += len(frame)
        if rows >= BATCH_ROWS:
            yield pd.concat(frames, ignore_index=True)
            frames, rows = [], 0
    if frames:
        yield pd.concat(frames, ignore_index=True)
