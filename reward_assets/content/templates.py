"""What an email is made of, and the deterministic template that writes one without the model.

The request (`EmailRequest` with its `Offer`s), the model's structured draft (`EmailDraft`)
and the finished email (`WrittenEmail`) are the shapes every content module shares. Each
campaign has its copy here: the goal the model is asked to reach and the template's own
subject, preheader and intro. `render` turns a draft or the template's text into the text
and HTML bodies with the offers, the footer and the unsubscribe link, so an LLM email and a
template email differ only in the words the model chose.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel

from reward_assets.contact.campaigns import (
    REACTIVATION,
    REWARDS_DIGEST,
    WELCOME,
    WIN_BACK,
    followup,
    is_followup,
)

LLM, CACHE, TEMPLATE = "llm", "cache", "template"
# Long enough for real names; anything longer is not a name worth the tokens.
MAX_FIRST_NAME = 40


@dataclass(frozen=True)
class _CampaignCopy:
    goal: str  # what the model is asked to achieve
    subject: str
    preheader: str
    intro: str


# The copy of each campaign; a follow-up on a day without copy of its own takes the
# generic follow-up's.
_COPY = {
    WELCOME: _CampaignCopy(
        goal="Welcome a new member and show the first rewards they can aim for.",
        subject="Welcome! Your first rewards are waiting",
        preheader="A few rewards picked for you to start with.",
        intro="Welcome to the rewards programme. We picked a few rewards for you to start with.",
    ),
    followup(3): _CampaignCopy(
        goal="A few days after sign-up: encourage the member toward a first reward.",
        subject="Have you picked your first reward yet?",
        preheader="Rewards chosen for you, a few days in.",
        intro="A few days in, here are the rewards we think you will like most.",
    ),
    followup(7): _CampaignCopy(
        goal="One week after sign-up: remind the member of the rewards within reach.",
        subject="Your rewards are within reach",
        preheader="Your first week with us, and the rewards to go for.",
        intro="It has been a week since you joined. These rewards are within reach.",
    ),
    REWARDS_DIGEST: _CampaignCopy(
        goal="A regular digest for an active member: present rewards matched to their tastes.",
        subject="Your reward picks this week",
        preheader="Rewards matched to what you like.",
        intro="Here are this week's rewards, matched to what you like.",
    ),
    WIN_BACK: _CampaignCopy(
        goal="The member is drifting away: remind them of rewards worth coming back for.",
        subject="We saved some rewards for you",
        preheader="Rewards worth coming back for.",
        intro="We have not seen you for a little while, so we saved some rewards for you.",
    ),
    REACTIVATION: _CampaignCopy(
        goal="The member has been inactive for a long time: invite them back with rewards.",
        subject="It has been a while: your rewards are still here",
        preheader="Come back to the rewards you can still enjoy.",
        intro="It has been a while. Your membership is still here, and so are these rewards.",
    ),
}
_FOLLOWUP_COPY = _CampaignCopy(
    goal="Shortly after sign-up: encourage the member toward a first reward.",
    subject="Rewards picked for you",
    preheader="Rewards chosen for you since you joined.",
    intro="Since you joined, these are the rewards we think you will like most.",
)


def campaign_copy(campaign: str) -> _CampaignCopy:
    if campaign in _COPY:
        return _COPY[campaign]
    if is_followup(campaign):
        return _FOLLOWUP_COPY
    raise ValueError(f"unknown campaign {campaign!r}")


_FOOTER = "You receive this email because you joined our rewards programme."


@dataclass(frozen=True)
class Offer:
    reward_id: str
    name: str
    category: str
    points_cost: int
    reason: str
    is_almost_there: bool = False


@dataclass(frozen=True)
class EmailRequest:
    customer_id: str
    first_name: str | None
    tier: str | None
    points_balance: int | None
    campaign: str
    offers: tuple[Offer, ...]
    unsubscribe_url: str
    # An experiment variant's copy (`content.experiments`): None keeps the campaign's.
    subject: str | None = None
    preheader: str | None = None
    intro: str | None = None
    allow_llm: bool = True  # False: the variant is the template, whatever the settings

    def __post_init__(self) -> None:
        campaign_copy(self.campaign)  # an unknown campaign fails here, not mid-batch


@dataclass(frozen=True)
class WrittenEmail:
    subject: str
    preheader: str
    text_body: str
    html_body: str
    reward_ids: tuple[str, ...]
    source: str  # llm | cache | template
    fallback_reason: str | None
    # Lineage: the model and the prompt behind an LLM draft, the template behind the rest.
    llm_model: str | None = None
    prompt_sha256: str | None = None
    template_sha256: str | None = None


class EmailDraft(BaseModel):
    """The model's structured answer; `guardrails.check_draft` decides whether it is used."""

    subject: str
    preheader: str
    body: str
    reward_ids: list[str]


def first_name(request: EmailRequest) -> str | None:
    name = " ".join((request.first_name or "").split())[:MAX_FIRST_NAME]
    return name or None


def render(
    request: EmailRequest,
    subject: str,
    preheader: str,
    body: str,
    reward_ids: Sequence[str],
    source: str,
    *,
    fallback_reason: str | None = None,
    template_sha256: str | None = None,
) -> WrittenEmail:
    chosen = set(reward_ids)
    offers = [offer for offer in request.offers if offer.reward_id in chosen]
    lines = [_offer_lines(o) for o in offers]
    offer_text = (
        ("Rewards picked for you:\n" + "\n".join(t for t, _ in lines) + "\n\n") if offers else ""
    )
    text_body = (
        f"{body.strip()}\n\n{offer_text}--\n{_FOOTER}\nUnsubscribe: {request.unsubscribe_url}\n"
    )

    paragraphs = "\n".join(
        "<p>" + html.escape(part.strip()).replace("\n", "<br>") + "</p>"
        for part in re.split(r"\n\s*\n", body.strip())
    )
    items = "\n".join(h for _, h in lines)
    offer_html = f"<p>Rewards picked for you:</p>\n<ul>\n{items}\n</ul>\n" if offers else ""
    html_body = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n'
        f'<div style="display:none">{html.escape(preheader)}</div>\n'
        f"{paragraphs}\n{offer_html}"
        f'<p style="font-size:12px;color:#666">{_FOOTER} '
        f'<a href="{html.escape(request.unsubscribe_url)}">Unsubscribe</a></p>\n'
        "</body></html>\n"
    )
    return WrittenEmail(
        subject=subject,
        preheader=preheader,
        text_body=text_body,
        html_body=html_body,
        reward_ids=tuple(offer.reward_id for offer in offers),
        source=source,
        fallback_reason=fallback_reason,
        template_sha256=template_sha256,
    )


@lru_cache(maxsize=100_000)
def _offer_lines(o: Offer) -> tuple[str, str]:
    """An offer's line in the text body and its item in the HTML one. Many emails carry
    the same offers, so each is formatted and escaped once, not once per email."""
    text = f"- {o.name}: {o.points_cost:,} points" + (f" ({o.reason})" if o.reason else "")
    item = (
        f"<li><strong>{html.escape(o.name)}</strong>: {o.points_cost:,} points"
        + (f" ({html.escape(o.reason)})" if o.reason else "")
        + "</li>"
    )
    return text, item


def render_draft(draft: EmailDraft, request: EmailRequest, source: str) -> WrittenEmail:
    # Subject and preheader are one line each: a line break would corrupt the headers.
    # A variant's subject is what its experiment tests, so it wins over the model's.
    return render(
        request,
        request.subject or " ".join(draft.subject.split()),
        " ".join(draft.preheader.split()),
        draft.body,
        draft.reward_ids,
        source,
    )


@lru_cache(maxsize=1024)
def template_sha256(subject: str, preheader: str, intro: str) -> str:
    """Identifies the template's words: the copy a template email was written from."""
    payload = json.dumps([subject, preheader, intro, _FOOTER], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def template_email(request: EmailRequest, fallback_reason: str | None = None) -> WrittenEmail:
    """The template's email for the request; `fallback_reason` says why the model's draft
    was not used, when it was asked for one."""
    copy = campaign_copy(request.campaign)
    subject = request.subject or copy.subject
    preheader = request.preheader or copy.preheader
    intro = request.intro or copy.intro
    name = first_name(request)
    greeting = f"Hi {name}," if name else "Hello,"
    balance = (
        f" You have {request.points_balance:,} points to spend."
        if request.points_balance is not None
        else ""
    )
    body = f"{greeting}\n\n{intro}{balance}"
    reward_ids = [offer.reward_id for offer in request.offers]
    return render(
        request,
        subject,
        preheader,
        body,
        reward_ids,
        TEMPLATE,
        fallback_reason=fallback_reason,
        template_sha256=template_sha256(subject, preheader, intro),
    )
