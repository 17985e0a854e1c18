"""Who gets which message when: the decisions onboarding and the engagement cycle share.

Both paths decide per customer with the one set of contact rules (`services.rules`), turn
the customers to contact into content requests, and hand finished messages to the outbox.
The kill switch is left to delivery, so a message planned while sending is paused waits
in the queue instead of being lost.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from reward_assets.contact.rules import (
    QUIET_HOURS,
    WELCOME,
    ContactPolicy,
    Recipient,
    blocking_reason,
)
from reward_assets.contact.timing import next_allowed, send_time
from reward_assets.content.templates import EmailRequest, Offer
from reward_assets.content.writer import ContentWriter
from reward_assets.email.outbox import Message, Skip, message_key
from reward_assets.email.unsubscribe import make_token, unsubscribe_url

ONCE = "once"
OFFERS_PER_EMAIL = 3
# Used when a customer has no send-time preference yet.
DEFAULT_LOCAL_HOUR = 10


@dataclass(frozen=True)
class Decision:
    customer_id: str
    campaign: str
    occurrence: str
    send_at: dt.datetime  # aware UTC
    timezone: str
    reason: str | None = None  # None: contact

    @property
    def key(self) -> str:
        return message_key(self.customer_id, self.campaign, self.occurrence)

    def skip(self) -> Skip:
        return Skip(
            self.customer_id,
            self.campaign,
            self.occurrence,
            self.reason,
            self.send_at,
            self.timezone,
        )


def _timezone(value) -> str:
    return value if isinstance(value, str) and value else "UTC"


def welcome_decisions(
    customers: pd.DataFrame, policy: ContactPolicy, now: dt.datetime, suppressed: set[str]
) -> list[Decision]:
    """A welcome now (or when the customer's quiet hours end) or the reason there is none.

    customers: customer_id, timezone, marketing_opt_in.
    """
    decisions = []
    for row in customers.itertuples(index=False):
        zone = _timezone(row.timezone)
        recipient = Recipient(row.customer_id, zone, _consent(row.marketing_opt_in))
        reason = blocking_reason(
            policy,
            recipient,
            WELCOME,
            now,
            suppressed=row.customer_id in suppressed,
            kill_switch=False,
            other_sends=(),
        )
        send_at = now
        if reason == QUIET_HOURS:
            reason = None
            send_at = next_allowed(now, zone, policy.quiet_hours_start, policy.quiet_hours_end)
        decisions.append(Decision(row.customer_id, WELCOME, ONCE, send_at, zone, reason))
    return decisions


def cycle_decisions(
    candidates: pd.DataFrame,
    policy: ContactPolicy,
    day_start: dt.datetime,
    suppressed: set[str],
    other_sends: Mapping[str, Sequence[dt.datetime]],
) -> list[Decision]:
    """Each candidate's message at their best local hour on the day, or why there is none.

    candidates: customer_id, campaign, occurrence, timezone, marketing_opt_in,
    best_local_hour (NaN: the default hour). Messages decided here count towards the cap
    of the later candidates of the same customer.
    """
    planned: dict[str, list[dt.datetime]] = {}
    decisions = []
    for row in candidates.itertuples(index=False):
        zone = _timezone(row.timezone)
        hour = DEFAULT_LOCAL_HOUR if pd.isna(row.best_local_hour) else int(row.best_local_hour)
        at = send_time(day_start, hour, zone, policy.quiet_hours_start, policy.quiet_hours_end)
        earlier = [*other_sends.get(row.customer_id, ()), *planned.get(row.customer_id, ())]
        reason = blocking_reason(
            policy,
            Recipient(row.customer_id, zone, _consent(row.marketing_opt_in)),
            row.campaign,
            at,
            suppressed=row.customer_id in suppressed,
            kill_switch=False,
            other_sends=earlier,
        )
        if reason is None:
            planned.setdefault(row.customer_id, []).append(at)
        decisions.append(Decision(row.customer_id, row.campaign, row.occurrence, at, zone, reason))
    return decisions


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


def reason_counts(decisions: Iterable[Decision]) -> dict[str, int]:
    return dict(sorted(Counter(d.reason or "contact" for d in decisions).items()))


def _consent(value) -> bool:
    """Only an explicit yes is consent; a missing value is a no."""
    return False if pd.isna(value) else bool(value)


def _text(value) -> str | None:
    return None if value is None or pd.isna(value) or value == "" else str(value)
