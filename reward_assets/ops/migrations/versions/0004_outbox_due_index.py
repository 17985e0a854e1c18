"""The outbox's status index becomes the index delivery claims due rows through.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

Delivery claims the oldest due rows (`status`, then `send_at`, the key as tie-break) and
skips those deferred to a later attempt (`next_attempt_at`). With the status index alone,
each claim read and sorted every queued row: after a backlog deferred by quiet hours,
about 0.2 s per claim of 500 at 107,000 queued rows. The new index leads with `status`,
so it serves every query the old one did.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["status", "send_at", "idempotency_key", "next_attempt_at"]


def upgrade() -> None:
    op.create_index("ix_outbox_due", "outbox", COLUMNS)
    op.drop_index("ix_outbox_status", "outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_status", "outbox", ["status"])
    op.drop_index("ix_outbox_due", "outbox")
