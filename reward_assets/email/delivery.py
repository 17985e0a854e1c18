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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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
    kill_switch_on,
    status_in,
)
from reward_assets.email.suppression import suppressed_in
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
        rows = run.claim(int(min(config.batch_size, remaining)))
        if not rows:
            break
        remaining -= len(rows)
        try:
            keep_going = run.deliver(rows)
        except Exception:
            # A real error (not a simulated crash, which raises BaseException): record the
            # outcomes already known and give the untouched claims back now rather than
            # after their lease.
            run.flush()
            run.release([row.idempotency_key for row in rows])
            raise
        if not keep_going:
            break
    return run.report


class _Run:
    """One worker's delivery run.

    Per message one transaction records the previous message's outcome, checks the claim
    and the rules and marks the message `sending`: a single commit per email. The outcome
    of the last SMTP transaction waits for the next commit, so a crash in between leaves
    that one message `sending` (later `uncertain`), as a crash right after SMTP always did.
    """

    def __init__(self, store, mailer, config, clock, worker_id, hooks):
        self.store = store
        self.mailer = mailer
        self.config = config
        self.clock = clock
        self.worker = worker_id
        self.hooks = hooks
        self.report = DeliveryReport()
        self.lease = dt.timedelta(seconds=config.lease_seconds)
        # Outcomes of sent messages not committed yet, as their UPDATE statements.
        self.pending: list[sa.Update] = []

    def now(self) -> dt.datetime:
        return to_db(self.clock())

    def count(self, reason: str, rows: int = 1) -> None:
        self.report.by_reason[reason] = self.report.by_reason.get(reason, 0) + rows

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

    def _due(self, now: dt.datetime, *, by_key: bool = False) -> list:
        """The conditions of a due row; `by_key` for a statement that names its rows by key."""
        return [
            status_in([QUEUED]) if by_key else outbox.c.status == QUEUED,
            outbox.c.send_at <= now,
            sa.or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
            sa.or_(outbox.c.claimed_by.is_(None), outbox.c.lease_until < now),
        ]

    def claim(self, size: int) -> list:
        """Claim the `size` oldest due rows in one compare-and-set UPDATE; the claimed rows,
        oldest first."""
        now = self.now()
        oldest = (
            sa.select(outbox.c.idempotency_key)
            .where(*self._due(now))
            .order_by(outbox.c.send_at, outbox.c.idempotency_key)
            .limit(size)
        )
        # The due condition again, so a row another worker claimed meanwhile (PostgreSQL
        # re-reads a row it waited for) is left to it.
        statement = (
            sa.update(outbox)
            .where(outbox.c.idempotency_key.in_(oldest), *self._due(now, by_key=True))
            .values(claimed_by=self.worker, lease_until=now + self.lease, updated_at=now)
            .returning(*outbox.c)
        )
        with self.store.begin() as conn:
            rows = sorted(conn.execute(statement).all(), key=lambda r: (r.send_at, r[0]))
        if self.hooks.after_claim:
            for row in rows:
                self.hooks.after_claim(row.idempotency_key)
        return rows

    def _release(self, keys: Sequence[str], next_attempt_at: dt.datetime | None = None):
        """Give back claims this worker still holds on queued rows."""
        values = {"claimed_by": None, "lease_until": None, "updated_at": self.now()}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        return (
            sa.update(outbox)
            .where(
                outbox.c.idempotency_key.in_(list(keys)),
                outbox.c.claimed_by == self.worker,
                status_in([QUEUED]),
            )
            .values(**values)
        )

    def release(self, keys: Sequence[str], next_attempt_at: dt.datetime | None = None) -> int:
        with self.store.begin() as conn:
            return conn.execute(self._release(keys, next_attempt_at)).rowcount

    def _finish(self, key: str, statuses: Sequence[str], values: dict):
        """Compare-and-set on a row this worker holds, giving up its claim."""
        return (
            sa.update(outbox)
            .where(
                outbox.c.idempotency_key == key,
                outbox.c.claimed_by == self.worker,
                outbox.c.status.in_(list(statuses)),
            )
            .values(claimed_by=None, lease_until=None, updated_at=self.now(), **values)
        )

    def finish(self, key: str, statuses: Sequence[str], **values) -> None:
        """Record a sent message's outcome with the next commit (`flush`)."""
        self.pending.append(self._finish(key, statuses, values))

    @contextmanager
    def flushing(self) -> Iterator[Connection]:
        """A transaction that first records the pending outcomes; they stay pending unless
        it commits."""
        pending = list(self.pending)
        with self.store.begin() as conn:
            for statement in pending:
                conn.execute(statement)
            yield conn
        del self.pending[: len(pending)]

    def flush(self) -> None:
        if self.pending:
            with self.flushing():
                pass

    def defer_quiet(self, rows: list) -> list:
        """Release, in one transaction, the claimed rows whose customers are in quiet hours
        now, until those end; the rows that may go on. After an outage most of a backlog
        can sit in quiet hours, and one commit per row made deferring cost what sending
        did. Deferring sends nothing, so it may come before the other rules: those run
        when the row is due again (a suppressed customer's row is cancelled then)."""
        at = self.clock()
        start, end = self.config.policy.quiet_hours_start, self.config.policy.quiet_hours_end
        until = {zone: next_allowed(at, zone, start, end) for zone in {r.timezone for r in rows}}
        quiet: dict[dt.datetime, list[str]] = {}
        for row in rows:
            if until[row.timezone] != at:
                quiet.setdefault(until[row.timezone], []).append(row.idempotency_key)
        if not quiet:
            return rows
        with self.flushing() as conn:
            for when, keys in quiet.items():
                released = conn.execute(self._release(keys, to_db(when))).rowcount
                self.report.deferred += released
                self.count(QUIET_HOURS, released)
        return [row for row in rows if until[row.timezone] == at]

    def deliver(self, rows: list) -> bool:
        """Check and send the claimed rows; False when the connection is gone."""
        rows = self.defer_quiet(rows)
        with ExitStack() as stack:
            session: MailSession | None = None
            for index, row in enumerate(rows):
                try:
                    email = self.check(row, ready=session is not None)
                    if email is True:
                        # The session opens only once a message may go, and before any
                        # row is marked `sending`.
                        session = stack.enter_context(self.mailer.session())
                        email = self.check(row, ready=True)
                    if isinstance(email, EmailMessage):
                        self.send(session, row, email)
                except ConnectionLostError as error:
                    self.flush()
                    keys = [r.idempotency_key for r in rows[index:]]
                    untried = self.release(keys, self.now() + RETRY_BASE)
                    self.report.retried += untried
                    log.warning("mail server unavailable, %d message(s) wait: %s", untried, error)
                    return False
            # Before the session closes: the outcomes are known, whatever QUIT does.
            self.flush()
        return True

    def check(self, row, *, ready: bool) -> EmailMessage | bool:
        """In one transaction: the previous outcomes, then whether this worker still holds
        the row and the contact rules let it go now. False: it does not go now (released,
        deferred, cancelled or failed); True: it may, once a session is open (`ready`
        False); else the email, built and its row marked `sending`."""
        key = row.idempotency_key
        with self.flushing() as conn:
            mine = sa.select(outbox.c.attempts).where(
                outbox.c.idempotency_key == key,
                outbox.c.claimed_by == self.worker,
                outbox.c.status == QUEUED,
            )
            if conn.execute(mine).first() is None or not self.may_send(conn, row):
                return False
            if not ready:
                return True
            return self.mark_sending(conn, row)

    def may_send(self, conn: Connection, row) -> bool:
        """Apply the contact rules at send time; False when the row must not go now."""
        at = self.clock()
        policy = self.config.policy
        others = Outbox.marketing_sends(
            conn,
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
            suppressed=bool(suppressed_in(conn, [row.customer_id])),
            kill_switch=self.config.kill_switch_env or kill_switch_on(conn),
            other_sends=others.get(row.customer_id, []),
        )
        if reason is None:
            return True
        self.count(reason)
        key = row.idempotency_key
        if reason == KILL_SWITCH:
            conn.execute(self._release([key]))
        elif reason == QUIET_HOURS:
            start, end = policy.quiet_hours_start, policy.quiet_hours_end
            conn.execute(self._release([key], to_db(next_allowed(at, row.timezone, start, end))))
            self.report.deferred += 1
        else:
            cancel = self._finish(key, [QUEUED], {"status": CANCELLED, "reason": reason})
            self.report.cancelled += conn.execute(cancel).rowcount
        return False

    def mark_sending(self, conn: Connection, row) -> EmailMessage | bool:
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
            failed = {"status": FAILED, "reason": f"build_error: {error}"}
            conn.execute(self._finish(key, [QUEUED], failed))
            self.report.failed += 1
            self.count("build_error")
            return False
        statement = (
            sa.update(outbox)
            .where(
                outbox.c.idempotency_key == key,
                outbox.c.claimed_by == self.worker,
                outbox.c.status == QUEUED,
            )
            .values(
                status=SENDING,
                attempts=row.attempts + 1,
                message_id=message_id,
                lease_until=self.now() + self.lease,
                updated_at=self.now(),
            )
        )
        return email if conn.execute(statement).rowcount == 1 else False

    def send(self, session: MailSession, row, email: EmailMessage) -> None:
        key = row.idempotency_key
        config = self.config
        attempts = row.attempts + 1
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
