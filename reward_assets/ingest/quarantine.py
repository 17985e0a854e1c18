"""The quarantine: where a row that breaks the contract goes, and the reasons it may give.

Validation decides the reasons a single row can tell about itself; the loader those that
need other rows or tables. Both write the same rows to one table, `raw.quarantine`, whose
reason values the README documents: renaming a member's value changes stored data.
"""

from __future__ import annotations

import json
from enum import StrEnum

import numpy as np
import pandas as pd

from reward_assets.ingest.contract import Column, Entity, sql_types
from reward_assets.privacy import mask_record


class QuarantineReason(StrEnum):
    # Validation's, in the order it applies them: a row breaking several gets the first.
    MISSING_KEY = "missing_key"
    MISSING_VALUE = "missing_value"
    UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
    IMPLAUSIBLE_TIMESTAMP = "implausible_timestamp"
    INVALID_NUMBER = "invalid_number"
    MALFORMED_EMAIL = "malformed_email"
    INVALID_EVENT_TYPE = "invalid_event_type"
    DUPLICATE_ID = "duplicate_id"  # the loader's too, for an id loaded before
    # The loader's alone: they need the file's date, the first partition or the catalogue.
    OUTSIDE_FILE_DATE = "outside_file_date"
    BEFORE_FIRST_PARTITION = "before_first_partition"
    UNKNOWN_REWARD = "unknown_reward"


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


def quarantine_frame(
    entity: Entity, rows: pd.DataFrame, reason: str, detail: str | pd.Series, day=None
) -> pd.DataFrame:
    """Quarantine rows for `rows` (string or typed values), personal data masked."""
    if rows.empty:
        return pd.DataFrame(columns=list(QUARANTINE_COLUMNS))
    contract = [c for c in entity.column_names if c in rows.columns]
    raw = [
        json.dumps(mask_record(r), default=str, sort_keys=True)
        for r in rows[contract]
        .astype(object)
        .where(rows[contract].notna(), None)
        .to_dict("records")
    ]
    return pd.DataFrame(
        {
            "entity": entity.name,
            "source_file": rows["source_file"].astype(str).to_numpy(),
            "source_line": rows["source_line"].astype("int64").to_numpy(),
            "record_id": rows[entity.key].astype(str).to_numpy(),
            "reason": reason,
            "detail": detail if isinstance(detail, str) else detail.to_numpy(),
            "raw_values": raw,
            "partition_date": pd.NaT if day is None else np.asarray(day, dtype="datetime64[us]"),
        },
        columns=list(QUARANTINE_COLUMNS),
    )
