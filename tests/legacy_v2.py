"""A store as dcihub made it before migrations (schema version 2, commit c9f6ed5): the table
layout frozen here, filled with the test population through the store's own writers, so that
the migration tests start from what an operator's existing store holds.

The layout functions below are copied from that commit's `store/schema.py` and must not follow
later changes of it: an upgraded legacy store is compared with today's tables. The registry
tables are those of today's profiles laid out that way (a profile or attribute that comes
after a store was made is what tests/test_migrations.py's reconciliation tests cover).
"""

from __future__ import annotations

import time

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

from dcihub.population.generator import Country
from dcihub.population.load import BUILD_KEY, build_signature
from dcihub.standard.profiles import PROFILES
from dcihub.standard.profiles.base import Entity, RegistryProfile
from dcihub.store.audit import AuditEntry, AuditLog
from dcihub.store.database import make_engine
from dcihub.store.outbox import Outbox
from dcihub.store.records import RecordStore
from dcihub.store.schema import EntityTables, OperationalTables, Schema
from dcihub.store.transactions import ItemRow, NewTxn, TxnStore

SQL_TYPES: dict[str, type[TypeEngine]] = {
    "text": String,
    "code": String,
    "int": Integer,
    "float": Float,
    "date": Date,
    "bool": Boolean,
}


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
        Column("last_error", Text, nullable=True),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )
    seen_messages = Table(
        "seen_messages",
        metadata,
        Column("sender_id", String(100), nullable=False),
        Column("message_id", String(100), nullable=False),
        Column("response_status", Integer, nullable=False),
        Column("response", LargeBinary, nullable=False),
        Column("created_at", Float, nullable=False),
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
    # no subscription or partner usage tables before migrations
    return OperationalTables(
        transactions, txn_items, outbox, seen_messages, audit_log, meta, None, None, None, None
    )


def legacy_schema(profiles: dict[str, RegistryProfile]) -> Schema:
    metadata = MetaData()
    entities = {}
    for name, profile in profiles.items():
        for entity in profile.entities:
            entities[(name, entity.name)] = entity_tables(metadata, name, entity)
    return Schema(metadata, entities, operational_tables(metadata))


def make_legacy_store(url: str, country: Country | None = None) -> None:
    """What `Store(url).create_all()` and `load_country` made before migrations, plus a few rows
    of every operational table (transactions and items, outbox, replay window, audit chain)."""
    engine = make_engine(url)
    schema = legacy_schema(PROFILES)
    schema.metadata.create_all(engine)
    meta = schema.ops.meta
    with engine.begin() as conn:
        conn.execute(meta.insert(), {"key": "schema.version", "value": "2"})
        AuditLog(schema.ops).ensure_head(conn)
    if country is not None:
        records = RecordStore(schema, PROFILES)
        with engine.begin() as conn:
            for registry in country.registries:
                if registry in PROFILES:
                    records.bulk_load(conn, registry, country.records(registry))
            signature = build_signature(country.people, country.seed, country.as_of)
            conn.execute(meta.insert(), {"key": BUILD_KEY, "value": signature})
    with engine.begin() as conn:
        TxnStore(schema.ops).create_many(
            conn,
            [
                NewTxn(
                    "crvs",
                    "spmis.test",
                    f"t-{n}",
                    f"c-{n}",
                    f"m-{n}",
                    "search",
                    "search",
                    "async",
                    "succ",
                    2,
                    2,
                    "http://127.0.0.1:9/on-search",
                    {"n": n},
                    [
                        ItemRow(0, f"r-{n}-0", "succ"),
                        ItemRow(1, f"r-{n}-1", "rjct", reason_code="rjct.x"),
                    ],
                )
                for n in range(3)
            ],
        )
        outbox = Outbox(schema.ops)
        outbox.enqueue(conn, "process", registry="crvs", txn_pk=1, sender_id="spmis.test")
        outbox.enqueue(
            conn, "deliver", registry="crvs", target_url="http://127.0.0.1:9/", payload="{}"
        )
        conn.execute(  # as that version wrote them (no request digest)
            schema.ops.seen_messages.insert(),
            [
                {
                    "sender_id": "spmis.test",
                    "message_id": f"m-{n}",
                    "response_status": 200,
                    "response": b'{"ok": true}',
                    "created_at": time.time(),
                }
                for n in range(3)
            ],
        )
        AuditLog(schema.ops).append_many(
            conn,
            [
                AuditEntry("in", "search", ts=1.0 + n, partner="spmis.test", message_id=f"m-{n}")
                for n in range(5)
            ],
        )
    engine.dispose()
