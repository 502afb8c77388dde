"""schema.version 3: dcihub releases from before migrations refuse an upgraded store.

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-01

Those releases accept only `schema.version` 2; from here on the revision in `alembic_version`
says what the store holds, and `schema.version` stays at 3.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = sa.table("dcihub_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    op.execute(meta.delete().where(meta.c.key == "schema.version"))
    op.bulk_insert(meta, [{"key": "schema.version", "value": "3"}])


def downgrade() -> None:
    raise NotImplementedError("dcihub does not downgrade a store")
