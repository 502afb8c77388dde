"""Operational tables as dcihub made them before migrations (store schema version 2).

Revision ID: 0001
Revises:
Create Date: 2026-03-01

A store made by that code (`schema.version` 2 in `dcihub_meta`, no `alembic_version`) is
stamped at this revision instead of running it. The definitions are frozen here: a later change
to `store/schema.py` comes with a revision of its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("registry", sa.String(32), nullable=False),
        sa.Column("sender_id", sa.String(100), nullable=False),
        sa.Column("transaction_id", sa.String(100), nullable=False),
        sa.Column("correlation_id", sa.String(100), nullable=False),
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("txn_type", sa.String(20), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("total_count", sa.Integer(), nullable=False),
        sa.Column("completed_count", sa.Integer(), nullable=False),
        sa.Column("sender_uri", sa.Text(), nullable=True),
        sa.Column("request", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("correlation_id", name="uq_transactions_correlation"),
    )
    op.create_index(
        "ix_transactions_sender_txn", "transactions", ["registry", "sender_id", "transaction_id"]
    )
    op.create_table(
        "txn_items",
        sa.Column("txn_pk", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("reference_id", sa.String(100), nullable=True),
        sa.Column("timestamp", sa.String(40), nullable=True),
        sa.Column("locale", sa.String(8), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=True),
        sa.Column("reason_message", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("txn_pk", "seq", name="pk_txn_items"),
    )
    op.create_index("ix_txn_items_reference", "txn_items", ["reference_id"])
    op.create_table(
        "outbox",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("registry", sa.String(32), nullable=True),
        sa.Column("txn_pk", sa.Integer(), nullable=True),
        sa.Column("sender_id", sa.String(100), nullable=True),
        sa.Column("target_url", sa.Text(), nullable=True),
        sa.Column("action", sa.String(40), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_table(
        "seen_messages",
        sa.Column("sender_id", sa.String(100), nullable=False),
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sender_id", "message_id", name="pk_seen_messages"),
    )
    op.create_index("ix_seen_messages_created", "seen_messages", ["created_at"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("partner", sa.String(100), nullable=True),
        sa.Column("registry", sa.String(32), nullable=True),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_partner_ts", "audit_log", ["partner", "ts"])
    op.create_index("ix_audit_ts", "audit_log", ["ts"])
    meta = op.create_table(
        "dcihub_meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.bulk_insert(meta, [{"key": "schema.version", "value": "2"}])


def downgrade() -> None:
    raise NotImplementedError("dcihub does not downgrade a store")
