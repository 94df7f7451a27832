"""Login guards: an account's login lease (one login at a time per account, so the lockout
holds however many attempts arrive together) and login sessions (what bundling, cancelling
and enquiries need, docs/security.md).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 01:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("login_lease", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("login_lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_login_sessions_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_login_sessions_call_id_calls")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_login_sessions_token_hash")),
    )
    op.create_index(
        op.f("ix_login_sessions_account_id"), "login_sessions", ["account_id"], unique=False
    )
    op.create_index(op.f("ix_login_sessions_call_id"), "login_sessions", ["call_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_login_sessions_call_id"), table_name="login_sessions")
    op.drop_index(op.f("ix_login_sessions_account_id"), table_name="login_sessions")
    op.drop_table("login_sessions")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("login_lease_until")
        batch.drop_column("login_lease")
