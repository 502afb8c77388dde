"""Group commit for the request path.

Handlers that must write before they answer (record a sync transaction, accept an async one
together with its outbox row) submit a small write and await it. A single writer runs all the
writes submitted meanwhile in ONE database transaction and then wakes every waiter: under load
dozens of requests share one commit, so durability costs a fraction of a commit per request.

On SQLite the writer runs on the event loop (an embedded commit takes tens of microseconds and
SQLite allows one writer anyway); on PostgreSQL it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
from sqlalchemy import Connection

from ..store import Store
from ..store.transactions import NewTxn

log = logging.getLogger("dcihub.committer")

Write = Callable[[Connection], Any]
After = Callable[[Connection, int], Any]


class _Entry:
    __slots__ = ("write", "txn", "after", "future")

    def __init__(self, write: Write | None, txn: NewTxn | None, after: After | None,
                 future: asyncio.Future[Any] | None) -> None:
        self.write = write
        self.txn = txn
        self.after = after
        self.future = future


class GroupCommitter:
    def __init__(self, store: Store, max_batch: int = 256) -> None:
        self.store = store
        self.inline = store.dialect == "sqlite"
        self.max_batch = max_batch
        self._pending: list[_Entry] = []
        self._wake: asyncio.Event | None = None
        self._running = False

    async def submit(self, write: Write) -> Any:
        """Run `write(conn)` in the next group transaction; returns its result once committed."""
        return await self._enqueue(_Entry(write, None, None, None))

    async def record(self, txn: NewTxn, after: After | None = None) -> Any:
        """Record a transaction (and run `after(conn, txn_pk)` in the same database
        transaction); all transactions of a group are inserted with one statement."""
        return await self._enqueue(_Entry(None, txn, after, None))

    async def _enqueue(self, entry: _Entry) -> Any:
        if not self._running:  # no writer task (unit use): commit on our own
            return await self._direct(entry)
        entry.future = asyncio.get_running_loop().create_future()
        self._pending.append(entry)
        assert self._wake is not None
        self._wake.set()
        return await entry.future

    async def _direct(self, entry: _Entry) -> Any:
        def run() -> Any:
            ok, value = self._commit([entry])[0]
            if not ok:
                raise value
            return value
        if self.inline:
            return run()
        return await anyio.to_thread.run_sync(run)

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
                    if self.inline:
                        results = self._commit(batch)
                    else:
                        results = await anyio.to_thread.run_sync(self._commit, batch)
                    for entry, (ok, value) in zip(batch, results, strict=True):
                        future = entry.future
                        if future is None or future.done():
                            continue
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
        finally:
            self._running = False
            for entry in self._pending:
                if entry.future is not None and not entry.future.done():
                    entry.future.set_exception(RuntimeError("the server is shutting down"))

    def _begin(self) -> Any:
        return self.store.loop_begin() if self.inline else self.store.begin()

    def _commit(self, batch: list[_Entry]) -> list[tuple[bool, Any]]:
        try:
            with self._begin() as conn:
                return self._apply(conn, batch)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("write failed")
                return [(False, exc)]
        # One write spoiled the group: commit them one by one so the others still land.
        out: list[tuple[bool, Any]] = []
        for entry in batch:
            try:
                with self._begin() as conn:
                    out.append(self._apply(conn, [entry])[0])
            except Exception as exc:  # reported to that request only
                log.exception("write failed")
                out.append((False, exc))
        return out

    def _apply(self, conn: Connection, batch: list[_Entry]) -> list[tuple[bool, Any]]:
        txn_entries = [e for e in batch if e.txn is not None]
        pks = self.store.txns.create_many(conn, [e.txn for e in txn_entries])  # type: ignore[misc]
        by_entry = {id(e): pk for e, pk in zip(txn_entries, pks, strict=True)}
        out: list[tuple[bool, Any]] = []
        for entry in batch:
            if entry.txn is not None:
                pk = by_entry[id(entry)]
                out.append((True, entry.after(conn, pk) if entry.after else pk))
            else:
                assert entry.write is not None
                out.append((True, entry.write(conn)))
        return out
