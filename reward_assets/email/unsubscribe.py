"""Signed one-click unsubscribe links: the token carries the customer id and an HMAC, so
the API can honour it without a lookup table and nobody can unsubscribe someone else."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

# Binds the signature to this use, so the same secret can sign other things safely.
_PURPOSE = b"unsubscribe:"


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(customer_id: str, secret: str) -> bytes:
    if not secret:
        raise ValueError("the unsubscribe secret is empty")
    return hmac.new(secret.encode(), _PURPOSE + customer_id.encode(), hashlib.sha256).digest()


def make_token(customer_id: str, secret: str) -> str:
    return f"{_encode(customer_id.encode())}.{_encode(_signature(customer_id, secret))}"


def read_token(token: str, secret: str) -> str | None:
    """The customer id of a genuine token, else None."""
    payload, dot, signature = token.partition(".")
    if not dot:
        return None
    try:
        customer_id = _decode(payload).decode()
        given = _decode(signature)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _signature(customer_id, secret)):
        return None
    return customer_id


def unsubscribe_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/api/unsubscribe?token={token}"
