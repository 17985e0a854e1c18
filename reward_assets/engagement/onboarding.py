"""Which welcomes to request: the onboarding sensor's policy, one tick at a time.

A tick scans the customer landing files for sign-ups new since the cursor
(`ingest.signups`) and asks for a run per batch of customers whose welcome is neither
decided (in the outbox) nor requested already. A requested welcome stays pending in the
cursor until the outbox has its decision; a run that failed before deciding spent its run
key, so after ONBOARDING_RETRY_MINUTES its customers are requested again under a key of
their own, up to ONBOARDING_MAX_ATTEMPTS runs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from reward_assets.email.outbox import Outbox
from reward_assets.engagement.welcome import welcome_key
from reward_assets.ingest.signups import (
    SignupCursor,
    SignupScan,
    batch_run_key,
    batches,
    scan_signups,
)
from reward_assets.ops.store import OpsStore
from reward_assets.settings import Settings


@dataclass(frozen=True)
class WelcomeBatch:
    customer_ids: list[str]
    attempt: int  # 1 for the first request

    @property
    def run_key(self) -> str:
        return batch_run_key(self.customer_ids, self.attempt)


@dataclass(frozen=True)
class OnboardingTick:
    scan: SignupScan
    batches: list[WelcomeBatch]
    new: int  # customers requested for the first time
    retried: int
    given_up: dict[str, int]  # customer -> runs requested, none of which decided
    skip_reason: str | None  # why nothing is requested, when nothing is

    @property
    def cursor(self) -> SignupCursor:
        return self.scan.cursor


def onboarding_tick(
    store: OpsStore, settings: Settings, cursor: str | None, now: dt.datetime
) -> OnboardingTick:
    """The welcome runs to request now, given the sensor's last `cursor`; the tick's own
    cursor records them as pending."""
    scan = scan_signups(
        settings.data_dir, SignupCursor.parse(cursor), settings.as_of, settings.welcome_max_age_days
    )
    pending = scan.cursor.pending
    decided = Outbox(store).existing([welcome_key(c) for c in [*scan.recent.customer_id, *pending]])
    for customer_id in [c for c in pending if welcome_key(c) in decided]:
        del pending[customer_id]
    # A run that failed before deciding (its key is spent) must not cost the welcome.
    retry_after = dt.timedelta(minutes=settings.onboarding_retry_minutes)
    retries: dict[int, list[str]] = {}
    given_up: dict[str, int] = {}
    for customer_id, (requested, attempt) in list(pending.items()):
        if now - dt.datetime.fromisoformat(requested) < retry_after:
            continue
        if attempt >= settings.onboarding_max_attempts:
            given_up[customer_id] = attempt
            del pending[customer_id]
            continue
        retries.setdefault(attempt + 1, []).append(customer_id)
    new = [c for c in scan.recent.customer_id if welcome_key(c) not in decided and c not in pending]
    requested = []
    for attempt, ids in [(1, new), *sorted(retries.items())]:
        for batch in batches(ids, settings.onboarding_batch_size):
            requested.append(WelcomeBatch(batch, attempt))
            pending.update({c: [now.isoformat(), attempt] for c in batch})
    retried = sum(map(len, retries.values()))
    return OnboardingTick(
        scan, requested, len(new), retried, given_up, _skip_reason(scan, settings, requested)
    )


def _skip_reason(scan: SignupScan, settings: Settings, requested: list[WelcomeBatch]) -> str | None:
    if requested:
        return None
    if not scan.changed_files:
        return f"no new or changed customer files in {settings.data_dir}/"
    return (
        f"{scan.rows_read} customers in {len(scan.changed_files)} new or changed "
        f"file(s), none signed up within {settings.welcome_max_age_days} days of "
        f"{scan.as_of} without a welcome decision"
    )
