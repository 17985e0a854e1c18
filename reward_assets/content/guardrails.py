"""The rules an LLM draft must pass before it is sent, and the length limits it is held to.

A draft is checked against the request's own data only: the rewards offered, the points
figures it holds, no price, no link of its own, an unsubscribe link once rendered, and the
length of each field. The lengths live here once, as two numbers per field: what the prompt
asks the model for (`ask`, which `groq_agent` writes into its instructions) and what
`check_draft` enforces (`hard`). A draft that fails any rule is replaced by the template.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from reward_assets.content.templates import LLM, EmailDraft, EmailRequest, render_draft


@dataclass(frozen=True)
class Limit:
    """A draft field's length limits, in characters."""

    ask: int  # what the prompt asks the model for
    hard: int  # what check_draft rejects above

    def __post_init__(self) -> None:
        if not 0 < self.ask <= self.hard:
            raise ValueError(f"asked length {self.ask} must be within the hard limit {self.hard}")


# The prompt asks for less than is enforced: models count characters loosely, and a draft a
# little over the asked length is still a good email, not a reason to fall back to the
# template.
LIMITS = {
    "subject": Limit(ask=70, hard=78),
    "preheader": Limit(ask=110, hard=120),
    "body": Limit(ask=1500, hard=2000),
}
# Built from LIMITS so the prompt cannot ask for lengths check_draft is not tuned to.
LENGTH_INSTRUCTION = (
    f"Subject at most {LIMITS['subject'].ask} characters, preheader at most "
    f"{LIMITS['preheader'].ask}, body at most {LIMITS['body'].ask} characters."
)

# A points figure: "1,200 points", "1.2k pts", "500-point".
_POINTS = re.compile(r"(?<![\w.,])(\d[\d,]*(?:\.\d+)?)\s*(k)?[\s-]*(?:points?|pts?)\b", re.I)
_CODES = r"(?:USD|EUR|GBP|CHF|CAD|AUD|JPY|INR)"
_MONEY = re.compile(
    rf"[$€£¥₹]\s*\d|\d\s*[$€£¥₹]|\b{_CODES}\s*\d|\d\s*{_CODES}\b"
    r"|\d\s*(?:dollars?|euros?|pounds?|cents?|bucks)\b"
    # The data holds no discounts, so any percentage is an invented price.
    r"|\d\s*(?:%|percent\b|per\s+cent\b)",
    re.I,
)
_URL = re.compile(
    r"\b(?:https?://|www\.|mailto:)"
    r"|(?P<domain>\b[a-z0-9-]+\.(?:com|net|org|io|co|app|shop|info|biz|ly|me)\b)",
    re.I,
)


def _points_figures(text: str) -> set[float]:
    figures = set()
    for number, thousands in _POINTS.findall(text):
        value = float(number.replace(",", ""))
        figures.add(value * 1000 if thousands else value)
    return figures


def _allowed_points(request: EmailRequest) -> set[float]:
    allowed = {float(offer.points_cost) for offer in request.offers}
    if request.points_balance is not None:
        allowed.add(float(request.points_balance))
    # An offer's reason may carry its own figure ("350 points to go"): that is data too.
    for offer in request.offers:
        allowed |= _points_figures(offer.reason or "")
    return allowed


def _has_url(text: str, request: EmailRequest) -> bool:
    names = [offer.name.lower() for offer in request.offers]
    for match in _URL.finditer(text):
        domain = match.group("domain")
        # A reward may be named after a site ("Amazon.com gift card"); naming it is fine.
        if not (domain and any(domain.lower() in name for name in names)):
            return True
    return False


def check_draft(draft: EmailDraft, request: EmailRequest) -> list[str]:
    """Every rule the draft breaks for this request, as failure codes (empty: it may be sent)."""
    failures = []
    for field, limit in LIMITS.items():
        value = getattr(draft, field)
        if not value.strip():
            failures.append(f"{field}_empty")
        elif len(value) > limit.hard:
            failures.append(f"{field}_too_long")

    offered = {offer.reward_id for offer in request.offers}
    unknown = sorted(set(draft.reward_ids) - offered)
    if unknown:
        failures.append("reward_not_offered:" + ",".join(unknown))
    if offered and not draft.reward_ids:
        failures.append("no_reward_chosen")

    text = "\n".join((draft.subject, draft.preheader, draft.body))
    invented = sorted(_points_figures(text) - _allowed_points(request))
    if invented:
        failures.append("points_not_in_data:" + ",".join(f"{value:g}" for value in invented))
    if _MONEY.search(text):
        failures.append("price")
    if _has_url(text, request):
        failures.append("url")

    email = render_draft(draft, request, LLM)
    url = request.unsubscribe_url
    if not url or url not in email.text_body or html.escape(url) not in email.html_body:
        failures.append("unsubscribe_link_missing")
    return failures
