"""Replay protection: `(sender_id, message_id)` pairs seen within the window, with the reply
that was given and the digest of the request it answered, so that a replay of that request gets
the original reply back and is not processed twice (and another request reusing the id is
refused).

Across processes the pair is claimed by the insert itself: `remember_many` runs in the same
transaction as the message's effects and fails with `DuplicateMessage` when the pair is there
already (within the window). On PostgreSQL the unique primary key makes a second process's
insert wait for the first one's transaction and then fail, so of two copies of one message
processed at the same moment by two processes exactly one is committed; the other's effects
are rolled back and it is answered as a replay."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, update

from .schema import OperationalTables


class DuplicateMessage(Exception):
    """A (sender_id, message_id) pair was committed by another request meanwhile."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(f"message ids committed meanwhile by another request: {pairs}")
        self.pairs = pairs


class ReplayStore:
    def __init__(self, ops: OperationalTables) -> None:
        self.t = ops.seen_messages

    def find(
        self, conn: Connection, sender_id: str, message_id: str, window: float
    ) -> tuple[int, bytes, str | None] | None:
        """The reply given to this message within the window, and the digest of the request
        it answered (SQLAlchemy connection)."""
        return self.find_dbapi(
            conn.connection.dbapi_connection, conn.dialect.name, sender_id, message_id, window
        )

    @staticmethod
    def find_dbapi(
        dbapi: Any, dialect: str, sender_id: str, message_id: str, window: float
    ) -> tuple[int, bytes, str | None] | None:
        """The same on a DBAPI connection: one primary-key probe per request, so it skips
        SQLAlchemy's statement machinery."""
        mark = "?" if dialect == "sqlite" else "%s"
        cursor = dbapi.cursor()
        try:
            cursor.execute(
                "SELECT response_status, response, request_digest FROM seen_messages WHERE "
                f"sender_id = {mark} AND message_id = {mark} AND created_at >= {mark}",
                (sender_id, message_id, time.time() - window),
            )
            row = cursor.fetchone()
        finally:
            cursor.close()
        return (row[0], bytes(row[1]), row[2]) if row else None

    def remember_many(
        self,
        conn: Connection,
        rows: Sequence[tuple[str, str, int, bytes, str | None]],
        window: float | None = None,
    ) -> None:
        """Insert (sender_id, message_id, status, body, request digest). A pair remembered
        already, less than `window` seconds ago (always, without a window), is a duplicate:
        `DuplicateMessage` is raised and the caller's transaction must be rolled back. An older
        pair (not yet purged) is replaced."""
        if not rows:
            return
        now = time.time()
        cutoff = now - window if window is not None else float("-inf")
        dialect = conn.dialect.name
        mark = "?" if dialect == "sqlite" else "%s"
        params = [(s, m, status, body, now, digest, cutoff) for s, m, status, body, digest in rows]
        sql = (
            "INSERT INTO seen_messages (sender_id, message_id, response_status, "
            f"response, created_at, request_digest) VALUES ({', '.join([mark] * 6)}) "
            "ON CONFLICT (sender_id, message_id) DO UPDATE SET "
            "response_status = excluded.response_status, response = excluded.response, "
            "created_at = excluded.created_at, request_digest = excluded.request_digest "
            f"WHERE seen_messages.created_at < {mark}"
        )
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, params)
            written = cursor.rowcount
        finally:
            cursor.close()
        if written != len(params):  # some pair is there already, within the window
            pairs = [(s, m) for s, m, *_ in rows]
            raise DuplicateMessage(pairs)

    def purge(self, conn: Connection, window: float, reply_seconds: float | None = None) -> int:
        """Forget pairs older than the window; drop the kept copy of sync replies (which hold
        records) after `reply_seconds` while still remembering their ids."""
        now = time.time()
        result = conn.execute(delete(self.t).where(self.t.c.created_at < now - window))
        if reply_seconds is not None:
            conn.execute(
                update(self.t)
                .where(
                    self.t.c.created_at < now - reply_seconds,
                    self.t.c.response_status == 200,
                    self.t.c.response != b"",
                )
                .values(response=b"")
            )
        return result.rowcount or 0
