"""subscriptions: the subscriptions table, the index events are matched by, the notify queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-03-10

`subscriptions` keeps each subscription with its filter, event type, frequency and where its
notifications go; `subscription_keys` indexes the active ones by (registry, event type,
identifier or "*"), so that a change finds its candidate subscriptions without reading every
subscription; `notify_queue` holds the events of periodic subscriptions until their next run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(100), nullable=False),
        sa.Column("registry", sa.String(32), nullable=False),
        sa.Column("sender_id", sa.String(100), nullable=False),
        sa.Column("transaction_id", sa.String(100), nullable=False),
        sa.Column("reference_id", sa.String(100), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("filter_type", sa.String(20), nullable=True),
        sa.Column("filter", sa.Text(), nullable=True),
        sa.Column("frequency", sa.Text(), nullable=True),
        sa.Column("cron", sa.String(120), nullable=True),
        sa.Column("start_at", sa.Float(), nullable=False),
        sa.Column("end_at", sa.Float(), nullable=True),
        sa.Column("target_url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("locale", sa.String(8), nullable=True),
        sa.Column("info", sa.Text(), nullable=False),
        sa.Column("dedupe", sa.String(64), nullable=True),
        sa.Column("batch_pending", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("code", name="uq_subscriptions_code"),
        sa.UniqueConstraint("dedupe", name="uq_subscriptions_dedupe"),
    )
    op.create_index(
        "ix_subscriptions_sender", "subscriptions", ["registry", "sender_id", "transaction_id"]
    )
    op.create_table(
        "subscription_keys",
        sa.Column("registry", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("sub_pk", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "registry", "event_type", "key", "sub_pk", name="pk_subscription_keys"
        ),
    )
    op.create_index("ix_subscription_keys_sub", "subscription_keys", ["sub_pk"])
    op.create_table(
        "notify_queue",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("sub_pk", sa.Integer(), nullable=False),
        sa.Column("item", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_notify_queue_sub", "notify_queue", ["sub_pk", "pk"])


def downgrade() -> None:
    raise NotImplementedError("dcihub does not downgrade a store")
