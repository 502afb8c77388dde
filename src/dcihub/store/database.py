"""The store: one SQLAlchemy engine, the tables of every registry profile, and the operational
tables. SQLite (embedded, default) and PostgreSQL (psycopg 3) pass the same test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, delete, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool, StaticPool

from ..standard.profiles import PROFILES
from ..standard.profiles.base import RegistryProfile
from .access import Reader, StoreAccess
from .audit import AuditLog
from .outbox import QUEUED_FLAG, Outbox
from .records import RecordStore
from .replay import ReplayStore
from .schema import build_schema
from .subscriptions import Subscriptions
from .transactions import TxnStore
from .usage import PartnerUsage

if TYPE_CHECKING:
    from .migrate import StoreStatus, UpgradeReport


def _clear_flag(conn: Connection) -> bool:
    """Take the "queued outbox rows" mark off a connection; a connection the database has
    just dropped cannot even be asked (the error being handled is the one that matters)."""
    try:
        return bool(conn.info.pop(QUEUED_FLAG, False))
    except Exception:  # noqa: BLE001 - an invalidated connection: nothing to wake for
        return False


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Statements that fail are logged and raised without their parameters: they hold personal
    # data (identifiers, names) that must never reach a log.
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pool_args: dict[str, Any] = (
            {} if "poolclass" in kwargs else {"pool_size": 8, "max_overflow": 8}
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

        if parsed.database not in (None, "", ":memory:"):
            database = Path(parsed.database)

            @event.listens_for(engine, "do_connect")
            def _private_file(*_: Any) -> None:
                # made before SQLite opens (and would create) it; not before a first connection,
                # so that `dcihub store status` on a mistyped path creates nothing
                create_private_file(database)

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
    if "connect_timeout" not in parsed.query:  # a database that is away: fail fast, never hang
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("connect_timeout", 5)
        kwargs["connect_args"] = connect_args
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
        self.usage = PartnerUsage(self.schema.ops)
        self.subscriptions = Subscriptions(self.schema.ops, self.records, self.outbox)
        self.records.subscriptions = self.subscriptions
        self._loop_dbapi: Any = None
        self._loop_engine: Engine | None = None
        self.access = StoreAccess(self)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def status(self) -> StoreStatus:
        """Where the store stands against this dcihub's revisions and profiles (read only)."""
        from .migrate import status

        return status(self)

    def upgrade(self) -> UpgradeReport:
        """Bring the store up to date in place (see `store.migrate`); an empty store is
        created at head."""
        from .migrate import upgrade

        return upgrade(self)

    def prepare(self, auto_upgrade: bool = False) -> UpgradeReport | None:
        """Before serving: create an empty store, refuse one that is behind (`StoreBehind`)
        unless `auto_upgrade`."""
        from .migrate import prepare

        return prepare(self, auto_upgrade)

    def drop_all(self) -> None:
        """Drop every table of this dcihub, revision record included (the demo's rebuild)."""
        from .migrate import VERSION_TABLE

        self.schema.metadata.drop_all(self.engine)
        with self.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self._woken(self.engine) as conn:
            yield conn

    @contextmanager
    def _woken(self, engine: Engine) -> Iterator[Connection]:
        """A transaction; once it committed outbox rows it queued (callbacks, notifications),
        the delivery worker of this process is woken (`Subscriptions.wakeup`) rather than
        finding them at its next poll."""
        with engine.begin() as conn:
            try:
                yield conn
            except BaseException:
                _clear_flag(conn)  # rolled back: nothing to deliver
                raise
            queued = _clear_flag(conn)
        wakeup = self.subscriptions.wakeup
        if queued and wakeup is not None:
            wakeup()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def reader(self) -> Reader:
        """A read context for synchronous code (pooled connections, opened when needed);
        async callers go through `self.access`, which decides where the read runs."""
        return Reader(self)

    @property
    def loop_engine(self) -> Engine:
        """SQLite: an engine over ONE connection, used only from the event-loop thread for the
        light reads and group commits `access` runs there. Reads and writes share its page cache
        (another connection's commit would invalidate it on every group commit)."""
        if self._loop_engine is None:
            self._loop_engine = make_engine(self.url, poolclass=StaticPool)
        return self._loop_engine

    @contextmanager
    def loop_begin(self) -> Iterator[Connection]:
        with self._woken(self.loop_engine) as conn:
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
