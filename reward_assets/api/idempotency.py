"""The Idempotency-Key header of POST requests, kept in the operational store.

The first request with a key claims it, runs, and stores its status and body; a retry
with the same key and the same request gets that stored answer without anything running
again. The same key with a different request, or a retry while the first still runs, is
a conflict (409; the IETF draft suggests 422 for the first, but a request valid by the
schema should not get a validation error).
A claim whose request died (a crashed process) may be taken over after CLAIM_SECONDS.
A key expires `ttl` after its claim (IDEMPOTENCY_TTL_HOURS): a request with it is then
a new claim, and expired rows are deleted so the table stays bounded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from reward_assets.ops.store import OpsStore, api_idempotency, insert_missing, stored_now

# Longer than any request runs (the LLM's timeout included).
CLAIM_SECONDS = 300
PURGE_SECONDS = 60


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
    def __init__(self, store: OpsStore, ttl: dt.timedelta):
        # Longer than a claim can run, so expiry never takes a key from a running request.
        if ttl <= dt.timedelta(seconds=CLAIM_SECONDS):
            raise ValueError(f"the TTL must be longer than {CLAIM_SECONDS} s")
        self.store = store
        self.ttl = ttl
        self._purged_at: float | None = None  # time.monotonic() of this process's last purge

    def claim(self, key: str, request_fingerprint: str) -> Stored | None:
        """None when this request now owns the key (then `finish` or `release` it), else the
        stored answer to replay."""
        now = stored_now()
        expired = now - self.ttl
        self._purge(expired)
        row = {"key": key, "fingerprint": request_fingerprint, "created_at": now}
        with self.store.begin() as conn:
            if insert_missing(conn, api_idempotency, [row]):
                return None
            # An expired row is claimed anew in place, whatever request it answered; a
            # concurrent claim of the key waits for this update (SQLite's write lock,
            # PostgreSQL's row lock) and then finds the new claim, never the old answer.
            # Here rather than a delete before the insert, so a new key costs nothing more.
            renewed = conn.execute(
                sa.update(api_idempotency)
                .where(api_idempotency.c.key == key, api_idempotency.c.created_at < expired)
                .values(**row, status_code=None, response=sa.null(), completed_at=None)
            ).rowcount
            if renewed:
                return None
            found = conn.execute(
                sa.select(
                    api_idempotency.c.fingerprint,
                    api_idempotency.c.status_code,
                    api_idempotency.c.response,
                ).where(api_idempotency.c.key == key)
            ).one_or_none()
            if found is None:  # released or purged since the insert: a retry will claim it
                raise StillRunning()
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

    def _purge(self, expired: dt.datetime) -> None:
        """Delete every row claimed before `expired`, at most once per PURGE_SECONDS in this
        process, so the table holds about a TTL of keys: created_at has no index, so the
        delete reads the whole table, which each claim need not pay for."""
        clock = time.monotonic()
        if self._purged_at is not None and clock - self._purged_at < PURGE_SECONDS:
            return
        self._purged_at = clock
        with self.store.begin() as conn:
            conn.execute(sa.delete(api_idempotency).where(api_idempotency.c.created_at < expired))

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
