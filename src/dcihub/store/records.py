"""Registry records: loading, upserting and searching.

A record is stored once as JSON text (returned as is) and indexed by what its profile declares:
single-valued attributes as typed columns of the entity table, identifiers in the `_ids` table,
multi-valued attributes in the `_mv` table. Embedded entities (a household's members) get rows
of their own that point at the enclosing record.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import ColumnElement, Connection, bindparam, delete, func, insert, select, update

from ..standard import codedirs
from ..standard.plan import ANY_ID, SearchPlan
from ..standard.profiles.base import (
    Attribute,
    Entity,
    RegistryProfile,
    identifiers_of,
    to_bool,
    to_date,
    to_number,
    values_at,
)
from .compiler import Compiler, text_key
from .schema import EntityTables, Schema

if TYPE_CHECKING:
    from .access import Reader
    from .subscriptions import Subscriptions


def index_value(attr: Attribute, value: Any) -> Any:
    """The value as stored in an index column (None when it cannot be read as the type)."""
    if attr.type == "code":
        text = str(value).strip()[:200]
        if attr.code_dir is not None:
            return codedirs.get(attr.code_dir).normalise(value) or text
        return text
    if attr.type == "text":
        return text_key(str(value).strip())[:200]
    if attr.type in ("int", "float"):
        return to_number(value, attr.type == "int")
    if attr.type == "date":
        return to_date(value)
    if attr.type == "bool":
        return to_bool(value)
    return None  # pragma: no cover


@dataclass
class Row:
    """What one record contributes to the tables of its entity."""

    entity: Entity
    key: str
    record: dict[str, Any]
    columns: dict[str, Any]
    ids: list[tuple[str, str]]
    mv: list[tuple[str, Any, Attribute]]
    children: list[Row] = field(default_factory=list)


def explode(
    profile: RegistryProfile, entity: Entity, record: dict[str, Any], children: bool = True
) -> Row:
    """What `record` contributes to the tables of `entity` (and, with `children`, the rows of
    the records embedded in it)."""
    columns: dict[str, Any] = {}
    mv: list[tuple[str, Any, Attribute]] = []
    for attr in entity.attributes:
        if not attr.stored:
            continue
        if attr.multi:
            seen = set()
            for raw in values_at(record, attr.path):
                value = index_value(attr, raw)
                if value is not None and value not in seen:
                    seen.add(value)
                    mv.append((attr.name, value, attr))
            continue
        if attr.aggregate == "sum":
            numbers = [index_value(attr, v) for v in values_at(record, attr.path)]
            present = [n for n in numbers if n is not None]
            columns[attr.column] = sum(present) if present else None
        else:
            value = None
            for raw in values_at(record, attr.path):
                value = index_value(attr, raw)
                if value is not None:
                    break
            columns[attr.column] = value
    row = Row(
        entity,
        entity.record_key(record),
        record,
        columns,
        identifiers_of(record, entity.identifier_paths),
        mv,
    )
    for child in profile.children(entity) if children else ():
        if child.embedded_at:
            for sub in record.get(child.embedded_at) or []:
                if isinstance(sub, dict):
                    row.children.append(explode(profile, child, sub))
    return row


def _mv_params(pk: int, name: str, value: Any, attr: Attribute) -> dict[str, Any]:
    params: dict[str, Any] = {"pk": pk, "attr": name, "v_text": None, "v_num": None, "v_date": None}
    if attr.type in ("int", "float", "bool"):
        params["v_num"] = float(value)
    elif attr.type == "date":
        params["v_date"] = value if isinstance(value, date) else None
    else:
        params["v_text"] = str(value)[:200]
    return params


_MV_COLUMN = {
    "int": "v_num",
    "float": "v_num",
    "bool": "v_num",
    "date": "v_date",
    "text": "v_text",
    "code": "v_text",
}


@dataclass
class SearchResult:
    total_count: int
    rows: list[tuple[int, str]]  # (pk, record JSON)


class RecordStore:
    """Record tables of every registry. Methods take an open connection: the caller decides
    the transaction (a request, a worker job, a bulk load)."""

    def __init__(self, schema: Schema, profiles: dict[str, RegistryProfile]) -> None:
        self.schema = schema
        self.profiles = profiles
        self.compilers = {name: Compiler(schema, name, p) for name, p in profiles.items()}
        self._lookup_cache: dict[tuple[str, str, str, bool], str] = {}
        # Every change raises its events here (set by the Store): whatever path writes records
        # (the API, an import, the CLI) notifies the subscriptions it matches.
        self.subscriptions: Subscriptions | None = None

    def tables(self, registry: str, entity: str) -> EntityTables:
        return self.schema.tables(registry, entity)

    # ----------------------------------------------------------------------------- writing

    def bulk_load(
        self, conn: Connection, registry: str, records: Iterable[dict[str, Any]], batch: int = 5000
    ) -> int:
        """Insert new records into empty-or-growing tables quickly (explicit keys,
        executemany). Each raises its events (a registration) when some subscription of the
        registry could match, after its batch is written.

        For a single writer (demo build, imports); live updates use `upsert`."""
        profile = self.profiles[registry]
        top = [e for e in profile.entities if e.parent is None]
        assert len(top) == 1, "bulk_load supports registries with one top-level entity"
        next_pk = {e.name: self._max_pk(conn, registry, e) + 1 for e in profile.entities}
        pending: dict[str, _Batch] = {e.name: _Batch() for e in profile.entities}
        subscriptions = self.subscriptions
        notify = subscriptions is not None and subscriptions.any_active(conn, registry)
        written: list[dict[str, Any]] = []
        count = 0
        now = time.time()
        for record in records:
            row = explode(profile, top[0], record)
            self._stage(row, None, next_pk, pending, now)
            if notify:
                written.append(record)
            count += 1
            if count % batch == 0:
                self._flush(conn, registry, pending)
                self._raise_new(conn, registry, written)
        self._flush(conn, registry, pending)
        self._raise_new(conn, registry, written)
        self._advance_pk_sequences(conn, registry)
        return count

    def _raise_new(self, conn: Connection, registry: str, records: list[dict[str, Any]]) -> None:
        from .subscriptions import Change

        if self.subscriptions is not None:
            profile = self.profiles[registry]
            for record in records:
                self.subscriptions.changed(conn, Change(registry, profile, None, record))
        records.clear()

    def upsert_many(
        self, conn: Connection, registry: str, records: Iterable[dict[str, Any]]
    ) -> tuple[int, int]:
        """Insert or replace top-level records (an import of changes); returns (created,
        replaced). Each change raises its events."""
        created = replaced = 0
        for record in records:
            if self.upsert(conn, registry, record)[1]:
                created += 1
            else:
                replaced += 1
        return created, replaced

    def replace_many(
        self,
        conn: Connection,
        registry: str,
        records: Sequence[dict[str, Any]],
        replacing: Sequence[tuple[int, dict[str, Any]] | None],
    ) -> list[int]:
        """Write a batch of top-level records at once (an import): `replacing[i]` is the
        (primary key, record) that `records[i]` replaces, or None for a new record. The old rows
        are deleted and every record inserted with multi-row statements; each change raises
        its events (`profile.events`) in the caller's transaction, when some subscription of
        the registry could match. Returns the new primary keys, in order."""
        if not records:
            return []
        profile = self.profiles[registry]
        top = next(e for e in profile.entities if e.parent is None)
        old = [r[0] for r in replacing if r is not None]
        if old:
            self._delete_many(conn, registry, top, old)
        rows = [explode(profile, top, record) for record in records]
        pks = self._insert_rows(conn, registry, rows, [None] * len(rows), time.time())
        subscriptions = self.subscriptions
        if subscriptions is not None and subscriptions.any_active(conn, registry):
            from .subscriptions import Change

            for record, row, pk, before in zip(records, rows, pks, replacing, strict=True):
                change = Change(
                    registry,
                    profile,
                    before[1] if before is not None else None,
                    record,
                    {(top.name, row.key): pk},
                )
                subscriptions.changed(conn, change)
        return pks

    def _insert_rows(
        self,
        conn: Connection,
        registry: str,
        rows: list[Row],
        parents: list[int | None],
        now: float,
    ) -> list[int]:
        """Insert rows of one entity (and, level by level, their children) with multi-row
        statements; the database draws the primary keys (safe beside a serving node)."""
        if not rows:
            return []
        tables = self.tables(registry, rows[0].entity.name)
        if conn.dialect.name == "postgresql":
            pks = self._copy_rows(conn, tables, rows, parents, now)
        else:
            pks = self._insert_main(conn, tables, rows, parents, now)
            ids = [
                {"pk": pk, "id_type": t, "id_value": v}
                for row, pk in zip(rows, pks, strict=True)
                for t, v in row.ids
            ]
            if ids:
                conn.execute(insert(tables.ids), ids)
            mv = [
                _mv_params(pk, n, v, a)
                for row, pk in zip(rows, pks, strict=True)
                for n, v, a in row.mv
            ]
            if mv:
                conn.execute(insert(tables.mv), mv)
        by_entity: dict[str, tuple[list[Row], list[int | None]]] = {}
        for row, pk in zip(rows, pks, strict=True):
            for child in row.children:
                kids, parent_pks = by_entity.setdefault(child.entity.name, ([], []))
                kids.append(child)
                parent_pks.append(pk)
        for kids, parent_pks in by_entity.values():
            self._insert_rows(conn, registry, kids, parent_pks, now)
        return pks

    @staticmethod
    def _insert_main(
        conn: Connection,
        tables: EntityTables,
        rows: list[Row],
        parents: list[int | None],
        now: float,
    ) -> list[int]:
        """Insert with one executemany, then read the keys the database drew by record key
        (unique per table): no statement per row, safe beside other writers."""
        main = tables.main
        conn.execute(
            insert(main),
            [
                {
                    "record_key": row.key,
                    "parent_pk": parent,
                    "record": orjson.dumps(row.record).decode(),
                    "updated_at": now,
                    **row.columns,
                }
                for row, parent in zip(rows, parents, strict=True)
            ],
        )
        keys = [row.key for row in rows]
        drawn: dict[str, int] = {}
        for chunk in _chunks(keys, 900):
            query = select(main.c.record_key, main.c.pk).where(main.c.record_key.in_(chunk))
            drawn.update((key, pk) for key, pk in conn.execute(query))
        return [drawn[key] for key in keys]

    @staticmethod
    def _copy_rows(
        conn: Connection,
        tables: EntityTables,
        rows: list[Row],
        parents: list[int | None],
        now: float,
    ) -> list[int]:
        """PostgreSQL: primary keys drawn from the table's sequence in one statement, the rows
        written with COPY (no statement to parse per batch, no round trip per row)."""
        main = tables.main
        sequence = func.pg_get_serial_sequence(main.name, "pk")
        pks = list(
            conn.execute(
                select(func.nextval(sequence)).select_from(func.generate_series(1, len(rows)))
            ).scalars()
        )
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        quote = conn.dialect.identifier_preparer

        def copy(table: Any, first: dict[str, Any], records: Iterable[dict[str, Any]]) -> None:
            names = [c.name for c in table.columns if c.name in first]
            statement = (
                f"COPY {quote.format_table(table)} ({', '.join(quote.quote(n) for n in names)}) "
                "FROM STDIN"
            )
            with dbapi.cursor() as cursor, cursor.copy(statement) as out:  # type: ignore[attr-defined]
                out.write_row([first.get(n) for n in names])
                for record in records:
                    out.write_row([record.get(n) for n in names])

        mains = (
            {
                "pk": pk,
                "record_key": row.key,
                "parent_pk": parent,
                "record": orjson.dumps(row.record).decode(),
                "updated_at": now,
                **row.columns,
            }
            for row, pk, parent in zip(rows, pks, parents, strict=True)
        )
        copy(main, next(mains), mains)
        ids = (
            {"pk": pk, "id_type": t, "id_value": v}
            for row, pk in zip(rows, pks, strict=True)
            for t, v in row.ids
        )
        first_id = next(ids, None)
        if first_id is not None:
            copy(tables.ids, first_id, ids)
        mv = (
            _mv_params(pk, n, v, a) for row, pk in zip(rows, pks, strict=True) for n, v, a in row.mv
        )
        first_mv = next(mv, None)
        if first_mv is not None:
            copy(tables.mv, first_mv, mv)
        return pks

    def _delete_many(self, conn: Connection, registry: str, entity: Entity, pks: list[int]) -> None:
        """Delete records of `entity` by primary key, with their embedded records."""
        profile = self.profiles[registry]
        for chunk in _chunks(pks, 900):
            for child in profile.children(entity):
                child_main = self.tables(registry, child.name).main
                child_pks = list(
                    conn.execute(select(child_main.c.pk).where(child_main.c.parent_pk.in_(chunk)))
                    .scalars()
                    .all()
                )
                if child_pks:
                    self._delete_many(conn, registry, child, child_pks)
            tables = self.tables(registry, entity.name)
            conn.execute(delete(tables.ids).where(tables.ids.c.pk.in_(chunk)))
            conn.execute(delete(tables.mv).where(tables.mv.c.pk.in_(chunk)))
            conn.execute(delete(tables.main).where(tables.main.c.pk.in_(chunk)))

    def _advance_pk_sequences(self, conn: Connection, registry: str) -> None:
        """Explicit keys leave PostgreSQL's serial sequences behind: move them past the loaded
        rows, or the next `upsert` would collide with a loaded primary key."""
        if conn.dialect.name != "postgresql":
            return
        for entity in self.profiles[registry].entities:
            main = self.tables(registry, entity.name).main
            after = select(func.coalesce(func.max(main.c.pk), 0) + 1).scalar_subquery()
            conn.execute(
                select(func.setval(func.pg_get_serial_sequence(main.name, "pk"), after, False))
            )

    def _max_pk(self, conn: Connection, registry: str, entity: Entity) -> int:
        main = self.tables(registry, entity.name).main
        return conn.execute(select(func.coalesce(func.max(main.c.pk), 0))).scalar_one()

    def _stage(
        self,
        row: Row,
        parent_pk: int | None,
        next_pk: dict[str, int],
        pending: dict[str, _Batch],
        now: float,
    ) -> None:
        pk = next_pk[row.entity.name]
        next_pk[row.entity.name] = pk + 1
        batch = pending[row.entity.name]
        batch.main.append(
            {
                "pk": pk,
                "record_key": row.key,
                "parent_pk": parent_pk,
                "record": orjson.dumps(row.record).decode(),
                "updated_at": now,
                **row.columns,
            }
        )
        batch.ids.extend({"pk": pk, "id_type": t, "id_value": v} for t, v in row.ids)
        batch.mv.extend(_mv_params(pk, n, v, a) for n, v, a in row.mv)
        for child in row.children:
            self._stage(child, pk, next_pk, pending, now)

    def _flush(self, conn: Connection, registry: str, pending: dict[str, _Batch]) -> None:
        for name, batch in pending.items():
            tables = self.tables(registry, name)
            if batch.main:
                conn.execute(insert(tables.main), batch.main)
            if batch.ids:
                conn.execute(insert(tables.ids), batch.ids)
            if batch.mv:
                conn.execute(insert(tables.mv), batch.mv)
            batch.clear()

    def upsert(self, conn: Connection, registry: str, record: dict[str, Any]) -> tuple[str, bool]:
        """Insert or replace one top-level record; returns (record key, created). The change
        raises its events (`profile.events`) in the same transaction."""
        profile = self.profiles[registry]
        top = next(e for e in profile.entities if e.parent is None)
        row = explode(profile, top, record)
        main = self.tables(registry, top.name).main
        existing = conn.execute(
            select(main.c.pk, main.c.record).where(main.c.record_key == row.key)
        ).first()
        if existing is not None:
            self._delete(conn, registry, top, existing.pk)
        pk = self._insert_row(conn, registry, row, None)
        if self.subscriptions is not None:
            from .subscriptions import Change

            before = orjson.loads(existing.record) if existing is not None else None
            change = Change(registry, profile, before, record, {(top.name, row.key): pk})
            self.subscriptions.changed(conn, change)
        return row.key, existing is None

    def get(self, conn: Connection, registry: str, key: str) -> dict[str, Any] | None:
        """One top-level record by its key (None if there is none)."""
        top = next(e for e in self.profiles[registry].entities if e.parent is None)
        main = self.tables(registry, top.name).main
        text = conn.execute(select(main.c.record).where(main.c.record_key == key)).scalar()
        return orjson.loads(text) if text is not None else None

    def _insert_row(self, conn: Connection, registry: str, row: Row, parent_pk: int | None) -> int:
        tables = self.tables(registry, row.entity.name)
        pk = conn.execute(
            insert(tables.main).returning(tables.main.c.pk),
            {
                "record_key": row.key,
                "parent_pk": parent_pk,
                "record": orjson.dumps(row.record).decode(),
                "updated_at": time.time(),
                **row.columns,
            },
        ).scalar_one()
        if row.ids:
            conn.execute(
                insert(tables.ids), [{"pk": pk, "id_type": t, "id_value": v} for t, v in row.ids]
            )
        if row.mv:
            conn.execute(insert(tables.mv), [_mv_params(pk, n, v, a) for n, v, a in row.mv])
        for child in row.children:
            self._insert_row(conn, registry, child, pk)
        return pk

    def _delete(self, conn: Connection, registry: str, entity: Entity, pk: int) -> None:
        profile = self.profiles[registry]
        for child in profile.children(entity):
            child_main = self.tables(registry, child.name).main
            for child_pk in (
                conn.execute(select(child_main.c.pk).where(child_main.c.parent_pk == pk))
                .scalars()
                .all()
            ):
                self._delete(conn, registry, child, child_pk)
        tables = self.tables(registry, entity.name)
        conn.execute(delete(tables.ids).where(tables.ids.c.pk == pk))
        conn.execute(delete(tables.mv).where(tables.mv.c.pk == pk))
        conn.execute(delete(tables.main).where(tables.main.c.pk == pk))

    def reindex(
        self,
        conn: Connection,
        registry: str,
        entity_name: str,
        attributes: Collection[str] = (),
        identifiers: bool = False,
        children: Collection[str] = (),
        batch: int = 2000,
    ) -> int:
        """Recompute from each stored record what the profile now indexes differently (a store
        upgrade after a profile change): the columns or multi-valued rows of `attributes`, the
        identifier rows (`identifiers`), and the rows of new embedded entities `children`.
        Walks the table in primary-key order, `batch` records at a time; returns the count."""
        profile = self.profiles[registry]
        entity = profile.entity(entity_name)
        chosen = [a for a in entity.attributes if a.stored and a.name in attributes]
        single = [a.column for a in chosen if not a.multi]
        multi = {a.name for a in chosen if a.multi}
        tables = self.tables(registry, entity_name)
        main = tables.main
        change = (
            update(main)
            .where(main.c.pk == bindparam("b_pk"))
            .values({c: bindparam(c) for c in single})
        )
        last, count = 0, 0
        while True:
            rows = conn.execute(
                select(main.c.pk, main.c.record)
                .where(main.c.pk > last)
                .order_by(main.c.pk)
                .limit(batch)
            ).all()
            if not rows:
                return count
            first, last = rows[0].pk, rows[-1].pk
            changes: list[dict[str, Any]] = []
            mv: list[dict[str, Any]] = []
            ids: list[dict[str, Any]] = []
            for pk, raw in rows:
                row = explode(profile, entity, orjson.loads(raw), children=bool(children))
                changes.append({"b_pk": pk, **{c: row.columns.get(c) for c in single}})
                mv.extend(_mv_params(pk, n, v, a) for n, v, a in row.mv if n in multi)
                ids.extend({"pk": pk, "id_type": t, "id_value": v} for t, v in row.ids)
                for child in row.children:
                    if child.entity.name in children:
                        self._insert_row(conn, registry, child, pk)
            in_batch = (first, last)
            if single:
                conn.execute(change, changes)
            if multi:
                conn.execute(
                    delete(tables.mv).where(
                        tables.mv.c.pk.between(*in_batch), tables.mv.c.attr.in_(sorted(multi))
                    )
                )
                if mv:
                    conn.execute(insert(tables.mv), mv)
            if identifiers:
                conn.execute(delete(tables.ids).where(tables.ids.c.pk.between(*in_batch)))
                if ids:
                    conn.execute(insert(tables.ids), ids)
            count += len(rows)

    # ----------------------------------------------------------------------------- reading

    def search(
        self,
        conn: Connection,
        registry: str,
        plan: SearchPlan,
        cap: int | None = None,
        limit: int | None = None,
    ) -> SearchResult:
        """Count and fetch one page. With `cap`, counting stops at cap+1 (cheap refusal); with
        `limit`, at most that many rows of the page are fetched (a reply's record budget)."""
        compiler = self.compilers[registry]
        target = plan.entity.name
        main = self.tables(registry, target).main
        where = compiler.where(plan.node, target)
        if cap is not None:
            limited = select(main.c.pk).where(where).limit(cap + 1).subquery()
            total = conn.execute(select(func.count()).select_from(limited)).scalar_one()
        else:
            total = conn.execute(select(func.count()).select_from(main).where(where)).scalar_one()
        if cap is not None and total > cap:
            return SearchResult(total, [])
        if total == 0 or plan.offset >= total:
            return SearchResult(total, [])
        query = (
            select(main.c.pk, main.c.record)
            .where(where)
            .order_by(*compiler.order_by(target, plan.sort, conn.dialect.name))
            .limit(plan.page_size if limit is None else max(min(plan.page_size, limit), 0))
            .offset(plan.offset)
        )
        return SearchResult(total, [(r.pk, r.record) for r in conn.execute(query)])

    def lookup(
        self,
        conn: Connection | Reader,
        registry: str,
        entity: str,
        id_type: str,
        values: Sequence[str],
    ) -> dict[str, list[tuple[int, str]]]:
        """Batched identifier lookup: value -> [(pk, record JSON)] in pk order.

        The hot path of the registry (a UIN check): one statement for the whole batch, run on
        the DBAPI cursor with SQL prepared once per dialect, since building and compiling a
        SQLAlchemy statement per call costs an order of magnitude more than the lookup."""
        out: dict[str, list[tuple[int, str]]] = {v: [] for v in values}
        unique = list(dict.fromkeys(values))
        dialect = conn.dialect if isinstance(conn.dialect, str) else conn.dialect.name
        sql = self._lookup_sql(registry, entity, dialect, id_type == ANY_ID)
        if dialect == "sqlite":
            packed: Any = orjson.dumps(unique).decode()
        elif dialect == "postgresql":
            packed = unique
        else:  # pragma: no cover - other dialects take the portable path
            sa = conn if isinstance(conn, Connection) else conn.conn
            return self._lookup_portable(sa, registry, entity, id_type, unique, out)
        params = (packed,) if id_type == ANY_ID else (id_type, packed)
        dbapi = conn.connection.dbapi_connection if isinstance(conn, Connection) else conn.dbapi()
        cursor = dbapi.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        for value, pk, record in rows:
            hits = out[value]
            if not hits or hits[-1][0] != pk:
                hits.append((pk, record))
        return out

    def _lookup_sql(self, registry: str, entity: str, dialect: str, any_type: bool) -> str:
        key = (registry, entity, dialect, any_type)
        sql = self._lookup_cache.get(key)
        if sql is None:
            tables = self.tables(registry, entity)
            ids, main = tables.ids.name, tables.main.name
            mark = "?" if dialect == "sqlite" else "%s"
            values = "IN (SELECT value FROM json_each(?))" if dialect == "sqlite" else "= ANY(%s)"
            type_cond = "" if any_type else f"i.id_type = {mark} AND "
            sql = (
                f"SELECT i.id_value, m.pk, m.record FROM {ids} i JOIN {main} m "
                f"ON m.pk = i.pk WHERE {type_cond}i.id_value {values} ORDER BY m.pk"
            )
            self._lookup_cache[key] = sql
        return sql

    def _lookup_portable(
        self,
        conn: Connection,
        registry: str,
        entity: str,
        id_type: str,
        values: list[str],
        out: dict[str, list[tuple[int, str]]],
    ) -> dict[str, list[tuple[int, str]]]:
        tables = self.tables(registry, entity)
        ids, main = tables.ids, tables.main
        for chunk in _chunks(values, 900):
            cond: ColumnElement[bool] = ids.c.id_value.in_(chunk)
            if id_type != ANY_ID:
                cond = (ids.c.id_type == id_type) & cond
            query = (
                select(ids.c.id_value, main.c.pk, main.c.record)
                .join(main, main.c.pk == ids.c.pk)
                .where(cond)
                .order_by(main.c.pk)
            )
            for value, pk, record in conn.execute(query):
                hits = out[value]
                if not hits or hits[-1][0] != pk:
                    hits.append((pk, record))
        return out

    def fetch(
        self, conn: Connection, registry: str, entity: str, pks: Sequence[int]
    ) -> dict[int, str]:
        """Records by primary key: pk -> record JSON (missing pks are left out)."""
        main = self.tables(registry, entity).main
        return self._fetch_by(conn, main.c.pk, main.c.record, pks)

    def fetch_keys(
        self, conn: Connection, registry: str, entity: str, keys: Sequence[str]
    ) -> dict[str, str]:
        """Records by record key: key -> record JSON (missing keys are left out)."""
        main = self.tables(registry, entity).main
        return self._fetch_by(conn, main.c.record_key, main.c.record, keys)

    @staticmethod
    def _fetch_by(
        conn: Connection, column: Any, record: Any, values: Sequence[Any]
    ) -> dict[Any, str]:
        out: dict[Any, str] = {}
        for chunk in _chunks(list(values), 900):
            for value, text in conn.execute(select(column, record).where(column.in_(chunk))):
                out[value] = text
        return out

    def known_values(
        self, conn: Connection, registry: str, entity: str, attribute: str, values: Sequence[str]
    ) -> set[str]:
        """Which of `values` some `entity` record holds for `attribute` (compared as indexed:
        text case-folded, codes normalised); one indexed probe for all of them."""
        attr = self.profiles[registry].entity(entity).attribute(attribute)
        if attr is None or not attr.stored or not values:
            return set()
        tables = self.tables(registry, entity)
        wanted: dict[Any, list[str]] = {}
        for value in values:
            key = index_value(attr, value)
            if key is None:
                continue
            if attr.multi:  # as `_mv_params` stores it
                key = _mv_params(0, attr.name, key, attr)[_MV_COLUMN[attr.type]]
            wanted.setdefault(key, []).append(value)
        if not wanted:
            return set()
        if attr.multi:
            column = tables.mv.c[_MV_COLUMN[attr.type]]
            query = select(column).where(tables.mv.c.attr == attr.name, column.in_(list(wanted)))
        else:
            column = tables.main.c[attr.column]
            query = select(column).where(column.in_(list(wanted)))
        found = {row[0] for row in conn.execute(query.distinct())}
        return {v for key, given in wanted.items() if key in found for v in given}

    def count(self, conn: Connection, registry: str, entity: str) -> int:
        main = self.tables(registry, entity).main
        return conn.execute(select(func.count()).select_from(main)).scalar_one()


@dataclass
class _Batch:
    main: list[dict[str, Any]] = field(default_factory=list)
    ids: list[dict[str, Any]] = field(default_factory=list)
    mv: list[dict[str, Any]] = field(default_factory=list)

    def clear(self) -> None:
        self.main.clear()
        self.ids.clear()
        self.mv.clear()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
