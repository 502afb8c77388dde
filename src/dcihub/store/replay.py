"""Replay protection: `(sender_id, message_id)` pairs seen within the window, with the reply
that was given and the digest of the request it answered, so that a replay of that request gets
the original reply back and is not processed twice (and another request reusing the id is
refused)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, update

from .schema import OperationalTables


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
        self, conn: Connection, rows: Sequence[tuple[str, str, int, bytes, str | None]]
    ) -> None:
        """Insert (sender_id, message_id, status, body, request digest); an existing pair is
        kept as is."""
        if not rows:
            return
        now = time.time()
        dialect = conn.dialect.name
        params = [(s, m, status, body, now, digest) for s, m, status, body, digest in rows]
        if dialect == "sqlite":
            sql = (
                "INSERT OR IGNORE INTO seen_messages (sender_id, message_id, response_status, "
                "response, created_at, request_digest) VALUES (?, ?, ?, ?, ?, ?)"
            )
        else:
            sql = (
                "INSERT INTO seen_messages (sender_id, message_id, response_status, "
                "response, created_at, request_digest) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (sender_id, message_id) DO NOTHING"
            )
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, params)
        finally:
            cursor.close()

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
