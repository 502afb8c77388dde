"""Transactions and their items, persisted so that txn/status answers after a restart.

A search item keeps what is needed to answer txn/status again: its status, reason, and for a
success the record keys (entity + primary keys) and pagination — not a copy of the personal
data, which is read fresh from the records when asked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from .raw import RawInsert
from .schema import OperationalTables

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127] if chr(c) not in "\t\n"}


def storable(text: str | None, length: int | None = None) -> str | None:
    """`text` with control characters written as escapes (`\\x00`), cut to `length`."""
    if text is None:
        return None
    if not text.isprintable():
        text = text.translate(_CONTROL)
    return text[:length] if length is not None else text


@dataclass
class ItemRow:
    seq: int
    reference_id: str | None
    status: str
    timestamp: str | None = None
    locale: str | None = None
    reason_code: str | None = None
    reason_message: str | None = None
    result: dict[str, Any] | None = None

    def params(self, txn_pk: int) -> dict[str, Any]:
        # A rejected item keeps what the caller sent, which may be what made it rejected: a
        # reference_id, timestamp or locale too long for its column, or text with control
        # characters (PostgreSQL cannot store NUL), quoted in the reason too. They are kept in
        # a form every store holds, so that the rejection itself is recorded.
        return {
            "txn_pk": txn_pk,
            "seq": self.seq,
            "reference_id": storable(self.reference_id, 100),
            "timestamp": storable(self.timestamp, 40),
            "locale": storable(self.locale, 8),
            "status": self.status,
            "reason_code": self.reason_code,
            "reason_message": storable(self.reason_message),
            "result": orjson.dumps(self.result).decode() if self.result is not None else None,
        }


@dataclass
class TxnRow:
    pk: int
    registry: str
    sender_id: str
    transaction_id: str
    correlation_id: str
    message_id: str
    action: str
    txn_type: str
    mode: str
    status: str
    total_count: int
    completed_count: int
    sender_uri: str | None
    request: str | None
    created_at: float


@dataclass
class NewTxn:
    """A transaction to record (see `TxnStore.create_many`)."""

    registry: str
    sender_id: str
    transaction_id: str
    correlation_id: str
    message_id: str
    action: str
    txn_type: str
    mode: str
    status: str
    total_count: int
    completed_count: int = 0
    sender_uri: str | None = None
    request: Any = None
    items: Sequence[ItemRow] = ()

    def params(self, now: float) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "sender_id": self.sender_id,
            "transaction_id": self.transaction_id,
            "correlation_id": self.correlation_id,
            "message_id": self.message_id,
            "action": self.action,
            "txn_type": self.txn_type,
            "mode": self.mode,
            "status": self.status,
            "total_count": self.total_count,
            "completed_count": self.completed_count,
            "sender_uri": self.sender_uri,
            "request": orjson.dumps(self.request).decode() if self.request is not None else None,
            "created_at": now,
            "updated_at": now,
        }


class TxnStore:
    def __init__(self, ops: OperationalTables) -> None:
        self.t = ops.transactions
        self.items = ops.txn_items
        self._insert_txns = RawInsert(self.t)
        self._insert_items = RawInsert(self.items)

    def create_many(self, conn: Connection, txns: Sequence[NewTxn]) -> list[int]:
        """Record many transactions in two statements (group commit of the request path)."""
        if not txns:
            return []
        now = time.time()
        # executemany without RETURNING (one statement for the group), then read the keys back
        # by the unique correlation ids: RETURNING with executemany would run row by row on
        # SQLite.
        self._insert_txns.run(conn, [txn.params(now) for txn in txns])
        wanted = [txn.correlation_id for txn in txns]
        found = dict(
            conn.execute(
                select(self.t.c.correlation_id, self.t.c.pk).where(
                    self.t.c.correlation_id.in_(wanted)
                )
            ).all()
        )
        pks = [found[c] for c in wanted]
        items = [item.params(pk) for pk, txn in zip(pks, txns, strict=True) for item in txn.items]
        self._insert_items.run(conn, items)
        return pks

    def finish(
        self,
        conn: Connection,
        txn_pk: int,
        status: str,
        completed_count: int,
        items: Sequence[ItemRow],
    ) -> None:
        conn.execute(
            update(self.t)
            .where(self.t.c.pk == txn_pk)
            .values(
                status=status,
                completed_count=completed_count,
                updated_at=time.time(),
                request=None,  # the work is done: do not keep the query text longer than needed
            )
        )
        for item in items:
            params = item.params(txn_pk)
            conn.execute(
                update(self.items)
                .where(self.items.c.txn_pk == txn_pk, self.items.c.seq == item.seq)
                .values(
                    status=params["status"],
                    reason_code=params["reason_code"],
                    reason_message=params["reason_message"],
                    result=params["result"],
                )
            )

    def get(self, conn: Connection, txn_pk: int, lock: bool = False) -> TxnRow | None:
        """The transaction; with `lock`, its row is locked until the caller's transaction ends
        (PostgreSQL: two workers finishing the same transaction are serialised, and the second
        sees it finished; SQLite has one writer anyway)."""
        query = select(self.t).where(self.t.c.pk == txn_pk)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        return _txn(row) if row else None

    def find(
        self, conn: Connection, registry: str, sender_id: str, attribute_type: str, value: Any
    ) -> list[tuple[TxnRow, list[ItemRow]]]:
        """Transactions of one sender matching a txn/status request, newest first."""
        t = self.t
        base = select(t).where(t.c.registry == registry, t.c.sender_id == sender_id)
        only_refs: set[str] | None = None
        if attribute_type == "transaction_id":
            query = base.where(t.c.transaction_id == value)
        elif attribute_type == "correlation_id":
            query = base.where(t.c.correlation_id == value)
        elif attribute_type == "reference_id_list":
            only_refs = set(value)
            txn_pks = select(self.items.c.txn_pk).where(self.items.c.reference_id.in_(value))
            query = base.where(t.c.pk.in_(txn_pks))
        else:
            return []
        rows = conn.execute(query.order_by(t.c.pk.desc()).limit(20)).mappings().all()
        out = []
        for row in rows:
            items = self.items_of(conn, row["pk"])
            if only_refs is not None:
                items = [i for i in items if i.reference_id in only_refs]
            out.append((_txn(row), items))
        return out

    def items_of(self, conn: Connection, txn_pk: int) -> list[ItemRow]:
        rows = (
            conn.execute(
                select(self.items).where(self.items.c.txn_pk == txn_pk).order_by(self.items.c.seq)
            )
            .mappings()
            .all()
        )
        return [
            ItemRow(
                seq=r["seq"],
                reference_id=r["reference_id"],
                status=r["status"],
                timestamp=r["timestamp"],
                locale=r["locale"],
                reason_code=r["reason_code"],
                reason_message=r["reason_message"],
                result=orjson.loads(r["result"]) if r["result"] else None,
            )
            for r in rows
        ]


def _txn(row: Any) -> TxnRow:
    return TxnRow(**{k: row[k] for k in TxnRow.__dataclass_fields__})
