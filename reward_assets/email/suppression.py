"""The suppression list: marketing stops for good after an unsubscribe, a complaint or a
hard bounce. The first reason recorded is kept.

The API's unsubscribe link and operators add to it one customer at a time (`suppress`);
the engagement cycle adds what the engagement data reports (`sync_from_warehouse`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reward_assets.email.outbox import chunked
from reward_assets.ops.store import OpsStore, insert_missing, stored_now, suppressions

if TYPE_CHECKING:
    from reward_assets.warehouse.store import Warehouse

REASONS = ("unsubscribe", "complaint", "hard_bounce")
EVENT_REASONS = {"unsubscribe": "unsubscribe", "complaint": "complaint", "bounce": "hard_bounce"}


def _rows(pairs: Iterable[tuple[str, str]], source: str) -> list[dict]:
    now = stored_now()
    return [
        {"customer_id": customer_id, "reason": reason, "source": source, "created_at": now}
        for customer_id, reason in pairs
    ]


def suppress(store: OpsStore, customer_id: str, reason: str, source: str) -> bool:
    """True when the customer was newly suppressed; repeating it changes nothing."""
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}")
    with store.begin() as conn:
        return insert_missing(conn, suppressions, _rows([(customer_id, reason)], source)) == 1


def suppressed(store: OpsStore, customer_ids: Iterable[str]) -> set[str]:
    with store.begin() as conn:
        return suppressed_in(conn, customer_ids)


def suppressed_in(conn: Connection, customer_ids: Iterable[str]) -> set[str]:
    """`suppressed` inside the caller's transaction."""
    found: set[str] = set()
    for chunk in chunked(customer_ids):
        query = sa.select(suppressions.c.customer_id).where(suppressions.c.customer_id.in_(chunk))
        found.update(conn.execute(query).scalars())
    return found


def sync_from_events(store: OpsStore, events: pd.DataFrame) -> int:
    """Suppress every customer with an unsubscribe, complaint or bounce event; returns how
    many were new. With an `occurred_at` column the earliest such event names the reason."""
    relevant = events[events["event_type"].isin(list(EVENT_REASONS))]
    if "occurred_at" in relevant.columns:
        relevant = relevant.sort_values("occurred_at", kind="stable")
    first = relevant.drop_duplicates("customer_id")
    pairs = zip(
        first["customer_id"].astype(str), first["event_type"].map(EVENT_REASONS), strict=True
    )
    with store.begin() as conn:
        return insert_missing(conn, suppressions, _rows(pairs, "events"))


def sync_from_warehouse(store: OpsStore, warehouse: Warehouse) -> tuple[int, int]:
    """`sync_from_events` on the warehouse's engagement events; returns how many customers
    were newly suppressed and how many (customer, event type) pairs were read."""
    events = warehouse.frame(
        "SELECT DISTINCT customer_id, event_type FROM marts.fct_engagement_events "
        f"WHERE event_type IN ({', '.join(map(repr, EVENT_REASONS))})"
    )
    return sync_from_events(store, events), len(events)
