"""The data clock: AS_OF is 'today' for features, eligibility and labels."""

from __future__ import annotations

import datetime as dt

from reward_assets.ingest.contract import ENTITIES
from reward_assets.warehouse.store import Warehouse


def resolve_as_of(warehouse: Warehouse, override: dt.date | None = None) -> dt.date:
    """The configured AS_OF, else the date of the latest event loaded, else today (UTC)."""
    if override:
        return override
    latest = [
        warehouse.scalar(f"SELECT MAX({e.event_time}) FROM {e.table}")
        for e in ENTITIES.values()
        if e.partitioned and warehouse.table_exists(e.table)
    ]
    latest = [value for value in latest if value is not None]
    if not latest:
        return dt.datetime.now(dt.UTC).date()
    value = max(latest)
    return value.date() if isinstance(value, dt.datetime) else value


def as_of_params(as_of: dt.date) -> dict[str, object]:
    """Bound parameters every SQL model may use for the as-of date."""
    return {
        "as_of": as_of,
        "as_of_end": dt.datetime.combine(as_of, dt.time()) + dt.timedelta(days=1),
    }
