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

log = logging.getLogger("dcihub.committer")

Write = Callable[[Connection], Any]


class GroupCommitter:
    def __init__(self, store: Store, max_batch: int = 256) -> None:
        self.store = store
        self.inline = store.dialect == "sqlite"
        self.max_batch = max_batch
        self._pending: list[tuple[Write, asyncio.Future[Any]]] = []
        self._wake: asyncio.Event | None = None
        self._running = False

    async def submit(self, write: Write) -> Any:
        """Run `write(conn)` in the next group transaction; returns its result once committed."""
        if not self._running:  # no writer task (unit use): commit on our own
            return await self._direct(write)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        assert self._wake is not None
        self._wake.set()
        return await future

    async def _direct(self, write: Write) -> Any:
        def run() -> Any:
            with self.store.begin() as conn:
                return write(conn)
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
                    for (_, future), (ok, value) in zip(batch, results, strict=True):
                        if future.done():
                            continue
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
        finally:
            self._running = False
            for _, future in self._pending:
                if not future.done():
                    future.set_exception(RuntimeError("the server is shutting down"))

    def _commit(self, batch: list[tuple[Write, Any]]) -> list[tuple[bool, Any]]:
        try:
            with self.store.begin() as conn:
                return [(True, write(conn)) for write, _ in batch]
        except Exception:
            if len(batch) == 1:
                log.exception("write failed")
                return [(False, _error())]
        # One write spoiled the group: commit them one by one so the others still land.
        out: list[tuple[bool, Any]] = []
        for write, _ in batch:
            try:
                with self.store.begin() as conn:
                    out.append((True, write(conn)))
            except Exception as exc:  # reported to that request only
                log.exception("write failed")
                out.append((False, exc))
        return out


def _error() -> Exception:
    import sys

    exc = sys.exc_info()[1]
    return exc if isinstance(exc, Exception) else RuntimeError("write failed")
