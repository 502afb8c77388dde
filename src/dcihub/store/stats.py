"""What the store holds and how much room it takes (`dcihub store stats`).

Row counts are exact (`count(*)`). Sizes are the database's own: on SQLite the `dbstat`
virtual table (bytes of the pages of each table and index, what the file holds), on
PostgreSQL `pg_relation_size` (the table, its TOAST and free-space maps excluded: the heap)
and `pg_indexes_size` (all its indexes). A SQLite library built without `dbstat` gives
counts without sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select, text

from .database import Store

__all__ = ["TableStats", "store_stats"]


@dataclass(frozen=True)
class TableStats:
    registry: str | None  # None: an operational table
    table: str
    rows: int
    table_bytes: int | None  # None: the database cannot tell
    index_bytes: int | None


def store_stats(store: Store) -> list[TableStats]:
    """One entry per table of this dcihub (registry tables first, by registry, then the
    operational tables)."""
    named: list[tuple[str | None, str]] = []
    for registry, profile in store.profiles.items():
        for entity in profile.entities:
            for table in store.schema.tables(registry, entity.name).all:
                named.append((registry, table.name))
    own = {name for _, name in named}
    named.extend((None, t.name) for t in store.schema.metadata.sorted_tables if t.name not in own)
    out: list[TableStats] = []
    with store.read() as conn:
        sizes = _sizes(conn, [name for _, name in named])
        for owner_registry, name in named:
            found_table = store.schema.metadata.tables.get(name)
            if found_table is None:
                continue
            try:
                rows = conn.execute(select(func.count()).select_from(found_table)).scalar_one()
            except Exception:  # noqa: BLE001 - a table an older store does not have yet
                conn.rollback()
                continue
            size, index = sizes.get(name, (None, None))
            out.append(TableStats(owner_registry, name, int(rows), size, index))
    return out


def _sizes(conn: Connection, tables: list[str]) -> dict[str, tuple[int | None, int | None]]:
    if conn.dialect.name == "postgresql":
        found: dict[str, tuple[int | None, int | None]] = {}
        rows = conn.execute(
            text(
                "SELECT c.relname, pg_relation_size(c.oid), pg_indexes_size(c.oid) "
                "FROM pg_class c WHERE c.relkind = 'r' AND c.relname = ANY(:names) "
                "AND pg_table_is_visible(c.oid)"
            ),
            {"names": tables},
        )
        for name, size, index in rows:
            found[name] = (int(size), int(index))
        return found
    if conn.dialect.name == "sqlite":
        try:
            pages: dict[str, int] = dict(
                conn.execute(text("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")).all()
            )
        except Exception:  # noqa: BLE001 - SQLite built without the dbstat virtual table
            conn.rollback()
            return {}
        owner: dict[str, str] = dict(
            conn.execute(
                text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
            ).all()
        )
        tables_bytes = {name: int(pages.get(name, 0)) for name in tables}
        index_bytes = dict.fromkeys(tables, 0)
        for index, table in owner.items():
            if table in index_bytes:
                index_bytes[table] += int(pages.get(index, 0))
        return {name: (tables_bytes[name], index_bytes[name]) for name in tables}
    return {}
