"""The API's Idempotency-Key claims on a real operational store, SQLite and PostgreSQL:
conflicts, the take-over of a dead request's claim, and expiry after the TTL."""

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from reward_assets.api.idempotency import (
    CLAIM_SECONDS,
    IdempotencyKeys,
    KeyReused,
    StillRunning,
    Stored,
    fingerprint,
)
from reward_assets.ops.store import api_idempotency, stored_now

TTL = dt.timedelta(hours=24)
FIRST = fingerprint("POST", "/api/customers/c1/engagement", {"engagement_type": "email"})
OTHER = fingerprint("POST", "/api/customers/c2/engagement", {"engagement_type": "email"})


def age(ops_store, key: str, by: dt.timedelta) -> None:
    """Move the key's claim `by` into the past, as if it was made that long ago."""
    with ops_store.begin() as conn:
        conn.execute(
            sa.update(api_idempotency)
            .where(api_idempotency.c.key == key)
            .values(created_at=stored_now() - by)
        )


def stored(ops_store) -> dict[str, tuple]:
    with ops_store.begin() as conn:
        rows = conn.execute(sa.select(api_idempotency))
        return {row.key: (row.fingerprint, row.status_code, row.response) for row in rows}


def test_claims_conflict_while_running_and_are_taken_over_when_stale(ops_store):
    keys = IdempotencyKeys(ops_store, TTL)

    assert keys.claim("k", FIRST) is None
    with pytest.raises(StillRunning):
        keys.claim("k", FIRST)
    with pytest.raises(KeyReused):
        keys.claim("k", OTHER)

    age(ops_store, "k", dt.timedelta(seconds=CLAIM_SECONDS + 1))
    assert keys.claim("k", FIRST) is None  # the crashed request's claim is taken over
    with pytest.raises(StillRunning):
        keys.claim("k", FIRST)

    keys.finish("k", 200, {"queued": True})
    keys.release("k")  # a finished answer is kept
    assert keys.claim("k", FIRST) == Stored(200, {"queued": True})


def test_an_expired_key_runs_again_and_stores_the_new_answer(ops_store):
    keys = IdempotencyKeys(ops_store, TTL)
    for key in ("fresh", "expired", "reused"):
        assert keys.claim(key, FIRST) is None
        keys.finish(key, 200, {"run": 1})
    age(ops_store, "fresh", TTL - dt.timedelta(minutes=1))
    age(ops_store, "expired", TTL + dt.timedelta(seconds=1))
    age(ops_store, "reused", TTL + dt.timedelta(seconds=1))

    assert keys.claim("fresh", FIRST) == Stored(200, {"run": 1})
    assert keys.claim("expired", FIRST) is None
    keys.finish("expired", 201, {"run": 2})
    assert keys.claim("expired", FIRST) == Stored(201, {"run": 2})
    # A different request under an expired key is a new request, not a 409.
    assert keys.claim("reused", OTHER) is None
    keys.finish("reused", 200, {"run": 3})

    assert stored(ops_store) == {
        "fresh": (FIRST, 200, {"run": 1}),
        "expired": (FIRST, 201, {"run": 2}),
        "reused": (OTHER, 200, {"run": 3}),
    }


def test_a_purge_deletes_only_the_expired_rows(ops_store):
    keys = IdempotencyKeys(ops_store, TTL)
    for key in ("old-answer", "old-claim", "young-answer", "young-claim", "running"):
        assert keys.claim(key, FIRST) is None
    for key in ("old-answer", "young-answer"):
        keys.finish(key, 200, {"key": key})
    age(ops_store, "old-answer", TTL + dt.timedelta(seconds=1))
    age(ops_store, "old-claim", TTL + dt.timedelta(seconds=1))  # its process died long ago
    age(ops_store, "young-answer", TTL - dt.timedelta(minutes=1))
    age(ops_store, "young-claim", TTL - dt.timedelta(minutes=1))  # stale, but not expired

    assert keys.claim("another", FIRST) is None  # within PURGE_SECONDS of the first purge
    assert len(stored(ops_store)) == 6
    # A new process purges as it claims its first key.
    assert IdempotencyKeys(ops_store, TTL).claim("a third", FIRST) is None

    assert stored(ops_store) == {
        "young-answer": (FIRST, 200, {"key": "young-answer"}),
        "young-claim": (FIRST, None, None),
        "running": (FIRST, None, None),
        "another": (FIRST, None, None),
        "a third": (FIRST, None, None),
    }


def test_concurrent_requests_with_an_expired_key_run_it_once(ops_store):
    keys = IdempotencyKeys(ops_store, TTL)
    assert keys.claim("k", FIRST) is None
    keys.finish("k", 200, {"run": 1})
    age(ops_store, "k", TTL + dt.timedelta(seconds=1))
    start = threading.Barrier(4)

    def claim(_):
        start.wait()  # all four claim at once
        try:
            return keys.claim("k", FIRST)
        except StillRunning as error:
            return error

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(claim, range(4)))

    assert sorted(type(r).__name__ for r in results) == ["NoneType"] + ["StillRunning"] * 3
    assert stored(ops_store) == {"k": (FIRST, None, None)}


def test_the_ttl_outlasts_a_running_claim(ops_store):
    with pytest.raises(ValueError, match="longer than"):
        IdempotencyKeys(ops_store, dt.timedelta(seconds=CLAIM_SECONDS))
