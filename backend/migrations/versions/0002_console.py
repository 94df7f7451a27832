"""The supervisors' console: supervisors, their sessions, the audit log, recordings found on
disk, and the indexes that keep the calls list fast at 100,000 calls and more.

Constraint and index names follow the naming convention (pk_/uq_/fk_/ix_), written out so the
names are the same on SQLite and PostgreSQL. Index creation needs no batch mode on SQLite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:52:50
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name -> (table, columns): the console's indexes on existing tables and its own.
INDEXES = {
    "ix_calls_started_at_id": ("calls", ["started_at", "id"]),
    "ix_calls_caller_id_started_at": ("calls", ["caller_id", "started_at", "id"]),
    "ix_calls_hotline_started_at": ("calls", ["hotline", "started_at", "id"]),
    "ix_calls_outcome_started_at": ("calls", ["outcome", "started_at", "id"]),
    "ix_bundles_call_id": ("bundles", ["call_id"]),
    "ix_bundles_created_at": ("bundles", ["created_at"]),
    "ix_console_sessions_supervisor_id": ("console_sessions", ["supervisor_id"]),
    "ix_audit_log_at_id": ("audit_log", ["at", "id"]),
    "ix_audit_log_actor_at": ("audit_log", ["actor", "at"]),
    "ix_audit_log_target_at": ("audit_log", ["target", "at"]),
}


def upgrade() -> None:
    op.create_table(
        "supervisors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "role", sa.Enum("supervisor", "admin", "auditor", native_enum=False), nullable=False
        ),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("extension", sa.String(length=32), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supervisors")),
        sa.UniqueConstraint("name", name=op.f("uq_supervisors_name")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("supervisor_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["supervisor_id"],
            ["supervisors.id"],
            name=op.f("fk_console_sessions_supervisor_id_supervisors"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_sessions_token_hash")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=96), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("ticket", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("ticket", name=op.f("uq_audit_log_ticket")),
    )
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=128), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_recordings_call_id_calls")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("call_id", name=op.f("uq_recordings_call_id")),
    )
    for name, (table, columns) in INDEXES.items():
        op.create_index(op.f(name), table, columns, unique=False)


def downgrade() -> None:
    for name, (table, _columns) in reversed(INDEXES.items()):
        op.drop_index(op.f(name), table_name=table)
    for table in ("recordings", "audit_log", "console_sessions", "supervisors"):
        op.drop_table(table)
