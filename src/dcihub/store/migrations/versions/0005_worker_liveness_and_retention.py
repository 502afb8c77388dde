"""outbox.claimed_by and the retention indexes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

`outbox.claimed_by` names the worker holding an `inflight` row: a live worker renews the short
leases of its rows (its heartbeat), so the rows of a worker that died are claimed again within
seconds, and only the holder writes a row's outcome. `ix_outbox_status_updated` and
`ix_transactions_updated` let the retention purge find old delivered and given-up rows and old
transactions, and the per-status counts of `/status` read only the index, at any queue size.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_outbox_status_updated", ["status", "updated_at"], unique=False)
    with op.batch_alter_table("transactions") as batch_op:
        batch_op.create_index("ix_transactions_updated", ["updated_at"], unique=False)


def downgrade() -> None:
    raise NotImplementedError("dcihub does not downgrade a store")
