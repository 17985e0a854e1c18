"""Sending what the outbox holds, at most once per message, across crashes and workers.

A worker claims due rows with a compare-and-set UPDATE and a lease, so two workers never
hold the same row and a crashed worker's claim is taken over once its lease runs out. Each
row is checked against the contact rules again just before it goes, then marked `sending`
(with a fresh lease) right before the SMTP transaction. A `sending` row whose lease runs
out may or may not have reached the server: it becomes `uncertain` and waits for an
operator instead of risking a duplicate.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from reward_assets.contact.rules import (
    KILL_SWITCH,
    QUIET_HOURS,
    ContactPolicy,
    Recipient,
    blocking_reason,
)
from reward_assets.contact.timing import next_allowed
from reward_assets.email.mailer import (
    ConnectionLostError,
    MailSession,
    PermanentSendError,
    TransientSendError,
    build_email,
    message_id_for,
)
from reward_assets.email.outbox import (
    CANCELLED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    UNCERTAIN,
    Outbox,
    kill_switch_engaged,
)
from reward_assets.email.suppression import suppressed
from reward_assets.email.unsubscribe import make_token, signing_secret, unsubscribe_url
from reward_assets.ops.store import OpsStore, outbox, to_db

if TYPE_CHECKING:
    from reward_assets.email.mailer import EmlMailer, SmtpMailer
    from reward_assets.settings import Settings

log = logging.getLogger(__name__)

# Retry delays after transient failures: 1, 2, 4, ... minutes, at most an hour.
RETRY_BASE = dt.timedelta(minutes=1)
RETRY_MAX = dt.timedelta(hours=1)
# At send time only messages already on their way count against the frequency cap: queued
# ones were weighed when they were planned, and counting them here would cancel a message
# because of one planned after it.
_DEPARTED = (SENDING, SENT, UNCERTAIN)


@dataclass(frozen=True, kw_only=True)
class DeliveryConfig:
    policy: ContactPolicy
    lease_seconds: int = 300
    max_attempts: int = 5
    batch_size: int = 500
    from_address: str
    public_base_url: str
    unsubscribe_secret: str
    kill_switch_env: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        return cls(
            policy=ContactPolicy.from_settings(settings),
            lease_seconds=settings.send_lease_seconds,
            max_attempts=settings.send_max_attempts,
            from_address=settings.email_from,
            public_base_url=settings.public_base_url,
            # Refused when it is the public default and mail may leave the machine.
            unsubscribe_secret=signing_secret(settings),
            kill_switch_env=settings.kill_switch,
        )


@dataclass
class DeliveryHooks:
    """Called with the message key at the two points where a crash matters most."""

    after_claim: Callable[[str], None] | None = None
    after_smtp: Callable[[str], None] | None = None


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    deferred: int = 0
    retried: int = 0
    uncertain: int = 0
    # Why rows did not go this time: rule reasons (kill_switch, quiet_hours, suppressed,
    # ...) and, for failures, "permanent" or "max_attempts".
    by_reason: dict[str, int] = field(default_factory=dict)


def backoff(attempts: int) -> dt.timedelta:
    return min(RETRY_BASE * 2 ** max(attempts - 1, 0), RETRY_MAX)


def _wall_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def deliver_due(
    store: OpsStore,
    mailer: SmtpMailer | EmlMailer,
    config: DeliveryConfig,
    *,
    now: Callable[[], dt.datetime] | None = None,
    worker_id: str,
    hooks: DeliveryHooks | None = None,
    limit: int | None = None,
) -> DeliveryReport:
    """Send every due message (at most `limit`); `worker_id` must be unique per caller."""
    run = _Run(store, mailer, config, now or _wall_clock, worker_id, hooks or DeliveryHooks())
    run.report.uncertain = run.expire_leases()
    remaining = math.inf if limit is None else limit
    while remaining > 0 and not kill_switch_engaged(store, config.kill_switch_env):
        keys = run.claim(int(min(config.batch_size, remaining)))
        if not keys:
            break
        remaining -= len(keys)
        try:
            keep_going = run.deliver(keys)
        except Exception:
            # A real error (not a simulated crash, which raises BaseException): give the
            # untouched claims back now rather than after their lease.
            run.release(keys)
            raise
        if not keep_going:
            break
    return run.report


class _Run:
    def __init__(self, store, mailer, config, clock, worker_id, hooks):
        self.store = store
        self.mailer = mailer
        self.config = config
        self.clock = clock
        self.worker = worker_id
        self.hooks = hooks
        self.outbox = Outbox(store)
        self.report = DeliveryReport()
        self.lease = dt.timedelta(seconds=config.lease_seconds)

    def now(self) -> dt.datetime:
        return to_db(self.clock())

    def update(self, key: str, where: Sequence, **values) -> bool:
        """Compare-and-set on one row: True when this worker's condition still held."""
        statement = (
            sa.update(outbox)
            .where(outbox.c.idempotency_key == key, *where)
            .values(updated_at=self.now(), **values)
        )
        with self.store.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def count(self, reason: str) -> None:
        self.report.by_reason[reason] = self.report.by_reason.get(reason, 0) + 1

    def expire_leases(self) -> int:
        now = self.now()
        statement = (
            sa.update(outbox)
            .where(outbox.c.status == SENDING, outbox.c.lease_until < now)
            .values(status=UNCERTAIN, updated_at=now)
            .returning(outbox.c.idempotency_key)
        )
        with self.store.begin() as conn:
            keys = conn.execute(statement).scalars().all()
        if keys:
            log.warning("%d message(s) became uncertain: %s", len(keys), ", ".join(keys))
        return len(keys)

    def _due(self, now: dt.datetime) -> list:
        return [
            outbox.c.status == QUEUED,
            outbox.c.send_at <= now,
            sa.or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
            sa.or_(outbox.c.claimed_by.is_(None), outbox.c.lease_until < now),
        ]

    def claim(self, size: int) -> list[str]:
        now = self.now()
        query = (
            sa.select(outbox.c.idempotency_key)
            .where(*self._due(now))
            .order_by(outbox.c.send_at, outbox.c.idempotency_key)
            .limit(size)
        )
        with self.store.begin() as conn:
            candidates = conn.execute(query).scalars().all()
        claimed = []
        for key in candidates:
            # The due condition again, so a row another worker claimed meanwhile is skipped.
            if self.update(
                key, self._due(now), claimed_by=self.worker, lease_until=now + self.lease
            ):
                claimed.append(key)
                if self.hooks.after_claim:
                    self.hooks.after_claim(key)
        return claimed

    def release(self, keys: Sequence[str], next_attempt_at: dt.datetime | None = None) -> int:
        """Give back claims this worker still holds on queued rows."""
        values = {"claimed_by": None, "lease_until": None, "updated_at": self.now()}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        statement = (
            sa.update(outbox)
            .where(
                outbox.c.idempotency_key.in_(list(keys)),
                outbox.c.claimed_by == self.worker,
                outbox.c.status == QUEUED,
            )
            .values(**values)
        )
        with self.store.begin() as conn:
            return conn.execute(statement).rowcount

    def mine(self, key: str):
        query = sa.select(outbox).where(
            outbox.c.idempotency_key == key,
            outbox.c.claimed_by == self.worker,
            outbox.c.status == QUEUED,
        )
        with self.store.begin() as conn:
            return conn.execute(query).first()

    def deliver(self, keys: list[str]) -> bool:
        """Check and send the claimed rows; False when the connection is gone."""
        with ExitStack() as stack:
            session: MailSession | None = None
            for index, key in enumerate(keys):
                row = self.mine(key)
                if row is None or not self.may_send(row):
                    continue
                try:
                    if session is None:
                        session = stack.enter_context(self.mailer.session())
                    self.send(session, row)
                except ConnectionLostError as error:
                    untried = self.release(keys[index:], self.now() + RETRY_BASE)
                    self.report.retried += untried
                    log.warning("mail server unavailable, %d message(s) wait: %s", untried, error)
                    return False
        return True

    def may_send(self, row) -> bool:
        """Apply the contact rules at send time; False when the row must not go now."""
        at = self.clock()
        policy = self.config.policy
        others = self.outbox.other_marketing_sends(
            [row.customer_id],
            *policy.cap_window(at),
            statuses=_DEPARTED,
            exclude_keys=[row.idempotency_key],
        )
        reason = blocking_reason(
            policy,
            # Consent was checked when the message was planned.
            Recipient(row.customer_id, row.timezone, marketing_opt_in=True),
            row.campaign,
            at,
            suppressed=bool(suppressed(self.store, [row.customer_id])),
            kill_switch=kill_switch_engaged(self.store, self.config.kill_switch_env),
            other_sends=others.get(row.customer_id, []),
        )
        if reason is None:
            return True
        self.count(reason)
        key = row.idempotency_key
        if reason == KILL_SWITCH:
            self.release([key])
        elif reason == QUIET_HOURS:
            start, end = policy.quiet_hours_start, policy.quiet_hours_end
            self.release([key], to_db(next_allowed(at, row.timezone, start, end)))
            self.report.deferred += 1
        elif self.finish(key, [QUEUED], status=CANCELLED, reason=reason):
            self.report.cancelled += 1
        return False

    def finish(self, key: str, statuses: Sequence[str], **values) -> bool:
        mine = [outbox.c.claimed_by == self.worker, outbox.c.status.in_(list(statuses))]
        return self.update(key, mine, claimed_by=None, lease_until=None, **values)

    def send(self, session: MailSession, row) -> None:
        key = row.idempotency_key
        config = self.config
        token = make_token(row.customer_id, config.unsubscribe_secret, self.clock().date())
        message_id = message_id_for(key, config.from_address)
        try:
            email = build_email(
                row,
                from_address=config.from_address,
                unsubscribe_url=unsubscribe_url(config.public_base_url, token),
                message_id=message_id,
                date=self.clock(),
            )
        except ValueError as error:
            # A row that cannot become an email fails alone instead of blocking the queue.
            self.finish(key, [QUEUED], status=FAILED, reason=f"build_error: {error}")
            self.report.failed += 1
            self.count("build_error")
            return
        attempts = row.attempts + 1
        if not self.update(
            key,
            [outbox.c.claimed_by == self.worker, outbox.c.status == QUEUED],
            status=SENDING,
            attempts=attempts,
            message_id=message_id,
            lease_until=self.now() + self.lease,
        ):
            return
        # Our own lease may have run out while the server answered: the outcome is known
        # now, so it overrides `uncertain`.
        ours = [SENDING, UNCERTAIN]
        try:
            reply = session.send(email)
        except ConnectionLostError as error:
            # Nothing reached the server: an outage, not this message's fault, so it uses
            # up no attempt.
            retry_at = self.now() + backoff(1)
            self.finish(
                key,
                ours,
                status=QUEUED,
                attempts=row.attempts,
                next_attempt_at=retry_at,
                reason=str(error),
            )
            self.report.retried += 1
            raise
        except TransientSendError as error:
            if attempts >= config.max_attempts:
                self.finish(key, ours, status=FAILED, reason=f"max_attempts: {error}")
                self.report.failed += 1
                self.count("max_attempts")
            else:
                retry_at = self.now() + backoff(attempts)
                self.finish(key, ours, status=QUEUED, next_attempt_at=retry_at, reason=str(error))
                self.report.retried += 1
            return
        except PermanentSendError as error:
            self.finish(key, ours, status=FAILED, reason=error.reason)
            self.report.failed += 1
            self.count("permanent")
            return
        if self.hooks.after_smtp:
            self.hooks.after_smtp(key)
        self.finish(key, ours, status=SENT, sent_at=self.now(), smtp_response=reply, reason=None)
        self.report.sent += 1
