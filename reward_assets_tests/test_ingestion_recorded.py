"""The loader's output on a landing folder breaking every rule, compared with what it wrote
before ingestion was reworked for speed (recorded in ingestion_recorded.json): the raw
rows, the quarantine rows (file, line, reason, detail, masked raw values, partition) and
the load reports must stay exactly the same, on both warehouses.

The recording was made by `recorded_loads` on the loader as it was before the rework
(main at b2881ed); rerun it and rewrite the file only for an intended change of output.
"""

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from reward_assets.ingest.contract import (
    CUSTOMERS,
    ENGAGEMENT_EVENTS,
    REDEMPTIONS,
    REWARDS,
    TRANSACTIONS,
    sql_types,
)
from reward_assets.ingest.load import load_snapshot, load_window, raw_columns
from reward_assets.ingest.quarantine import QUARANTINE_COLUMNS, QUARANTINE_TABLE, QuarantineReason
from reward_assets_tests.landing_builders import write_every_reason_landing

RECORDED = Path(__file__).with_name("ingestion_recorded.json")
FIRST = dt.datetime(2023, 3, 1)
DAY = dt.timedelta(days=1)


def _value(sql_type: str, value: object) -> object:
    """One stored value as JSON, the same whichever warehouse returned it."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if sql_type == "BIGINT":
        return int(value)
    if sql_type == "DOUBLE PRECISION":
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if sql_type == "TIMESTAMP":
        return pd.Timestamp(value).isoformat()
    if sql_type == "BOOLEAN":
        return bool(value)
    return str(value)


def _rows(warehouse, table: str, types: dict[str, str]) -> list[list[object]]:
    frame = warehouse.frame(f"SELECT {', '.join(types)} FROM {table}")
    rows = [
        [_value(types[c], v) for c, v in zip(types, row, strict=True)]
        for row in frame.itertuples(index=False)
    ]
    return sorted(rows, key=json.dumps)


def _report(report) -> dict:
    # Not dataclasses.asdict: it rebuilds a Counter from its items, counting the pairs.
    fields = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
    return {k: dict(sorted(v.items())) if isinstance(v, dict) else v for k, v in fields.items()}


def recorded_loads(warehouse, data: Path) -> dict:
    """Every entity loaded (snapshots, a ranged load, then days again one by one, whose
    duplicates are checked against the rows outside their day): reports and tables."""
    write_every_reason_landing(data)
    reports = [load_snapshot(warehouse, CUSTOMERS, data), load_snapshot(warehouse, REWARDS, data)]
    known = set(warehouse.frame("SELECT reward_id FROM raw.rewards").reward_id)
    for entity in (TRANSACTIONS, REDEMPTIONS, ENGAGEMENT_EVENTS):
        rewards = known if entity is REDEMPTIONS else None
        reports.append(load_window(warehouse, entity, data, FIRST, FIRST + 4 * DAY, rewards, FIRST))
        for day in range(4):
            start = FIRST + day * DAY
            reports.append(load_window(warehouse, entity, data, start, start + DAY, rewards, FIRST))
    tables = {
        entity.table: _rows(warehouse, entity.table, sql_types(raw_columns(entity)))
        for entity in (CUSTOMERS, REWARDS, TRANSACTIONS, REDEMPTIONS, ENGAGEMENT_EVENTS)
    }
    tables[QUARANTINE_TABLE] = _rows(warehouse, QUARANTINE_TABLE, QUARANTINE_COLUMNS)
    return {"reports": [_report(r) for r in reports], "tables": tables}


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request):
    return request.getfixturevalue(
        {"duckdb": "duckdb_warehouse", "postgres": "pg_warehouse"}[request.param]
    )


def test_every_reason_loads_and_quarantines_as_recorded(tmp_path, warehouse):
    got = json.loads(json.dumps(recorded_loads(warehouse, tmp_path / "data")))
    recorded = json.loads(RECORDED.read_text())

    reasons = {row[4] for row in recorded["tables"][QUARANTINE_TABLE]}
    assert reasons == set(QuarantineReason)
    assert got["reports"] == recorded["reports"]
    for table, rows in recorded["tables"].items():
        assert got["tables"][table] == rows, table
