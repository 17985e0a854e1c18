"""Who gets which message when: the decisions onboarding, the engagement cycle and the
API's one-customer path share.

Each decides per customer with the one set of contact rules (`contact.rules`):
`decide_welcomes` for a welcome now, `decide_day` for a day's campaigns at each customer's
best local hour. Both read the suppression list and the outbox from the operational
store; the pure `welcome_decisions` and `cycle_decisions` apply the rules. The kill switch
is left to delivery, so a message planned while sending is paused waits in the queue
instead of being lost. `engagement.messages` writes and queues what they decide.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from reward_assets.contact.campaigns import ONCE, WELCOME
from reward_assets.contact.rules import QUIET_HOURS, ContactPolicy, Recipient, blocking_reason
from reward_assets.contact.timing import next_allowed, send_time
from reward_assets.email.outbox import Outbox, Skip, message_key
from reward_assets.email.suppression import suppressed
from reward_assets.ops.store import OpsStore

# Used when a customer has no send-time preference yet.
DEFAULT_LOCAL_HOUR = 10
# What the plan and the run metadata call a decision to send.
CONTACT = "contact"


@dataclass(frozen=True)
class Decision:
    customer_id: str
    campaign: str
    occurrence: str
    send_at: dt.datetime  # aware UTC
    timezone: str
    reason: str | None = None  # None: contact

    @cached_property
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


def decide_welcomes(
    store: OpsStore, customers: pd.DataFrame, policy: ContactPolicy, now: dt.datetime
) -> list[Decision]:
    """`welcome_decisions` against the suppression list."""
    return welcome_decisions(customers, policy, now, suppressed(store, customers.customer_id))


def decide_day(
    store: OpsStore, candidates: pd.DataFrame, policy: ContactPolicy, as_of: dt.date
) -> list[Decision]:
    """`cycle_decisions` on day `as_of` against the suppression list and the customers'
    other marketing messages in the outbox."""
    day_start = dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
    ids = list(candidates.customer_id.unique())
    # A day's sends leave at or after its start, quiet hours pushing some past its end.
    window = policy.cap_window(day_start, day_start + policy.cap_span)
    others = Outbox(store).other_marketing_sends(ids, *window)
    return cycle_decisions(candidates, policy, day_start, suppressed(store, ids), others)


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
    # The day's send time depends on the zone and hour only: a few hundred distinct ones
    # for 100k+ candidates.
    times: dict[tuple[str, int], dt.datetime] = {}
    decisions = []
    # Whole columns (`tolist`), not `itertuples`: iterating pandas' Arrow-backed strings
    # row by row costs more than the rules.
    columns = ("customer_id", "campaign", "occurrence", "timezone", "marketing_opt_in")
    columns += ("best_local_hour",)
    rows = zip(*(candidates[c].tolist() for c in columns), strict=True)
    for customer_id, campaign, occurs, timezone, opt_in, best_hour in rows:
        zone = _timezone(timezone)
        hour = DEFAULT_LOCAL_HOUR if pd.isna(best_hour) else int(best_hour)
        at = times.get((zone, hour))
        if at is None:
            start, end = policy.quiet_hours_start, policy.quiet_hours_end
            at = times[zone, hour] = send_time(day_start, hour, zone, start, end)
        earlier = [*other_sends.get(customer_id, ()), *planned.get(customer_id, ())]
        reason = blocking_reason(
            policy,
            Recipient(customer_id, zone, _consent(opt_in)),
            campaign,
            at,
            suppressed=customer_id in suppressed,
            kill_switch=False,
            other_sends=earlier,
        )
        if reason is None:
            planned.setdefault(customer_id, []).append(at)
        decisions.append(Decision(customer_id, campaign, occurs, at, zone, reason))
    return decisions


def reason_counts(decisions: Iterable[Decision]) -> dict[str, int]:
    return dict(sorted(Counter(d.reason or CONTACT for d in decisions).items()))


def _consent(value) -> bool:
    """Only an explicit yes is consent; a missing value is a no."""
    return False if pd.isna(value) else bool(value)
