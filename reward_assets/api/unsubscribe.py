"""The one-click unsubscribe link every email carries (RFC 8058).

Mail providers POST `List-Unsubscribe=One-Click` to the link; a person who opens it in a
browser gets a page with a button that sends the same POST, because a GET must never
unsubscribe (link scanners fetch every URL in a message). The signed token is the only
credential, so these endpoints never ask for the API key. A genuine link that has expired
(UNSUBSCRIBE_LINK_DAYS, `email.unsubscribe.honoured`) gets a page saying so (410) and
changes nothing.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse

from reward_assets.api.schemas import Error
from reward_assets.api.state import ApiState, State
from reward_assets.email.suppression import suppress
from reward_assets.email.unsubscribe import Link, honoured, read_token

router = APIRouter(prefix="/api", tags=["unsubscribe"])

Token = Annotated[
    str,
    Query(min_length=1, max_length=512, description="The signed token from the email's link."),
]
INVALID = (
    "This unsubscribe link is not valid. Please use the link from one of our emails as it "
    "was sent, without changes."
)
EXPIRED = (
    "This unsubscribe link has expired. Please use the link in a recent email from us: "
    "it unsubscribes you with one click."
)
HTML_ONLY = {"content": {"text/html": {}}}
PAGE_RESPONSES = {
    200: {**HTML_ONLY, "description": "A page saying what happened."},
    400: {"model": Error, "description": "The form body cannot be read."},
    404: {
        **HTML_ONLY,
        "description": "The token names no subscription: malformed, or its signature is wrong.",
    },
    410: {
        **HTML_ONLY,
        "description": "A genuine link that has expired (UNSUBSCRIBE_LINK_DAYS after it was "
        "issued or last sent); nothing changes.",
    },
}


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status_code,
    )


def _refusal(state: ApiState, token: str) -> tuple[Link | None, HTMLResponse | None]:
    """The link the token stands for, or the page that says why it does nothing."""
    link = read_token(token, state.settings.unsubscribe_secret)
    if link is None:
        return None, _page("Link not valid", f"<p>{html.escape(INVALID)}</p>", 404)
    days = state.settings.unsubscribe_link_days
    if not honoured(state.store, token, link, days, dt.datetime.now(dt.UTC)):
        return None, _page("Link expired", f"<p>{html.escape(EXPIRED)}</p>", 410)
    return link, None


@router.get(
    "/unsubscribe",
    response_class=HTMLResponse,
    responses=PAGE_RESPONSES,
    summary="Confirmation page of the unsubscribe link (changes nothing)",
)
def unsubscribe_page(state: State, token: Token):
    _, refused = _refusal(state, token)
    if refused:
        return refused
    action = html.escape(f"/api/unsubscribe?token={token}", quote=True)
    return _page(
        "Unsubscribe from our marketing emails?",
        f"<form method='post' action='{action}'>"
        "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
        "<button type='submit'>Unsubscribe</button></form>",
    )


@router.post(
    "/unsubscribe",
    response_class=HTMLResponse,
    responses=PAGE_RESPONSES,
    summary="One-click unsubscribe (RFC 8058): adds the customer to the suppression list",
)
def unsubscribe(
    state: State,
    token: Token,
    one_click: Annotated[Literal["One-Click"], Form(alias="List-Unsubscribe")],
):
    """Idempotent: a second POST finds the customer suppressed already and changes nothing."""
    link, refused = _refusal(state, token)
    if refused:
        return refused
    suppress(state.store, link.customer_id, "unsubscribe", "api")
    return _page(
        "You are unsubscribed",
        "<p>You will not receive marketing emails from us any more.</p>",
    )
