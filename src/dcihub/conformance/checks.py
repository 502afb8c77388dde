"""The server checks: each sends a few messages to the registry under test and records
findings on the requirements it verifies (`CHECKS`, in the order they run; later checks use
what earlier ones learnt, e.g. the known record).

A check declares the requirements it may judge (`verifies`); `dcihub conform requirements
--coverage` lists them, and a finding on an undeclared requirement is a defect of the kit.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jwt

from dcihub.client.envelopes import new_id
from dcihub.client.query import Q, Query
from dcihub.client.results import Record, read_subscribe_response
from dcihub.security.keys import generate_key
from dcihub.security.signatures import sign, verify
from dcihub.standard.envelope import format_ts
from dcihub.standard.profiles import RegistryProfile

from .judge import Ctx, Skip, error_code, record_keys

__all__ = ["CHECKS", "Check", "check"]

CheckFn = Callable[[Ctx], None]
UNKNOWN_VALUE = "0000000000-conformance-unknown"


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    tier: str
    verifies: tuple[str, ...]
    run: CheckFn
    needs: str | None = None  # "txn_status" | "subscriptions" | "special"


CHECKS: list[Check] = []

ENVELOPE = (
    "ENV-VERSION-001",
    "ENV-MSGID-001",
    "ENV-TS-001",
    "ENV-ACTION-001",
    "ENV-PARTIES-001",
    "ENV-STATUS-001",
    "ENV-TXN-001",
    "CONTRACT-001",
    "SEC-SIG-003",
    "SEC-ENC-001",
)


def check(
    name: str, title: str, tier: str, verifies: tuple[str, ...], needs: str | None = None
) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        CHECKS.append(Check(name, title, tier, verifies, fn, needs))
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# Helpers


def known(ctx: Ctx) -> list[tuple[str, str]]:
    return list(ctx.target.known)


def first_known(ctx: Ctx) -> tuple[str, str]:
    ids = known(ctx)
    if not ids:
        raise Skip("no known record: give --known TYPE=VALUE or --fixture FILE")
    return ids[0]


def any_id_query(ctx: Ctx) -> Query:
    """A query for a valid message: the first known identifier, else one no record holds."""
    ids = known(ctx)
    return Q.id(*ids[0]) if ids else Q.id("UIN", UNKNOWN_VALUE)


def sync_search(
    ctx: Ctx, label: str, items: list[dict[str, Any]], **header: Any
) -> tuple[Any, dict[str, Any] | None, dict[str, Any]]:
    """Send one signed sync/search; (exchange, judged message or None, request envelope)."""
    plan = ctx.core.search_plan(items, lambda o: o)
    plan.header.update(header)
    envelope = ctx.session.envelope(plan.header, plan.message, signed=True)
    exchange = ctx.post(label, "sync/search", envelope)
    message = ctx.judge_envelope(
        exchange,
        path="sync/search",
        action="on-search",
        request_header=plan.header,
        transaction_id=plan.message["transaction_id"],
    )
    return exchange, message, envelope


def item(ctx: Ctx, query: Query, **options: Any) -> dict[str, Any]:
    return ctx.core.search_item(query, **options)


def response_items(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    items = (message or {}).get("search_response")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def records_of(response_item: dict[str, Any]) -> list[dict[str, Any]]:
    data = response_item.get("data")
    records = data.get("reg_records") if isinstance(data, dict) else None
    if isinstance(records, dict):
        records = [records]
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def judge_items(
    ctx: Ctx, exchange: Any, message: dict[str, Any] | None, sent: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """SEARCH-SYNC-001 / SEARCH-ITEM-001 on a search reply; its items by reference_id."""
    items = response_items(message)
    ctx.expect(
        "SEARCH-SYNC-001",
        len(items) == len(sent),
        f"the reply holds {len(items)} search_response item(s) for {len(sent)} sent",
        exchange,
    )
    by_ref: dict[str, dict[str, Any]] = {}
    for got in items:
        ref = got.get("reference_id")
        if isinstance(ref, str):
            by_ref[ref] = got
        ctx.expect(
            "SEARCH-ITEM-001",
            got.get("status") in ("rcvd", "pdng", "succ", "rjct"),
            f"item {ref!r}: status {got.get('status')!r} is not a RequestStatus",
            exchange,
        )
        ts = got.get("timestamp")
        ctx.expect(
            "SEARCH-ITEM-001",
            isinstance(ts, str) and bool(ts),
            f"item {ref!r}: no timestamp",
            exchange,
        )
    for sent_item in sent:
        ctx.expect(
            "SEARCH-ITEM-001",
            sent_item["reference_id"] in by_ref,
            f"no search_response item echoes reference_id {sent_item['reference_id']!r} "
            f"(got {[i.get('reference_id') for i in items]})",
            exchange,
        )
    return by_ref


def total_of(got: dict[str, Any]) -> int | None:
    """pagination.total_count of a search_response item (a numeric string read too)."""
    pagination = got.get("pagination")
    total = pagination.get("total_count") if isinstance(pagination, dict) else None
    if isinstance(total, str) and total.isdigit():
        return int(total)
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def attribute(profile: RegistryProfile, kind: str) -> tuple[str, str] | None:
    """(name, record path) of the default record type's first searchable `kind` attribute."""
    entity = profile.entity(profile.default_entity)
    for attr in entity.attributes:
        if attr.type == kind and attr.name == attr.path.rsplit(".", 1)[-1]:
            return attr.name, attr.path
    return None


def value_at(record: dict[str, Any], path: str) -> Any:
    return Record(record).get(path)


def date_attribute(ctx: Ctx) -> tuple[str, str]:
    found = attribute(ctx.profile, "date")
    if found is None:
        raise Skip(f"the {ctx.profile.title} profile declares no date attribute to query")
    return found


def broad_query(ctx: Ctx) -> tuple[Query, str, str]:
    """A query matching many records: <date attribute> >= 1800-01-01."""
    name, path = date_attribute(ctx)
    return Q.attr(name) >= "1800-01-01", name, path


# ---------------------------------------------------------------------------------------------
# Core: search


@check(
    "search.sync.known",
    "sync/search by identifier answers exactly the known records",
    "core",
    ("SEARCH-SYNC-001", "SEARCH-ITEM-001", "QUERY-IDTYPE-001", "DATA-001", *ENVELOPE),
)
def search_known(ctx: Ctx) -> None:
    ids = known(ctx)[:3] or [("UIN", UNKNOWN_VALUE)]
    for id_type, value in ids:
        sent = [item(ctx, Q.id(id_type, value))]
        exchange, message, _ = sync_search(ctx, f"sync/search {id_type}={value}", sent)
        by_ref = judge_items(ctx, exchange, message, sent)
        got = by_ref.get(sent[0]["reference_id"])
        if got is None:
            continue
        if value == UNKNOWN_VALUE:
            raise Skip("no known record: give --known TYPE=VALUE or --fixture FILE")
        if not ctx.expect(
            "QUERY-IDTYPE-001",
            got.get("status") == "succ" and bool(records_of(got)),
            f"idtype-value {id_type}={value}: status {got.get('status')!r} "
            f"({got.get('status_reason_code')}), {len(records_of(got))} record(s)",
            exchange,
        ):
            continue
        records = records_of(got)
        holders = [r for r in records if (id_type, value) in record_keys(r)]
        ctx.expect(
            "DATA-001",
            len(holders) == len(records),
            f"{id_type}={value}: {len(records)} record(s) answered, {len(holders)} holding "
            f"that identifier (their identifiers: "
            f"{[sorted(record_keys(r)) for r in records][:3]})",
            exchange,
        )
        if holders and "known_record" not in ctx.state:
            ctx.state["known_record"] = holders[0]
            ctx.state["known_id"] = (id_type, value)


@check(
    "search.sync.unknown",
    "sync/search for an identifier nobody holds succeeds with no records",
    "core",
    ("DATA-002", "SEARCH-ITEM-001", "SEARCH-SYNC-001", *ENVELOPE),
)
def search_unknown(ctx: Ctx) -> None:
    id_type = known(ctx)[0][0] if known(ctx) else "UIN"
    sent = [item(ctx, Q.id(id_type, UNKNOWN_VALUE))]
    exchange, message, _ = sync_search(ctx, f"sync/search {id_type}=<unknown>", sent)
    got = judge_items(ctx, exchange, message, sent).get(sent[0]["reference_id"])
    if got is not None:
        ctx.expect(
            "DATA-002",
            got.get("status") == "succ" and not records_of(got),
            f"an unknown identifier: status {got.get('status')!r}, "
            f"{len(records_of(got))} record(s)",
            exchange,
        )


@check(
    "search.batch",
    "a message of several items is answered item by item",
    "core",
    ("BATCH-001", "SEARCH-SYNC-001", "SEARCH-ITEM-001", *ENVELOPE),
)
def search_batch(ctx: Ctx) -> None:
    ids = known(ctx)
    if not ids:
        raise Skip("no known record: give --known TYPE=VALUE or --fixture FILE")
    second = ids[1] if len(ids) > 1 and ids[1] != ids[0] else None
    wanted: list[tuple[str, str] | None] = [ids[0], None, second or ids[0]]
    sent = [
        item(ctx, Q.id(*w) if w else Q.id(ids[0][0], UNKNOWN_VALUE), reference_id=new_id())
        for w in wanted
    ]
    exchange, message, _ = sync_search(ctx, "sync/search, 3 items", sent)
    by_ref = judge_items(ctx, exchange, message, sent)
    for sent_item, w in zip(sent, wanted, strict=True):
        got = by_ref.get(sent_item["reference_id"])
        ref = sent_item["reference_id"]
        if got is None:  # judged under SEARCH-ITEM-001
            continue
        records = records_of(got)
        if w is None:
            ctx.expect(
                "BATCH-001",
                got.get("status") == "succ" and not records,
                f"item {ref} (an unknown identifier): status {got.get('status')!r}, "
                f"{len(records)} record(s) — another item's records?",
                exchange,
            )
        else:
            ctx.expect(
                "BATCH-001",
                got.get("status") == "succ" and len(records) == 1 and w in record_keys(records[0]),
                f"item {ref} ({w[0]}={w[1]}): status {got.get('status')!r}, records "
                f"{[sorted(record_keys(r)) for r in records][:3]}",
                exchange,
            )


def _known_value(ctx: Ctx) -> tuple[str, str, str]:
    record = ctx.state.get("known_record")
    if record is None:
        raise Skip("no known record was found (search.sync.known)")
    name, path = date_attribute(ctx)
    value = value_at(record, path)
    if not isinstance(value, str) or len(value) < 10:
        raise Skip(f"the known record has no {name} ({path}) to query")
    return name, path, value[:10]  # a date attribute compares by day


@check(
    "search.predicate",
    "a predicate query answers only records satisfying it",
    "core",
    ("QUERY-PREDICATE-001", "SEARCH-ITEM-001", "SEARCH-SYNC-001", *ENVELOPE),
)
def search_predicate(ctx: Ctx) -> None:
    name, path, value = _known_value(ctx)
    query = (Q.attr(name) >= value) & (Q.attr(name) <= value)
    _judge_condition(ctx, "QUERY-PREDICATE-001", query, name, path, value)


@check(
    "search.expression",
    "an expression query answers only records satisfying it",
    "core",
    ("QUERY-EXPRESSION-001", "SEARCH-ITEM-001", "SEARCH-SYNC-001", *ENVELOPE),
)
def search_expression(ctx: Ctx) -> None:
    name, path, value = _known_value(ctx)
    query = Q.expression({"$and": [{name: {"$gte": value}}, {name: {"$lte": value}}]})
    _judge_condition(ctx, "QUERY-EXPRESSION-001", query, name, path, value)


def _judge_condition(ctx: Ctx, rid: str, query: Query, name: str, path: str, value: str) -> None:
    sent = [item(ctx, query)]
    kind = query.criteria().get("query_type")
    exchange, message, _ = sync_search(ctx, f"sync/search {kind} {name} = {value}", sent)
    got = judge_items(ctx, exchange, message, sent).get(sent[0]["reference_id"])
    if got is None:
        return
    records = records_of(got)
    if not ctx.expect(
        rid,
        got.get("status") == "succ" and bool(records),
        f"{kind} {name} = {value}: status {got.get('status')!r} "
        f"({got.get('status_reason_code')}: {got.get('status_reason_message')}), "
        f"{len(records)} record(s) — the known record matches it",
        exchange,
    ):
        return
    wrong = [value_at(r, path) for r in records if str(value_at(r, path))[:10] != value]
    ctx.expect(
        rid,
        not wrong,
        f"{kind} {name} = {value}: {len(wrong)} of {len(records)} record(s) do not match "
        f"(their {name}: {wrong[:5]})",
        exchange,
    )


@check(
    "search.sort",
    "records come in the order asked (ascending and descending)",
    "core",
    ("SORT-001", "SEARCH-ITEM-001", "SEARCH-SYNC-001", *ENVELOPE),
)
def search_sort(ctx: Ctx) -> None:
    query, name, path = broad_query(ctx)
    firsts = {}
    for order in ("asc", "desc"):
        sent = [item(ctx, query, page_size=5, sort=(name, order))]
        exchange, message, _ = sync_search(ctx, f"sync/search sorted by {name} {order}", sent)
        got = judge_items(ctx, exchange, message, sent).get(sent[0]["reference_id"])
        if got is None:
            return
        values = [value_at(r, path) for r in records_of(got)]
        values = [v[:10] if isinstance(v, str) else v for v in values]  # dates compare by day
        if not ctx.expect(
            "SORT-001",
            got.get("status") == "succ" and len(values) >= 2,
            f"sorted by {name} {order}: status {got.get('status')!r} "
            f"({got.get('status_reason_code')}), {len(values)} record(s)",
            exchange,
        ):
            return
        if any(not isinstance(v, str) for v in values):
            raise Skip(f"the records answered do not all hold {name} at {path}")
        wanted = sorted(values, reverse=order == "desc")
        ctx.expect(
            "SORT-001",
            values == wanted,
            f"sorted by {name} {order}: got {values}",
            exchange,
        )
        firsts[order] = values[0]
    if len(firsts) == 2:
        ctx.expect(
            "SORT-001",
            firsts["asc"] <= firsts["desc"],
            f"the first {name} ascending ({firsts['asc']}) is after the first descending "
            f"({firsts['desc']})",
        )


@check(
    "search.pagination",
    "pages count from 1, hold page_size records and add up to total_count",
    "core",
    ("PAGE-001", "PAGE-002", "PAGE-003", "SEARCH-ITEM-001", "SEARCH-SYNC-001", *ENVELOPE),
)
def search_pagination(ctx: Ctx) -> None:
    query, name, _ = broad_query(ctx)
    sort = [(name, "asc")]
    size = 2

    def page(number: int, page_size: int) -> tuple[Any, dict[str, Any] | None]:
        sent = [item(ctx, query, page_size=page_size, page_number=number, sort=sort)]
        label = f"sync/search page {number} of size {page_size}"
        exchange, message, _ = sync_search(ctx, label, sent)
        got = judge_items(ctx, exchange, message, sent).get(sent[0]["reference_id"])
        if got is not None and got.get("status") != "succ":
            ctx.expect(
                "PAGE-001",
                False,
                f"{label}: status {got.get('status')!r} ({got.get('status_reason_code')}: "
                f"{got.get('status_reason_message')})",
                exchange,
            )
            return exchange, None
        return exchange, got

    ex1, p1 = page(1, size)
    ex2, p2 = page(2, size)
    exw, wide = page(1, size * 2)
    if p1 is None or p2 is None or wide is None:
        return
    r1, r2, rw = records_of(p1), records_of(p2), records_of(wide)
    total = total_of(p1)
    if total is None or total < size * 2 + 1:
        raise Skip(f"too few records ({total}) match {name} >= 1800-01-01 to page through")
    pag1: dict[str, Any] = p1["pagination"] if isinstance(p1.get("pagination"), dict) else {}
    pag2: dict[str, Any] = p2["pagination"] if isinstance(p2.get("pagination"), dict) else {}
    ctx.expect(
        "PAGE-001",
        pag1.get("page_number") in (None, 1) and pag2.get("page_number") in (None, 2),
        f"pagination.page_number echoes {pag1.get('page_number')!r} for page 1 and "
        f"{pag2.get('page_number')!r} for page 2",
        ex2,
    )
    keys1, keys2, keysw = (
        [record_keys(r) for r in r1],
        [record_keys(r) for r in r2],
        [record_keys(r) for r in rw],
    )
    sized = ctx.expect(
        "PAGE-002",
        len(r1) == size and len(r2) == size and len(rw) == size * 2,
        f"pages of size {size}, {size}, {size * 2} hold {len(r1)}, {len(r2)}, {len(rw)} "
        f"record(s) while {total} match",
        ex2,
    )
    numbered = sized and ctx.expect(  # page contents are comparable once sizes are right
        "PAGE-001",
        keysw == keys1 + keys2,
        "page 1 and page 2 of size 2 are not the first four records that page 1 of size 4 "
        "answers (pages must count from 1)",
        exw,
    )
    ctx.expect(
        "PAGE-002",
        pag1.get("page_size") in (None, size),
        f"pagination.page_size echoes {pag1.get('page_size')!r} for a page of size {size}",
        ex1,
    )
    ctx.expect(
        "PAGE-003",
        not set(keys1) & set(keys2),
        "page 1 and page 2 share records",
        ex2,
    )
    totals = {total_of(p) for p in (p1, p2, wide)}
    ctx.expect(
        "PAGE-003",
        len(totals) == 1,
        f"pagination.total_count differs between pages: {sorted(t or 0 for t in totals)}",
        exw,
    )
    if not numbered:
        return  # the last page is only meaningful once pages are sized and numbered right
    last = (total + size - 1) // size
    exl, pl = page(last, size)
    if pl is not None:
        expected = total - (last - 1) * size
        ctx.expect(
            "PAGE-003",
            len(records_of(pl)) == expected,
            f"the last page ({last} of size {size}, for total_count {total}) holds "
            f"{len(records_of(pl))} record(s), not {expected}",
            exl,
        )
    exa, after = page(last + 1, size)
    if after is not None:
        ctx.expect(
            "PAGE-003",
            not records_of(after),
            f"page {last + 1}, past the last for total_count {total}, holds "
            f"{len(records_of(after))} record(s)",
            exa,
        )


# ---------------------------------------------------------------------------------------------
# Core: asynchronous search, transaction status, subscriptions, special calls


def async_request(
    ctx: Ctx, plan: Any, callback: str, label: str
) -> tuple[Any, dict[str, Any] | None, list[Any]]:
    """Send an async request (ack judged); wait for its callback (one, within the timeout).
    (ack exchange, ack message or None, callbacks received for the transaction)."""
    envelope = ctx.session.envelope(plan.header, plan.message)
    sent_at = time.monotonic()
    exchange = ctx.post(label, plan.path, envelope)
    ack = ctx.judge_ack(exchange, plan.path)
    if ack is None:
        return exchange, None, []
    # the first callback at that path after the request (the checks run one at a time)
    found = ctx.receiver.wait(
        lambda c: c.path == callback and c.received >= sent_at, ctx.target.timeout
    )
    return exchange, ack, found[:1]


def judge_callback(
    ctx: Ctx,
    rid: str,
    plan: Any,
    callback_path: str,
    action: str,
    ack: dict[str, Any],
    found: list[Any],
    correlation_rid: str | None = None,
) -> dict[str, Any] | None:
    transaction_id = plan.message["transaction_id"]
    if not ctx.expect(
        rid,
        bool(found),
        f"no {callback_path} callback within {ctx.target.timeout:g} s of the request "
        f"(transaction {transaction_id})",
    ):
        return None
    exchange = ctx.callback_exchange(found[0])
    got = found[0].transaction_id()
    ctx.expect(
        correlation_rid or rid,
        got == transaction_id,
        f"the {callback_path} callback is about transaction {got!r}, not the request's "
        f"{transaction_id!r}",
        exchange,
    )
    message = ctx.judge_envelope(
        exchange,
        path=callback_path,
        action=action,
        request_header=plan.header,
        transaction_id=transaction_id,
        callback=True,
    )
    if message is not None and correlation_rid is not None:
        ctx.expect(
            correlation_rid,
            message.get("correlation_id") == ack.get("correlation_id"),
            f"the {callback_path} callback's correlation_id {message.get('correlation_id')!r} "
            f"is not the ack's {ack.get('correlation_id')!r}",
            exchange,
        )
    return message


@check(
    "search.async",
    "search is acknowledged and answered by an on-search callback",
    "core",
    (
        "ACK-001",
        "SEARCH-ASYNC-001",
        "SEARCH-ASYNC-002",
        "SEARCH-ITEM-001",
        "SEARCH-SYNC-001",
        *ENVELOPE,
    ),
)
def search_async(ctx: Ctx) -> None:
    sender_uri = ctx.receiver.callback_url("on-search")
    plan = ctx.core.plan_search(any_id_query(ctx), sender_uri=sender_uri)
    exchange, ack, found = async_request(ctx, plan, "on-search", "search (async)")
    if ack is None:
        ctx.expect("SEARCH-ASYNC-001", False, "the search was not acknowledged", exchange)
        return
    message = judge_callback(
        ctx, "SEARCH-ASYNC-001", plan, "on-search", "on-search", ack, found, "SEARCH-ASYNC-002"
    )
    if message is not None:
        judge_items(ctx, ctx.exchanges[-1], message, plan.message["search_request"])
        ctx.state["async_transaction"] = plan.message["transaction_id"]


def _txn_plan(ctx: Ctx, sender_uri: str | None = None) -> Any:
    transaction_id = ctx.state.get("async_transaction")
    if transaction_id is None:
        # a transaction of the tester's own to ask about
        sent = [item(ctx, any_id_query(ctx))]
        plan = ctx.core.search_plan(sent, lambda o: o)
        ctx.post(
            "sync/search (a transaction to ask about)",
            "sync/search",
            ctx.session.envelope(plan.header, plan.message),
        )
        transaction_id = plan.message["transaction_id"]
    return ctx.core.txn_status_plan(transaction_id, sender_uri=sender_uri), transaction_id


def _judge_txn_message(
    ctx: Ctx, rid: str, message: dict[str, Any] | None, asked: str, exchange: Any
) -> None:
    if message is None:
        return
    response = message.get("txnstatus_response")
    if not ctx.expect(
        rid, isinstance(response, dict), "the message holds no txnstatus_response", exchange
    ):
        return
    assert isinstance(response, dict)
    text = json.dumps(response)
    ctx.expect(
        rid,
        response.get("txn_type") is not None and asked in text,
        f"the txnstatus_response does not report transaction {asked} "
        f"(txn_type {response.get('txn_type')!r})",
        exchange,
    )


@check(
    "txn.sync",
    "sync/txn/status reports a transaction of the tester's",
    "core",
    ("TXN-SYNC-001", *ENVELOPE),
    needs="txn_status",
)
def txn_sync(ctx: Ctx) -> None:
    plan, asked = _txn_plan(ctx)
    exchange = ctx.post(
        "sync/txn/status", plan.path, ctx.session.envelope(plan.header, plan.message)
    )
    message = ctx.judge_envelope(
        exchange,
        path=plan.path,
        action="txn-on-status",
        request_header=plan.header,
        transaction_id=plan.message["transaction_id"],
    )
    if message is None:
        ctx.expect("TXN-SYNC-001", False, "no txn-on-status envelope", exchange)
    _judge_txn_message(ctx, "TXN-SYNC-001", message, asked, exchange)


@check(
    "txn.async",
    "txn/status is acknowledged and answered by txn/on-status",
    "core",
    ("TXN-ASYNC-001", "ACK-001", *ENVELOPE),
    needs="txn_status",
)
def txn_async(ctx: Ctx) -> None:
    plan, asked = _txn_plan(ctx, ctx.receiver.callback_url("txn/on-status"))
    exchange, ack, found = async_request(ctx, plan, "txn/on-status", "txn/status (async)")
    if ack is None:
        ctx.expect("TXN-ASYNC-001", False, "txn/status was not acknowledged", exchange)
        return
    message = judge_callback(
        ctx, "TXN-ASYNC-001", plan, "txn/on-status", "txn-on-status", ack, found
    )
    _judge_txn_message(ctx, "TXN-ASYNC-001", message, asked, ctx.exchanges[-1])


NOTIFY = ("NOTIFY-001", "NOTIFY-002", "NOTIFY-003", "NOTIFY-004")
# the event a trigger is expected to raise, by default: one a change of an existing record
# raises (a followed identifier can die, change status; it cannot be registered again)
NOTIFY_EVENTS = {
    "crvs": "Death",
    "dr": "DisabilityStatusChange",
    "ibr": "enrollement_status_change",
    "ess": "employment_status_change",
    "social": "HouseHoldMemberLeft",
}


def notify_event(ctx: Ctx) -> str | None:
    name = ctx.target.trigger_event or NOTIFY_EVENTS.get(ctx.profile.name)
    if name is None:
        return ctx.profile.reg_event_types[0]
    event = ctx.profile.event_type(name)
    return event.name if event is not None else None


def trigger_env(
    ctx: Ctx, event: str, codes: list[str], transaction_id: str, followed: tuple[str, str] | None
) -> dict[str, str]:
    env = {
        "DCI_REGISTRY": ctx.profile.name,
        "DCI_BASE_URL": ctx.target.base_url,
        "DCI_EVENT_TYPE": event,
        "DCI_SUBSCRIPTION_CODE": codes[0],
        "DCI_SUBSCRIPTION_CODES": " ".join(codes),
        "DCI_TRANSACTION_ID": transaction_id,
    }
    if followed:
        env["DCI_ID_TYPE"], env["DCI_ID_VALUE"] = followed
    return env


def judge_notify(
    ctx: Ctx,
    trigger: str,
    event: str,
    codes: list[str],
    plan: Any,
    followed: tuple[str, str] | None,
) -> None:
    """Run the trigger, wait for the `notify` at the receiver and judge it (NOTIFY-*)."""
    transaction_id = plan.message["transaction_id"]
    env = {**os.environ, **trigger_env(ctx, event, codes, transaction_id, followed)}
    before = len(ctx.receiver.callbacks)
    try:
        done = subprocess.run(  # noqa: S602 - the operator's own command, by design
            trigger,
            shell=True,
            env=env,
            capture_output=True,
            timeout=max(ctx.target.timeout * 6, 60),
            check=False,
        )
    except subprocess.TimeoutExpired:
        ctx.expect("NOTIFY-001", False, f"the --trigger command did not end: {trigger}")
        return
    if not ctx.expect(
        "NOTIFY-001",
        done.returncode == 0,
        f"the --trigger command failed (exit {done.returncode}): "
        f"{(done.stderr or done.stdout).decode('utf-8', 'replace').strip()[:300]}",
    ):
        return
    seen = ctx.receiver.callbacks[:before]
    found = ctx.receiver.wait(lambda c: c.path == "notify" and c not in seen, ctx.target.timeout)
    if not ctx.expect(
        "NOTIFY-001",
        bool(found),
        f"no notify callback within {ctx.target.timeout:g} s of the --trigger command "
        f"(subscription {codes[0]}, event {event}; it printed: "
        f"{done.stdout.decode('utf-8', 'replace').strip()[-200:]!r})",
    ):
        return
    exchange = ctx.callback_exchange(found[0])
    ctx.expect("NOTIFY-001", True, "", exchange)
    doc = exchange.request_json()
    header = doc.get("header") if isinstance(doc, dict) else None
    if not ctx.expect(
        "NOTIFY-002",
        isinstance(header, dict),
        f"the notify callback is not an envelope: {str(doc)[:200]}",
        exchange,
    ):
        return
    assert isinstance(doc, dict) and isinstance(header, dict)
    message = doc.get("message")
    registry_id = ctx.target.receiver_id  # when given, the notify must come from it
    problems = []
    if header.get("action") != "notify":
        problems.append(f"header.action is {header.get('action')!r}, not 'notify'")
    if not (isinstance(header.get("message_id"), str) and header["message_id"].strip()):
        problems.append(f"header.message_id is {header.get('message_id')!r}")
    if registry_id and header.get("sender_id") != registry_id:
        problems.append(f"header.sender_id is {header.get('sender_id')!r}, not {registry_id!r}")
    signature = doc.get("signature")
    if not signature:
        problems.append("it is not signed")
    elif ctx.session.resolver is None:
        problems.append(f"the registry's JWKS could not be read ({ctx.session.jwks_error})")
    else:
        try:
            verify(str(signature), header, message, ctx.session.resolver.resolve)
        except Exception as exc:  # noqa: BLE001 - SecurityError / a malformed signature
            problems.append(f"the signature does not verify: {exc}")
    ctx.expect("NOTIFY-002", not problems, "the notify callback: " + "; ".join(problems), exchange)
    if header.get("is_msg_encrypted") is True and isinstance(message, dict):
        try:
            message = ctx.session.decrypt(message)
        except Exception as exc:  # noqa: BLE001 - EncryptionError / no key
            ctx.expect("NOTIFY-004", False, f"the notify callback: cannot decrypt: {exc}", exchange)
            return
    meta = header.get("meta")
    named = meta.get("subscription_codes") if isinstance(meta, dict) else None
    meta_txn = meta.get("transaction_id") if isinstance(meta, dict) else None
    got_txn = message.get("transaction_id") if isinstance(message, dict) else None
    ctx.expect(
        "NOTIFY-003",
        isinstance(named, list) and any(code in named for code in codes),
        f"header.meta.subscription_codes is {named!r}: it does not name the subscription {codes}",
        exchange,
    )
    ctx.expect(
        "NOTIFY-003",
        transaction_id in (got_txn, meta_txn),
        f"the notify carries transaction {got_txn!r} (meta {meta_txn!r}), not the subscribe "
        f"transaction {transaction_id!r}",
        exchange,
    )
    items = message.get("notify_event") if isinstance(message, dict) else None
    ctx.expect(
        "NOTIFY-004",
        isinstance(items, list)
        and bool(items)
        and all(isinstance(i, dict) and isinstance(i.get("data"), dict) for i in items),
        f"message.notify_event is not a list of items with data: {str(items)[:300]}",
        exchange,
    )
    if ctx.contract is not None:
        try:
            errors = ctx.contract.errors_request("/registry/notify", {**doc, "message": message})
        except Exception as exc:  # noqa: BLE001 - the contract has no such path
            errors = [f"the contract cannot validate it: {exc}"]
        ctx.expect(
            "NOTIFY-004",
            not errors,
            f"the notify callback violates the official contract: {'; '.join(errors[:3])}",
            exchange,
        )


@check(
    "subscribe",
    "subscribe and unsubscribe are acknowledged and confirmed by their callbacks",
    "core",
    ("SUB-001", "SUB-002", "ACK-001", *ENVELOPE, *NOTIFY),
    needs="subscriptions",
)
def subscribe(ctx: Ctx) -> None:
    events = list(ctx.profile.reg_event_types)
    if not events:
        raise Skip(f"the {ctx.profile.title} profile names no event type to subscribe to")
    followed = ctx.state.get("known_id") or (known(ctx)[0] if known(ctx) else None)
    trigger = ctx.target.trigger
    if trigger:
        event = notify_event(ctx)
        if event is None:
            raise Skip(
                f"--trigger-event {ctx.target.trigger_event!r} is not an event type of the "
                f"{ctx.profile.title} ({', '.join(events)})"
            )
        events.insert(0, event)
    else:
        for rid in NOTIFY:
            ctx.skip_requirement(
                rid, "give --trigger COMMAND: a command that makes one change in the registry"
            )
    query = Q.id(*followed) if followed else broad_query(ctx)[0]
    # an end of its own: a run never collides with a subscription an earlier run left
    end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        days=30, seconds=secrets.randbelow(86_400 * 30)
    )
    plan = ctx.core.subscribe_plan(
        query,
        event_type=events[0],
        sender_uri=ctx.receiver.callback_url("on-subscribe"),
        end_time=end,
        # with a trigger, notified at once (not in the next scheduled batch)
        **({"frequency": "immediate"} if trigger else {}),
    )
    exchange, ack, found = async_request(ctx, plan, "on-subscribe", f"subscribe {events[0]}")
    if ack is None:
        ctx.expect("SUB-001", False, "subscribe was not acknowledged", exchange)
        return
    message = judge_callback(ctx, "SUB-001", plan, "on-subscribe", "on-subscribe", ack, found)
    if message is None:
        return
    try:
        codes = read_subscribe_response(message).codes
    except Exception as exc:  # noqa: BLE001 - ProtocolError names the member
        ctx.expect("SUB-001", False, f"the on-subscribe callback: {exc}", ctx.exchanges[-1])
        return
    items = message.get("subscribe_response")
    if not ctx.expect(
        "SUB-001",
        bool(codes),
        f"the on-subscribe callback carries no subscription code: {str(items)[:300]}",
        ctx.exchanges[-1],
    ):
        return
    if trigger:
        judge_notify(ctx, trigger, events[0], codes, plan, followed)
    unplan = ctx.core.unsubscribe_plan(
        codes, sender_uri=ctx.receiver.callback_url("on-unsubscribe")
    )
    exchange, ack, found = async_request(ctx, unplan, "on-unsubscribe", "unsubscribe")
    if ack is None:
        ctx.expect("SUB-002", False, "unsubscribe was not acknowledged", exchange)
        return
    message = judge_callback(ctx, "SUB-002", unplan, "on-unsubscribe", "on-unsubscribe", ack, found)
    if message is not None:
        text = json.dumps(message)
        ctx.expect(
            "SUB-002",
            all(code in text for code in codes),
            f"the on-unsubscribe callback does not name the codes {codes}",
            ctx.exchanges[-1],
        )


@check(
    "special",
    "the registry's own sync calls answer for a known person",
    "core",
    ("SPECIAL-001", *ENVELOPE),
    needs="special",
)
def special_calls(ctx: Ctx) -> None:
    id_type, value = ctx.state.get("known_id") or first_known(ctx)
    if id_type != "UIN":
        uins = [v for t, v in known(ctx) if t == "UIN"]
        if not uins:
            raise Skip("the registry's own calls take a UIN: give --known UIN=...")
        value = uins[0]
    planners: dict[str, Callable[[str], Any]] = {
        "sync/disabled": ctx.core.plan_disabled,
        "sync/enrolled": ctx.core.plan_enrolled,
        "sync/check-enrollment": ctx.core.plan_check_enrollment,
        "sync/get-disability-details": lambda v: ctx.core.plan_dr_view(
            "sync/get-disability-details", v
        ),
        "sync/get-disability-support": lambda v: ctx.core.plan_dr_view(
            "sync/get-disability-support", v
        ),
    }
    ran = 0
    for endpoint in ctx.profile.special_endpoints:
        planner = planners.get(endpoint.path)
        if planner is None:
            continue
        plan = planner(value)
        if plan.header.get("status") is not None:  # a callback-style header: not for a person
            continue
        exchange = ctx.post(
            f"{plan.path} UIN={value}", plan.path, ctx.session.envelope(plan.header, plan.message)
        )
        message = ctx.judge_envelope(
            exchange,
            path=plan.path,
            action=plan.reply_action,
            request_header=plan.header,
            transaction_id=plan.message["transaction_id"],
        )
        ctx.expect(
            "SPECIAL-001",
            message is not None,
            f"{plan.path}: no {plan.reply_action} envelope for UIN {value}",
            exchange,
        )
        ran += 1
    if not ran:
        raise Skip(f"the {ctx.profile.title} profile declares no person call")


# ---------------------------------------------------------------------------------------------
# Security


def _valid_envelope(ctx: Ctx, **header: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    plan = ctx.core.search_plan([item(ctx, any_id_query(ctx))], lambda o: o)
    plan.header.update(header)
    return plan.header, plan.message


@check(
    "sec.jwks",
    "the JWKS publishes public keys only",
    "security",
    ("SEC-JWKS-001",),
)
def sec_jwks(ctx: Ctx) -> None:
    if ctx.session.jwks_url is None:
        raise Skip(f"no JWKS could be read ({ctx.session.jwks_error})")
    exchange = ctx.record(ctx.session.get("JWKS", ctx.session.jwks_url))
    doc = exchange.json()
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not ctx.expect("SEC-JWKS-001", isinstance(keys, list) and bool(keys), "no keys", exchange):
        return
    assert isinstance(keys, list)
    private = [k.get("kid") for k in keys if isinstance(k, dict) and set(k) & _PRIVATE_MEMBERS]
    ctx.expect("SEC-JWKS-001", not private, f"keys with private members: {private}", exchange)


_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


def _token_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    try:
        head, payload, _ = token.split(".")
        decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
        return decode(head), decode(payload)
    except Exception:  # noqa: BLE001 - not a JWT
        return None


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=").decode()


@check(
    "sec.tokens",
    "requests without a token, with a forged or an expired token are refused",
    "security",
    ("SEC-TOKEN-001", "SEC-TOKEN-002", "SEC-TOKEN-003", "ACK-002"),
)
def sec_tokens(ctx: Ctx) -> None:
    header, message = _valid_envelope(ctx)
    envelope = ctx.session.envelope(header, message)
    exchange = ctx.post("sync/search without a token", "sync/search", envelope, token=None)
    ctx.judge_refusal(exchange, "SEC-TOKEN-001", statuses=(401,), what="no token")
    token = ctx.session.token()
    parsed = _token_claims(token) if token else None
    if parsed is None:
        raise Skip("the tester's access token is not a JWT: cannot forge one like it")
    head, claims = parsed
    key = generate_key("sig", "ES256")
    forged = jwt.encode({**head, "alg": "ES256"}, claims, key)
    header, message = _valid_envelope(ctx)
    exchange = ctx.post(
        "sync/search with a forged token",
        "sync/search",
        ctx.session.envelope(header, message),
        token=forged,
    )
    ctx.judge_refusal(exchange, "SEC-TOKEN-002", statuses=(401,), what="forged token")
    now = int(time.time())
    expired_claims = {**claims, "exp": now - 3600, "iat": now - 7200}
    if "nbf" in claims:
        expired_claims["nbf"] = now - 7200
    altered = f"{_b64(head)}.{_b64(expired_claims)}.{token.rsplit('.', 1)[1]}"  # type: ignore[union-attr]
    for label, bad in (("an altered, expired", altered), ("an expired", ctx.target.expired_token)):
        if not bad:
            continue
        header, message = _valid_envelope(ctx)
        exchange = ctx.post(
            f"sync/search with {label} token",
            "sync/search",
            ctx.session.envelope(header, message),
            token=bad,
        )
        ctx.judge_refusal(exchange, "SEC-TOKEN-003", statuses=(401,), what=f"{label} token")


@check(
    "sec.token-endpoint",
    "the token endpoint refuses a wrong client secret",
    "security",
    ("SEC-TOKEN-004",),
)
def sec_token_endpoint(ctx: Ctx) -> None:
    if not ctx.target.token_url or not ctx.target.client_id:
        raise Skip("no token endpoint and client id given (--token-url, --client-id)")
    exchange = ctx.record(
        ctx.session.token_exchange(ctx.target.client_id, "wrong-" + new_id(), "token, wrong secret")
    )
    ctx.reachable(exchange)
    doc = exchange.json()
    ctx.expect(
        "SEC-TOKEN-004",
        exchange.status in (400, 401) and not (isinstance(doc, dict) and "access_token" in doc),
        f"a wrong client secret: HTTP {exchange.status}, "
        f"{'a token issued' if isinstance(doc, dict) and 'access_token' in doc else 'no token'}",
        exchange,
    )


@check(
    "sec.signatures",
    "unsigned and tampered requests are refused",
    "security",
    ("SEC-SIG-001", "SEC-SIG-002", "ACK-002"),
)
def sec_signatures(ctx: Ctx) -> None:
    key = ctx.session.signing_key()
    if key is None:
        raise Skip("the tester has no signing key (give --key)")
    header, message = _valid_envelope(ctx)
    if ctx.target.unsigned_allowed:
        ctx.skip_requirement("SEC-SIG-001", "the tester's partner may send unsigned messages")
    else:
        exchange = ctx.post(
            "sync/search unsigned", "sync/search", {"header": header, "message": message}
        )
        ctx.judge_refusal(
            exchange, "SEC-SIG-001", codes=("err.signature.missing",), what="unsigned request"
        )
    header, message = _valid_envelope(ctx)
    signature = sign(header, message, key)
    tampered = copy.deepcopy(message)
    tampered["search_request"][0]["reference_id"] = new_id()
    exchange = ctx.post(
        "sync/search, message changed after signing",
        "sync/search",
        {"signature": signature, "header": header, "message": tampered},
    )
    ctx.judge_refusal(
        exchange, "SEC-SIG-002", codes=("err.signature.invalid",), what="tampered request"
    )


@check(
    "sec.replay",
    "a replayed message is not processed twice",
    "security",
    ("SEC-REPLAY-001", "ACK-002"),
)
def sec_replay(ctx: Ctx) -> None:
    header, message = _valid_envelope(ctx)
    body = orjson.dumps(ctx.session.envelope(header, message))
    first = ctx.send("sync/search", "sync/search", body)
    ctx.reachable(first)
    again = ctx.send("sync/search replayed (same bytes)", "sync/search", body)
    ctx.reachable(again)
    same = again.status == first.status and _same_reply(first.json(), again.json())
    if not same:
        ctx.judge_refusal(
            again,
            "SEC-REPLAY-001",
            codes=("rjct.message_id.duplicate", "err.request.bad"),
            what="a replayed sync/search (answered anew, not the original reply)",
        )
    else:
        ctx.expect("SEC-REPLAY-001", True, "", again)
    # asynchronous: one callback only
    plan = ctx.core.plan_search(
        any_id_query(ctx), sender_uri=ctx.receiver.callback_url("on-search")
    )
    body = orjson.dumps(ctx.session.envelope(plan.header, plan.message))
    started = time.monotonic()
    ack = ctx.send("search (async)", "search", body)
    ctx.reachable(ack)
    match = ctx.receiver.for_transaction("on-search", plan.message["transaction_id"])
    if not ctx.receiver.wait(match, ctx.target.timeout):
        raise Skip("the async search was not answered (see search.async)")
    latency = time.monotonic() - started
    again = ctx.send("search (async) replayed (same bytes)", "search", body)
    ctx.reachable(again)
    if (again.status or 0) >= 500:
        ctx.judge_refusal(again, "SEC-REPLAY-001", what="a replayed async search")
    wait = ctx.target.replay_wait
    if wait is None:  # three times as long as the first callback took, at least a second
        wait = min(ctx.target.timeout, max(latency * 3, 1.0))
    found = ctx.receiver.wait(match, wait, count=2)
    ctx.expect(
        "SEC-REPLAY-001",
        len(found) == 1,
        f"a replayed async search gave {len(found)} on-search callbacks",
        again,
    )


def _same_reply(first: Any, again: Any) -> bool:
    """The same reply message again (its signature may be made anew)."""
    if not isinstance(first, dict) or not isinstance(again, dict):
        return first == again
    return bool(first.get("header") == again.get("header")) and first.get("message") == again.get(
        "message"
    )


@check(
    "sec.freshness",
    "a stale message_ts is refused",
    "security",
    ("SEC-TS-001",),
)
def sec_freshness(ctx: Ctx) -> None:
    stale = format_ts(_hours_ago(1))
    header, message = _valid_envelope(ctx, message_ts=stale)
    exchange = ctx.post(
        "sync/search with message_ts an hour old",
        "sync/search",
        ctx.session.envelope(header, message),
    )
    ctx.reachable(exchange)
    doc = exchange.json()
    answered = (
        (exchange.status or 0) < 300
        and isinstance(doc, dict)
        and isinstance(doc.get("header"), dict)
        and doc["header"].get("status") == "succ"
    )
    ctx.expect(
        "SEC-TS-001",
        not answered and (exchange.status or 0) < 500,
        f"a message_ts of {stale}: HTTP {exchange.status}, "
        f"{'answered as fresh' if answered else error_code(doc)}",
        exchange,
    )


def _hours_ago(hours: int) -> Any:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours)


@check(
    "sec.sender",
    "a foreign sender_uri or sender_id is refused",
    "security",
    ("SEC-SENDERURI-001", "SEC-SENDERID-001", "ACK-002"),
)
def sec_sender(ctx: Ctx) -> None:
    bad_uri = "http://sender-uri.invalid/registry/on-search"
    plan = ctx.core.plan_search(any_id_query(ctx), sender_uri=bad_uri)
    exchange = ctx.post(
        "search with a foreign sender_uri",
        "search",
        ctx.session.envelope(plan.header, plan.message),
    )
    ctx.judge_refusal(
        exchange,
        "SEC-SENDERURI-001",
        codes=("err.sender_uri.invalid",),
        what=f"sender_uri {bad_uri}",
    )
    header, message = _valid_envelope(ctx, sender_id=f"conformance.other.{new_id()[:8]}")
    exchange = ctx.post(
        "sync/search claiming another sender_id",
        "sync/search",
        ctx.session.envelope(header, message),
    )
    ctx.judge_refusal(
        exchange,
        "SEC-SENDERID-001",
        codes=("err.sender_id.invalid", "err.signature.invalid"),
        what="another partner's sender_id",
    )


@check(
    "sec.encryption",
    "an encrypted request gets an encrypted, valid reply",
    "security",
    ("SEC-ENC-001", "SEARCH-SYNC-001", *ENVELOPE),
)
def sec_encryption(ctx: Ctx) -> None:
    key = ctx.session.registry_encryption_key()
    if key is None:
        raise Skip("the registry publishes no encryption key (use 'enc') in its JWKS")
    if not ctx.session.keys.decryption:
        raise Skip("the tester has no decryption key (give --key with an 'enc' key)")
    sent = [item(ctx, any_id_query(ctx))]
    plan = ctx.core.search_plan(sent, lambda o: o)
    envelope = ctx.session.envelope(plan.header, plan.message, encrypt_to=key)
    exchange = ctx.post("sync/search encrypted", "sync/search", envelope)
    doc = exchange.json()
    encrypted = (
        isinstance(doc, dict)
        and isinstance(doc.get("header"), dict)
        and doc["header"].get("is_msg_encrypted") is True
    )
    ctx.expect(
        "SEC-ENC-001",
        encrypted,
        f"the reply to an encrypted request is not encrypted (HTTP {exchange.status}: "
        f"{str(doc)[:200]})",
        exchange,
    )
    message = ctx.judge_envelope(
        exchange,
        path="sync/search",
        action="on-search",
        request_header=plan.header,
        transaction_id=plan.message["transaction_id"],
    )
    if message is not None:
        ctx.expect(
            "SEC-ENC-001",
            len(response_items(message)) == 1,
            "the decrypted reply holds no answer to the item sent",
            exchange,
        )


# ---------------------------------------------------------------------------------------------
# Robustness


def _bad(ctx: Ctx, rid: str, label: str, body: bytes) -> None:
    exchange = ctx.send(label, "sync/search", body)
    if exchange.error is not None:
        ctx.expect(rid, False, f"{label}: the connection failed: {exchange.error}", exchange)
        return
    ctx.judge_refusal(exchange, rid, what=label)


@check(
    "rob.json",
    "a body that is not JSON is refused in the standard's terms",
    "robustness",
    ("ROB-JSON-001", "ACK-002"),
)
def rob_json(ctx: Ctx) -> None:
    _bad(ctx, "ROB-JSON-001", "a truncated JSON body", b'{"header": {"version": "1.0.0",')
    _bad(ctx, "ROB-JSON-001", "a body that is not JSON", b"search please")


@check(
    "rob.types",
    "members of the wrong type are refused in the standard's terms",
    "robustness",
    ("ROB-TYPE-001", "ACK-002"),
)
def rob_types(ctx: Ctx) -> None:
    header, message = _valid_envelope(ctx)
    for label, envelope in (
        ("header is a list", {"header": [header], "message": message}),
        (
            "total_count is a word",
            {"header": {**header, "total_count": "many"}, "message": message},
        ),
        ("message is a string", {"header": header, "message": "search"}),
        ("the body is a list", [header, message]),
    ):
        _bad(ctx, "ROB-TYPE-001", label, orjson.dumps(envelope))


@check(
    "rob.size",
    "a very large body is refused in the standard's terms",
    "robustness",
    ("ROB-SIZE-001", "ACK-002"),
)
def rob_size(ctx: Ctx) -> None:
    header, message = _valid_envelope(ctx)
    size = ctx.target.huge_body_bytes
    label = f"a {size / 1024 / 1024:g} MB body"
    message["padding"] = "A" * size
    body = orjson.dumps({"header": header, "message": message})
    exchange = ctx.send(label, "sync/search", body)
    if exchange.error is not None:
        ctx.expect(
            "ROB-SIZE-001",
            False,
            f"{label}: the connection failed: {exchange.error}",
            exchange,
        )
        return
    if exchange.status == 413:
        ctx.expect("ROB-SIZE-001", True, "", exchange)
        return
    ctx.judge_refusal(exchange, "ROB-SIZE-001", what=label)


@check(
    "rob.depth",
    "a deeply nested body is refused in the standard's terms",
    "robustness",
    ("ROB-DEPTH-001", "ACK-002"),
)
def rob_depth(ctx: Ctx) -> None:
    header, _ = _valid_envelope(ctx)
    depth = 100_000
    body = (
        b'{"header": '
        + orjson.dumps(header)
        + b', "message": '
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )
    _bad(ctx, "ROB-DEPTH-001", f"a body nested {depth} levels deep", body)


@check(
    "rob.unknown",
    "unknown members are ignored or refused, never a server error",
    "robustness",
    ("ROB-UNKNOWN-001",),
)
def rob_unknown(ctx: Ctx) -> None:
    header, message = _valid_envelope(ctx, x_conformance_unknown={"a": 1})
    message["x_conformance_unknown"] = [1, 2]
    message["search_request"][0]["x_conformance_unknown"] = "?"
    exchange = ctx.post(
        "sync/search with unknown members", "sync/search", ctx.session.envelope(header, message)
    )
    ctx.reachable(exchange)
    doc = exchange.json()
    status = exchange.status or 0
    ok = status < 500 and isinstance(doc, dict) and ("header" in doc or error_code(doc) is not None)
    ctx.expect(
        "ROB-UNKNOWN-001",
        ok,
        f"unknown members: HTTP {status}, {str(doc)[:200]}",
        exchange,
    )


@check(
    "rob.action",
    "a header.action that does not match the endpoint is refused",
    "robustness",
    ("ROB-ACTION-001", "ACK-002"),
)
def rob_action(ctx: Ctx) -> None:
    header, message = _valid_envelope(ctx, action="subscribe")
    exchange = ctx.post(
        "sync/search with action subscribe", "sync/search", ctx.session.envelope(header, message)
    )
    ctx.reachable(exchange)
    doc = exchange.json()
    answered = (
        (exchange.status or 0) < 300
        and isinstance(doc, dict)
        and isinstance(doc.get("header"), dict)
        and doc["header"].get("status") == "succ"
    )
    if answered:
        ctx.expect(
            "ROB-ACTION-001",
            False,
            "sync/search with header.action 'subscribe' was answered as a search",
            exchange,
        )
    else:
        ctx.judge_refusal(
            exchange,
            "ROB-ACTION-001",
            codes=("rjct.action.invalid", "rjct.action.not_supported", "err.request.bad"),
            what="header.action 'subscribe' at sync/search",
        )
