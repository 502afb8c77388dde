"""seen_messages.request_digest: what the replay memory keeps of the request it answered.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

The SHA-256 of the endpoint path and the canonical {header, message} as received: only the
identical request at the same endpoint gets the original reply again; anything else reusing the
message id is refused as a duplicate. Rows remembered before have no digest and are treated as
"another request" (refused), the safe side.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("seen_messages") as batch_op:
        batch_op.add_column(sa.Column("request_digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("dcihub does not downgrade a store")
