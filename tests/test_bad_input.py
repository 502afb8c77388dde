"""Bad input, end to end: every mistake a caller can make is answered in the standard's own terms.

Each case is one row of a table: what is sent, to which endpoint, and what must come back —
either an HTTP 4xx with an `ERR` ack carrying an `err.*` code, or an HTTP 200 whose search item
is `rjct` with a `rjct.*` reason code — and in both cases a message naming the offending field
or value. No case may ever be answered with a 5xx.

Most cases run against the session server (SQLite and PostgreSQL); the ones that need small
limits (body size, batch size, result cap) run against a second server over the same store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

import support
from dcihub.store import Store
from support import (
    DCIClient,
    expr,
    header,
    idtype,
    mongo,
    pred,
    predicate,
    search_envelope,
    search_item,
)

LIMITED = {"max_body_bytes": 2048, "max_batch_items": 3, "max_total_records": 5}
LONG_ID = "x" * 100


# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Case:
    """One bad input.

    `body` builds what is sent from the country's samples: an envelope (dict, posted as JSON),
    or raw bytes. `expect` is "err" (4xx + ERR ack) or "rjct" (200 + rejected item); `code` is
    the expected `err.*` / `rjct.*` code; every string of `mentions` must appear in the message.
    """

    id: str
    body: Callable[[dict[str, Any]], dict[str, Any] | bytes]
    status: int
    expect: str
    code: str
    mentions: tuple[str, ...]
    registry: str = "crvs"
    path: str = "sync/search"
    content_type: str = "application/json"
    limited: bool = False


def uin(samples: dict[str, Any], registry: str = "crvs") -> dict[str, Any]:
    first = samples[registry]["identifiers"][0]
    return idtype(first["type"], first["value"])


def good(samples: dict[str, Any]) -> dict[str, Any]:
    return search_envelope(uin(samples))


def with_header(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def build(samples: dict[str, Any]) -> dict[str, Any]:
        envelope = good(samples)
        envelope["header"].update(changes)
        return envelope

    return build


def with_message(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def build(samples: dict[str, Any]) -> dict[str, Any]:
        envelope = good(samples)
        envelope["message"].update(changes)
        return envelope

    return build


def with_item(
    item: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]], **header_extra: Any
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def build(samples: dict[str, Any]) -> dict[str, Any]:
        one = item(samples) if callable(item) else item
        return search_envelope(one, **header_extra)

    return build


def item_field(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def build(samples: dict[str, Any]) -> dict[str, Any]:
        one = uin(samples)
        one.update(changes)
        return one

    return build


def criteria(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def build(samples: dict[str, Any]) -> dict[str, Any]:
        one = uin(samples)
        one["search_criteria"].update(changes)
        return one

    return build


def raw(data: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda samples: data


def dropped(member: str) -> Callable[[dict[str, Any]], bytes]:
    def build(samples: dict[str, Any]) -> bytes:
        envelope = good(samples)
        del envelope[member]
        return orjson.dumps(envelope)

    return build


def pred_item(name: str, op: str, value: Any) -> dict[str, Any]:
    return predicate(pred(1, expr(name, op, value)))


def txn_status_unknown(samples: dict[str, Any]) -> dict[str, Any]:
    return {
        "header": header("txn-status"),
        "message": {
            "transaction_id": f"t-{uuid.uuid4().hex[:12]}",
            "txnstatus_request": {
                "reference_id": "r-1",
                "txn_type": "search",
                "attribute_type": "transaction_id",
                "attribute_value": "no-such-transaction-anywhere",
            },
        },
    }


def too_many_items(samples: dict[str, Any]) -> dict[str, Any]:
    return search_envelope(*(uin(samples) for _ in range(LIMITED["max_batch_items"] + 1)))


def huge(samples: dict[str, Any]) -> dict[str, Any]:
    envelope = good(samples)
    envelope["header"]["meta"] = {"padding": "p" * (LIMITED["max_body_bytes"] * 2)}
    return envelope


def broad(samples: dict[str, Any]) -> dict[str, Any]:
    # Everybody born after 1900: far more than the result cap.
    return search_envelope(pred_item("birth_date", "gt", "1900-01-01"))


ERR, RJCT = "err", "rjct"
BAD = "err.request.bad"
CRITERIA = "rjct.search_criteria.invalid"
PAGINATION = "rjct.pagination.invalid"

CASES = [
    # --- transport and envelope
    Case(
        "malformed-json", raw(b'{"header": {"action": "search"'), 400, ERR, BAD, ("not valid JSON",)
    ),
    Case("empty-body", raw(b""), 400, ERR, BAD, ("empty",)),
    Case("body-is-array", raw(b'[{"header": {}, "message": {}}]'), 400, ERR, BAD, ("JSON object",)),
    Case("missing-header", dropped("header"), 400, ERR, BAD, ("header",)),
    Case("missing-message", dropped("message"), 400, ERR, BAD, ("message",)),
    Case(
        "header-not-object",
        raw(b'{"header": "search", "message": {}}'),
        400,
        ERR,
        BAD,
        ("'header'", "object"),
    ),
    Case(
        "message-not-object",
        lambda s: {**good(s), "message": ["not", "an", "object"]},
        400,
        ERR,
        BAD,
        ("'message'", "object"),
    ),
    Case(
        "action-mismatch",
        with_header(action="on-search"),
        400,
        ERR,
        BAD,
        ("header.action", "on-search", "search"),
    ),
    Case(
        "wrong-content-type-text",
        lambda s: orjson.dumps(good(s)),
        415,
        ERR,
        BAD,
        ("text/plain",),
        content_type="text/plain",
    ),
    Case(
        "wrong-content-type-multipart",
        lambda s: orjson.dumps(good(s)),
        415,
        ERR,
        BAD,
        ("multipart/form-data",),
        content_type="multipart/form-data; boundary=xyz",
    ),
    Case("unknown-registry", good, 404, ERR, "err.request.not_found", ("xyz",), registry="xyz"),
    Case(
        "unknown-endpoint",
        good,
        404,
        ERR,
        "err.request.not_found",
        ("no/such/path",),
        path="no/such/path",
    ),
    # --- header
    Case(
        "message-ts-without-timezone",
        with_header(message_ts="2025-01-15T10:30:00"),
        400,
        ERR,
        BAD,
        ("header.message_ts", "timezone"),
    ),
    Case(
        "message-id-too-long",
        with_header(message_id=LONG_ID),
        400,
        ERR,
        BAD,
        ("header.message_id", "99"),
    ),
    Case(
        "version-2",
        with_header(version="2.0"),
        400,
        ERR,
        "err.version.not_supported",
        ("header.version", "2.0"),
    ),
    Case(
        "total-count-mismatch",
        with_header(total_count=2),
        400,
        ERR,
        BAD,
        ("header.total_count", "2", "1"),
    ),
    Case(
        "total-count-not-a-number",
        with_header(total_count="one"),
        400,
        ERR,
        BAD,
        ("header.total_count", "integer"),
    ),
    Case(
        "async-without-sender-uri",
        good,
        400,
        ERR,
        "err.sender_uri.invalid",
        ("header.sender_uri",),
        path="search",
    ),
    # --- message
    Case(
        "transaction-id-too-long",
        with_message(transaction_id=LONG_ID),
        400,
        ERR,
        BAD,
        ("message.transaction_id", "99"),
    ),
    Case(
        "transaction-id-empty",
        with_message(transaction_id=""),
        400,
        ERR,
        BAD,
        ("message.transaction_id", "empty"),
    ),
    Case(
        "search-request-empty",
        lambda s: search_envelope(),
        400,
        ERR,
        BAD,
        ("message.search_request", "empty"),
    ),
    Case(
        "search-request-not-a-list",
        with_message(search_request="UIN 1"),
        400,
        ERR,
        BAD,
        ("message.search_request",),
    ),
    Case(
        "locale-two-letters", with_item(item_field(locale="en")), 400, ERR, BAD, ("locale", "'en'")
    ),
    Case(
        "locale-upper-case", with_item(item_field(locale="ENG")), 400, ERR, BAD, ("locale", "'ENG'")
    ),
    # --- one search item
    Case(
        "item-timestamp-without-timezone",
        with_item(item_field(timestamp="2025-01-15T10:30:00")),
        200,
        RJCT,
        "rjct.timestamp.invalid",
        ("timestamp", "timezone"),
    ),
    Case(
        "reference-id-too-long",
        with_item(item_field(reference_id=LONG_ID)),
        200,
        RJCT,
        "rjct.reference_id.invalid",
        ("reference_id", "99"),
    ),
    Case(
        "reference-id-empty",
        with_item(item_field(reference_id="")),
        200,
        RJCT,
        "rjct.reference_id.invalid",
        ("reference_id", "empty"),
    ),
    Case(
        "page-size-0",
        with_item(criteria(pagination={"page_size": 0})),
        200,
        RJCT,
        PAGINATION,
        ("page_size", "0"),
    ),
    Case(
        "page-number-0",
        with_item(criteria(pagination={"page_size": 10, "page_number": 0})),
        200,
        RJCT,
        PAGINATION,
        ("page_number", "0"),
    ),
    Case(
        "page-number-negative",
        with_item(criteria(pagination={"page_size": 10, "page_number": -1})),
        200,
        RJCT,
        PAGINATION,
        ("page_number", "-1"),
    ),
    Case(
        "page-size-above-maximum",
        with_item(criteria(pagination={"page_size": 1001})),
        200,
        RJCT,
        PAGINATION,
        ("page_size", "1001", "1000"),
    ),
    Case(
        "page-size-not-a-number",
        with_item(criteria(pagination={"page_size": "ten"})),
        200,
        RJCT,
        PAGINATION,
        ("page_size", "ten"),
    ),
    Case(
        "unknown-query-type",
        with_item(criteria(query_type="sql")),
        200,
        RJCT,
        CRITERIA,
        ("query_type", "'sql'"),
    ),
    Case(
        "graphql-query-type",
        with_item(
            search_item(
                "graphql",
                {"type": "ns:org:QueryType:graphql", "value": {"expression": "{ person { UIN } }"}},
            )
        ),
        200,
        RJCT,
        CRITERIA,
        ("graphql",),
    ),
    Case(
        "operator-gte",
        with_item(pred_item("age", "gte", "18")),
        200,
        RJCT,
        CRITERIA,
        ("operator", "'gte'"),
    ),
    Case(
        "operator-ne",
        with_item(pred_item("sex", "ne", "male")),
        200,
        RJCT,
        CRITERIA,
        ("operator", "'ne'"),
    ),
    Case(
        "mongo-where",
        with_item(mongo({"$where": "this.age > 1"})),
        200,
        RJCT,
        CRITERIA,
        ("$where",),
    ),
    Case(
        "mongo-regex",
        with_item(mongo({"name.surname": {"$regex": "^A"}})),
        200,
        RJCT,
        CRITERIA,
        ("$regex", "name.surname"),
    ),
    Case(
        "unknown-attribute",
        with_item(pred_item("shoe_size", "eq", "42")),
        200,
        RJCT,
        CRITERIA,
        ("'shoe_size'",),
    ),
    Case(
        "unknown-identifier-type",
        with_item(idtype("PASSPORT", "P123")),
        200,
        RJCT,
        CRITERIA,
        ("'PASSPORT'",),
    ),
    Case(
        "age-not-a-number",
        with_item(pred_item("age", "gt", "old")),
        200,
        RJCT,
        CRITERIA,
        ("'old'", "age"),
    ),
    Case(
        "birth-date-not-a-date",
        with_item(pred_item("birth_date", "lt", "yesterday")),
        200,
        RJCT,
        CRITERIA,
        ("'yesterday'", "birth_date"),
    ),
    Case(
        "unknown-code-value",
        with_item(pred_item("sex", "eq", "m")),
        200,
        RJCT,
        CRITERIA,
        ("'m'", "sex"),
    ),
    Case(
        "sort-on-undeclared-attribute",
        with_item(criteria(sort=[{"attribute_name": "shoe_size", "sort_order": "asc"}])),
        200,
        RJCT,
        "rjct.sort.invalid",
        ("sort", "'shoe_size'"),
    ),
    Case(
        "sort-order-sideways",
        with_item(criteria(sort=[{"attribute_name": "birth_date", "sort_order": "up"}])),
        200,
        RJCT,
        "rjct.sort.invalid",
        ("sort[0].sort_order", "'up'", "'asc'"),
    ),
    Case(
        "expression3",
        with_item(
            predicate(
                {
                    **pred(1, expr("sex", "eq", "female"), "and", expr("age", "gt", "18")),
                    "expression3": expr("age", "lt", "60"),
                }
            )
        ),
        200,
        RJCT,
        CRITERIA,
        ("expression3",),
    ),
    Case(
        "unknown-response-entity",
        with_item(criteria(response_entity="Spaceship")),
        200,
        RJCT,
        CRITERIA,
        ("'Spaceship'",),
    ),
    # --- values the database cannot hold (regressions: these were answered with a 500)
    Case(
        "nul-in-text-value",
        with_item(pred_item("surname", "eq", "a\x00b")),
        200,
        RJCT,
        CRITERIA,
        ("surname", "NUL"),
    ),
    Case(
        "nul-in-identifier-value",
        with_item(idtype("UIN", "12\x0034")),
        200,
        RJCT,
        CRITERIA,
        ("query.value", "NUL"),
    ),
    # what a rejected item keeps for txn/status is what made it rejected (regressions found by
    # tests/test_fuzz.py: on PostgreSQL these were answered 503, the transaction's writes failing)
    Case(
        "nul-in-reference-id",
        with_item(item_field(reference_id="r\x00x")),
        200,
        RJCT,
        "rjct.reference_id.invalid",
        ("reference_id", "control characters"),
    ),
    Case(
        "reference-id-longer-than-its-column",
        with_item(item_field(reference_id="r" * 300)),
        200,
        RJCT,
        "rjct.reference_id.invalid",
        ("reference_id", "300"),
    ),
    Case(
        "timestamp-longer-than-its-column",
        with_item(item_field(timestamp="2026-01-01T00:00:00Z" + "9" * 300)),
        200,
        RJCT,
        "rjct.timestamp.invalid",
        ("timestamp",),
    ),
    Case(
        "nul-in-query-type-quoted-in-the-reason",
        with_item(criteria(query_type="\x00")),
        200,
        RJCT,
        CRITERIA,
        ("query_type",),
    ),
    Case(
        "nul-in-query-id-type-quoted-in-the-reason",
        with_item(criteria(query={"type": "UIN\x00", "value": "1"})),
        200,
        RJCT,
        CRITERIA,
        ("UIN",),
    ),
    Case(
        "nul-in-transaction-id",
        with_message(transaction_id="t\x00x"),
        400,
        ERR,
        BAD,
        ("message.transaction_id", "control characters"),
    ),
    Case(
        "nul-in-sender-id",
        with_header(sender_id="spmis\x00x"),
        400,
        ERR,
        BAD,
        ("header.sender_id", "control characters"),
    ),
    Case(
        "nul-in-sender-uri",
        with_header(sender_uri="http://127.0.0.1/\x00"),
        400,
        ERR,
        BAD,
        ("header.sender_uri", "control characters"),
        path="search",
    ),
    Case(
        "nul-in-txn-status-value",
        lambda s: {
            **txn_status_unknown(s),
            "message": {
                **txn_status_unknown(s)["message"],
                "txnstatus_request": {
                    **txn_status_unknown(s)["message"]["txnstatus_request"],
                    "attribute_value": "t\x00x",
                },
            },
        },
        400,
        ERR,
        BAD,
        ("attribute_value", "control characters"),
        path="sync/txn/status",
    ),
    Case(
        "integer-out-of-range",
        with_item(pred_item("group_size", "gt", "1e30")),
        200,
        RJCT,
        CRITERIA,
        ("'1e30'", "group_size", "out of range"),
        registry="social",
    ),
    Case(
        "number-not-finite",
        with_item(pred_item("poverty_score", "lt", "nan")),
        200,
        RJCT,
        CRITERIA,
        ("'nan'", "poverty_score"),
        registry="social",
    ),
    Case(
        "page-number-above-int32",
        with_item(criteria(pagination={"page_size": 10, "page_number": 2**31})),
        200,
        RJCT,
        PAGINATION,
        ("page_number", str(2**31)),
    ),
    Case(
        "seq-num-not-finite",
        with_item(predicate({"seq_num": "nan", "expression1": expr("sex", "eq", "male")})),
        200,
        RJCT,
        CRITERIA,
        ("seq_num", "'nan'"),
    ),
    # --- limits (a server with small limits)
    Case(
        "more-items-than-max-batch",
        too_many_items,
        400,
        ERR,
        BAD,
        ("message.search_request", "4", "3"),
        limited=True,
    ),
    Case("body-over-max-bytes", huge, 413, ERR, BAD, ("2048",), limited=True),
    Case(
        "result-cap", broad, 200, RJCT, "rjct.search.too_many_records_found", ("5",), limited=True
    ),
]


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def limited_client(populated_url):
    """A second server over the session store, with small limits."""
    store = Store(populated_url)
    running = support.live_server(support.test_settings(populated_url, limits=LIMITED), store)
    yield DCIClient(running)
    running.stop()
    store.dispose()


def send(target: DCIClient, case: Case, samples: dict[str, Any]) -> Any:
    body = case.body(samples)
    if isinstance(body, dict):
        if case.content_type == "application/json":
            return target.post(case.registry, case.path, body)
        body = orjson.dumps(body)
    return target.post_raw(case.registry, case.path, body, {"content-type": case.content_type})


def check_answer(response: Any, case: Case) -> None:
    assert response.status_code < 500, f"{case.id}: {response.status_code} {response.text}"
    assert response.status_code == case.status, f"{case.id}: {response.text}"
    body = response.json()
    if case.expect == ERR:
        ack = body["message"]
        assert ack["ack_status"] == "ERR", body
        assert ack["correlation_id"], body
        assert ack["timestamp"], body
        assert ack["error"]["code"] == case.code, body
        text = ack["error"]["message"]
    else:
        assert body["header"]["action"] == "on-search", body
        items = body["message"]["search_response"]
        assert len(items) == 1, body
        item = items[0]
        assert item["status"] == "rjct", item
        assert item["status_reason_code"] == case.code, item
        assert "data" not in item, item
        text = item["status_reason_message"]
    for word in case.mentions:
        assert word in text, f"{case.id}: {word!r} not in {text!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_in_the_standards_terms(case: Case, client, country, request):
    target = request.getfixturevalue("limited_client") if case.limited else client
    response = send(target, case, country.samples())
    check_answer(response, case)


# ---------------------------------------------------------------------------------------------
# Item-level isolation: one bad item never sinks its neighbours

MIDDLE = {
    "unknown-attribute": (lambda s: pred_item("shoe_size", "eq", "42"), CRITERIA),
    "timestamp-without-timezone": (
        item_field(timestamp="2025-01-15T10:30:00"),
        "rjct.timestamp.invalid",
    ),
    "page-size-0": (criteria(pagination={"page_size": 0}), PAGINATION),
    "unknown-code": (lambda s: pred_item("sex", "eq", "m"), CRITERIA),
    "duplicate-reference-id": (None, "rjct.reference_id.duplicate"),
}


@pytest.mark.parametrize("bad", list(MIDDLE), ids=list(MIDDLE))
def test_only_the_bad_item_is_rejected(bad: str, client, country):
    samples = country.samples()["crvs"]["identifiers"]
    first = idtype(samples[0]["type"], samples[0]["value"])
    last = idtype(samples[1]["type"], samples[1]["value"])
    build, code = MIDDLE[bad]
    middle = dict(first) if build is None else build(country.samples())
    body = client.sync_search("crvs", first, middle, last)
    items = body["message"]["search_response"]
    assert [i["reference_id"] for i in items] == [
        first["reference_id"],
        middle["reference_id"],
        last["reference_id"],
    ]
    assert [i["status"] for i in items] == ["succ", "rjct", "succ"], items
    assert items[1]["status_reason_code"] == code
    assert items[1]["status_reason_message"]
    for item, sample in ((items[0], samples[0]), (items[2], samples[1])):
        values = {
            i["identifier_value"] for r in item["data"]["reg_records"] for i in r["identifier"]
        }
        assert sample["value"] in values
    assert body["header"]["total_count"] == 3
    assert body["header"]["completed_count"] == 3


def test_bad_async_item_is_rejected_in_the_callback(client, country, receiver):
    """Async search: the ack is ACK; the rejection of the bad item comes in the callback."""
    sample = country.samples()["crvs"]["identifiers"][0]
    good_item = idtype(sample["type"], sample["value"])
    bad_item = pred_item("shoe_size", "eq", "42")
    envelope = search_envelope(good_item, bad_item, sender_uri=receiver.url())
    response = client.post("crvs", "search", envelope)
    assert response.status_code == 202, response.text
    assert response.json()["message"]["ack_status"] == "ACK"
    callback = receiver.wait_for(1)[0].json()
    items = callback["message"]["search_response"]
    assert [i["status"] for i in items] == ["succ", "rjct"]
    assert items[1]["status_reason_code"] == CRITERIA
    assert "shoe_size" in items[1]["status_reason_message"]


# ---------------------------------------------------------------------------------------------
# IBR sync/enrollment/updates: a bad beneficiary is rejected alone (its own fresh store, since
# these calls write records)


def beneficiary(uin_value: str = "5550001112", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "member": {
            "member_identifier": [{"identifier_type": "UIN", "identifier_value": uin_value}],
            "demographic_info": {
                "name": {"surname": "Testa", "given_name": "Ana"},
                "sex": "female",
                "birth_date": "1990-01-01",
            },
        },
        "programme_identifier": [{"programme_identifier": "OAP"}],
        "enrollment_status": "1",
        "enrollment_date": "2024-01-01",
    }
    record.update(changes)
    return record


def member_with(**changes: Any) -> dict[str, Any]:
    member = beneficiary()["member"]
    member.update(changes)
    return member


BAD_BENEFICIARIES = {
    "not-an-object": (["x"], ("JSON object",)),
    "no-programme": (beneficiary(programme_identifier=[]), ("programme_identifier",)),
    "programme-not-a-list": (beneficiary(programme_identifier=5), ("programme_identifier",)),
    "unknown-status": (beneficiary(enrollment_status="9"), ("enrollment_status", "'9'")),
    "date-not-a-date": (beneficiary(enrollment_date="yesterday"), ("'yesterday'",)),
    "no-identifier": (beneficiary(member=member_with(member_identifier=[])), ("identifier",)),
    "nul-in-name": (
        beneficiary(member=member_with(demographic_info={"name": {"surname": "a\x00b"}})),
        ("surname", "NUL"),
    ),
    "identifier-value-too-long": (
        beneficiary(
            member=member_with(
                member_identifier=[{"identifier_type": "UIN", "identifier_value": "9" * 300}]
            )
        ),
        ("identifier_value",),
    ),
    "identifier-type-too-long": (
        beneficiary(
            member=member_with(
                member_identifier=[
                    {"identifier_type": "T" * 60, "identifier_value": "1"},
                    {"identifier_type": "UIN", "identifier_value": "2"},
                ]
            )
        ),
        ("identifier_type",),
    ),
    "identifier-value-object": (
        beneficiary(
            member=member_with(
                member_identifier=[{"identifier_type": "UIN", "identifier_value": {"a": 1}}]
            )
        ),
        ("identifier_value",),
    ),
    "key-too-long": (
        beneficiary(programme_identifier=[{"programme_identifier": "P" * 250}]),
        ("too long",),
    ),
    "reference-id-too-long": ({**beneficiary(), "reference_id": "r" * 120}, ("reference_id",)),
    # the data model: fields, kinds of value, code lists, sizes, markup
    "unknown-field": ({**beneficiary(), "__proto__": {"admin": True}}, ("'__proto__'",)),
    "unknown-member-field": (
        beneficiary(member=member_with(constructor="x")),
        ("'constructor'", "Member"),
    ),
    "markup": (
        beneficiary(member=member_with(demographic_info={"name": {"surname": "<b>x</b>"}})),
        ("surname", "markup"),
    ),
    "markup-in-programme-name": (
        beneficiary(
            programme_identifier=[{"programme_identifier": "OAP", "programme_name": "<img src=x>"}]
        ),
        ("programme_name", "markup"),
    ),
    "blob": (
        beneficiary(benefits=[{"benefit_type": "1", "benefit_description": "x" * 2_000_000}]),
        ("bytes", "at most"),
    ),
    "long-text": (beneficiary(member=member_with(occupation="y" * 1200)), ("occupation", "1000")),
    "unknown-programme": (
        beneficiary(programme_identifier=[{"programme_identifier": "NO-SUCH-PROGRAMME"}]),
        ("'NO-SUCH-PROGRAMME'", "not known"),
    ),
    "unknown-assistance-unit": (beneficiary(assistance_unit="7"), ("assistance_unit", "'7'")),
    "unknown-sex": (
        beneficiary(member=member_with(demographic_info={"sex": "robot"})),
        ("sex", "'robot'"),
    ),
    "unknown-benefit-type": (
        beneficiary(benefits=[{"benefit_type": "Gold bars"}]),
        ("benefit_type", "'Gold bars'"),
    ),
    "birth-date-not-a-date": (
        beneficiary(member=member_with(demographic_info={"birth_date": "soon"})),
        ("birth_date", "'soon'"),
    ),
    "object-for-a-text": (
        beneficiary(programme_identifier=[{"programme_identifier": {"$ne": 1}}]),
        ("programme_identifier", "single value"),
    ),
    "too-many-benefits": (
        beneficiary(benefits=[{"benefit_type": "1"}] * 101),
        ("benefits", "100"),
    ),
}
REASON_CODES = {  # the reason code of the rejected item (others: rjct.notify_details.invalid)
    "reference-id-too-long": "rjct.reference_id.invalid",
    "no-identifier": "rjct.person_id.invalid",
    "identifier-value-too-long": "rjct.person_id.invalid",
    "identifier-type-too-long": "rjct.person_id.invalid",
    "identifier-value-object": "rjct.person_id.invalid",
}


@pytest.fixture(scope="module")
def ibr_client(backend, tmp_path_factory):
    with support.store_url_for(backend, tmp_path_factory.mktemp("ibr")) as url:
        store = Store(url)
        store.upgrade()
        # an empty store knows no programme: the operator names the ones it runs
        known = {"ibr": {"known_values": {"programme_identifier": ["OAP"]}}}
        running = support.live_server(support.test_settings(url, registries=known), store)
        yield DCIClient(running)
        running.stop()
        store.dispose()


@pytest.mark.parametrize("bad", list(BAD_BENEFICIARIES), ids=list(BAD_BENEFICIARIES))
def test_bad_beneficiary_is_rejected_alone(bad: str, ibr_client):
    raw_bad, mentions = BAD_BENEFICIARIES[bad]
    bad_item = raw_bad[0] if isinstance(raw_bad, list) else raw_bad
    envelope = {
        "header": header("notify", 2, status="rcvd"),
        "message": {
            "transaction_id": f"t-{uuid.uuid4().hex[:12]}",
            "enrolled_updates": {"beneficiaries": [beneficiary(), bad_item]},
        },
    }
    response = ibr_client.post("ibr", "sync/enrollment/updates", envelope)
    assert response.status_code == 200, response.text
    items = response.json()["message"]["enrolled_response"]
    assert [i["status"] for i in items] == ["succ", "rjct"], items
    for word in mentions:
        assert word in items[1]["status_reason_message"], items[1]
    assert "beneficiaries[1]" in items[1]["status_reason_message"]
    expected = REASON_CODES.get(bad, "rjct.notify_details.invalid")
    assert items[1]["status_reason_code"] == expected, items[1]
