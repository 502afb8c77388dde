"""Bringing a store up to date, in place: never rebuilt, nothing dropped.

Two owners share the schema:

* the **operational tables** (`schema.operational_tables`: transactions, outbox, audit, …) are
  Alembic's: they change only by a revision in `migrations/versions/`;
* the **registry tables** are derived from the registry profiles (`schema.build_schema`), so a
  new registry or attribute needs no revision: after the revisions ran, a reconciliation
  compares the database with the tables the profiles make (Alembic's `compare_metadata`) and
  applies what is missing — a table (new registry or entity), an attribute column, an index —
  then re-indexes, from each stored JSON record, what the profiles index differently from when
  the store was last upgraded (`FINGERPRINT_KEY`): a new column, a new multi-valued attribute,
  a changed path, changed identifier paths, a new embedded entity. Differences it may not
  resolve alone (a column the profiles no longer name, a changed column type) are reported and
  left as they are.

A store made before migrations (`schema.version` 2 in `dcihub_meta`, no `alembic_version`
table) is stamped at revision 0001, which is what that code made; an empty store is built from
revision 0001 on.

One process upgrades at a time: the whole upgrade is one database transaction that holds a lock
— `pg_advisory_xact_lock` on PostgreSQL, SQLite's write lock (`BEGIN IMMEDIATE`) on SQLite — and
re-reads the store's state once it holds it, so a second process finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Table,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from ..standard.profiles.base import Attribute, Entity
from .schema import EntityTables

if TYPE_CHECKING:
    from .database import Store

FIRST_REVISION = "0001"
LEGACY_KEY = "schema.version"  # what dcihub wrote before migrations
LEGACY_VERSION = "2"
FINGERPRINT_KEY = "registry.indexed"  # what the registry tables index, as of the last upgrade
LAYOUT_KEY = "registry.layout"  # digest of the registry tables and FINGERPRINT_KEY at that time
VERSION_TABLE = "alembic_version"
LOCK_CLASS = 0x0DC1  # pg_advisory_xact_lock(LOCK_CLASS, hashtext(current_schema()))
LOCK_WAIT = 600.0  # seconds an upgrade waits for another process's upgrade (SQLite)

State = Literal["empty", "legacy", "managed"]


class StoreError(RuntimeError):
    """The store cannot be used or upgraded as it is; the message is one line for a person."""


class StoreBehind(StoreError):
    """The store needs `dcihub store upgrade` before this dcihub may serve it."""

    def __init__(self, status: StoreStatus) -> None:
        self.status = status
        super().__init__(f"the store {status.url} is behind this dcihub ({status.summary()})")


@dataclass
class StoreStatus:
    """Where a store stands against this dcihub's revisions and registry profiles."""

    url: str  # without the password
    state: State
    revision: str | None  # the store's revision (a legacy store: the one it will be stamped at)
    head: str
    revisions: list[str] = field(default_factory=list)  # pending, oldest first: "0002: …"
    changes: list[str] = field(default_factory=list)  # pending registry-table changes
    notes: list[str] = field(default_factory=list)  # differences left as they are

    @property
    def behind(self) -> bool:
        return self.state != "managed" or bool(self.revisions or self.changes)

    def summary(self) -> str:
        if not self.behind:
            return f"revision {self.head}, registry tables match the profiles"
        parts = []
        if self.state == "empty":
            parts.append("an empty store")
        elif self.state == "legacy":
            parts.append(f"made before migrations (schema version {LEGACY_VERSION})")
        else:
            parts.append(f"revision {self.revision}, head {self.head}")
        if self.revisions:
            parts.append(_count(len(self.revisions), "revision") + " to apply")
        if self.changes:
            parts.append(_count(len(self.changes), "registry-table change") + " pending")
        return "; ".join(parts)


@dataclass
class UpgradeReport:
    before: StoreStatus
    done: list[str]
    after: StoreStatus


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------------------------- Alembic


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, made in code (users need no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(files("dcihub.store") / "migrations"))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None
    return head


def _pending(script: ScriptDirectory, current: str | None) -> list[str]:
    found = list(script.iterate_revisions("heads", current or "base"))
    return [f"{r.revision}: {(r.doc or '').strip().splitlines()[0]}" for r in reversed(found)]


# ------------------------------------------------------------------------------- inspection


def status(store: Store) -> StoreStatus:
    """Where the store stands (read only: an SQLite file that does not exist is not made)."""
    url = make_url(store.url)
    database = url.database
    if url.get_backend_name() == "sqlite" and database and not Path(database).exists():
        engine = create_engine("sqlite://")  # what an empty store would need
        try:
            with engine.connect() as conn:
                return _status(conn, store)
        finally:
            engine.dispose()
    with store.engine.connect() as conn:
        return _status(conn, store)


def _status(conn: Connection, store: Store) -> StoreStatus:
    script = script_directory()
    head = script.get_current_head() or FIRST_REVISION
    state, revision = _state(conn, store, script)
    result = StoreStatus(_shown(store.url), state, revision, head)
    result.revisions = _pending(script, FIRST_REVISION if state == "legacy" else revision)
    plan = RegistryPlan.make(conn, store)
    result.changes = plan.describe()
    result.notes = plan.notes
    return result


def _state(conn: Connection, store: Store, script: ScriptDirectory) -> tuple[State, str | None]:
    names = set(inspect(conn).get_table_names())
    revision = (
        MigrationContext.configure(conn).get_current_revision() if VERSION_TABLE in names else None
    )
    if revision is not None:
        try:
            script.get_revision(revision)
        except CommandError:
            raise StoreError(
                f"the store {_shown(store.url)} is at revision {revision}, which this dcihub "
                "does not know: it was upgraded by a newer dcihub; use that one"
            ) from None
        return "managed", revision
    meta = store.schema.ops.meta
    if meta.name in names:
        found = conn.execute(select(meta.c.value).where(meta.c.key == LEGACY_KEY)).scalar()
        if found == LEGACY_VERSION:
            return "legacy", FIRST_REVISION
        raise StoreError(
            f"the store {_shown(store.url)} has schema version {found or 'none'} and no "
            "revision record; this dcihub upgrades stores of schema version "
            f"{LEGACY_VERSION} and later: start from a new store"
        )
    ours = names & set(store.schema.metadata.tables)
    if ours:
        raise StoreError(
            f"the store {_shown(store.url)} holds dcihub tables ({', '.join(sorted(ours)[:3])}"
            f"{', …' if len(ours) > 3 else ''}) but no record of their version: start from a "
            "new store"
        )
    return "empty", None


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# --------------------------------------------------------------------------- registry tables


def _attr_sig(attr: Attribute) -> list[Any]:
    return [attr.type, attr.path, attr.multi, attr.aggregate, attr.code_dir]


@dataclass
class Reindex:
    """What to recompute from the stored records of one entity table."""

    tables: EntityTables
    attributes: set[str] = field(default_factory=set)
    identifiers: bool = False
    children: set[str] = field(default_factory=set)  # new embedded entities


@dataclass
class RegistryPlan:
    """The registry-table changes that make the store match the profiles (additions only)."""

    tables: list[Table] = field(default_factory=list)
    columns: list[tuple[str, Column]] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    reindex: dict[str, Reindex] = field(default_factory=dict)  # by main table name
    notes: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, conn: Connection, store: Store) -> RegistryPlan:
        plan = cls()
        schema = store.schema
        by_table: dict[str, EntityTables] = {}
        for tables in schema.entities.values():
            for table in tables.all:
                by_table[table.name] = tables
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                # registry tables only, on both sides: the operational ones are Alembic's
                "include_name": lambda name, type_, _parents: type_ != "table" or name in by_table,
                "include_object": lambda obj, name, type_, _reflected, _other: (
                    type_ != "table" or name in by_table
                ),
            },
        )
        created: set[str] = set()
        retyped: set[tuple[str, str]] = set()
        for diff in compare_metadata(context, schema.metadata):
            for item in diff if isinstance(diff, list) else [diff]:
                plan._classify(item, by_table, created, retyped)
        plan.indexes = [i for i in plan.indexes if i.table is None or i.table.name not in created]
        plan._fingerprint_changes(conn, store, created, retyped)
        return plan

    def _classify(
        self,
        item: tuple[Any, ...],
        by_table: dict[str, EntityTables],
        created: set[str],
        retyped: set[tuple[str, str]],
    ) -> None:
        kind = item[0]
        if kind == "add_table":  # Alembic hands a copy without indexes: take the real one
            tables = by_table[item[1].name]
            self.tables.append(next(t for t in tables.all if t.name == item[1].name))
            created.add(item[1].name)
        elif kind == "add_index":
            self.indexes.append(item[1])
        elif kind == "add_column":
            table, column = item[2], item[3]
            tables = by_table[table]
            attr = _attribute_of(tables.entity, column.name)
            if table != tables.main.name or attr is None:
                self.notes.append(
                    f"column {table}.{column.name} of the generic table layout is missing: it "
                    "needs a revision, not added automatically"
                )
                return
            self.columns.append((table, column))
            self._reindex(tables).attributes.add(attr.name)
        elif kind == "remove_column":
            self.notes.append(
                f"column {item[2]}.{item[3].name} is no longer in the profiles: kept (nothing "
                "is dropped automatically)"
            )
        elif kind == "remove_index":
            self.notes.append(f"index {item[1].name} is no longer in the profiles: kept")
        elif kind == "modify_type":
            retyped.add((item[2], item[3]))
            self.notes.append(
                f"column {item[2]}.{item[3]} is {item[5]} in the store, the profiles make it "
                f"{item[6]}: not changed automatically (it needs a revision)"
            )
        else:
            self.notes.append(f"{_diff_text(item)}: not applied automatically")

    def _reindex(self, tables: EntityTables) -> Reindex:
        return self.reindex.setdefault(tables.main.name, Reindex(tables))

    def _fingerprint_changes(
        self, conn: Connection, store: Store, created: set[str], retyped: set[tuple[str, str]]
    ) -> None:
        recorded = _recorded_fingerprint(conn, store)
        for (registry, name), tables in store.schema.entities.items():
            main = tables.main.name
            if main in created:
                parent = tables.entity.parent
                if parent is not None and tables.entity.embedded_at:
                    parent_tables = store.schema.tables(registry, parent)
                    if parent_tables.main.name not in created:
                        self._reindex(parent_tables).children.add(name)
                continue
            before = recorded.get(main)
            if before is None:
                continue  # a store made before fingerprints: indexed as the profiles say
            now = fingerprint_entity(tables.entity)
            for attr, sig in now["attrs"].items():
                if before["attrs"].get(attr) != sig:
                    attribute = tables.entity.attribute(attr)
                    assert attribute is not None
                    if (main, attribute.column) in retyped:
                        continue
                    self._reindex(tables).attributes.add(attr)
            for attr in sorted(set(before["attrs"]) - set(now["attrs"])):
                self.notes.append(
                    f"attribute {attr} of {registry} {name} is no longer in the profile: its "
                    "stored values are kept"
                )
            if before["ids"] != now["ids"]:
                self._reindex(tables).identifiers = True

    def describe(self) -> list[str]:
        lines = [f"create table {t.name}" for t in self.tables]
        lines += [f"add column {t}.{c.name}" for t, c in self.columns]
        lines += [f"create index {i.name} on {i.table.name}" for i in self.indexes]  # type: ignore[union-attr]
        for job in self.reindex.values():
            what = []
            if job.attributes:
                what.append(
                    _count(len(job.attributes), "attribute")
                    + " ("
                    + ", ".join(sorted(job.attributes))
                    + ")"
                )
            if job.identifiers:
                what.append("identifiers")
            if job.children:
                what.append("embedded " + ", ".join(sorted(job.children)))
            lines.append(f"re-index {job.tables.main.name} from its records: {'; '.join(what)}")
        return lines

    def apply(self, conn: Connection, store: Store) -> list[str]:
        """Apply the additions, then fill them from the records; indexes are made last (faster
        over filled columns)."""
        done: list[str] = []
        for table in self.tables:
            table.create(conn)  # with its indexes
            done.append(f"created table {table.name}")
        operations = Operations(MigrationContext.configure(conn))
        for table_name, column in self.columns:
            operations.add_column(table_name, column._copy())
            done.append(f"added column {table_name}.{column.name}")
        for job in self.reindex.values():
            registry, entity = job.tables.registry, job.tables.entity.name
            count = store.records.reindex(
                conn, registry, entity, job.attributes, job.identifiers, job.children
            )
            done.append(f"re-indexed {job.tables.main.name}: {_count(count, 'record')}")
        for index in self.indexes:
            index.create(conn)
            done.append(f"created index {index.name}")
        return done


def fingerprint_entity(entity: Entity) -> dict[str, Any]:
    return {
        "ids": list(entity.identifier_paths),
        "attrs": {a.name: _attr_sig(a) for a in entity.attributes if a.stored},
    }


def _diff_text(item: tuple[Any, ...]) -> str:
    kind = item[0].replace("_", " ")
    if item[0].startswith("modify_"):
        return f"{kind} of {item[2]}.{item[3]}"
    thing = item[1]
    table = getattr(getattr(thing, "table", None), "name", None)
    return f"{kind} {getattr(thing, 'name', None) or ''}{f' on {table}' if table else ''}"


def _attribute_of(entity: Entity, column: str) -> Attribute | None:
    for attr in entity.attributes:
        if attr.stored and not attr.multi and attr.column == column:
            return attr
    return None


def _recorded_fingerprint(conn: Connection, store: Store) -> dict[str, Any]:
    meta = store.schema.ops.meta
    if not inspect(conn).has_table(meta.name):
        return {}
    raw = conn.execute(select(meta.c.value).where(meta.c.key == FINGERPRINT_KEY)).scalar()
    return orjson.loads(raw) if raw else {}


def layout_digest(store: Store) -> str:
    """A digest of the registry tables these profiles make (columns, types, indexes) and of
    what they index: equal digests, same registry tables."""
    parts: list[Any] = []
    for tables in store.schema.entities.values():
        for table in tables.all:
            parts.append(
                [
                    table.name,
                    [[c.name, str(c.type), c.nullable] for c in table.columns],
                    sorted([i.name, [c.name for c in i.columns]] for i in table.indexes),
                ]
            )
        parts.append(fingerprint_entity(tables.entity))
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def _quick_current(store: Store) -> bool:
    meta = store.schema.ops.meta
    with store.engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return False  # an empty or legacy store: the full check says what it needs
        revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        digest = conn.execute(select(meta.c.value).where(meta.c.key == LAYOUT_KEY)).scalar()
    return revision == head_revision() and digest == layout_digest(store)


def _recorded(conn: Connection, store: Store, key: str) -> str | None:
    meta = store.schema.ops.meta
    return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()


def _record(conn: Connection, store: Store, key: str, value: str) -> None:
    meta = store.schema.ops.meta
    conn.execute(meta.delete().where(meta.c.key == key))
    conn.execute(meta.insert(), {"key": key, "value": value})


def _record_fingerprint(conn: Connection, store: Store) -> None:
    recorded = _recorded_fingerprint(conn, store)
    recorded.update(
        {str(t.main.name): fingerprint_entity(t.entity) for t in store.schema.entities.values()}
    )
    _record(
        conn, store, FINGERPRINT_KEY, orjson.dumps(recorded, option=orjson.OPT_SORT_KEYS).decode()
    )


# ---------------------------------------------------------------------------------- upgrade


def upgrade(store: Store) -> UpgradeReport:
    """Bring the store to the head revision and the profiles' registry tables, in one
    transaction, holding the upgrade lock. A store that is up to date is left as it is."""
    with _upgrade_transaction(store) as conn:
        before = _status(conn, store)  # read again under the lock
        done: list[str] = []
        after = before
        if before.behind:
            if before.state == "legacy":
                command.stamp(alembic_config(conn), FIRST_REVISION)
                done.append(
                    "recognised a store made before migrations (schema version "
                    f"{LEGACY_VERSION}): stamped at revision {FIRST_REVISION}"
                )
            if before.revisions:
                command.upgrade(alembic_config(conn), "heads")
                done += [f"applied revision {r}" for r in before.revisions]
            done += RegistryPlan.make(conn, store).apply(conn, store)
            _record_fingerprint(conn, store)
            store.audit.ensure_head(conn)
            after = _status(conn, store)
        digest = layout_digest(store)
        if not after.behind and _recorded(conn, store, LAYOUT_KEY) != digest:
            _record(conn, store, LAYOUT_KEY, digest)  # lets the next start skip inspecting
    return UpgradeReport(before, done, after)


@contextmanager
def _upgrade_transaction(store: Store) -> Iterator[Connection]:
    if store.dialect == "sqlite":
        engine = _sqlite_upgrade_engine(store.url)
        try:
            with _begin_waiting(engine) as conn:
                yield conn
        finally:
            engine.dispose()
        return
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:cls, hashtext(current_schema()))"),
                {"cls": LOCK_CLASS},
            )
        yield conn


def _sqlite_upgrade_engine(url: str) -> Engine:
    """An engine whose transactions take SQLite's write lock at BEGIN and include DDL (the
    SQLAlchemy recipe for pysqlite's transaction handling)."""
    from .database import make_engine

    engine = make_engine(url, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def _begin_waiting(engine: Engine) -> Iterator[Connection]:
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        conn = engine.connect()
        try:
            trans = conn.begin()
        except OperationalError as exc:
            conn.close()
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            continue
        break
    try:
        yield conn
        trans.commit()
    except BaseException:
        trans.rollback()
        raise
    finally:
        conn.close()


def prepare(store: Store, auto_upgrade: bool) -> UpgradeReport | None:
    """Before serving: nothing if the store is up to date; create an empty store at head (the
    first start: nothing to lose); upgrade a store that is behind if `auto_upgrade`, else
    raise `StoreBehind`.

    "Up to date" is first checked cheaply: the head revision, and the layout digest the last
    upgrade recorded equal to the one of these profiles; only when they differ is the database
    inspected (`status`)."""
    if _quick_current(store):
        return None
    found = status(store)
    if not found.behind:
        return None
    if found.state != "empty" and not auto_upgrade:
        raise StoreBehind(found)
    return upgrade(store)
