"""The store's access policy (`dcihub.store.access`): where each kind of store work runs.

SQLite: light reads and the group commit on the event loop, over the loop connection; all else
in worker threads. PostgreSQL: everything in worker threads. Checked on both stores by the
thread each piece of work ran on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import select

import support
from dcihub.server.search import SearchService
from dcihub.standard.plan import Limits
from dcihub.standard.profiles import PROFILES
from dcihub.store import Store
from dcihub.store.access import Reader


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Store]:
    with support.store_url_for(backend, tmp_path) as url:
        made = Store(url)
        made.upgrade()
        yield made
        made.dispose()


def run(store: Store, work: Any) -> tuple[int, Any]:
    """Run `work(access)` on an event loop; returns (the loop's thread, what work returned)."""

    async def main() -> tuple[int, Any]:
        return threading.get_ident(), await work(store.access)

    return anyio.run(main)


def where(reader: Reader) -> tuple[int, bool, bool]:
    """The thread a read ran on, whether it had the loop connection, and whether it could read."""
    meta = reader.store.schema.ops.meta
    found = reader.conn.execute(select(meta.c.value).where(meta.c.key == "schema.version"))
    return threading.get_ident(), reader.inline, found.scalar() == "3"


def test_light_reads_run_on_the_event_loop_only_on_sqlite(store: Store) -> None:
    loop, (light, heavy) = run(
        store, lambda access: _both(access.read(where, light=True), access.read(where))
    )
    if store.dialect == "sqlite":
        assert light == (loop, True, True)
    else:
        assert light[0] != loop and light[1:] == (False, True)
    assert heavy[0] != loop and heavy[1:] == (False, True)  # heavy: always a thread


def test_a_light_read_on_sqlite_uses_the_loop_connection(store: Store) -> None:
    def dbapi(reader: Reader) -> Any:
        return reader.dbapi()

    _, connection = run(store, lambda access: access.read(dbapi, light=True))
    if store.dialect == "sqlite":
        assert connection is store.loop_dbapi()
    else:
        assert connection is not None


def test_the_group_commit_runs_on_the_loop_only_on_sqlite(store: Store) -> None:
    meta = store.schema.ops.meta

    def commit(begin: Any) -> int:
        with begin() as conn:
            conn.execute(meta.insert(), {"key": "test.group", "value": "done"})
        return threading.get_ident()

    loop, thread = run(store, lambda access: access.group(commit))
    assert (thread == loop) is (store.dialect == "sqlite")
    assert store.get_meta("test.group") == "done"


def test_writes_outside_the_group_commit_and_blocking_jobs_run_in_threads(store: Store) -> None:
    meta = store.schema.ops.meta

    def write(conn: Any) -> int:
        conn.execute(meta.insert(), {"key": "test.write", "value": "done"})
        return threading.get_ident()

    loop, (wrote, ran) = run(
        store, lambda access: _both(access.write(write), access.run(threading.get_ident))
    )
    assert wrote != loop and ran != loop
    assert store.get_meta("test.write") == "done"
    assert store.access.one_writer is (store.dialect == "sqlite")


def test_only_batched_identifier_lookups_are_light_reads(store: Store) -> None:
    search = SearchService(store, Limits(100, 1000, 100_000, 10_000), 1000)
    profile = PROFILES["crvs"]

    def prepared(*items: dict[str, Any]) -> list[Any]:
        message = support.search_envelope(*items)["message"]
        return search.prepare(profile, message, len(items), date(2026, 1, 1), None)[1]

    lookup = support.idtype("UIN", "1234567890")
    query = support.predicate(support.pred(1, support.expr("sex", "eq", "female")))
    assert search.is_light(prepared(lookup, support.idtype("BRN", "B-1")))
    assert not search.is_light(prepared(query))
    assert not search.is_light(prepared(lookup, query))


async def _both(first: Any, second: Any) -> tuple[Any, Any]:
    return await first, await second
