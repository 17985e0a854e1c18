"""Signed one-click unsubscribe links: the token carries the customer id, the day it was
issued and an HMAC, so the API can honour it without a lookup table and nobody can
unsubscribe someone else.

A link works for UNSUBSCRIBE_LINK_DAYS after it was issued, or after the last email that
carried it was sent, whichever is later (`honoured`): a link in a message that waited in
the queue still works as long after it arrived. Links from before links carried a date
(two parts instead of three) work by the second rule only: while an email that carried
that very link was sent within UNSUBSCRIBE_LINK_DAYS.

The default secret is public (it is in the repository), so anyone could forge links
with it: it is accepted only in the embedded demo (`embedded_demo`), where no email leaves
the machine.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from reward_assets.email.outbox import Outbox
from reward_assets.settings import Settings

if TYPE_CHECKING:
    from reward_assets.ops.store import OpsStore

DEFAULT_SECRET = Settings.model_fields["unsubscribe_secret"].default
# Bind the signature to this use (and format), so the same secret can sign other things.
_PURPOSE = b"unsubscribe:"
_DATED_PURPOSE = b"unsubscribe-dated:"
_EPOCH = dt.date(1970, 1, 1)
_LAST_DAY = (dt.date.max - _EPOCH).days


class UnsafeSecret(RuntimeError):
    def __init__(self):
        super().__init__(
            f"UNSUBSCRIBE_SECRET is the public default {DEFAULT_SECRET!r}: anyone could forge "
            "unsubscribe links with it. Set a long random value (e.g. `openssl rand -hex 32`) "
            "in the environment or .env; the default is accepted only in the embedded demo "
            "(DuckDB warehouse, SQLite operational store, no SMTP_HOST)"
        )


def embedded_demo(settings: Settings) -> bool:
    """Both stores on their embedded engines (the DuckDB warehouse, the SQLite operational
    store) and no SMTP_HOST, so every email is an .eml file on this machine: `make run`
    on a fresh clone."""
    return (
        settings.resolved_warehouse_url().startswith("duckdb")
        and settings.resolved_ops_db_url().startswith("sqlite")
        and not settings.smtp_host
    )


def signing_secret(settings: Settings) -> str:
    """UNSUBSCRIBE_SECRET, refused (`UnsafeSecret`) when it is the default outside the
    embedded demo. Whatever signs or reads links asks here first."""
    if settings.unsubscribe_secret == DEFAULT_SECRET and not embedded_demo(settings):
        raise UnsafeSecret()
    return settings.unsubscribe_secret


@dataclass(frozen=True)
class Link:
    customer_id: str
    issued: dt.date | None  # None: a link from before links carried a date


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(message: bytes, secret: str) -> bytes:
    if not secret:
        raise ValueError("the unsubscribe secret is empty")
    mac = _keyed(secret).copy()
    mac.update(message)
    return mac.digest()


@lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """The HMAC keyed with `secret`, which `_mac` copies: the cycle signs 100k+ links a
    run, and keying costs as much as signing."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def _signature(customer_id: str, day: int | None, secret: str) -> bytes:
    if day is None:
        return _mac(_PURPOSE + customer_id.encode(), secret)
    return _mac(_DATED_PURPOSE + f"{day}:".encode() + customer_id.encode(), secret)


def make_token(customer_id: str, secret: str, issued: dt.date | None = None) -> str:
    """`<customer id>.<day issued>.<signature>`; issued defaults to today (UTC)."""
    day = ((issued or dt.datetime.now(dt.UTC).date()) - _EPOCH).days
    signature = _encode(_signature(customer_id, day, secret))
    return f"{_encode(customer_id.encode())}.{day}.{signature}"


def read_token(token: str, secret: str) -> Link | None:
    """What a genuine token says, else None (malformed, or not signed with `secret`)."""
    parts = token.split(".")
    if len(parts) == 2:
        (payload, signature), day = parts, None
    elif len(parts) == 3 and re.fullmatch("[0-9]{1,7}", parts[1]) and int(parts[1]) <= _LAST_DAY:
        payload, signature, day = parts[0], parts[2], int(parts[1])
    else:
        return None
    try:
        customer_id = _decode(payload).decode()
        given = _decode(signature)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _signature(customer_id, day, secret)):
        return None
    return Link(customer_id, None if day is None else _EPOCH + dt.timedelta(days=day))


def honoured(store: OpsStore, token: str, link: Link, days: int, now: dt.datetime) -> bool:
    """Whether a genuine link still works (see the module's docstring)."""
    if link.issued is not None and (now.date() - link.issued).days <= days:
        return True
    since = now - dt.timedelta(days=days)
    return Outbox(store).sent_carrying(link.customer_id, token, since)


def unsubscribe_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/api/unsubscribe?token={token}"
