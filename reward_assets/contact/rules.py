"""The contact rules: whether one marketing email may go to one customer at one instant.

Planning and delivery both ask `blocking_reason`, so a message that was allowed when it
was queued is checked again, by the same rules, when it is about to be sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reward_assets.contact.campaigns import CAMPAIGNS, WELCOME, is_campaign
from reward_assets.contact.holdout import DEFAULT_HOLDOUT_SHARE, is_holdout
from reward_assets.contact.timing import in_quiet_hours

if TYPE_CHECKING:
    from reward_assets.settings import Settings

KILL_SWITCH = "kill_switch"
NO_CONSENT = "no_consent"
SUPPRESSED = "suppressed"
HOLDOUT = "holdout"
FREQUENCY_CAP = "frequency_cap"
QUIET_HOURS = "quiet_hours"


@dataclass(frozen=True)
class ContactPolicy:
    frequency_cap: int = 2
    frequency_cap_days: int = 7
    quiet_hours_start: int = 21
    quiet_hours_end: int = 8
    holdout_share: float = DEFAULT_HOLDOUT_SHARE

    @classmethod
    def from_settings(cls, settings: Settings) -> ContactPolicy:
        return cls(
            frequency_cap=settings.frequency_cap,
            frequency_cap_days=settings.frequency_cap_days,
            quiet_hours_start=settings.quiet_hours_start,
            quiet_hours_end=settings.quiet_hours_end,
            holdout_share=settings.holdout_share,
        )

    @property
    def cap_span(self) -> dt.timedelta:
        return dt.timedelta(days=self.frequency_cap_days)

    def cap_window(
        self, first: dt.datetime, last: dt.datetime | None = None
    ) -> tuple[dt.datetime, dt.datetime]:
        """The open interval around sends from `first` to `last` (default: `first`) in which
        another send counts towards their frequency cap."""
        return first - self.cap_span, (last or first) + self.cap_span

    def capped(self, at: dt.datetime, other_sends: Sequence[dt.datetime]) -> bool:
        """Whether a marketing message at `at` breaks the frequency cap, given the send
        times of the customer's other marketing messages (see `blocking_reason`)."""
        start, end = self.cap_window(at)
        return sum(1 for sent in other_sends if start < sent < end) >= self.frequency_cap


@dataclass(frozen=True)
class Recipient:
    customer_id: str
    timezone: str | None
    marketing_opt_in: bool


def blocking_reason(
    policy: ContactPolicy,
    recipient: Recipient,
    campaign: str,
    at: dt.datetime,
    *,
    suppressed: bool,
    kill_switch: bool,
    other_sends: Sequence[dt.datetime],
) -> str | None:
    """The first rule that stops `campaign` reaching `recipient` at `at`, or None.

    `other_sends` are the send times of the customer's other marketing messages that are
    queued, sending, sent or uncertain. A message is capped when `frequency_cap` of them
    fall strictly within `frequency_cap_days` before or after it: then whichever message of
    a rolling window was added last saw all the others, so no window of that many days
    holds more than the cap, whatever order messages are planned in.
    """
    if not is_campaign(campaign):
        raise ValueError(f"unknown campaign {campaign!r}; expected one of {CAMPAIGNS}")
    if kill_switch:
        return KILL_SWITCH
    if not recipient.marketing_opt_in:
        return NO_CONSENT
    if suppressed:
        return SUPPRESSED
    if is_holdout(recipient.customer_id, policy.holdout_share):
        return HOLDOUT
    if campaign != WELCOME and policy.capped(at, other_sends):
        return FREQUENCY_CAP
    if in_quiet_hours(at, recipient.timezone, policy.quiet_hours_start, policy.quiet_hours_end):
        return QUIET_HOURS
    return None
