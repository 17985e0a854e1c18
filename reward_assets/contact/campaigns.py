"""The campaigns: every name the product sends email under, and how often each may recur.

The contact rules, the outbox, the planners, the segments, the follow-ups and the API's
journey stages all take campaign names from here, so a campaign is added or renamed in
one place. A message's key is `<customer>:<campaign>:<occurrence>` (`email.outbox`): the
welcome and each follow-up happen once per customer, a segment campaign once per day.
"""

from __future__ import annotations

import datetime as dt

from reward_assets.settings import Settings

WELCOME = "welcome"
# Days after the sign-up: the FOLLOWUP_DAYS setting's default; any other day is a
# follow-up campaign too (`followup(day)`).
FOLLOWUP_DAYS: tuple[int, ...] = Settings.model_fields["followup_days"].default
_FOLLOWUP_PREFIX = "followup_"
REWARDS_DIGEST = "rewards_digest"
WIN_BACK = "win_back"
REACTIVATION = "reactivation"

# The segments of `engagement.segments` that the daily cycle writes to; `new` customers
# get the welcome from onboarding instead.
CAMPAIGN_BY_SEGMENT = {"active": REWARDS_DIGEST, "at_risk": WIN_BACK, "dormant": REACTIVATION}
# The journey stages an API caller may name, and the campaign each one runs.
STAGE_CAMPAIGNS = {"onboarding": WELCOME, "new": WELCOME, **CAMPAIGN_BY_SEGMENT}

ONCE = "once"


def followup(day: int) -> str:
    """The follow-up campaign `day` days after the sign-up."""
    return f"{_FOLLOWUP_PREFIX}{day}"


def is_followup(campaign: str) -> bool:
    return campaign.startswith(_FOLLOWUP_PREFIX) and campaign[len(_FOLLOWUP_PREFIX) :].isdigit()


def followup_day(campaign: str) -> int:
    return int(campaign[len(_FOLLOWUP_PREFIX) :])


# The campaigns with the default follow-up days, as the UI and the docs list them.
CAMPAIGNS = (WELCOME, *map(followup, FOLLOWUP_DAYS), *CAMPAIGN_BY_SEGMENT.values())


def is_campaign(name: str) -> bool:
    """Whether the product sends email under `name` (a follow-up on any day counts)."""
    return name in CAMPAIGNS or is_followup(name)


def occurrence(campaign: str, day: dt.date) -> str:
    """The occurrence part of the campaign's message key for a message planned on `day`."""
    return day.isoformat() if campaign in CAMPAIGN_BY_SEGMENT.values() else ONCE
