"""partner_usage: the requests each partner was admitted per UTC day (per-day rate limits).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

One row per (sender_id, day): every API process on the store counts a partner's requests of
the day in it with one conditional upsert, so a per-day limit holds across processes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partner_usage",
        sa.Column("sender_id", sa.String(length=100), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sender_id", "day", name="pk_partner_usage"),
    )


def downgrade() -> None:
    raise NotImplementedError("dcihub does not downgrade a store")
