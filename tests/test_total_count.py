"""`pagination.total_count` is bounded by `limits.max_total_records`: a predicate search counts
at most max_total_records + 1 matches (a LIMITed subquery, never every match), answers an exact
total_count up to the bound and `rjct.search.too_many_records_found` past it — on a live
server over the test country, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

import support
from dcihub.store import Store
from support import DCIClient, expr, pred, predicate

BOUND = 5


class Statements:
    """The count statements the store runs (SQL text and parameters), caught on its engines."""

    def __init__(self, store: Store) -> None:
        # SQLite runs light reads on a one-connection engine of the event loop as well
        self.engines = [store.engine] + ([store.loop_engine] if store.dialect == "sqlite" else [])
        self.seen: list[tuple[str, Any]] = []
        for engine in self.engines:
            event.listen(engine, "before_cursor_execute", self._catch)

    def _catch(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "count(" in statement.lower():
            self.seen.append((statement, parameters))

    def close(self) -> None:
        for engine in self.engines:
            event.remove(engine, "before_cursor_execute", self._catch)


@pytest.fixture(scope="module")
def bounded(populated_url) -> Iterator[tuple[DCIClient, Statements]]:
    """A server over the session's test country whose count stops at BOUND."""
    store = Store(populated_url)
    limits = {"max_total_records": BOUND}
    running = support.live_server(support.test_settings(populated_url, limits=limits), store)
    statements = Statements(store)
    yield DCIClient(running), statements
    statements.close()
    running.stop()
    store.dispose()


def born_since(day: str, page_size: int = 50) -> dict[str, Any]:
    return predicate(
        pred(1, expr("birth_date", "ge", day)),
        pagination={"page_size": page_size, "page_number": 1},
    )


def threshold(country, matches: int) -> str:
    """A birth date on or after which exactly `matches` people of the country were born."""
    days = sorted((p["birth_date"] for p in country.crvs if p.get("birth_date")), reverse=True)
    for k in range(matches, len(days)):
        day = days[k - 1]
        if days[k] != day and sum(d >= day for d in days) == matches:
            return day
    raise AssertionError(f"no birth date with exactly {matches} people born since")


def only_item(body: dict[str, Any]) -> dict[str, Any]:
    (item,) = body["message"]["search_response"]
    return item


def test_a_large_result_set_is_counted_only_to_the_bound(bounded, country) -> None:
    client, statements = bounded
    everyone = sum(1 for p in country.crvs if (p.get("birth_date") or "") >= "1900-01-01")
    assert everyone > 100 * BOUND  # a large result set for this bound
    statements.seen.clear()
    item = only_item(client.sync_search("crvs", born_since("1900-01-01")))
    assert item["status"] == "rjct", item
    assert item["status_reason_code"] == "rjct.search.too_many_records_found"
    assert f"more than {BOUND} records" in item["status_reason_message"]
    assert not item.get("data", {}).get("reg_records")
    # the count is a LIMITed subquery asking for BOUND + 1 rows, not a count of every match
    counts = [(sql, params) for sql, params in statements.seen if "birth" in sql.lower()]
    assert counts, statements.seen
    for sql, params in counts:
        assert "LIMIT" in sql.upper(), sql
        values = params.values() if isinstance(params, dict) else params
        assert BOUND + 1 in list(values), (sql, params)


def test_total_count_is_exact_up_to_the_bound_and_refused_past_it(bounded, country) -> None:
    client, _ = bounded
    exactly = only_item(client.sync_search("crvs", born_since(threshold(country, BOUND))))
    assert exactly["status"] == "succ", exactly
    assert exactly["pagination"]["total_count"] == BOUND
    assert len(exactly["data"]["reg_records"]) == BOUND
    page = only_item(client.sync_search("crvs", born_since(threshold(country, BOUND), 2)))
    assert page["pagination"] == {"page_size": 2, "page_number": 1, "total_count": BOUND}
    assert len(page["data"]["reg_records"]) == 2
    past = only_item(client.sync_search("crvs", born_since(threshold(country, BOUND + 1))))
    assert past["status"] == "rjct", past
    assert past["status_reason_code"] == "rjct.search.too_many_records_found"


def test_without_a_bound_in_reach_the_count_is_exact(client, country) -> None:
    """The session's server (default bound 100,000) counts the same large set exactly."""
    everyone = sum(1 for p in country.crvs if (p.get("birth_date") or "") >= "1900-01-01")
    item = only_item(client.sync_search("crvs", born_since("1900-01-01")))
    assert item["status"] == "succ", item
    assert item["pagination"]["total_count"] == everyone
    assert len(item["data"]["reg_records"]) == 50
