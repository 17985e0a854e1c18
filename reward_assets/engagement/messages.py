"""Writing and queueing: the content writer turns decisions to contact into emails, and
the outbox takes them, with the skips of the other decisions, under their message keys.

`write_and_queue` is the one way a decision reaches the outbox, for onboarding, the
engagement cycle and the API's one-customer path alike, and keeps the follow-ups in step:
a queued welcome's follow-ups are scheduled, a queued follow-up is marked queued.
`queue_planned` does it for the day's engagement plan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pandas as pd

from reward_assets.contact.campaigns import WELCOME, is_followup
from reward_assets.contact.rules import FREQUENCY_CAP, ContactPolicy
from reward_assets.content.templates import EmailRequest, Offer
from reward_assets.content.writer import ContentConfig, ContentWriter
from reward_assets.email.outbox import Message, Outbox
from reward_assets.email.unsubscribe import make_token, signing_secret, unsubscribe_url
from reward_assets.engagement import followups
from reward_assets.engagement.decisions import Decision
from reward_assets.engagement.plan import planned_decisions
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.ops.store import OpsStore
from reward_assets.settings import Settings
from reward_assets.warehouse.store import Warehouse

OFFERS_PER_EMAIL = 3


@dataclass(frozen=True)
class Queued:
    queued: int  # messages this call added to the outbox
    skipped: int  # skips this call recorded, the capped messages' included
    messages: list[Message]  # written for the decisions to contact, queued or not
    content: dict[str, int]  # the content writer's stats
    # Keys of written messages recorded as skipped instead: another message took the
    # customer's last place under the frequency cap while this one was being written.
    capped: tuple[str, ...] = ()


def write_and_queue(
    store: OpsStore,
    decisions: Sequence[Decision],
    profiles: pd.DataFrame,
    offers: pd.DataFrame,
    settings: Settings,
    *,
    run_id: str | None = None,
) -> Queued:
    """Write the emails of the decisions to contact, queue them and record the skips of the
    others; a key the outbox holds already stays as it is.

    profiles: customer_id, email, first_name, tier, points_balance, and signup_at for
    welcomes; offers: as `email_requests` reads them (unread when nobody is contacted).
    """
    contact = [d for d in decisions if d.reason is None]
    writer = ContentWriter(ContentConfig.from_settings(settings), store)
    messages = []
    if contact:
        messages = write_messages(
            contact,
            profiles,
            offers,
            writer,
            public_base_url=settings.public_base_url,
            unsubscribe_secret=signing_secret(settings),
        )
    welcomed = {d.customer_id for d in contact if d.campaign == WELCOME}
    if welcomed:
        # Before the enqueue: a rerun skips customers whose welcome is queued, so
        # scheduling after it could be lost to a crash in between.
        signups = profiles[profiles.customer_id.isin(welcomed)]
        followups.schedule(
            store, zip(signups.customer_id, signups.signup_at, strict=True), settings.followup_days
        )
    outbox = Outbox(store)
    policy = ContactPolicy.from_settings(settings)
    enqueued = outbox.enqueue_within_cap(messages, policy, run_id=run_id)
    skipped = outbox.record_skips([d.skip() for d in decisions if d.reason], run_id=run_id)
    capped = set(enqueued.capped)
    sent = [d for d in contact if is_followup(d.campaign)]
    if sent:
        followups.mark(
            store,
            [(d.customer_id, d.campaign, None) for d in sent if d.key not in capped],
            followups.QUEUED,
        )
        followups.mark(
            store,
            [(d.customer_id, d.campaign, FREQUENCY_CAP) for d in sent if d.key in capped],
            followups.CANCELLED,
        )
    return Queued(enqueued.queued, skipped + len(capped), messages, writer.stats, enqueued.capped)


@dataclass(frozen=True)
class QueuedPlan:
    as_of: dt.date
    result: Queued
    already_in_outbox: int
    outbox: dict[str, int]  # its rows by status, afterwards


def queue_planned(
    open_warehouse: Callable[[], AbstractContextManager[Warehouse]],
    store: OpsStore,
    settings: Settings,
    *,
    run_id: str | None = None,
) -> QueuedPlan:
    """`write_and_queue` for AS_OF's plan, each email around the customer's current top
    recommended rewards; decisions the outbox holds already are left alone.

    The warehouse is open only while the plan, profiles and offers are read, not while the
    content is written, so it is not held through the LLM calls.
    """
    with open_warehouse() as warehouse:
        as_of = resolve_as_of(warehouse, settings.as_of)
        decisions = planned_decisions(warehouse, as_of)
        ids = {d.customer_id for d in decisions if d.reason is None}
        profiles = warehouse.frame(
            "SELECT customer_id, email, first_name, tier, points_balance FROM marts.dim_customers"
        )
        offers = warehouse.frame(
            """
            SELECT s.customer_id, s.rank, s.reward_id, r.name, r.category, r.points_cost,
                   s.reason, s.is_almost_there
            FROM ml.recommendation_sets s JOIN marts.dim_rewards r ON r.reward_id = s.reward_id
            WHERE s.rank <= :top
            """,
            {"top": OFFERS_PER_EMAIL},
        )
    profiles = profiles[profiles.customer_id.isin(ids)]
    offers = offers[offers.customer_id.isin(ids)]
    outbox = Outbox(store)
    decided = outbox.existing([d.key for d in decisions])
    pending = [d for d in decisions if d.key not in decided]
    result = write_and_queue(store, pending, profiles, offers, settings, run_id=run_id)
    return QueuedPlan(as_of, result, len(decided), outbox.status_counts())


def email_requests(
    decisions: Sequence[Decision],
    profiles: pd.DataFrame,
    offers: pd.DataFrame,
    *,
    public_base_url: str,
    unsubscribe_secret: str,
) -> list[EmailRequest]:
    """Content requests for decisions to contact.

    profiles: customer_id, first_name, tier, points_balance; offers: customer_id, rank,
    reward_id, name, category, points_cost, reason, is_almost_there.
    """
    # One dict, not a DataFrame lookup per decision: the cycle decides 100k+ at 1M customers.
    profile = {r.customer_id: r for r in profiles.itertuples(index=False)}
    top = offers.sort_values(["customer_id", "rank"]).groupby("customer_id").head(OFFERS_PER_EMAIL)
    by_customer: dict[str, list[Offer]] = {}
    for r in top.itertuples(index=False):
        by_customer.setdefault(r.customer_id, []).append(
            Offer(
                r.reward_id,
                r.name,
                r.category,
                int(r.points_cost),
                r.reason,
                bool(r.is_almost_there),
            )
        )
    requests = []
    for decision in decisions:
        row = profile[decision.customer_id]
        token = make_token(decision.customer_id, unsubscribe_secret)
        requests.append(
            EmailRequest(
                customer_id=decision.customer_id,
                first_name=_text(row.first_name),
                tier=_text(row.tier),
                points_balance=None if pd.isna(row.points_balance) else int(row.points_balance),
                campaign=decision.campaign,
                offers=tuple(by_customer.get(decision.customer_id, ())),
                unsubscribe_url=unsubscribe_url(public_base_url, token),
            )
        )
    return requests


def write_messages(
    decisions: Sequence[Decision],
    profiles: pd.DataFrame,
    offers: pd.DataFrame,
    writer: ContentWriter,
    *,
    public_base_url: str,
    unsubscribe_secret: str,
) -> list[Message]:
    """The emails of `decisions` to contact, written by `writer` (see `email_requests`;
    profiles also carry each customer's email)."""
    requests = email_requests(
        decisions,
        profiles,
        offers,
        public_base_url=public_base_url,
        unsubscribe_secret=unsubscribe_secret,
    )
    written = writer.write_many(requests)
    addresses = dict(zip(profiles.customer_id, profiles.email, strict=True))
    return [
        Message(
            customer_id=d.customer_id,
            campaign=d.campaign,
            occurrence=d.occurrence,
            send_at=d.send_at,
            timezone=d.timezone,
            to_address=addresses[d.customer_id],
            subject=w.subject,
            preheader=w.preheader,
            text_body=w.text_body,
            html_body=w.html_body,
            reward_ids=tuple(w.reward_ids),
            content_source=w.source,
        )
        for d, w in zip(decisions, written, strict=True)
    ]


def _text(value) -> str | None:
    return None if value is None or pd.isna(value) or value == "" else str(value)
