"""Per-day request counts of partners (`partner_usage`), shared by every process on the store.

`admit` counts one request of a partner on a day if the partner is under its limit, in one
conditional upsert: two processes admitting at once cannot both take the last request of the
day (the row lock of the upsert orders them)."""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from .schema import OperationalTables


class PartnerUsage:
    def __init__(self, ops: OperationalTables) -> None:
        self.t = ops.partner_usage

    def admit(self, conn: Connection, sender_id: str, day: str, limit: int) -> int | None:
        """Count one request of `sender_id` on `day` (YYYY-MM-DD) unless it has `limit`
        already; the count with this request, or None when it was at its limit."""
        if limit < 1:
            return None
        t = self.t
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(t)
            .values(sender_id=sender_id, day=day, requests=1)
            .on_conflict_do_update(
                index_elements=[t.c.sender_id, t.c.day],
                set_={"requests": t.c.requests + 1},
                where=t.c.requests < limit,
            )
            .returning(t.c.requests)
        )
        row = conn.execute(statement).first()
        return int(row[0]) if row is not None else None

    def count(self, conn: Connection, sender_id: str, day: str) -> int:
        """Requests of `sender_id` admitted on `day`."""
        t = self.t
        found = conn.execute(
            select(t.c.requests).where(t.c.sender_id == sender_id, t.c.day == day)
        ).scalar()
        return int(found or 0)
