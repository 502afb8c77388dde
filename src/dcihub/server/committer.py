"""Group commit for the request path.

Everything a request must make durable before it is answered — the transaction it recorded (and
an async request's outbox row), its audit-trail entry, its message id for replay protection —
is collected in one `RequestWrites` and committed by a single writer together with the writes of
every other request that arrived meanwhile, in ONE database transaction. Under load dozens of
requests share one commit, and the rows of each kind go in with one multi-row statement.

Where the writer's transaction runs is the store's access policy (`store.access.group`): on
SQLite on the event loop, over the connection the loop also reads from (an embedded commit
takes tens of microseconds, SQLite allows one writer anyway, and a shared connection keeps its
page cache warm); on PostgreSQL in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from ..store import Store
from ..store.access import Begin, unavailable
from ..store.audit import AuditEntry
from ..store.replay import DuplicateMessage
from ..store.transactions import NewTxn

log = logging.getLogger("dcihub.committer")

Write = Callable[[Connection], Any]
After = Callable[[Connection, int], Any]


@dataclass
class RequestWrites:
    txns: list[tuple[NewTxn, After | None]] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    # (sender_id, message_id, status, reply kept, digest of the request)
    seen: list[tuple[str, str, int, bytes, str | None]] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)  # what each of `writes` returned

    def __bool__(self) -> bool:
        return bool(self.txns or self.writes or self.audit or self.seen)


class _Entry:
    __slots__ = ("writes", "future")

    def __init__(self, writes: RequestWrites, future: asyncio.Future[None] | None) -> None:
        self.writes = writes
        self.future = future


class GroupCommitter:
    def __init__(
        self, store: Store, max_batch: int = 256, replay_window: float | None = None
    ) -> None:
        self.store = store
        self.replay_window = replay_window  # message ids older than this may be reused
        self.max_batch = max_batch
        self._pending: list[_Entry] = []
        self._wake: asyncio.Event | None = None
        self._running = False

    async def commit(self, writes: RequestWrites) -> None:
        """Make `writes` durable in the next group transaction; returns once committed."""
        if not writes:
            return
        if not self._running:  # no writer task (unit use): commit on our own
            await self._direct(_Entry(writes, None))
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(writes, future))
        assert self._wake is not None
        self._wake.set()
        await future

    async def submit(self, write: Write) -> Any:
        """Run one write in the next group transaction and return its result."""
        writes = RequestWrites(writes=[write])
        await self.commit(writes)
        return writes.results[0] if writes.results else None

    @property
    def running(self) -> bool:
        return self._running

    async def _direct(self, entry: _Entry) -> None:
        error = (await self.store.access.group(lambda begin: self._commit([entry], begin)))[0]
        if error is not None:
            raise error

    async def run(self) -> None:
        """The writer: run until cancelled."""
        self._wake = asyncio.Event()
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    batch = self._pending[: self.max_batch]
                    del self._pending[: self.max_batch]
                    errors = await self.store.access.group(
                        lambda begin, batch=batch: self._commit(batch, begin)  # type: ignore[misc]
                    )
                    for entry, error in zip(batch, errors, strict=True):
                        future = entry.future
                        if future is None or future.done():
                            continue
                        if error is None:
                            future.set_result(None)
                        else:
                            future.set_exception(error)
        finally:
            self._running = False
            for entry in self._pending:
                if entry.future is not None and not entry.future.done():
                    entry.future.set_exception(RuntimeError("the server is shutting down"))

    def _commit(self, batch: list[_Entry], begin: Begin) -> list[Exception | None]:
        try:
            with begin() as conn:
                self._apply(conn, [e.writes for e in batch])
            return [None] * len(batch)
        except DuplicateMessage as exc:
            if len(batch) == 1:
                log.info("%s", exc)
                return [exc]
        except Exception as exc:
            if len(batch) == 1:
                _log_failure(exc)
                return [exc]
        # One request's writes spoiled the group: commit them one by one so the others land.
        out: list[Exception | None] = []
        for entry in batch:
            try:
                with begin() as conn:
                    self._apply(conn, [entry.writes])
                out.append(None)
            except DuplicateMessage as exc:  # another process committed this message first
                log.info("%s", exc)
                out.append(exc)
            except Exception as exc:  # reported to that request only
                _log_failure(exc)
                out.append(exc)
        return out

    def _apply(self, conn: Connection, groups: list[RequestWrites]) -> None:
        # The message ids first: a message another process committed meanwhile fails here,
        # before any of its work is written (and the whole group is rolled back).
        seen = [row for g in groups for row in g.seen]
        if seen:
            self.store.replay.remember_many(conn, seen, self.replay_window)
        txns = [t for g in groups for t in g.txns]
        if txns:
            pks = self.store.txns.create_many(conn, [txn for txn, _ in txns])
            for (_, after), pk in zip(txns, pks, strict=True):
                if after is not None:
                    after(conn, pk)
        for group in groups:
            group.results = [write(conn) for write in group.writes]
        audit = [entry for g in groups for entry in g.audit]
        if audit:
            self.store.audit.append_many(conn, audit)


def _log_failure(exc: Exception) -> None:
    if unavailable(exc):  # the database is away: one line, not a traceback per request
        log.warning("write failed, store unavailable: %s", type(exc).__name__)
    else:
        log.exception("write failed")
