"""The email outbox: one row per message the product ever decided on, keyed by its
idempotency key, so a replayed plan never creates a second message.

Planners enqueue messages (or record why a customer was skipped); `delivery.deliver_due`
moves rows queued -> sending -> sent | failed, and a `sending` row whose lease ran out
becomes `uncertain` until an operator resolves it (`emailctl resolve`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reward_assets.contact.campaigns import WELCOME, is_campaign
from reward_assets.contact.rules import FREQUENCY_CAP, ContactPolicy
from reward_assets.ops.store import (
    OpsStore,
    from_db,
    insert_missing,
    outbox,
    stored_now,
    switches,
    to_db,
)

QUEUED, SENDING, SENT, FAILED = "queued", "sending", "sent", "failed"
UNCERTAIN, SKIPPED, CANCELLED = "uncertain", "skipped", "cancelled"
# Messages that went, or may still go, out: what a frequency cap counts.
ACTIVE_STATUSES = (QUEUED, SENDING, SENT, UNCERTAIN)
RESOLUTIONS = ("sent", "failed", "requeue")
KILL_SWITCH = "kill_switch"
# The lock (`OpsStore.locked`) under which a marketing message's cap is counted and it is
# queued: one name for every planner, so no two count at once.
CAP_LOCK = "reward_assets.outbox.frequency_cap"
# Keeps IN lists well below SQLite's and PostgreSQL's bound-parameter limits.
_CHUNK = 500
# Messages queued per transaction (its IN lists still `_CHUNK` long): each commit waits for
# the disk, 7-8 ms on this machine's SQLite, and at 1,000,000 customers a cycle queues
# 70,000 messages; this many hold the cap's lock for well under a second.
_QUEUE_ROWS = 5_000
# raw.email_sends: the sent messages as engagement events (`Outbox.sent_events`).
SENT_EVENT_COLUMNS = {
    "event_id": "VARCHAR",
    "customer_id": "VARCHAR",
    "occurred_at": "TIMESTAMP",
    "message_id": "VARCHAR",
    "campaign": "VARCHAR",
    "experiment": "VARCHAR",
    "variant": "VARCHAR",
}


def status_in(statuses: Collection[str]) -> sa.ColumnElement[bool]:
    """`status IN statuses` for a query that also names rows by key or customer.

    `status || ''`, not `status`: without statistics SQLite guesses that an equality on the
    status index selects a few rows and reads every row of that status through it (every
    queued message, once per statement) instead of the rows the keys or customers name.
    """
    return (outbox.c.status + "").in_(list(statuses))


def message_key(customer_id: str, campaign: str, occurrence: str) -> str:
    return f"{customer_id}:{campaign}:{occurrence}"


@dataclass(frozen=True)
class Message:
    customer_id: str
    campaign: str
    occurrence: str
    send_at: dt.datetime
    timezone: str | None
    to_address: str
    subject: str
    preheader: str
    text_body: str
    html_body: str
    reward_ids: tuple[str, ...]
    content_source: str
    experiment: str | None = None
    variant: str | None = None
    lineage: dict | None = None  # what it was made from (`engagement.messages.message_lineage`)

    @cached_property
    def key(self) -> str:
        return message_key(self.customer_id, self.campaign, self.occurrence)


@dataclass(frozen=True)
class Skip:
    customer_id: str
    campaign: str
    occurrence: str
    reason: str
    send_at: dt.datetime
    timezone: str | None

    @cached_property
    def key(self) -> str:
        return message_key(self.customer_id, self.campaign, self.occurrence)


@dataclass(frozen=True)
class Enqueued:
    queued: int  # messages added to the outbox
    capped: tuple[str, ...]  # keys recorded as skipped: they would have broken the cap


def _queued_rows(messages: Iterable[Message], run_id: str | None) -> dict[str, dict]:
    """The outbox row of each message, by key (the first message of a key wins)."""
    now = stored_now()
    rows = {}
    for m in messages:
        # An unknown campaign would fail the rules at every delivery run.
        if not is_campaign(m.campaign):
            raise ValueError(f"unknown campaign {m.campaign!r}")
        row = _row(m, QUEUED, run_id, now)
        row.update(
            reason=None,
            to_address=m.to_address,
            subject=m.subject,
            preheader=m.preheader,
            text_body=m.text_body,
            html_body=m.html_body,
            reward_ids=list(m.reward_ids),
            content_source=m.content_source,
            experiment=m.experiment,
            variant=m.variant,
            lineage=m.lineage,
        )
        rows.setdefault(m.key, row)
    return rows


def _skip_row(skip: Skip, run_id: str | None) -> dict:
    return {**_row(skip, SKIPPED, run_id, stored_now()), "reason": skip.reason}


def chunked(values: Iterable[str], size: int = _CHUNK) -> Iterator[list[str]]:
    values = list(dict.fromkeys(values))
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _row(item: Message | Skip, status: str, run_id: str | None, now: dt.datetime) -> dict:
    return {
        "idempotency_key": item.key,
        "customer_id": item.customer_id,
        "campaign": item.campaign,
        "occurrence": item.occurrence,
        "status": status,
        "send_at": to_db(item.send_at),
        "timezone": item.timezone or "UTC",
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "run_id": run_id,
    }


class Outbox:
    def __init__(self, store: OpsStore):
        self.store = store

    def enqueue(self, messages: Iterable[Message], run_id: str | None = None) -> int:
        """Queue the messages whose key is new; existing rows (any status) stay untouched."""
        rows = _queued_rows(messages, run_id)
        with self.store.begin() as conn:
            return insert_missing(conn, outbox, list(rows.values()))

    def enqueue_within_cap(
        self, messages: Iterable[Message], policy: ContactPolicy, run_id: str | None = None
    ) -> Enqueued:
        """`enqueue`, with the frequency cap counted once more as each message goes in.

        Planners count a customer's other messages before they write the content, so two
        of them deciding at once (API requests, the cycle) would both see room under the
        cap. Here the count and the insert happen in one transaction under a lock every
        such transaction takes, so the cap holds: a message that would break it is
        recorded as skipped (`frequency_cap`) instead. A key already in the outbox stays
        as it is, neither queued nor capped.
        """
        unique: dict[str, Message] = {}
        for m in messages:
            unique.setdefault(m.key, m)
        rows = _queued_rows(unique.values(), run_id)
        queued, capped = 0, []
        for chunk in chunked(unique, _QUEUE_ROWS):
            marketing = any(unique[key].campaign != WELCOME for key in chunk)
            # Welcomes are exempt from the cap: they need no lock.
            with self.store.locked(CAP_LOCK) if marketing else self.store.begin() as conn:
                taken = self._existing(conn, chunk)
                fresh = [unique[key] for key in chunk if key not in taken]
                counted = [m for m in fresh if m.campaign != WELCOME]
                others = {}
                if counted:
                    window = policy.cap_window(
                        min(m.send_at for m in counted), max(m.send_at for m in counted)
                    )
                    others = self.marketing_sends(conn, [m.customer_id for m in counted], *window)
                refused = []
                for m in counted:
                    earlier = others.setdefault(m.customer_id, [])
                    if policy.capped(m.send_at, earlier):
                        refused.append(m)
                    else:
                        earlier.append(m.send_at)
                refused_keys = {m.key for m in refused}
                accepted = [rows[m.key] for m in fresh if m.key not in refused_keys]
                queued += insert_missing(conn, outbox, accepted)
                skips = [
                    Skip(
                        m.customer_id,
                        m.campaign,
                        m.occurrence,
                        FREQUENCY_CAP,
                        m.send_at,
                        m.timezone,
                    )
                    for m in refused
                ]
                insert_missing(conn, outbox, [_skip_row(skip, run_id) for skip in skips])
                capped.extend(m.key for m in refused)
        return Enqueued(queued, tuple(capped))

    def record_skips(self, skips: Iterable[Skip], run_id: str | None = None) -> int:
        """Record why a message was not sent; never replaces a message already decided."""
        rows = {}
        for skip in skips:
            rows.setdefault(skip.key, _skip_row(skip, run_id))
        with self.store.begin() as conn:
            return insert_missing(conn, outbox, list(rows.values()))

    def existing(self, keys: Iterable[str]) -> set[str]:
        with self.store.begin() as conn:
            return self._existing(conn, keys)

    @staticmethod
    def _existing(conn: Connection, keys: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk in chunked(keys):
            query = sa.select(outbox.c.idempotency_key).where(outbox.c.idempotency_key.in_(chunk))
            found.update(conn.execute(query).scalars())
        return found

    def other_marketing_sends(
        self,
        customer_ids: Iterable[str],
        start: dt.datetime,
        end: dt.datetime,
        *,
        statuses: Collection[str] = ACTIVE_STATUSES,
        exclude_keys: Collection[str] = (),
    ) -> dict[str, list[dt.datetime]]:
        """When each customer's non-welcome messages went or go out, within [start, end).

        That is sent_at for a message already sent, else send_at: a message held back (kill
        switch, outage) counts when it actually left.
        """
        with self.store.begin() as conn:
            return self.marketing_sends(
                conn, customer_ids, start, end, statuses=statuses, exclude_keys=exclude_keys
            )

    @staticmethod
    def marketing_sends(
        conn: Connection,
        customer_ids: Iterable[str],
        start: dt.datetime,
        end: dt.datetime,
        *,
        statuses: Collection[str] = ACTIVE_STATUSES,
        exclude_keys: Collection[str] = (),
    ) -> dict[str, list[dt.datetime]]:
        """`other_marketing_sends` inside the caller's transaction."""
        sends: dict[str, list[dt.datetime]] = {}
        at = sa.func.coalesce(outbox.c.sent_at, outbox.c.send_at)
        active = status_in(statuses)
        for chunk in chunked(customer_ids):
            query = (
                sa.select(outbox.c.customer_id, at)
                .where(
                    outbox.c.customer_id.in_(chunk),
                    outbox.c.campaign != WELCOME,
                    active,
                    at >= to_db(start),
                    at < to_db(end),
                )
                .order_by(outbox.c.customer_id, at)
            )
            if exclude_keys:
                query = query.where(outbox.c.idempotency_key.not_in(list(exclude_keys)))
            for customer_id, send_at in conn.execute(query):
                sends.setdefault(customer_id, []).append(from_db(send_at))
        return sends

    def sent_carrying(self, customer_id: str, text: str, since: dt.datetime) -> bool:
        """Whether an email to the customer whose text holds `text` was sent since then."""
        query = (
            sa.select(sa.literal(1))
            .where(
                outbox.c.customer_id == customer_id,
                outbox.c.status == SENT,
                outbox.c.sent_at >= to_db(since),
                outbox.c.text_body.contains(text, autoescape=True),
            )
            .limit(1)
        )
        with self.store.begin() as conn:
            return conn.execute(query).first() is not None

    def status_counts(self) -> dict[str, int]:
        query = sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)
        with self.store.begin() as conn:
            return {status: count for status, count in conn.execute(query)}

    def sent_events(self) -> pd.DataFrame:
        """Sent messages as `sent` engagement events: event_id ("outbox:<key>"),
        customer_id, occurred_at (naive UTC), message_id, campaign, experiment, variant."""
        query = (
            sa.select(
                outbox.c.idempotency_key,
                outbox.c.customer_id,
                outbox.c.sent_at,
                outbox.c.message_id,
                outbox.c.campaign,
                outbox.c.experiment,
                outbox.c.variant,
            )
            .where(outbox.c.status == SENT)
            .order_by(outbox.c.sent_at, outbox.c.idempotency_key)
        )
        with self.store.begin() as conn:
            rows = conn.execute(query).all()
        events = pd.DataFrame(rows, columns=list(SENT_EVENT_COLUMNS))
        events["event_id"] = "outbox:" + events["event_id"].astype(str)
        events["occurred_at"] = pd.to_datetime(events["occurred_at"])
        return events

    def uncertain_rows(self) -> list[dict]:
        query = (
            sa.select(
                outbox.c.idempotency_key,
                outbox.c.customer_id,
                outbox.c.campaign,
                outbox.c.send_at,
                outbox.c.updated_at,
            )
            .where(outbox.c.status == UNCERTAIN)
            .order_by(outbox.c.updated_at, outbox.c.idempotency_key)
        )
        with self.store.begin() as conn:
            return [
                {
                    "key": row.idempotency_key,
                    "customer_id": row.customer_id,
                    "campaign": row.campaign,
                    "send_at": from_db(row.send_at),
                    "updated_at": from_db(row.updated_at),
                }
                for row in conn.execute(query)
            ]

    def resolve(self, key: str, outcome: str, by: str) -> None:
        """An operator's verdict on an uncertain row (after checking the mail server's log).

        `sent` and `failed` close it; `requeue` sends it again, so use it only when the
        server never accepted the message.
        """
        if outcome not in RESOLUTIONS:
            raise ValueError(f"outcome must be one of {', '.join(RESOLUTIONS)}")
        now = stored_now()
        values = {"claimed_by": None, "lease_until": None, "updated_at": now}
        if outcome == "sent":
            # When it really left is unknown: the resolution time is the best bound we have.
            values.update(status=SENT, sent_at=now, reason=f"resolved by {by}")
        elif outcome == "failed":
            values.update(status=FAILED, reason=f"resolved by {by}")
        else:
            values.update(status=QUEUED, next_attempt_at=None, reason=f"requeued by {by}")
        statement = (
            sa.update(outbox)
            .where(outbox.c.idempotency_key == key, outbox.c.status == UNCERTAIN)
            .values(**values)
        )
        with self.store.begin() as conn:
            if conn.execute(statement).rowcount != 1:
                raise ValueError(f"no uncertain message with key {key}")


def kill_switch_engaged(store: OpsStore, env_flag: bool) -> bool:
    if env_flag:
        return True
    with store.begin() as conn:
        return kill_switch_on(conn)


def kill_switch_on(conn: Connection) -> bool:
    """Whether an operator engaged the kill switch, read inside the caller's transaction."""
    query = sa.select(switches.c.value).where(switches.c.name == KILL_SWITCH)
    return conn.execute(query).scalar() == "on"


def set_kill_switch(store: OpsStore, on: bool, by: str) -> None:
    values = {"value": "on" if on else "off", "updated_at": stored_now(), "updated_by": by}
    with store.begin() as conn:
        insert_missing(conn, switches, [{"name": KILL_SWITCH, **values}])
        conn.execute(sa.update(switches).where(switches.c.name == KILL_SWITCH).values(**values))
