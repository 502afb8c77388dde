"""The store: one SQLAlchemy engine, the tables of every registry profile, and the operational
tables. SQLite (embedded, default) and PostgreSQL (psycopg 3) pass the same test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool, StaticPool

from ..standard.profiles import PROFILES
from ..standard.profiles.base import RegistryProfile
from .audit import AuditLog
from .outbox import Outbox
from .records import RecordStore
from .replay import ReplayStore
from .schema import build_schema
from .transactions import TxnStore

SCHEMA_KEY = "schema.version"
SCHEMA_VERSION = 2  # bump when a table changes shape


class SchemaMismatch(RuntimeError):
    """The store was created by a dcihub with another table layout."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Statements that fail are logged and raised without their parameters: they hold personal
    # data (identifiers, names) that must never reach a log.
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database not in (None, "", ":memory:"):
            create_private_file(Path(parsed.database))
        pool_args: dict[str, Any] = (
            {} if kwargs.get("poolclass") is StaticPool else {"pool_size": 8, "max_overflow": 8}
        )
        engine = (
            create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                **pool_args,
                **kwargs,
            )
            if parsed.database not in (None, "", ":memory:")
            else create_engine(
                url, connect_args={"check_same_thread": False}, poolclass=NullPool, **kwargs
            )
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.execute("PRAGMA mmap_size=1073741824")
            cursor.execute("PRAGMA temp_store=MEMORY")
            # Checkpoints (which fsync) run in the background (Store.checkpoint), never in a
            # request's commit.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **kwargs)


def create_private_file(path: Path) -> None:
    """Create an (empty) SQLite store file readable by its owner only: it will hold a
    population's personal data. SQLite gives its -wal and -shm files the same mode."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:  # created meanwhile by another process
        pass


class Store:
    def __init__(self, url: str, profiles: dict[str, RegistryProfile] | None = None) -> None:
        self.url = url
        self.profiles = profiles or PROFILES
        self.engine = make_engine(url)
        self.schema = build_schema(self.profiles)
        self.records = RecordStore(self.schema, self.profiles)
        self.txns = TxnStore(self.schema.ops)
        self.outbox = Outbox(self.schema.ops)
        self.audit = AuditLog(self.schema.ops)
        self.replay = ReplayStore(self.schema.ops)
        self._loop_dbapi: Any = None
        self._loop_engine: Engine | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create_all(self) -> None:
        """Create missing tables; refuse a store made by an incompatible dcihub version."""
        self.schema.metadata.create_all(self.engine)
        found = self.get_meta(SCHEMA_KEY)
        if found is None:
            with self.begin() as conn:
                meta = self.schema.ops.meta
                conn.execute(meta.insert(), {"key": SCHEMA_KEY, "value": str(SCHEMA_VERSION)})
        elif found != str(SCHEMA_VERSION):
            raise SchemaMismatch(
                f"the store at {self.url.split('@')[-1]} has schema version {found}; this dcihub "
                f"uses version {SCHEMA_VERSION}. Start from a new store (or rebuild the demo "
                "with a fresh --data-dir); there are no migrations before version 1.0"
            )
        with self.begin() as conn:
            self.audit.ensure_head(conn)

    def schema_version(self) -> str | None:
        """The schema version recorded in the store (None for an empty store)."""
        try:
            return self.get_meta(SCHEMA_KEY)
        except Exception:  # no meta table yet
            return None

    def drop_all(self) -> None:
        self.schema.metadata.drop_all(self.engine)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def reader(self, inline: bool = False) -> Iterator[Reader]:
        """A read context for the request path: on SQLite, in the event-loop thread, a
        connection dedicated to that thread (no pool round trip per request); elsewhere a pooled
        connection opened only if a query needs one."""
        reader = Reader(self, inline and self.dialect == "sqlite")
        try:
            yield reader
        finally:
            reader.close()

    @property
    def loop_engine(self) -> Engine:
        """SQLite: an engine over ONE connection, used only from the event-loop thread for the
        request path's inline reads and group commits. Reads and writes share its page cache
        (another connection's commit would invalidate it on every group commit)."""
        if self._loop_engine is None:
            self._loop_engine = make_engine(self.url, poolclass=StaticPool)
        return self._loop_engine

    @contextmanager
    def loop_begin(self) -> Iterator[Connection]:
        with self.loop_engine.begin() as conn:
            yield conn

    def loop_dbapi(self) -> Any:
        """The DBAPI connection of `loop_engine` (raw cursor for identifier lookups)."""
        if self._loop_dbapi is None:
            self._loop_dbapi = self.loop_engine.raw_connection()
        return self._loop_dbapi

    def get_meta(self, key: str) -> str | None:
        meta = self.schema.ops.meta
        with self.read() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        meta = self.schema.ops.meta
        with self.begin() as conn:
            conn.execute(delete(meta).where(meta.c.key == key))
            conn.execute(meta.insert(), {"key": key, "value": value})

    def wal_path(self) -> Path | None:
        """The SQLite write-ahead log file of a file database (None elsewhere)."""
        url = make_url(self.url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(f"{url.database}-wal")

    def checkpoint(self, truncate: bool = False) -> None:
        """Move the SQLite write-ahead log into the database file (no-op elsewhere)."""
        if self.dialect != "sqlite":
            return
        mode = "TRUNCATE" if truncate else "PASSIVE"
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")

    def dispose(self) -> None:
        if self._loop_dbapi is not None:
            self._loop_dbapi.close()
            self._loop_dbapi = None
        if self._loop_engine is not None:
            self._loop_engine.dispose()
            self._loop_engine = None
        self.engine.dispose()


class Reader:
    """Lazily opened connections for one unit of read work (see `Store.reader`)."""

    def __init__(self, store: Store, inline: bool) -> None:
        self.store = store
        self.inline = inline
        self.dialect = store.dialect
        self._conn: Connection | None = None
        self._ctx: Any = None

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            engine = self.store.loop_engine if self.inline else self.store.engine
            self._ctx = engine.connect()
            self._conn = self._ctx.__enter__()
        return self._conn

    def dbapi(self) -> Any:
        if self._conn is None and self.inline:
            return self.store.loop_dbapi()
        return self.conn.connection.dbapi_connection

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = self._conn = None
