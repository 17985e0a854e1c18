"""Email lineage, experiment arms and provider events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

The outbox gains the experiment and variant each message was assigned and its lineage
(model versions, data day, segment, content source and hashes), all nullable so rows
written before stay as they are; `provider_events` holds the email events providers post
to the API, keyed by their event id.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot add several columns in one ALTER otherwise.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("experiment", sa.String(64)))
        batch.add_column(sa.Column("variant", sa.String(64)))
        batch.add_column(sa.Column("lineage", sa.JSON))
    op.create_table(
        "provider_events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(200)),
        sa.Column("customer_id", sa.String(64)),
        sa.Column("campaign", sa.String(32)),
        sa.Column("hard_bounce", sa.Boolean, nullable=False),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_provider_events_message_id", "provider_events", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_provider_events_message_id", "provider_events")
    op.drop_table("provider_events")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("lineage")
        batch.drop_column("variant")
        batch.drop_column("experiment")
