"""The store: one SQLAlchemy engine, the tables of every registry profile, and the operational
tables. SQLite (embedded, default) and PostgreSQL (psycopg 3) pass the same test suite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from ..standard.profiles import PROFILES
from ..standard.profiles.base import RegistryProfile
from .outbox import Outbox
from .records import RecordStore
from .schema import build_schema
from .transactions import TxnStore


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
            **kwargs,
        ) if parsed.database not in (None, "", ":memory:") else create_engine(
            url, connect_args={"check_same_thread": False}, poolclass=NullPool, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **kwargs)


class Store:
    def __init__(self, url: str, profiles: dict[str, RegistryProfile] | None = None) -> None:
        self.url = url
        self.profiles = profiles or PROFILES
        self.engine = make_engine(url)
        self.schema = build_schema(self.profiles)
        self.records = RecordStore(self.schema, self.profiles)
        self.txns = TxnStore(self.schema.ops)
        self.outbox = Outbox(self.schema.ops)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create_all(self) -> None:
        self.schema.metadata.create_all(self.engine)

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

    def get_meta(self, key: str) -> str | None:
        meta = self.schema.ops.meta
        with self.read() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        meta = self.schema.ops.meta
        with self.begin() as conn:
            conn.execute(delete(meta).where(meta.c.key == key))
            conn.execute(meta.insert(), {"key": key, "value": value})

    def dispose(self) -> None:
        self.engine.dispose()
