"""The quarantine: where a row that breaks the contract goes, and the reasons it may give.

Reading decides the reasons of rows (and files) that cannot be read; validation those a
single row can tell about itself; the loader those that need other rows or tables. All
write the same rows to one table, `raw.quarantine`, whose reason values the README
documents: renaming a member's value changes stored data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from enum import StrEnum

import pandas as pd

from reward_assets.ingest.contract import Column, Entity, sql_types
from reward_assets.privacy import mask_fields, mask_value


class QuarantineReason(StrEnum):
    # Reading's: a file or a row that cannot be read under the contract.
    UNREADABLE_FILE = "unreadable_file"  # one row for the file, without a line
    MISSING_COLUMN = "missing_column"  # one row for the file, without a line
    MALFORMED_ROW = "malformed_row"
    INVALID_ENCODING = "invalid_encoding"
    # Validation's, in the order it applies them: a row breaking several gets the first.
    OVERSIZED_VALUE = "oversized_value"
    MISSING_KEY = "missing_key"
    MISSING_VALUE = "missing_value"
    UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
    IMPLAUSIBLE_TIMESTAMP = "implausible_timestamp"
    INVALID_NUMBER = "invalid_number"
    OUT_OF_RANGE = "out_of_range"
    MALFORMED_EMAIL = "malformed_email"
    INVALID_EVENT_TYPE = "invalid_event_type"
    # The loader's: they need the file's date, the first partition, the catalogue or the
    # other rows.
    OUTSIDE_FILE_DATE = "outside_file_date"
    BEFORE_FIRST_PARTITION = "before_first_partition"
    UNKNOWN_REWARD = "unknown_reward"
    DUPLICATE_ID = "duplicate_id"


QUARANTINE_TABLE = "raw.quarantine"
QUARANTINE_COLUMNS = sql_types(
    (
        Column("entity"),
        Column("source_file"),
        Column("source_line", "integer"),
        Column("record_id"),
        Column("reason"),
        Column("detail"),
        Column("raw_values"),
        Column("partition_date", "timestamp"),
    )
)
# Raw values are kept to find and fix a row, not to store a blob a broken file swallowed.
RAW_VALUE_CHARS = 200


def _clip(value: object) -> object:
    if isinstance(value, str) and len(value) > RAW_VALUE_CHARS:
        return f"{value[:RAW_VALUE_CHARS]}... ({len(value)} characters)"
    return value


def _json(record: dict[str, object] | list[object]) -> str:
    # json.dumps escapes NUL, which PostgreSQL text could not hold.
    return json.dumps(record, default=str, sort_keys=True)


def _text(values: Iterable[object]) -> list[str | None]:
    """Values fit for a text column on both warehouses (PostgreSQL refuses NUL)."""
    return [None if v is None or v is pd.NA else str(v).replace("\x00", "\\0") for v in values]


def quarantine_rows(entity: Entity, rows: pd.DataFrame) -> pd.DataFrame:
    """Quarantine rows from `rows`: the contract's columns as landed (text), source_file,
    source_line, reason, detail and partition_date; personal values masked."""
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in QUARANTINE_COLUMNS})
    # Masked and clipped column by column rather than through a dict per row from
    # pandas: several times faster on many rows.
    contract = [c for c in entity.column_names if c in rows.columns]
    values = rows[contract].astype(object).where(rows[contract].notna(), None)
    masked = [[_clip(mask_value(c, v)) for v in values[c].tolist()] for c in contract]
    raw = [_json(dict(zip(contract, row, strict=True))) for row in zip(*masked, strict=True)]
    return pd.DataFrame(
        {
            "entity": entity.name,
            "source_file": rows["source_file"].astype(str).to_numpy(),
            "source_line": rows["source_line"].astype("Int64").to_numpy(),
            "record_id": _text(rows[entity.key]),
            "reason": rows["reason"].astype(str).to_numpy(),
            "detail": rows["detail"].astype(str).to_numpy(),
            "raw_values": raw,
            "partition_date": pd.to_datetime(rows["partition_date"]).astype("datetime64[us]"),
        },
        columns=list(QUARANTINE_COLUMNS),
    )


def problem_rows(
    entity: Entity,
    source_file: str,
    problems: Sequence,
    partition_date: object = None,
) -> pd.DataFrame:
    """Quarantine rows for rows or a file that could not be read (`reader.Problem`s).

    Which field of a misread row holds what cannot be known, so every field is masked.
    """
    return pd.DataFrame(
        {
            "entity": entity.name,
            "source_file": source_file,
            "source_line": pd.array([p.line for p in problems], dtype="Int64"),
            "record_id": pd.Series([None] * len(problems), dtype=object),
            "reason": [str(p.reason) for p in problems],
            "detail": [p.detail for p in problems],
            "raw_values": [
                _json([_clip(v) for v in mask_fields(p.fields)]) if p.line else None
                for p in problems
            ],
            "partition_date": pd.Series([partition_date] * len(problems), dtype="datetime64[us]"),
        },
        columns=list(QUARANTINE_COLUMNS),
    )
