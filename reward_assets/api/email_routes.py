"""The email endpoints: a customer's messages with their lineage (behind the API key) and
the provider event webhook (signed with EMAIL_WEBHOOK_SECRET instead: providers cannot
send an API key)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from reward_assets.api import schemas
from reward_assets.api.routes import ERROR, CustomerId
from reward_assets.api.state import State, require_api_key
from reward_assets.email import webhooks
from reward_assets.email.lineage import EmailLineage, customer_emails
from reward_assets.ml.registry import ModelRegistry

router = APIRouter(
    prefix="/api",
    dependencies=[Depends(require_api_key)],
    responses={401: {**ERROR, "description": "API_KEY is set and X-API-Key is missing or wrong."}},
)
webhook_router = APIRouter(prefix="/api")


@router.get(
    "/customers/{customer_id}/messages",
    response_model=schemas.CustomerMessages,
    summary="A customer's emails and what each was made from",
)
def customer_messages(
    state: State,
    customer_id: CustomerId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
):
    """Every message the outbox holds for the customer (skips included), with its lineage:
    the data day, segment and rule, the taste, churn and engagement model versions (each
    checked against the registry), the experiment arm, and the content source with the LLM
    model and the prompt's and template's sha256. The address is masked; subjects and
    bodies are not returned."""
    registry = ModelRegistry(state.store, state.settings.resolved_models_dir())
    items = customer_emails(state.store, registry, customer_id, limit)
    return {"customer_id": customer_id, "items": [_item(item) for item in items]}


def _item(item: EmailLineage) -> dict:
    lineage = item.lineage
    models = lineage.get("models") or {}
    return {
        "message_key": item.key,
        "campaign": item.campaign,
        "status": item.status,
        "reason": item.reason,
        "to_address": item.to_address,
        "message_id": item.message_id,
        "send_at": item.send_at,
        "sent_at": item.sent_at,
        "run_id": item.run_id,
        "as_of": lineage.get("as_of"),
        "segment": lineage.get("segment"),
        "segment_rule": lineage.get("segment_rule"),
        "experiment": item.experiment,
        "variant": item.variant,
        "models": [
            {"name": name, "version": version, "registry_status": item.registry[name]}
            for name, version in models.items()
        ],
        "content": lineage.get("content"),
    }


@webhook_router.post(
    "/events/email",
    response_model=schemas.EmailEventsRecorded,
    responses={
        400: {**ERROR, "description": "The body is not an event of the provider's shape."},
        401: {**ERROR, "description": "The signature is missing or wrong."},
    },
    summary="Email events from the provider: delivered, open, click, bounce, complaint, "
    "unsubscribe",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "generic: an event or {events: [...]}, each with "
                        "event_id, event_type, message_id, occurred_at (ISO 8601) and, for "
                        "a bounce, bounce_type hard|soft; mailgun: Mailgun's webhook "
                        "payload (signature, event-data).",
                    }
                }
            },
        }
    },
)
async def email_events(
    request: Request,
    state: State,
    provider: Annotated[Literal["generic", "mailgun"], Query()] = "generic",
    signature: Annotated[
        str | None,
        Header(
            alias=webhooks.SIGNATURE_HEADER,
            description="generic: sha256=<hex HMAC-SHA256 of the raw body under "
            "EMAIL_WEBHOOK_SECRET>; mailgun signs inside the body.",
        ),
    ] = None,
):
    """Verifies the HMAC signature, stores each event once under its provider event id (a
    replay changes nothing), matches it to the outbox by Message-ID, and suppresses the
    customer at once on a hard bounce, a complaint or an unsubscribe. The events reach
    `fct_engagement_events` with the next load (`provider_events`)."""
    body = await request.body()
    try:
        events = webhooks.parse(provider, body, signature, state.settings.email_webhook_secret)
    except webhooks.BadSignature as error:
        raise HTTPException(401, str(error)) from error
    except webhooks.BadPayload as error:
        raise HTTPException(400, str(error)) from error
    # The store's I/O runs off the event loop, as FastAPI runs the sync routes.
    recorded = await run_in_threadpool(webhooks.record, state.store, events)
    return dataclasses.asdict(recorded)
