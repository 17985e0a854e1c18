"""What an email was made from, read back from its outbox row.

The planners record the lineage as each message is queued (`engagement.messages`): the
data day, the segment and its rule, the versions of the taste, churn and engagement
models, the experiment arm, and the content's source with the LLM model and the sha256 of
the prompt and of the template. Here it is read for `reward-assets email explain KEY` and
for the API's `GET /api/customers/{id}/messages`, each model version checked against the
registry. Addresses are masked; subjects and bodies are never returned (an LLM may have
written the customer's name into them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from reward_assets.ml.registry import ModelRegistry, NoServingModel
from reward_assets.ops.store import OpsStore, from_db, outbox
from reward_assets.privacy import mask_email

# Versions of the documented fallbacks (e.g. `fallback:popularity`), not trained models.
FALLBACK_PREFIX = "fallback"
NOT_REGISTERED = "not in the registry"


@dataclass(frozen=True)
class EmailLineage:
    key: str
    customer_id: str
    campaign: str
    status: str
    reason: str | None
    to_address: str | None  # masked
    message_id: str | None
    send_at: dt.datetime | None
    sent_at: dt.datetime | None
    run_id: str | None
    experiment: str | None
    variant: str | None
    lineage: dict  # as recorded; {} for rows queued before lineage was kept
    registry: dict[str, str]  # model name -> its registry status, or why there is none


_COLUMNS = (
    outbox.c.idempotency_key,
    outbox.c.customer_id,
    outbox.c.campaign,
    outbox.c.status,
    outbox.c.reason,
    outbox.c.to_address,
    outbox.c.message_id,
    outbox.c.send_at,
    outbox.c.sent_at,
    outbox.c.run_id,
    outbox.c.experiment,
    outbox.c.variant,
    outbox.c.lineage,
)


def email_lineage(store: OpsStore, registry: ModelRegistry, key: str) -> EmailLineage | None:
    with store.begin() as conn:
        row = conn.execute(sa.select(*_COLUMNS).where(outbox.c.idempotency_key == key)).first()
    return None if row is None else _lineage(row, registry)


def customer_emails(
    store: OpsStore, registry: ModelRegistry, customer_id: str, limit: int = 50
) -> list[EmailLineage]:
    """The customer's messages, newest first (skips included: they say why not)."""
    query = (
        sa.select(*_COLUMNS)
        .where(outbox.c.customer_id == customer_id)
        .order_by(outbox.c.send_at.desc(), outbox.c.idempotency_key)
        .limit(limit)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
    return [_lineage(row, registry) for row in rows]


def registry_status(registry: ModelRegistry, name: str, version: str | None) -> str:
    if version is None:
        return "none used"
    if version.startswith(FALLBACK_PREFIX):
        return "fallback (no trained model)"
    try:
        return registry.get(name, version).status
    except NoServingModel:
        return NOT_REGISTERED


def _lineage(row, registry: ModelRegistry) -> EmailLineage:
    lineage = row.lineage or {}
    models = lineage.get("models") or {}
    return EmailLineage(
        key=row.idempotency_key,
        customer_id=row.customer_id,
        campaign=row.campaign,
        status=row.status,
        reason=row.reason,
        to_address=mask_email(row.to_address) if row.to_address else None,
        message_id=row.message_id,
        send_at=from_db(row.send_at),
        sent_at=from_db(row.sent_at),
        run_id=row.run_id,
        experiment=row.experiment,
        variant=row.variant,
        lineage=lineage,
        registry={name: registry_status(registry, name, v) for name, v in models.items()},
    )


def explain_lines(item: EmailLineage) -> list[str]:
    """The chain from the run and the data to the words, one fact a line."""
    lineage = item.lineage
    content = lineage.get("content") or {}
    at = item.sent_at or item.send_at
    lines = [
        f"message   {item.key}",
        f"status    {item.status}"
        + (f" ({item.reason})" if item.reason else "")
        + (f" at {at:%Y-%m-%d %H:%M}Z" if at else ""),
        f"to        {item.to_address or '-'}   message-id {item.message_id or '-'}",
        f"run       {item.run_id or '-'}",
    ]
    if not lineage:
        return [*lines, "lineage   not recorded (queued before lineage was kept, or a skip)"]
    lines += [
        f"data day  {lineage.get('as_of') or '-'}",
        f"segment   {lineage.get('segment') or '-'}: {lineage.get('segment_rule') or '-'}",
    ]
    for name, version in (lineage.get("models") or {}).items():
        lines.append(f"model     {name} {version or '-'} [{item.registry[name]}]")
    arm = f"{item.experiment} / {item.variant}" if item.experiment else "none"
    lines += [
        f"experiment {arm}",
        f"content   {content.get('source') or '-'}"
        + (f" (fallback: {content['fallback_reason']})" if content.get("fallback_reason") else ""),
        f"llm model {content.get('llm_model') or '-'}",
        f"prompt    sha256 {content.get('prompt_sha256') or '-'}",
        f"template  sha256 {content.get('template_sha256') or '-'}",
    ]
    return lines
