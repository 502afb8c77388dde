"""Executemany on the DBAPI cursor for the request path's hot inserts.

SQLAlchemy builds and compiles the INSERT once per (table, dialect); each call then costs one
`cursor.executemany`, not a statement construction and cache lookup per call. Only for tables
whose column types the drivers take natively (strings, numbers, floats, None).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, insert


class RawInsert:
    def __init__(self, table: Table) -> None:
        self.table = table
        self.columns = [
            c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)
        ]
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def _sql(self, conn: Connection) -> tuple[str, tuple[str, ...] | None]:
        name = conn.dialect.name
        found = self._compiled.get(name)
        if found is None:
            compiled = insert(self.table).compile(dialect=conn.dialect, column_keys=self.columns)
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            found = self._compiled[name] = (str(compiled), order)
        return found

    def run(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        sql, order = self._sql(conn)
        params: Any = (
            [tuple(r.get(k) for k in order) for r in rows]
            if order is not None
            else [{k: r.get(k) for k in self.columns} for r in rows]
        )
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, params)
        finally:
            cursor.close()
