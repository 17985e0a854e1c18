"""Follow-ups after a welcome: scheduled by onboarding, sent or cancelled by the cycle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from reward_assets.contact.campaigns import followup
from reward_assets.email.outbox import chunked
from reward_assets.ops.store import OpsStore, followups, insert_missing, stored_now

PENDING, QUEUED, CANCELLED = "pending", "queued", "cancelled"
# Why a follow-up was cancelled when the customer opened, clicked or redeemed meanwhile.
ENGAGED = "engaged"


def schedule(
    store: OpsStore, signups: Iterable[tuple[str, dt.datetime]], days: Iterable[int]
) -> int:
    """A pending follow-up `d` days after each sign-up, for each d; existing ones untouched."""
    rows = []
    for customer_id, signup_at in signups:
        naive = signup_at.astimezone(dt.UTC).replace(tzinfo=None) if signup_at.tzinfo else signup_at
        rows += [
            {
                "customer_id": customer_id,
                "campaign": followup(day),
                "due_date": naive.date() + dt.timedelta(days=day),
                "status": PENDING,
                "signup_at": naive,
                "updated_at": stored_now(),
            }
            for day in days
        ]
    with store.begin() as conn:
        return insert_missing(conn, followups, rows)


def due(store: OpsStore, as_of: dt.date) -> pd.DataFrame:
    """Pending follow-ups due on or before `as_of`: customer_id, campaign, due_date, signup_at."""
    query = (
        sa.select(
            followups.c.customer_id,
            followups.c.campaign,
            followups.c.due_date,
            followups.c.signup_at,
        )
        .where(followups.c.status == PENDING, followups.c.due_date <= as_of)
        .order_by(followups.c.customer_id, followups.c.campaign)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=["customer_id", "campaign", "due_date", "signup_at"])


def mark(store: OpsStore, items: Iterable[tuple[str, str, str | None]], status: str) -> int:
    """Move pending follow-ups (customer_id, campaign, reason) to `status`; others stay.
    An item repeating a (customer_id, campaign) changes nothing: the first one moved it."""
    first: dict[tuple[str, str], str | None] = {}
    for customer_id, campaign, reason in items:
        first.setdefault((customer_id, campaign), reason)
    # One UPDATE per (campaign, reason) and chunk of customers, not one per follow-up:
    # the cycle marks tens of thousands at 1M customers.
    groups: dict[tuple[str, str | None], list[str]] = {}
    for (customer_id, campaign), reason in first.items():
        groups.setdefault((campaign, reason), []).append(customer_id)
    changed = 0
    now = stored_now()
    with store.begin() as conn:
        for (campaign, reason), customer_ids in groups.items():
            for chunk in chunked(customer_ids):
                result = conn.execute(
                    sa.update(followups)
                    .where(
                        followups.c.customer_id.in_(chunk),
                        followups.c.campaign == campaign,
                        followups.c.status == PENDING,
                    )
                    .values(status=status, reason=reason, updated_at=now)
                )
                changed += result.rowcount
    return changed
