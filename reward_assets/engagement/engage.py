"""One customer's engagement on request (the HTTP API): the batch's path, for one customer.

The same decisions (`engagement.decisions`), first rewards (`engagement.welcome`) and
writing and queueing (`engagement.messages`) as onboarding and the engagement cycle, and
the same message keys: a welcome's is the onboarding sensor's, a segment campaign's is the
cycle's for the as-of day. So a request and the batch can never both send a message, and
a repeated request finds the decision already made.

Two things differ from the batch, both because a caller waits for the answer: an engaged
kill switch returns `kill_switch` without recording anything (the batch queues and lets
delivery hold the mail), and a sign-up older than WELCOME_MAX_AGE_DAYS gets no welcome
(`not_recent_signup`), the window the onboarding sensor applies when it picks customers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import sqlalchemy as sa

from reward_assets.contact.campaigns import STAGE_CAMPAIGNS, WELCOME, occurrence
from reward_assets.contact.rules import FREQUENCY_CAP, KILL_SWITCH, QUIET_HOURS, ContactPolicy
from reward_assets.email.outbox import QUEUED, SKIPPED, kill_switch_engaged, message_key
from reward_assets.engagement.decisions import decide_day, decide_welcomes
from reward_assets.engagement.messages import (
    OFFERS_PER_EMAIL,
    data_lineage,
    welcome_lineage,
    write_and_queue,
)
from reward_assets.engagement.welcome import welcome_offers
from reward_assets.ops.store import OpsStore, from_db, outbox
from reward_assets.recommend.inputs import reward_catalog
from reward_assets.settings import Settings

ALREADY_DECIDED = "already_decided"
NOT_RECENT_SIGNUP = "not_recent_signup"
# What the path reads: the served tables of a finished run.
TABLES = (
    "marts.dim_customers",
    "marts.dim_rewards",
    "marts.fct_redemptions",
    "ml.customer_segments",
    "ml.churn_scores",
    "ml.send_time_preferences",
    "ml.recommendation_sets",
)


class Reader(Protocol):
    def frame(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame: ...


class CustomerNotFound(LookupError):
    def __init__(self, customer_id: str):
        super().__init__(
            f"no customer with id {customer_id!r} in the warehouse (new sign-ups arrive with "
            "the next load; the onboarding sensor welcomes them from the landing files)"
        )


@dataclass(frozen=True)
class Outcome:
    customer_id: str
    campaign: str
    message_key: str
    queued: bool
    reason: str | None = None  # why nothing was queued by this request
    status: str | None = None  # the outbox row's status, when there is one
    send_at: dt.datetime | None = None  # aware UTC
    reward_ids: tuple[str, ...] = ()
    content_source: str | None = None
    deferred_for: str | None = None  # quiet_hours: the send waits for them to end


_PROFILE = """
SELECT c.customer_id, c.email, c.first_name, c.tier, c.points_balance, c.timezone,
       c.marketing_opt_in, c.preferred_categories, c.signup_at, s.segment, p.best_local_hour
FROM marts.dim_customers c
LEFT JOIN ml.customer_segments s ON s.customer_id = c.customer_id
LEFT JOIN ml.send_time_preferences p ON p.customer_id = c.customer_id
WHERE c.customer_id = :customer_id
"""


def engage(
    reader: Reader,
    store: OpsStore,
    settings: Settings,
    customer_id: str,
    journey_stage: str | None,
    *,
    as_of: dt.date,
    now: dt.datetime,
    current_offers: Callable[[str, int], pd.DataFrame],
) -> Outcome:
    """Decide, write and queue one email for the customer, or say why there is none.

    journey_stage: a key of `contact.campaigns.STAGE_CAMPAIGNS`, or None for the campaign
    of the customer's segment.
    current_offers(customer_id, n): the customer's eligible recommended rewards now.
    """
    profile = reader.frame(_PROFILE, {"customer_id": customer_id})
    if profile.empty:
        raise CustomerNotFound(customer_id)
    row = profile.iloc[0]
    campaign = STAGE_CAMPAIGNS[journey_stage or _segment(row["segment"])]
    occurs = occurrence(campaign, as_of)
    key = message_key(customer_id, campaign, occurs)
    existing = _outbox_row(store, key)
    if existing is not None:
        return _decided(existing, customer_id, campaign, key)
    if kill_switch_engaged(store, settings.kill_switch):
        return Outcome(customer_id, campaign, key, queued=False, reason=KILL_SWITCH)

    policy = ContactPolicy.from_settings(settings)
    offers = pd.DataFrame()  # read only for a decision to contact
    if campaign == WELCOME:
        signed_up = pd.Timestamp(row["signup_at"]).date()
        if (as_of - signed_up).days > settings.welcome_max_age_days:
            return Outcome(customer_id, campaign, key, queued=False, reason=NOT_RECENT_SIGNUP)
        [decision] = decide_welcomes(store, profile, policy, now)
        lineage = {}
        if decision.reason is None:
            rewards = reward_catalog(reader, as_of)
            offers, version = welcome_offers(store, settings, profile, rewards, as_of)
            lineage = welcome_lineage([customer_id], as_of, version)
    else:
        candidate = profile.assign(campaign=campaign, occurrence=occurs)
        [decision] = decide_day(store, candidate, policy, as_of)
        lineage = {}
        if decision.reason is None:
            offers = current_offers(customer_id, OFFERS_PER_EMAIL)
            where = "WHERE c.customer_id = :customer_id"
            lineage = data_lineage(reader, as_of, where, {"customer_id": customer_id})

    result = write_and_queue(store, [decision], profile, offers, settings, lineage=lineage)
    if not result.queued and not result.skipped:
        # A concurrent request or run decided the same message first.
        return _decided(_outbox_row(store, key), customer_id, campaign, key)
    # Capped: a concurrent request or run took the customer's last place under the cap.
    reason = FREQUENCY_CAP if key in result.capped else decision.reason
    if reason:
        return Outcome(
            customer_id,
            campaign,
            key,
            queued=False,
            reason=reason,
            status=SKIPPED,
            send_at=decision.send_at,
        )
    [message] = result.messages
    return Outcome(
        customer_id,
        campaign,
        key,
        queued=True,
        status=QUEUED,
        send_at=message.send_at,
        reward_ids=message.reward_ids,
        content_source=message.content_source,
        # A welcome goes now unless quiet hours move it; a campaign has its best hour.
        deferred_for=QUIET_HOURS if campaign == WELCOME and message.send_at > now else None,
    )


def _segment(segment: Any) -> str:
    """The stage a customer's segment stands for; no segment yet means new."""
    return "new" if segment is None or pd.isna(segment) else str(segment)


def _outbox_row(store: OpsStore, key: str) -> sa.Row | None:
    query = sa.select(
        outbox.c.status,
        outbox.c.reason,
        outbox.c.send_at,
        outbox.c.reward_ids,
        outbox.c.content_source,
    ).where(outbox.c.idempotency_key == key)
    with store.begin() as conn:
        return conn.execute(query).one_or_none()


def _decided(row: sa.Row, customer_id: str, campaign: str, key: str) -> Outcome:
    return Outcome(
        customer_id,
        campaign,
        key,
        queued=False,
        reason=ALREADY_DECIDED,
        status=row.status,
        send_at=from_db(row.send_at),
        reward_ids=tuple(row.reward_ids or ()),
        content_source=row.content_source,
    )
