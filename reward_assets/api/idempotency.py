"""The Idempotency-Key header of POST requests, kept in the operational store.

The first request with a key claims it, runs, and stores its status and body; a retry
with the same key and the same request gets that stored answer without anything running
again. The same key with a different request, or a retry while the first still runs, is
a conflict (409; the IETF draft suggests 422 for the first, but a request valid by the
schema should not get a validation error).
A claim whose request died (a crashed process) may be taken over after CLAIM_SECONDS.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from reward_assets.ops.store import OpsStore, api_idempotency, insert_missing, stored_now

# Longer than any request runs (the LLM's timeout included).
CLAIM_SECONDS = 300


class KeyReused(ValueError):
    def __init__(self):
        super().__init__("this Idempotency-Key was used with a different request")


class StillRunning(RuntimeError):
    def __init__(self):
        super().__init__("a request with this Idempotency-Key is still being processed")


@dataclass(frozen=True)
class Stored:
    status_code: int
    body: Any


def fingerprint(method: str, path: str, body: Any) -> str:
    """The request's identity: method, path and the body as parsed, not as spelled."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeys:
    def __init__(self, store: OpsStore):
        self.store = store

    def claim(self, key: str, request_fingerprint: str) -> Stored | None:
        """None when this request now owns the key (then `finish` or `release` it), else the
        stored answer to replay."""
        now = stored_now()
        row = {"key": key, "fingerprint": request_fingerprint, "created_at": now}
        with self.store.begin() as conn:
            if insert_missing(conn, api_idempotency, [row]):
                return None
            found = conn.execute(
                sa.select(
                    api_idempotency.c.fingerprint,
                    api_idempotency.c.status_code,
                    api_idempotency.c.response,
                ).where(api_idempotency.c.key == key)
            ).one()
            if found.fingerprint != request_fingerprint:
                raise KeyReused()
            if found.status_code is not None:
                return Stored(found.status_code, found.response)
            taken_over = conn.execute(
                sa.update(api_idempotency)
                .where(
                    api_idempotency.c.key == key,
                    api_idempotency.c.status_code.is_(None),
                    api_idempotency.c.created_at < now - dt.timedelta(seconds=CLAIM_SECONDS),
                )
                .values(created_at=now)
            ).rowcount
        if taken_over != 1:
            raise StillRunning()
        return None

    def finish(self, key: str, status_code: int, body: Any) -> None:
        with self.store.begin() as conn:
            conn.execute(
                sa.update(api_idempotency)
                .where(api_idempotency.c.key == key)
                .values(status_code=status_code, response=body, completed_at=stored_now())
            )

    def release(self, key: str) -> None:
        """Forget a claim whose request failed, so a retry runs it again."""
        with self.store.begin() as conn:
            conn.execute(
                sa.delete(api_idempotency).where(
                    api_idempotency.c.key == key, api_idempotency.c.status_code.is_(None)
                )
            )
