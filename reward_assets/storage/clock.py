"""The data clock: AS_OF is 'today' for features, eligibility and labels."""

from __future__ import annotations

import datetime as dt

from reward_assets.storage.warehouse import Warehouse

_EVENT_TABLES = {
    "raw.transactions": "occurred_at",
    "raw.redemptions": "redeemed_at",
    "raw.engagement_events": "occurred_at",
}


def resolve_as_of(warehouse: Warehouse, override: dt.date | None = None) -> dt.date:
    """The configured AS_OF, else the date of the latest event loaded, else today (UTC)."""
    if override:
        return override
    latest = [
        warehouse.scalar(f"SELECT MAX({column}) FROM {table}")
        for table, column in _EVENT_TABLES.items()
        if warehouse.table_exists(table)
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
