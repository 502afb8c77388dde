"""Where store work runs: the one rule, for every caller (`Store.access`).

* **SQLite** (embedded): *light* reads — indexed probes such as a batched identifier lookup, the
  replay-window check, a txn/status — and the group commit run on the event loop, over one
  connection dedicated to the loop (`Store.loop_engine`: a thread hop costs more than such a
  read, and reads and commits share its page cache). Everything else — compiled queries, worker
  jobs, checkpoints, writes outside the group commit — runs in a worker thread. SQLite has one
  writer: a serving process sends every write through its group commit (`one_writer`).
* **PostgreSQL** (networked): every read and write runs in a worker thread; the event loop
  never waits on the network.

Callers say what the work is (`read(..., light=True)`, `group`, `write`, `run`), never where it
runs. Heavy reads and blocking jobs share a bounded set of threads (`HEAVY_THREADS`), so that a
burst of compiled queries cannot take every connection of the pool; light reads and writes use
anyio's default threads, so that they never queue behind heavy ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio import CapacityLimiter
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

if TYPE_CHECKING:
    from .database import Store

T = TypeVar("T")
Begin = Callable[[], AbstractContextManager[Connection]]

HEAVY_THREADS = 16
# what SQLite says when its file cannot be used for now (full, locked, I/O error, read-only)
SQLITE_UNAVAILABLE = ("full", "locked", "busy", "i/o", "unable to open", "readonly", "read-only")


def unavailable(exc: BaseException) -> bool:
    """Whether an error means the store cannot be used right now — the database is down or
    restarting, the connection was lost, the pool is exhausted, the disk is full, the file is
    locked — rather than a defect: the request is answered `err.service.unavailable` (503)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.PendingRollbackError):
        return True  # a connection left unusable by an error of the database's (lost link)
    if isinstance(exc, sa_exc.OperationalError) and isinstance(exc.orig, sqlite3.Error):
        exc = exc.orig
    if isinstance(exc, sqlite3.OperationalError):
        # SQLite reports a missing table as an OperationalError too: that is a defect
        text = str(exc).lower()
        return any(mark in text for mark in SQLITE_UNAVAILABLE)
    if _raw_postgres_outage(exc):  # the hot path's prepared statements use the driver itself
        return True
    return isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError,
    )


def _raw_postgres_outage(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


class Reader:
    """Lazily opened connections for one unit of read work, handed to `StoreAccess.read`'s
    function: `conn` (a SQLAlchemy connection) and `dbapi()` (the DBAPI connection, for the
    prepared statements of the hot path). On the event loop (SQLite) both are the loop
    connection; in a thread, a pooled connection opened only if a query needs one."""

    __slots__ = ("store", "inline", "dialect", "_conn", "_ctx")

    def __init__(self, store: Store, inline: bool = False) -> None:
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

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class StoreAccess:
    """The access policy of one store (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.on_loop = store.dialect == "sqlite"  # light reads and the group commit
        self.heavy = CapacityLimiter(HEAVY_THREADS)

    @property
    def one_writer(self) -> bool:
        """Whether a serving process sends every write through its group commit (SQLite)."""
        return self.on_loop

    async def read(self, fn: Callable[..., T], *args: Any, light: bool = False) -> T:
        """`fn(reader, *args)`: on the event loop if the read is light and the store embedded,
        else in a worker thread."""
        if light and self.on_loop:
            reader = Reader(self.store, True)
            try:
                return fn(reader, *args)
            finally:
                reader.close()
        limiter = None if light else self.heavy
        return await anyio.to_thread.run_sync(self._read, fn, args, limiter=limiter)

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with Reader(self.store) as reader:
            return fn(reader, *args)

    async def group(self, fn: Callable[[Begin], T]) -> T:
        """The group commit's work, `fn(begin)` (`begin()` opens a write transaction): on the
        event loop over the loop connection on SQLite, else in a worker thread."""
        if self.on_loop:
            return fn(self.store.loop_begin)
        return await anyio.to_thread.run_sync(fn, self.store.begin)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """`fn(conn)` in a write transaction of its own, in a worker thread (a write outside
        the group commit: a standalone worker, PostgreSQL)."""
        return await anyio.to_thread.run_sync(self._write, fn)

    def _write(self, fn: Callable[[Connection], T]) -> T:
        with self.store.begin() as conn:
            return fn(conn)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking store work that opens its own connections (a compiled query of a special
        call, a worker job, a checkpoint, an upgrade): always in a worker thread."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.heavy)
