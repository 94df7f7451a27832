"""Event (HOTP) tokens get columns of their own: `tokens.type` ('totp' or 'hotp') and
`tokens.counter` (hotp: the next counter the server expects). Until now an HOTP token was
marked by `period = 0` and kept the last counter used in `last_used_step`; `period` is now NULL
for HOTP tokens (it means something for TOTP only).

The upgrade moves existing HOTP rows (period 0) across, the downgrade moves them back; the
counter N of the new layout is the old "last used" N - 1 (none used: counter 0). SQLite alters
the table by copying it (batch mode), keeping the constraints' names.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:12:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns the data moves use, as they are in both layouts.
tokens = sa.table(
    "tokens",
    sa.column("type", sa.String()),
    sa.column("period", sa.Integer()),
    sa.column("last_used_step", sa.Integer()),
    sa.column("counter", sa.Integer()),
)
OLD_HOTP_PERIOD = 0  # how 0002's layout marked an event token


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(
            sa.Column(
                "type",
                sa.Enum("totp", "hotp", native_enum=False),
                server_default="totp",
                nullable=False,
            )
        )
        batch.add_column(sa.Column("counter", sa.Integer(), nullable=True))
        batch.alter_column("period", existing_type=sa.Integer(), nullable=True)
    # One UPDATE: every SET reads the row as it was.
    op.execute(
        tokens.update()
        .where(tokens.c.period == OLD_HOTP_PERIOD)
        .values(
            type="hotp",
            counter=sa.func.coalesce(tokens.c.last_used_step + 1, 0),
            period=None,
            last_used_step=None,
        )
    )


def downgrade() -> None:
    op.execute(
        tokens.update()
        .where(tokens.c.type == "hotp")
        .values(
            period=OLD_HOTP_PERIOD,
            last_used_step=sa.case((tokens.c.counter > 0, tokens.c.counter - 1), else_=None),
        )
    )
    with op.batch_alter_table("tokens") as batch:
        batch.alter_column("period", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("counter")
        batch.drop_column("type")
