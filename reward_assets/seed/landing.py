"""Landing rows as the input contract's files, with dirty rows planted among them.

An `EntitySpec` per entity builds the contract's columns from a frame and names the kinds
of contract-breaking rows it gets; `Lander` writes an entity's rows into CSV or Parquet
files with a known share of such rows (duplicates, missing keys, unparseable timestamps,
unknown customers or rewards, malformed emails) and returns where each one went.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from reward_assets.ingest.contract import ENTITIES, EVENT_TYPES, TIERS
from reward_assets.seed.formatting import format_ids, format_timestamps, label_array, money
from reward_assets.seed.frames import Frame, take
from reward_assets.seed.model import (
    BAD_TIMESTAMPS,
    CATEGORIES,
    CHANNELS,
    DAY,
    DEMO_CUSTOMERS,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    REWARD_ADJECTIVES,
    REWARD_ITEMS,
    TIMEZONES,
)

WRITE_THREADS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class EntitySpec:
    name: str
    time_column: str | None  # the timestamp column bad timestamps are planted in
    frame_time: str | None  # the frame key behind it
    dirty_kinds: tuple[str, ...]
    build: Callable[[Frame, np.ndarray], pa.Table]

    @property
    def columns(self) -> list[str]:
        return ENTITIES[self.name].column_names

    @property
    def key(self) -> str:
        return ENTITIES[self.name].key

    @property
    def has_customer(self) -> bool:
        return ENTITIES[self.name].customer_column is not None

    def table(self, frame: Frame, ids: np.ndarray) -> pa.Table:
        """The rows as the contract's columns, in its order (an error if one is missing)."""
        return self.build(frame, ids).select(self.columns)


def _customers_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    first = frame["first"]
    last = frame["last"]
    lower_first = label_array(tuple(x.lower() for x in FIRST_NAMES), first)
    lower_last = label_array(tuple(x.lower().replace("'", "") for x in LAST_NAMES), last)
    email = pc.binary_join_element_wise(
        lower_first, ".", lower_last, format_ids("", ids, 1), "@",
        label_array(EMAIL_DOMAINS, frame["domain"]), "",
    )  # fmt: skip
    labels = (*CATEGORIES, "")
    preferred_first = label_array(
        labels, np.where(frame["preferred_first"] < 0, len(CATEGORIES), frame["preferred_first"])
    )
    both = pc.binary_join_element_wise(
        preferred_first, "|", label_array(labels, np.maximum(frame["preferred_second"], 0)), ""
    )
    return pa.table(
        {
            "customer_id": format_ids("cust", ids, 3),
            "email": email,
            "signup_at": format_timestamps(frame["signup_at"]),
            "first_name": label_array(FIRST_NAMES, first),
            "last_name": label_array(LAST_NAMES, last),
            "country": label_array(tuple(t[1] for t in TIMEZONES), frame["timezone"]),
            "timezone": label_array(tuple(t[0] for t in TIMEZONES), frame["timezone"]),
            "tier": label_array(TIERS, frame["tier"]),
            "points_balance": pa.array(frame["balance"], pa.int64()),
            "marketing_opt_in": pa.array(frame["opt_in"], pa.bool_()),
            "preferred_categories": pc.if_else(
                pa.array(frame["preferred_second"] >= 0, pa.bool_()), both, preferred_first
            ),
        }
    )


def rewards_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    items = [item for c in CATEGORIES for item in REWARD_ITEMS[c]]
    name = pc.binary_join_element_wise(
        label_array(REWARD_ADJECTIVES, frame["adjective"]),
        label_array(tuple(items), frame["category"] * 5 + frame["item"]),
        " ",
    )
    description = pc.binary_join_element_wise(
        "Redeem ",
        format_ids("", frame["points_cost"], 1),
        " points for a ",
        pc.utf8_lower(name),
        "",
    )
    return pa.table(
        {
            "reward_id": format_ids("rwd", ids, 3),
            "name": name,
            "category": label_array(CATEGORIES, frame["category"]),
            "points_cost": pa.array(frame["points_cost"], pa.int64()),
            "description": description,
            "inventory": pa.array(frame["inventory"], pa.int64()),
            "min_tier": label_array(TIERS, frame["min_tier"]),
            "active": pa.array(frame["active"], pa.bool_()),
        }
    )


def _constant(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


def _transactions_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    n = ids.size
    return pa.table(
        {
            "transaction_id": format_ids("txn", ids, 8),
            "customer_id": format_ids("cust", frame["customer"], 3),
            "occurred_at": format_timestamps(frame["ts"]),
            "amount": money(frame["cents"]),
            "currency": _constant("USD", n),
            "category": label_array(CATEGORIES, frame["category"]),
            "channel": label_array(CHANNELS, frame["channel"]),
            "points_earned": pa.array(frame["points"], pa.int64()),
        }
    )


def _redemptions_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "redemption_id": format_ids("rdm", ids, 7),
            "customer_id": format_ids("cust", frame["customer"], 3),
            "reward_id": format_ids("rwd", frame["reward"], 3),
            "redeemed_at": format_timestamps(frame["ts"]),
            "points_spent": pa.array(frame["points"], pa.int64()),
        }
    )


def campaign_names(codes: np.ndarray) -> pa.Array:
    """`wk<monday yyyymmdd>_<category>` for week * n_categories + category codes."""
    unique, inverse = np.unique(codes, return_inverse=True)
    monday = date(1970, 1, 1) - timedelta(days=3)
    names = [
        f"wk{monday + timedelta(weeks=int(c) // len(CATEGORIES)):%Y%m%d}_"
        f"{CATEGORIES[int(c) % len(CATEGORIES)]}"
        for c in unique
    ]
    return pa.array(names, pa.string()).take(inverse.reshape(-1))


def _events_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "event_id": format_ids("evt", ids, 9),
            "customer_id": format_ids("cust", frame["customer"], 3),
            "event_type": label_array(EVENT_TYPES, frame["type"]),
            "occurred_at": format_timestamps(frame["ts"]),
            "message_id": format_ids("msg", frame["message"], 10),
            "campaign": campaign_names(frame["campaign"]),
            "channel": _constant("email", ids.size),
        }
    )


DUPLICATE, MALFORMED_EMAIL, MISSING_KEY = "duplicate_id", "malformed_email", "missing_key"
BAD_TIMESTAMP, UNKNOWN_CUSTOMER = "unparseable_timestamp", "unknown_customer"
UNKNOWN_REWARD = "unknown_reward"

CUSTOMERS = EntitySpec(
    "customers",
    "signup_at",
    "signup_at",
    (DUPLICATE, MALFORMED_EMAIL, MISSING_KEY, BAD_TIMESTAMP),
    _customers_table,
)
REWARDS = EntitySpec("rewards", None, None, (DUPLICATE, MISSING_KEY), rewards_table)
TRANSACTIONS = EntitySpec(
    "transactions",
    "occurred_at",
    "ts",
    (DUPLICATE, MISSING_KEY, BAD_TIMESTAMP, UNKNOWN_CUSTOMER),
    _transactions_table,
)
REDEMPTIONS = EntitySpec(
    "redemptions",
    "redeemed_at",
    "ts",
    (DUPLICATE, MISSING_KEY, BAD_TIMESTAMP, UNKNOWN_CUSTOMER, UNKNOWN_REWARD),
    _redemptions_table,
)
ENGAGEMENT_EVENTS = EntitySpec(
    "engagement_events",
    "occurred_at",
    "ts",
    (DUPLICATE, MISSING_KEY, BAD_TIMESTAMP, UNKNOWN_CUSTOMER),
    _events_table,
)
SPECS = (CUSTOMERS, REWARDS, TRANSACTIONS, REDEMPTIONS, ENGAGEMENT_EVENTS)
DIRTY_COLUMNS = ("entity", "file", "id", "line", "kind")


@dataclass
class Landed:
    rows: int
    dirty: pa.Table  # DIRTY_COLUMNS
    next_id: int
    files: int


@dataclass(frozen=True)
class Lander:
    """Writes an entity's rows into its files, with dirty rows planted among them."""

    data_dir: Path
    file_format: str
    dirty_fraction: float
    rng: np.random.Generator

    def land(
        self,
        spec: EntitySpec,
        frame: Frame,
        first_id: int,
        files: list[str],
        bounds: np.ndarray,
    ) -> Landed:
        """`frame` rows are in file order; file i holds rows bounds[i]:bounds[i + 1].

        Clean rows get ids from `first_id` on, dirty rows that need a new id the ones after.
        """
        n = int(bounds[-1])
        ids = first_id + np.arange(n, dtype=np.int64)
        protected = frame["customer"] if spec.has_customer else ids if spec is CUSTOMERS else None
        eligible = (
            np.flatnonzero(protected > DEMO_CUSTOMERS) if protected is not None else np.arange(n)
        )
        wanted = round(n * self.dirty_fraction / (1 - self.dirty_fraction))
        count = min(wanted, eligible.size)
        plan = self._plan(spec, frame, ids, bounds, eligible, count, first_id + n)
        first_line = 2 if self.file_format == "csv" else 1

        def write_file(i: int) -> pa.Table:
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            clean = spec.table(take(frame, slice(lo, hi)), ids[lo:hi])
            mine = np.flatnonzero(plan.file == i)
            mine = mine[np.lexsort((mine, plan.after[mine]))]
            table, lines = _interleave(clean, plan.table.take(mine), plan.after[mine] - lo)
            self._write(table, self.data_dir / files[i])
            return pa.table(
                {
                    "entity": _constant(spec.name, mine.size),
                    "file": _constant(files[i], mine.size),
                    "id": pc.fill_null(plan.table.column(spec.key).take(mine), ""),
                    "line": pa.array(lines + first_line, pa.int64()),
                    "kind": label_array(spec.dirty_kinds, plan.kind[mine]),
                }
            )

        # numpy and Arrow release the GIL, so files format and write in parallel.
        with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
            records = list(pool.map(write_file, range(len(files))))
        dirty = pa.concat_tables(records) if records else _empty_dirty()
        return Landed(rows=n + dirty.num_rows, dirty=dirty, next_id=plan.next_id, files=len(files))

    def _plan(
        self,
        spec: EntitySpec,
        frame: Frame,
        ids: np.ndarray,
        bounds: np.ndarray,
        eligible: np.ndarray,
        count: int,
        next_id: int,
    ) -> _DirtyPlan:
        rng = self.rng
        template = np.sort(rng.choice(eligible, size=count, replace=False))
        kind = rng.permutation(np.resize(np.arange(len(spec.dirty_kinds)), count))
        kinds = np.asarray(spec.dirty_kinds)[kind]
        file = np.searchsorted(bounds, template, "right") - 1
        lo, hi = bounds[file], bounds[file + 1]
        duplicate = kinds == DUPLICATE
        # A duplicate comes after its original; other dirty rows anywhere in the file.
        after = np.where(duplicate, rng.integers(template, hi), rng.integers(lo - 1, hi))

        rows = take(frame, template)
        altered = duplicate & (rng.random(count) < 0.5)
        if spec.frame_time:
            at = rows[spec.frame_time]
            shifted = np.minimum(at + rng.integers(1, 600, size=count), (at // DAY + 1) * DAY - 1)
            rows[spec.frame_time] = np.where(altered, shifted, at)
        else:
            rows["inventory"] = np.where(altered, rows["inventory"] + 7, rows["inventory"])
        null_customer = (kinds == MISSING_KEY) & spec.has_customer & (rng.random(count) < 0.5)
        null_id = (kinds == MISSING_KEY) & ~null_customer
        fresh = ~duplicate & ~null_id
        dirty_ids = ids[template].copy()
        dirty_ids[fresh] = next_id + np.arange(fresh.sum())
        table = spec.table(rows, dirty_ids)

        def override(column: str, mask: np.ndarray, values: pa.Array | pa.Scalar) -> None:
            nonlocal table
            index = table.schema.get_field_index(column)
            replaced = pc.if_else(pa.array(mask, pa.bool_()), values, table.column(index))
            table = table.set_column(index, column, replaced)

        null = pa.scalar(None, pa.string())
        override(spec.key, null_id, null)
        if spec.has_customer:
            override("customer_id", null_customer, null)
            ghosts = format_ids("cust_ghost_", rng.integers(1, 100_000, size=count), 5)
            override("customer_id", kinds == UNKNOWN_CUSTOMER, ghosts)
        if UNKNOWN_REWARD in spec.dirty_kinds:
            ghosts = format_ids("rwd_ghost_", rng.integers(1, 10_000, size=count), 4)
            override("reward_id", kinds == UNKNOWN_REWARD, ghosts)
        if spec.time_column:
            garbage = label_array(BAD_TIMESTAMPS, rng.integers(len(BAD_TIMESTAMPS), size=count))
            override(spec.time_column, kinds == BAD_TIMESTAMP, garbage)
        if MALFORMED_EMAIL in spec.dirty_kinds:
            override("email", kinds == MALFORMED_EMAIL, _malformed(rng, table.column("email")))
        return _DirtyPlan(
            table=table, kind=kind, file=file, after=after, next_id=next_id + int(fresh.sum())
        )

    def _write(self, table: pa.Table, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.file_format == "parquet":
            pq.write_table(table, path)
            return
        _write_csv(table, path)


@dataclass
class _DirtyPlan:
    table: pa.Table  # the dirty rows, formatted
    kind: np.ndarray
    file: np.ndarray
    after: np.ndarray  # global position of the clean row each dirty row follows (-1 = first)
    next_id: int


def _malformed(rng: np.random.Generator, emails: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each email with its `@` dropped, doubled or preceded by a space."""
    variants = [
        pc.replace_substring(emails, "@", "", max_replacements=1),
        pc.replace_substring(emails, "@", "@@", max_replacements=1),
        pc.replace_substring(emails, "@", " @", max_replacements=1),
    ]
    pick = rng.integers(len(variants), size=len(emails))
    out = variants[0]
    for i, variant in enumerate(variants[1:], start=1):
        out = pc.if_else(pa.array(pick == i), variant, out)
    return out


def _interleave(clean: pa.Table, dirty: pa.Table, after: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Clean rows with each dirty row placed after clean row `after` (sorted, file-local).

    Returns the merged table and the 0-based positions of the dirty rows in it.
    """
    n_clean = clean.num_rows
    dirty_position = after + 1 + np.arange(after.size)
    clean_position = np.arange(n_clean) + np.searchsorted(after, np.arange(n_clean), "left")
    source = np.empty(n_clean + after.size, dtype=np.int64)
    source[clean_position] = np.arange(n_clean)
    source[dirty_position] = n_clean + np.arange(after.size)
    # One contiguous copy: Arrow's CSV writer is slow on many small chunks.
    return pa.concat_tables([clean, dirty]).take(source), dirty_position


def _empty_dirty() -> pa.Table:
    return pa.table(
        {c: pa.array([], pa.int64() if c == "line" else pa.string()) for c in DIRTY_COLUMNS}
    )


def _write_csv(table: pa.Table, path: Path, append: bool = False) -> None:
    """Unquoted CSV (no value holds a comma, quote or newline) with a plain header line."""
    with path.open("ab" if append else "wb") as handle:
        if not append:
            handle.write((",".join(table.column_names) + "\n").encode())
        # Only non-empty batches: Arrow's CSV writer writes garbage for an empty first one.
        batches = [batch for batch in table.to_batches() if batch.num_rows]
        if batches:
            options = pcsv.WriteOptions(include_header=False, quoting_style="none")
            pcsv.write_csv(pa.Table.from_batches(batches), handle, options)


def write_dirty(dirty: list[pa.Table], path: Path, append: bool) -> None:
    _write_csv(pa.concat_tables([_empty_dirty(), *dirty]), path, append)
