"""Baseline: the operational store as the project created it before revisions.

Revision ID: 0001
Revises:
Create Date: 2026-12-04

A frozen copy of the tables (never the live `store.metadata`, which moves on with later
revisions). Each table is created only when missing, so a store made by the code of that
time (with `metadata.create_all`, and no revision) is adopted as it is, every row kept.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

metadata = sa.MetaData()

model_registry = sa.Table(
    "model_registry",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("decided_at", sa.DateTime),
    sa.Column("artefact_path", sa.Text, nullable=False),
    sa.Column("trained_as_of", sa.Date),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("reasons", sa.JSON),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("idempotency_key", sa.String(200), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),
    sa.Column("campaign", sa.String(32), nullable=False),
    sa.Column("occurrence", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("reason", sa.Text),
    sa.Column("send_at", sa.DateTime, nullable=False, index=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("to_address", sa.Text),
    sa.Column("message_id", sa.String(200)),
    sa.Column("subject", sa.Text),
    sa.Column("preheader", sa.Text),
    sa.Column("text_body", sa.Text),
    sa.Column("html_body", sa.Text),
    sa.Column("reward_ids", sa.JSON),
    sa.Column("content_source", sa.String(16)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("lease_until", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
    sa.Column("smtp_response", sa.Text),
    sa.Column("run_id", sa.String(64)),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

followups = sa.Table(
    "followups",
    metadata,
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("campaign", sa.String(32), primary_key=True),
    sa.Column("due_date", sa.Date, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("signup_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

switches = sa.Table(
    "switches",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("updated_by", sa.String(64)),
)

llm_cache = sa.Table(
    "llm_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("draft", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

api_idempotency = sa.Table(
    "api_idempotency",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("response", sa.JSON),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("completed_at", sa.DateTime),
)


def upgrade() -> None:
    metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
