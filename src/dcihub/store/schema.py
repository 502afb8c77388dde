"""Tables, derived from the registry profiles plus the fixed operational tables.

For each entity of each registry profile:

* `<registry>_<entity>` — one row per record: `pk`, `record_key` (unique), `parent_pk` (the
  enclosing record for embedded entities, e.g. a Member's household), `record` (the record as
  JSON text, returned as is), and one indexed column `a_<attribute>` per single-valued stored
  attribute the profile declares;
* `<registry>_<entity>_ids` — identifier (type, value) pairs, primary key (type, value, pk) so
  an identifier lookup is an index-only probe;
* `<registry>_<entity>_mv` — values of multi-valued attributes (impairment types, crops, ...),
  indexed by (attribute, value).

Operational tables: `transactions` and `txn_items` (for txn/status, surviving restarts),
`outbox` (durable queue of work and callbacks, claimed with SKIP LOCKED on PostgreSQL),
`seen_messages` (replay protection), `audit_log` (hash-chained trail), and the subscriptions:
`subscriptions`, `subscription_keys` (the index events are matched by) and `notify_queue`
(events waiting for a periodic subscription's next run); `partner_usage` (requests admitted per
partner and UTC day, for per-day rate limits).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

from ..standard.profiles.base import Attribute, Entity, RegistryProfile

SQL_TYPES: dict[str, type[TypeEngine]] = {
    "text": String,
    "code": String,
    "int": Integer,
    "float": Float,
    "date": Date,
    "bool": Boolean,
}


@dataclass(frozen=True)
class EntityTables:
    registry: str
    entity: Entity
    main: Table
    ids: Table
    mv: Table

    def column(self, attr: Attribute) -> Column:
        return self.main.c[attr.column]

    @property
    def all(self) -> tuple[Table, Table, Table]:
        return (self.main, self.ids, self.mv)


def entity_tables(metadata: MetaData, registry: str, entity: Entity) -> EntityTables:
    base = f"{registry}_{entity.name.lower()}"
    columns: list[Column] = [
        Column("pk", Integer, primary_key=True, autoincrement=True),
        Column("record_key", String(200), nullable=False),
        Column("parent_pk", Integer, nullable=True),
        Column("record", Text, nullable=False),
        Column("updated_at", Float, nullable=False),
    ]
    indexes = [
        Index(f"ix_{base}_parent", "parent_pk"),
    ]
    for attr in entity.attributes:
        if attr.stored and not attr.multi:
            sql_type = SQL_TYPES[attr.type]
            columns.append(
                Column(
                    attr.column,
                    sql_type() if sql_type is not String else String(200),
                    nullable=True,
                )
            )
            indexes.append(Index(f"ix_{base}_{attr.name}", attr.column))
    main = Table(
        base, metadata, *columns, UniqueConstraint("record_key", name=f"uq_{base}_key"), *indexes
    )
    ids = Table(
        f"{base}_ids",
        metadata,
        Column("id_type", String(40), nullable=False),
        Column("id_value", String(256), nullable=False),
        Column("pk", Integer, nullable=False),
        PrimaryKeyConstraint("id_type", "id_value", "pk", name=f"pk_{base}_ids"),
        Index(f"ix_{base}_ids_pk", "pk"),
        Index(f"ix_{base}_ids_value", "id_value"),
    )
    mv = Table(
        f"{base}_mv",
        metadata,
        Column("pk", Integer, nullable=False),
        Column("attr", String(64), nullable=False),
        Column("v_text", String(200), nullable=True),
        Column("v_num", Float, nullable=True),
        Column("v_date", Date, nullable=True),
        Index(f"ix_{base}_mv_text", "attr", "v_text"),
        Index(f"ix_{base}_mv_num", "attr", "v_num"),
        Index(f"ix_{base}_mv_date", "attr", "v_date"),
        Index(f"ix_{base}_mv_pk", "pk"),
    )
    return EntityTables(registry, entity, main, ids, mv)


@dataclass(frozen=True)
class OperationalTables:
    transactions: Table
    txn_items: Table
    outbox: Table
    seen_messages: Table
    audit_log: Table
    meta: Table
    subscriptions: Table
    subscription_keys: Table
    notify_queue: Table
    partner_usage: Table


def operational_tables(metadata: MetaData) -> OperationalTables:
    transactions = Table(
        "transactions",
        metadata,
        Column("pk", Integer, primary_key=True, autoincrement=True),
        Column("registry", String(32), nullable=False),
        Column("sender_id", String(100), nullable=False),
        Column("transaction_id", String(100), nullable=False),
        Column("correlation_id", String(100), nullable=False),
        Column("message_id", String(100), nullable=False),
        Column("action", String(40), nullable=False),
        Column("txn_type", String(20), nullable=False),
        Column("mode", String(8), nullable=False),  # sync | async
        Column("status", String(8), nullable=False),  # rcvd pdng succ rjct
        Column("total_count", Integer, nullable=False),
        Column("completed_count", Integer, nullable=False, default=0),
        Column("sender_uri", Text, nullable=True),
        Column("request", Text, nullable=True),  # the request message (async work)
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        UniqueConstraint("correlation_id", name="uq_transactions_correlation"),
        Index("ix_transactions_sender_txn", "registry", "sender_id", "transaction_id"),
        Index("ix_transactions_updated", "updated_at"),  # retention
    )
    txn_items = Table(
        "txn_items",
        metadata,
        Column("txn_pk", Integer, nullable=False),
        Column("seq", Integer, nullable=False),
        Column("reference_id", String(100), nullable=True),
        Column("timestamp", String(40), nullable=True),
        Column("locale", String(8), nullable=True),
        Column("status", String(8), nullable=False),
        Column("reason_code", String(64), nullable=True),
        Column("reason_message", Text, nullable=True),
        Column("result", Text, nullable=True),  # JSON: what is needed to answer txn/status
        PrimaryKeyConstraint("txn_pk", "seq", name="pk_txn_items"),
        Index("ix_txn_items_reference", "reference_id"),
    )
    outbox = Table(
        "outbox",
        metadata,
        Column("pk", Integer, primary_key=True, autoincrement=True),
        Column("kind", String(16), nullable=False),  # process | deliver
        Column("registry", String(32), nullable=True),
        Column("txn_pk", Integer, nullable=True),
        Column("sender_id", String(100), nullable=True),
        Column("target_url", Text, nullable=True),
        Column("action", String(40), nullable=True),
        Column("payload", Text, nullable=True),
        Column("status", String(10), nullable=False),  # pending inflight done dead
        Column("attempts", Integer, nullable=False, default=0),
        Column("next_attempt_at", Float, nullable=False),
        Column("locked_until", Float, nullable=True),
        Column("claimed_by", String(64), nullable=True),  # the worker holding an inflight row
        Column("last_error", Text, nullable=True),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # retention (done and dead rows by age) and the per-status counts of /status
        Index("ix_outbox_status_updated", "status", "updated_at"),
    )
    seen_messages = Table(
        "seen_messages",
        metadata,
        Column("sender_id", String(100), nullable=False),
        Column("message_id", String(100), nullable=False),
        Column("response_status", Integer, nullable=False),
        Column("response", LargeBinary, nullable=False),
        Column("created_at", Float, nullable=False),
        # SHA-256 (hex) of the endpoint path and the canonical {header, message} it answered:
        # the original reply goes only to the identical request at the same endpoint
        Column("request_digest", String(64), nullable=True),
        PrimaryKeyConstraint("sender_id", "message_id", name="pk_seen_messages"),
        Index("ix_seen_messages_created", "created_at"),
    )
    audit_log = Table(
        "audit_log",
        metadata,
        Column("seq", Integer, primary_key=True, autoincrement=False),
        Column("ts", Float, nullable=False),
        Column("partner", String(100), nullable=True),
        Column("registry", String(32), nullable=True),
        Column("entry", Text, nullable=False),  # canonical JSON of the audited facts
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        Index("ix_audit_partner_ts", "partner", "ts"),
        Index("ix_audit_ts", "ts"),
    )
    meta = Table(
        "dcihub_meta",
        metadata,
        Column("key", String(100), primary_key=True),
        Column("value", Text, nullable=False),
    )
    subscriptions = Table(
        "subscriptions",
        metadata,
        Column("pk", Integer, primary_key=True, autoincrement=True),
        Column("code", String(100), nullable=False),
        Column("registry", String(32), nullable=False),
        Column("sender_id", String(100), nullable=False),
        Column("transaction_id", String(100), nullable=False),  # of the subscribe message
        Column("reference_id", String(100), nullable=False),
        Column("event_type", String(64), nullable=False),  # the profile's name of the event
        Column("entity", String(64), nullable=False),  # notify_record_type, as the profile names it
        Column("filter_type", String(20), nullable=True),
        Column("filter", Text, nullable=True),  # JSON, as sent (bound again at each match)
        Column("frequency", Text, nullable=True),  # JSON, as sent
        Column("cron", String(120), nullable=True),  # None: notified at once
        Column("start_at", Float, nullable=False),
        Column("end_at", Float, nullable=True),
        Column("target_url", Text, nullable=False),  # where notify goes
        Column("status", String(12), nullable=False),  # subscribe | unsubscribe
        Column("locale", String(8), nullable=True),
        Column("info", Text, nullable=False),  # JSON: the SubscriptionInfo answered
        # digest of what makes two subscriptions the same (NULL once unsubscribed)
        Column("dedupe", String(64), nullable=True),
        Column("batch_pending", Boolean, nullable=False, default=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        UniqueConstraint("code", name="uq_subscriptions_code"),
        UniqueConstraint("dedupe", name="uq_subscriptions_dedupe"),
        Index("ix_subscriptions_sender", "registry", "sender_id", "transaction_id"),
    )
    subscription_keys = Table(
        "subscription_keys",
        metadata,
        # the index events are matched by: (registry, event type, identifier or "*")
        Column("registry", String(32), nullable=False),
        Column("event_type", String(64), nullable=False),
        Column("key", String(300), nullable=False),  # "<id type>=<value>", or "*" for any
        Column("sub_pk", Integer, nullable=False),
        PrimaryKeyConstraint(
            "registry", "event_type", "key", "sub_pk", name="pk_subscription_keys"
        ),
        Index("ix_subscription_keys_sub", "sub_pk"),
    )
    notify_queue = Table(
        "notify_queue",
        metadata,
        # events waiting for a periodic subscription's next run
        Column("pk", Integer, primary_key=True, autoincrement=True),
        Column("sub_pk", Integer, nullable=False),
        Column("item", Text, nullable=False),  # JSON: one notify_event item
        Column("created_at", Float, nullable=False),
        Index("ix_notify_queue_sub", "sub_pk", "pk"),
    )
    partner_usage = Table(
        "partner_usage",
        metadata,
        # requests a partner was admitted on one UTC day (its per-day rate limit, shared by
        # every API process on the store)
        Column("sender_id", String(100), nullable=False),
        Column("day", String(10), nullable=False),  # YYYY-MM-DD, UTC
        Column("requests", Integer, nullable=False),
        PrimaryKeyConstraint("sender_id", "day", name="pk_partner_usage"),
    )
    return OperationalTables(
        transactions,
        txn_items,
        outbox,
        seen_messages,
        audit_log,
        meta,
        subscriptions,
        subscription_keys,
        notify_queue,
        partner_usage,
    )


@dataclass(frozen=True)
class Schema:
    metadata: MetaData
    entities: dict[tuple[str, str], EntityTables]
    ops: OperationalTables

    def tables(self, registry: str, entity: str) -> EntityTables:
        return self.entities[(registry, entity)]


def build_schema(profiles: dict[str, RegistryProfile]) -> Schema:
    metadata = MetaData()
    entities = {}
    for name, profile in profiles.items():
        for entity in profile.entities:
            entities[(name, entity.name)] = entity_tables(metadata, name, entity)
    return Schema(metadata, entities, operational_tables(metadata))
