"""Real SMS senders record how each message went: `sms_outbox.status` (pending, sent, refused,
not_sent, unknown), `attempts` (one JSON object per attempt: time, outcome, HTTP status, error
code, duration; never the text) and `provider_ref` (the provider's id, e.g. Twilio's SID).

Rows sent before (a `sent_at`) become 'sent'; the others 'unknown': the old sender kept no
reason, and a timeout may have delivered them. SQLite alters the table by copying it (batch).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

sms_outbox = sa.table("sms_outbox", sa.column("status", sa.String()), sa.column("sent_at"))
STATUSES = ("pending", "sent", "refused", "not_sent", "unknown")


def upgrade() -> None:
    with op.batch_alter_table("sms_outbox") as batch:
        batch.add_column(
            sa.Column(
                "status",
                sa.Enum(*STATUSES, native_enum=False),
                server_default="pending",
                nullable=False,
            )
        )
        batch.add_column(
            sa.Column("attempts", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch.add_column(sa.Column("provider_ref", sa.String(length=64), nullable=True))
    op.execute(
        sms_outbox.update().values(
            status=sa.case((sms_outbox.c.sent_at.is_not(None), "sent"), else_="unknown")
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("sms_outbox") as batch:
        batch.drop_column("provider_ref")
        batch.drop_column("attempts")
        batch.drop_column("status")
