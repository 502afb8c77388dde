"""The bulk path: records turned into rows away from the database, then written in bulk.

Loading a large population is two jobs of very different kinds. *Staging* (`stage`) reads
each record as its profile declares -- key, index columns, identifiers, multi-valued
attributes, embedded records -- and serialises it to JSON; it is pure Python, needs no
connection, and its result (`Staged`, plain tuples) is cheap to pickle, so it can run in
worker processes. *Writing* (`write_staged`) gives the rows their primary keys (after the
largest already in each table) and hands them to the database driver directly:
`executemany` on SQLite, `COPY ... FROM STDIN` on PostgreSQL. Both keep the semantics of
`RecordStore.bulk_load` (which stays the path when subscriptions must hear of each record).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from ..standard.profiles.base import Entity, RegistryProfile
from .records import Row, explode
from .schema import EntityTables, Schema

__all__ = ["Staged", "stage", "write_staged"]


@dataclass
class _EntityRows:
    # main: (local pk, record_key, local parent pk or None, record JSON, *index columns)
    main: list[tuple[Any, ...]] = field(default_factory=list)
    ids: list[tuple[str, str, int]] = field(default_factory=list)  # (type, value, local pk)
    mv: list[tuple[int, str, Any, Any, Any]] = field(default_factory=list)


@dataclass
class Staged:
    """The rows of a batch of one registry's records, keyed by entity, with local primary
    keys (0, 1, ...) that `write_staged` shifts past the rows already in each table."""

    registry: str
    records: int = 0
    entities: dict[str, _EntityRows] = field(default_factory=dict)


def _columns(entity: Entity) -> list[str]:
    return [a.column for a in entity.attributes if a.stored and not a.multi]


def stage(profile: RegistryProfile, records: list[dict[str, Any]]) -> Staged:
    """The rows of `records` (top-level records of `profile`'s single top-level entity)."""
    top = [e for e in profile.entities if e.parent is None]
    if len(top) != 1:
        raise ValueError("the bulk path supports registries with one top-level entity")
    staged = Staged(profile.name, 0, {e.name: _EntityRows() for e in profile.entities})
    columns = {e.name: _columns(e) for e in profile.entities}
    counters = dict.fromkeys(staged.entities, 0)
    dumps = orjson.dumps

    def add(row: Row, parent: int | None) -> None:
        name = row.entity.name
        pk = counters[name]
        counters[name] = pk + 1
        rows = staged.entities[name]
        values = row.columns
        rows.main.append(
            (pk, row.key, parent, dumps(row.record).decode(), *[values[c] for c in columns[name]])
        )
        rows.ids.extend((t, v, pk) for t, v in row.ids)
        for attr_name, value, attr in row.mv:
            if attr.type in ("int", "float", "bool"):
                rows.mv.append((pk, attr_name, None, float(value), None))
            elif attr.type == "date":
                rows.mv.append(
                    (pk, attr_name, None, None, value if isinstance(value, date) else None)
                )
            else:
                rows.mv.append((pk, attr_name, str(value)[:200], None, None))
        for child in row.children:
            add(child, pk)

    for record in records:
        add(explode(profile, top[0], record), None)
        staged.records += 1
    return staged


def write_staged(conn: Connection, schema: Schema, profile: RegistryProfile, staged: Staged) -> int:
    """Write `staged` in the connection's transaction; returns the number of top-level
    records. PostgreSQL's serial sequences are moved past the rows written."""
    postgres = conn.dialect.name == "postgresql"
    raw = conn.connection.driver_connection
    assert raw is not None
    now = time.time()
    bases = {
        e.name: conn.execute(
            select(func.coalesce(func.max(schema.tables(profile.name, e.name).main.c.pk), 0))
        ).scalar_one()
        + 1
        for e in profile.entities
    }
    for entity in profile.entities:
        rows = staged.entities.get(entity.name)
        if rows is None or not rows.main:
            continue
        tables = schema.tables(profile.name, entity.name)
        base = bases[entity.name]
        parent_base = bases[entity.parent] if entity.parent is not None else 0
        main_cols = ["pk", "record_key", "parent_pk", "record", "updated_at", *_columns(entity)]
        main = [
            (
                r[0] + base,
                r[1],
                None if r[2] is None else r[2] + parent_base,
                r[3],
                now,
                *r[4:],
            )
            for r in rows.main
        ]
        ids = [(t, v, pk + base) for t, v, pk in rows.ids]
        mv = [(pk + base, a, tx, n, d) for pk, a, tx, n, d in rows.mv]
        if postgres:
            _copy(raw, tables.main.name, main_cols, main)
            _copy(raw, tables.ids.name, ["id_type", "id_value", "pk"], ids)
            _copy(raw, tables.mv.name, ["pk", "attr", "v_text", "v_num", "v_date"], mv)
        else:
            _insert(raw, tables, main_cols, main, ids, mv)
    if postgres:
        for entity in profile.entities:
            main_table = schema.tables(profile.name, entity.name).main
            after = select(func.coalesce(func.max(main_table.c.pk), 0) + 1).scalar_subquery()
            conn.execute(
                select(
                    func.setval(func.pg_get_serial_sequence(main_table.name, "pk"), after, False)
                )
            )
    return staged.records


def _sqlite_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _insert(
    raw: Any,
    tables: EntityTables,
    main_cols: list[str],
    main: list[tuple[Any, ...]],
    ids: list[tuple[Any, ...]],
    mv: list[tuple[Any, ...]],
) -> None:
    cursor = raw.cursor()
    try:
        for table, cols, rows in (
            (tables.main.name, main_cols, main),
            (tables.ids.name, ["id_type", "id_value", "pk"], ids),
            (tables.mv.name, ["pk", "attr", "v_text", "v_num", "v_date"], mv),
        ):
            if not rows:
                continue
            marks = ", ".join("?" * len(cols))
            sql = f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ({marks})'
            cursor.executemany(sql, [tuple(map(_sqlite_value, r)) for r in rows])
    finally:
        cursor.close()


def _copy(raw: Any, table: str, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    with raw.cursor() as cursor:
        with cursor.copy(f'COPY "{table}" ({", ".join(cols)}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
