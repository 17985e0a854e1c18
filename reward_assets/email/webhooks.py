"""Email events a provider posts to `POST /api/events/email`: verified, recorded once,
matched to the outbox, and acted on at once.

Two shapes are read:

- generic: `{"events": [{"event_id", "event_type", "message_id", "occurred_at",
  "bounce_type"}]}` (or one such event alone), signed with HMAC-SHA256 of the raw body
  under EMAIL_WEBHOOK_SECRET, sent hex-encoded in `X-Signature: sha256=<hex>`;
- mailgun: Mailgun's webhook payload, `{"signature": {"timestamp", "token", "signature"},
  "event-data": {"id", "event", "timestamp", "severity", "message": {"headers":
  {"message-id"}}}}`, verified as Mailgun documents it: HMAC-SHA256 of timestamp + token
  under the webhook signing key (EMAIL_WEBHOOK_SECRET).

Each event is stored once under its provider's event id (`ops.store.provider_events`), so a
replay changes nothing, and matched to the outbox by Message-ID (with or without angle
brackets). A hard bounce, a complaint or an unsubscribe suppresses the customer there and
then, before the next send. The `provider_events` asset copies them to the warehouse, where
`fct_engagement_events` unions them in. A soft
bounce (Mailgun's temporary failure) is kept but not copied: in the input contract a
`bounce` is a hard one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from reward_assets.email.outbox import chunked
from reward_assets.email.suppression import EVENT_REASONS, suppress
from reward_assets.ops.store import (
    OpsStore,
    inserted_keys,
    outbox,
    provider_events,
    stored_now,
    to_db,
)

GENERIC, MAILGUN = "generic", "mailgun"
PROVIDERS = (GENERIC, MAILGUN)
SIGNATURE_HEADER = "X-Signature"
# What a provider may report; `sent` is the outbox's own.
EVENT_TYPES = ("delivered", "open", "click", "bounce", "complaint", "unsubscribe")
_MAILGUN_TYPES = {
    "delivered": "delivered",
    "opened": "open",
    "clicked": "click",
    "failed": "bounce",
    "complained": "complaint",
    "unsubscribed": "unsubscribe",
}
# raw.provider_events: what reaches the warehouse.
EVENT_COLUMNS = {
    "event_id": "VARCHAR",
    "customer_id": "VARCHAR",
    "event_type": "VARCHAR",
    "occurred_at": "TIMESTAMP",
    "message_id": "VARCHAR",
    "campaign": "VARCHAR",
}
_MAX_ID = 200


class BadSignature(Exception):
    """The request is not signed with EMAIL_WEBHOOK_SECRET (or no secret is set)."""


class BadPayload(ValueError):
    """The body is not an event of the shape its provider documents."""


@dataclass(frozen=True)
class ProviderEvent:
    provider: str
    event_id: str
    event_type: str
    message_id: str | None
    occurred_at: dt.datetime  # aware UTC
    hard_bounce: bool = False


@dataclass(frozen=True)
class Recorded:
    received: int
    new: int  # not seen before
    unmatched: int  # new, but no outbox row has the Message-ID
    suppressed: int  # customers this call suppressed


def parse(provider: str, body: bytes, signature: str | None, secret: str) -> list[ProviderEvent]:
    """The events of a verified request; BadSignature before anything is read otherwise."""
    if not secret:
        raise BadSignature("EMAIL_WEBHOOK_SECRET is not set: no event is accepted")
    if provider == GENERIC:
        _verify_generic(body, signature, secret)
        return _generic(_json(body))
    if provider == MAILGUN:
        document = _json(body)
        _verify_mailgun(document, secret)
        return [_mailgun(document)]
    raise BadPayload(f"provider must be one of {', '.join(PROVIDERS)}")


def sign(body: bytes, secret: str) -> str:
    """The generic shape's `X-Signature` value for `body` (what a sender computes)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def mailgun_signature(timestamp: str, token: str, secret: str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


def _verify_generic(body: bytes, signature: str | None, secret: str) -> None:
    if not signature or not hmac.compare_digest(signature.strip(), sign(body, secret)):
        raise BadSignature(f"{SIGNATURE_HEADER} is missing or does not match the body")


def _verify_mailgun(document: dict, secret: str) -> None:
    signed = document.get("signature")
    if not isinstance(signed, dict):
        raise BadSignature("the Mailgun payload carries no signature")
    parts = [str(signed.get(name) or "") for name in ("timestamp", "token", "signature")]
    expected = mailgun_signature(parts[0], parts[1], secret)
    if not all(parts) or not hmac.compare_digest(parts[2], expected):
        raise BadSignature("the Mailgun signature does not match its timestamp and token")


def _json(body: bytes):
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadPayload("the body is not UTF-8 JSON") from error


def _generic(document) -> list[ProviderEvent]:
    items = document.get("events") if isinstance(document, dict) else None
    if items is None and isinstance(document, dict):
        items = [document]
    if not isinstance(items, list) or not items:
        raise BadPayload("expected an event object or {'events': [...]} with at least one")
    events = []
    for item in items:
        if not isinstance(item, dict):
            raise BadPayload("every event must be a JSON object")
        event_type = item.get("event_type")
        if event_type not in EVENT_TYPES:
            raise BadPayload(f"event_type must be one of {', '.join(EVENT_TYPES)}")
        bounce_type = item.get("bounce_type", "hard")
        if bounce_type not in ("hard", "soft"):
            raise BadPayload("bounce_type must be hard or soft")
        events.append(
            ProviderEvent(
                GENERIC,
                _id(item.get("event_id"), "event_id"),
                event_type,
                _message_id(item.get("message_id")),
                _instant(item.get("occurred_at")),
                hard_bounce=event_type == "bounce" and bounce_type == "hard",
            )
        )
    return events


def _mailgun(document: dict) -> ProviderEvent:
    data = document.get("event-data")
    if not isinstance(data, dict):
        raise BadPayload("the Mailgun payload carries no event-data")
    event_type = _MAILGUN_TYPES.get(data.get("event"))
    if event_type is None:
        raise BadPayload(f"Mailgun event {data.get('event')!r} is not one this endpoint takes")
    headers = (data.get("message") or {}).get("headers") or {}
    timestamp = data.get("timestamp")
    if not isinstance(timestamp, int | float):
        raise BadPayload("event-data.timestamp must be seconds since the epoch")
    return ProviderEvent(
        MAILGUN,
        _id(data.get("id"), "event-data.id"),
        event_type,
        _message_id(headers.get("message-id")),
        dt.datetime.fromtimestamp(timestamp, dt.UTC),
        # Mailgun: severity=permanent is a message it gave up on (a hard bounce).
        hard_bounce=event_type == "bounce" and data.get("severity") == "permanent",
    )


def _id(value, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID:
        raise BadPayload(f"{name} must be a non-empty string of at most {_MAX_ID} characters")
    return value.strip()


def _message_id(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_ID:
        raise BadPayload(f"message_id must be a string of at most {_MAX_ID} characters")
    return value.strip().strip("<>") or None


def _instant(value) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(str(value))
    except ValueError as error:
        raise BadPayload("occurred_at must be an ISO 8601 timestamp") from error
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def record(store: OpsStore, events: Sequence[ProviderEvent]) -> Recorded:
    """Store the events not seen before, matched to the outbox by Message-ID, and suppress
    the customers of the new hard bounces, complaints and unsubscribes."""
    owners = _owners(store, {e.message_id for e in events if e.message_id})
    now = stored_now()
    rows = {}
    for event in events:
        # The outbox's own spelling of the Message-ID, so the warehouse joins on it.
        message_id, customer_id, campaign = owners.get(
            event.message_id, (event.message_id, None, None)
        )
        rows.setdefault(
            event.event_id,
            {
                "event_id": event.event_id,
                "provider": event.provider,
                "event_type": event.event_type,
                "message_id": message_id,
                "customer_id": customer_id,
                "campaign": campaign,
                "hard_bounce": event.hard_bounce,
                "occurred_at": to_db(event.occurred_at),
                "received_at": now,
            },
        )
    with store.begin() as conn:
        new = inserted_keys(conn, provider_events, list(rows.values()))
    fresh = [rows[event_id] for (event_id,) in new]
    suppressed = 0
    for row in fresh:
        stops = row["event_type"] != "bounce" or row["hard_bounce"]
        if row["customer_id"] and row["event_type"] in EVENT_REASONS and stops:
            reason = EVENT_REASONS[row["event_type"]]
            suppressed += suppress(store, row["customer_id"], reason, "webhook")
    unmatched = sum(1 for row in fresh if row["customer_id"] is None)
    return Recorded(len(events), len(fresh), unmatched, suppressed)


def _owners(store: OpsStore, message_ids: set[str]) -> dict[str, tuple[str, str, str]]:
    """Message-ID (without brackets) -> its outbox row's message_id, customer_id, campaign."""
    found = {}
    forms = [form for mid in message_ids for form in (mid, f"<{mid}>")]
    with store.begin() as conn:
        for chunk in chunked(forms):
            query = sa.select(outbox.c.message_id, outbox.c.customer_id, outbox.c.campaign).where(
                outbox.c.message_id.in_(chunk)
            )
            for message_id, customer_id, campaign in conn.execute(query):
                found[message_id.strip("<>")] = (message_id, customer_id, campaign)
    return found


def warehouse_events(store: OpsStore) -> pd.DataFrame:
    """The matched events for the warehouse (EVENT_COLUMNS); soft bounces left out."""
    query = (
        sa.select(
            provider_events.c.event_id,
            provider_events.c.customer_id,
            provider_events.c.event_type,
            provider_events.c.occurred_at,
            provider_events.c.message_id,
            provider_events.c.campaign,
        )
        .where(
            provider_events.c.customer_id.is_not(None),
            sa.or_(provider_events.c.event_type != "bounce", provider_events.c.hard_bounce),
        )
        .order_by(provider_events.c.occurred_at, provider_events.c.event_id)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
    events = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    events["occurred_at"] = pd.to_datetime(events["occurred_at"])
    return events
