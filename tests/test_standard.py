"""Unit tests of the envelope and message models (`standard.envelope`, `standard.messages`):
lenient toward the older shapes found in the field, strict where the newest contracts are, and
the response builders (checked against the DCI OpenAPI contracts when they are available)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from dcihub.standard.codes import ErrorCode, SearchReason
from dcihub.standard.envelope import (
    MsgCallbackHeader,
    MsgHeader,
    ack,
    callback_header,
    check_action,
    check_id,
    check_version,
    err_ack,
    format_ts,
    http_error_body,
    parse_callback_header,
    parse_request_header,
    parse_timestamp,
    split_envelope,
)
from dcihub.standard.errors import DCIError, ItemRejected
from dcihub.standard.messages import (
    EnrollmentUpdatesRequest,
    SearchCriteria,
    SearchRequest,
    SearchRequestItem,
    SubscribeRequest,
    TxnStatusRequest,
    UnsubscribeRequest,
    parse_items,
    parse_message,
    rejected_item,
    search_response_item,
)

TS = "2025-01-15T10:30:00+00:00"


def request_header(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": "1.0.0",
        "message_id": "m-1",
        "message_ts": TS,
        "action": "search",
        "sender_id": "spmis.example.org",
        "total_count": 1,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def item(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "reference_id": "r-1",
        "timestamp": TS,
        "locale": "eng",
        "search_criteria": {"query_type": "idtype-value", "query": {"type": "UIN", "value": "1"}},
    }
    base.update(changes)
    return base


def dci_error(fn: Any, *args: Any) -> DCIError:
    with pytest.raises(DCIError) as info:
        fn(*args)
    return info.value


# ---------------------------------------------------------------------------------------------
# Timestamps and ids


@pytest.mark.parametrize(
    "text",
    [
        "2025-01-15T10:30:00Z",
        "2025-01-15T10:30:00z",
        "2025-01-15T10:30:00.123+05:30",
        "2022-12-04T17:20:07-04:00",
        "2025-01-15 10:30:00+00:00",
    ],
)
def test_timestamps_with_a_timezone_are_accepted(text: str):
    parsed = parse_timestamp(text)
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("2025-01-15T10:30:00", "has no timezone"),
        ("2025-01-15", "is a date, not a date-time"),
        ("15.01.2025 10:30", "is not an ISO 8601 date-time"),
        ("yesterday", "is a date, not a date-time"),
        ("", "must be an ISO 8601 date-time string"),
        (1736937000, "must be an ISO 8601 date-time string"),
    ],
)
def test_timestamps_without_a_timezone_are_refused(text: Any, mentions: str):
    with pytest.raises(ValueError, match=mentions):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("value", "mentions"),
    [
        ("x" * 100, "is 100 characters long; the maximum is 99"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        (5, "must be a string"),
        ("a\x00b", "control characters"),
        ("line\nbreak", "control characters"),
    ],
)
def test_ids_are_checked(value: Any, mentions: str):
    with pytest.raises(ValueError, match=mentions):
        check_id(value)


def test_ids_up_to_99_characters_pass():
    assert check_id("x" * 99) == "x" * 99
    assert check_id("ünïcode-id") == "ünïcode-id"


# ---------------------------------------------------------------------------------------------
# Envelope and headers


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ([], "must be a JSON object"),
        ("text", "must be a JSON object"),
        ({"message": {}}, "no 'header'"),
        ({"header": None, "message": {}}, "no 'header'"),
        ({"header": [], "message": {}}, "'header' must be a JSON object"),
        ({"header": {}}, "no 'message'"),
        ({"header": {}, "message": None}, "no 'message'"),
        ({"header": {}, "message": {}, "signature": 5}, "'signature' must be a string"),
    ],
)
def test_split_envelope_refuses_broken_envelopes(body: Any, mentions: str):
    error = dci_error(split_envelope, body)
    assert error.code == ErrorCode.REQUEST_BAD and error.http_status == 400
    assert mentions in error.message


def test_split_envelope_returns_its_parts():
    header, message, signature = split_envelope(
        {"signature": "sig", "header": {"a": 1}, "message": {"b": 2}, "extra": True}
    )
    assert (header, message, signature) == ({"a": 1}, {"b": 2}, "sig")
    assert split_envelope({"header": {}, "message": {}, "signature": ""})[2] is None


def test_request_header_lenient_older_shapes():
    header = parse_request_header(
        request_header(
            sender_uri="",
            receiver_id="",
            meta="",
            version="",
            total_count="1",
            is_msg_encrypted=False,
            unknown_member="kept",
        ),
        "search",
    )
    assert header.sender_uri is None and header.receiver_id is None and header.meta is None
    assert header.version == "1.0.0"
    assert header.total_count == 1
    # version "1.0" is accepted as the same protocol
    assert parse_request_header(request_header(version="1.0"), "search").version == "1.0"
    # version may be absent
    assert parse_request_header(request_header(version=...), "search").version == "1.0.0"


@pytest.mark.parametrize(
    ("changes", "code", "mentions"),
    [
        (
            {"message_ts": "2025-01-15T10:30:00"},
            ErrorCode.REQUEST_BAD,
            "header.message_ts '2025-01-15T10:30:00' has no timezone",
        ),
        ({"message_id": "m" * 100}, ErrorCode.REQUEST_BAD, "header.message_id is 100 characters"),
        ({"message_id": ...}, ErrorCode.REQUEST_BAD, "header.message_id is required"),
        ({"sender_id": ""}, ErrorCode.REQUEST_BAD, "header.sender_id must not be empty"),
        ({"total_count": "one"}, ErrorCode.REQUEST_BAD, "header.total_count must be an integer"),
        ({"total_count": -1}, ErrorCode.REQUEST_BAD, "header.total_count must not be negative"),
        (
            {"is_msg_encrypted": "perhaps"},
            ErrorCode.REQUEST_BAD,
            "header.is_msg_encrypted must be true or false",
        ),
        ({"meta": "x"}, ErrorCode.REQUEST_BAD, "header.meta must be a JSON object"),
        ({"sender_uri": "http://x/\x00"}, ErrorCode.REQUEST_BAD, "header.sender_uri"),
        ({"version": "2.0"}, ErrorCode.VERSION_NOT_SUPPORTED, "header.version '2.0'"),
        ({"action": "on-search"}, ErrorCode.REQUEST_BAD, "header.action is 'on-search'"),
    ],
    ids=[
        "message-ts-without-timezone",
        "message-id-too-long",
        "no-message-id",
        "empty-sender-id",
        "total-count-text",
        "total-count-negative",
        "encrypted-flag",
        "meta-text",
        "sender-uri-nul",
        "version-2",
        "action-mismatch",
    ],
)
def test_request_header_strict_checks(changes: dict[str, Any], code: str, mentions: str):
    error = dci_error(parse_request_header, request_header(**changes), "search")
    assert error.code == code
    assert mentions in error.message


def test_callback_header_lenient_and_strict():
    raw = {
        "message_id": "m-2",
        "message_ts": TS,
        "action": "on-search",
        "status": "succ",
        "sender_id": "",
        "receiver_id": "",
        "status_reason_code": "",
        "status_reason_message": "",
        "meta": "",
        "total_count": "2",
    }
    header = parse_callback_header(raw, "on-search")
    assert isinstance(header, MsgCallbackHeader)
    assert header.sender_id is None and header.status_reason_code is None
    assert header.total_count == 2
    error = dci_error(parse_callback_header, {**raw, "status": "done"}, "on-search")
    assert "header.status is 'done'" in error.message and "'succ'" in error.message
    error = dci_error(parse_callback_header, {**raw, "message_ts": "2025-01-15"}, "on-search")
    assert "header.message_ts" in error.message


def test_version_and_action_checks():
    check_version("1.0.0")
    assert dci_error(check_version, "1.1").code == ErrorCode.VERSION_NOT_SUPPORTED
    check_action("txn-status", "txn-status")
    error = dci_error(check_action, "txn/status", "txn-status")
    assert "'txn/status'" in error.message and "'txn-status'" in error.message


# ---------------------------------------------------------------------------------------------
# Messages


def test_search_request_single_object_becomes_a_list():
    request = parse_message(SearchRequest, {"transaction_id": "t-1", "search_request": item()})
    assert request.search_request == [item()]


def test_search_criteria_lenient_older_shapes():
    criteria = SearchCriteria.model_validate(
        {
            "version": "",
            "reg_type": "",
            "reg_event_type": "spdci-common:RegistryEventType:X",
            "query_type": "predicate",
            "query": [],
            "pagination": {},
            "consent": "",
            "authorize": {},
            "sort": [{"attribute_name": "birth_date"}],
            "response_entity": "",
        }
    )
    assert criteria.consent is None and criteria.authorize is None
    assert criteria.pagination is None
    assert criteria.reg_event_type == "spdci-common:RegistryEventType:X"
    assert criteria.version == "1.0.0" and criteria.reg_type is None
    assert criteria.response_entity is None
    assert criteria.sort[0].sort_order == "asc"
    consent = SearchCriteria.model_validate(
        {
            "query_type": "predicate",
            "query": [],
            "consent": {"@type": "Consent", "ts": TS, "purpose": {"code": "SP-ELIG", "text": "x"}},
        }
    ).consent
    assert consent.purpose_code() == "SP-ELIG"


def test_pagination_number_given_as_text_and_default_page():
    criteria = SearchCriteria.model_validate(
        {"query_type": "predicate", "query": [], "pagination": {"page_size": "10"}}
    )
    assert (criteria.pagination.page_size, criteria.pagination.page_number) == (10, 1)


@pytest.mark.parametrize(
    ("message", "mentions"),
    [
        ("not an object", "'message' must be a JSON object"),
        ({"search_request": []}, "message.transaction_id is required"),
        ({"transaction_id": "t" * 100, "search_request": []}, "message.transaction_id is 100"),
        ({"transaction_id": "", "search_request": []}, "message.transaction_id must not be empty"),
        ({"transaction_id": "t"}, "message.search_request is required"),
        (
            {"transaction_id": "t", "search_request": "x"},
            "message.search_request must be a JSON array",
        ),
    ],
)
def test_message_level_problems_reject_the_message(message: Any, mentions: str):
    error = dci_error(parse_message, SearchRequest, message)
    assert error.code == ErrorCode.REQUEST_BAD
    assert mentions in error.message


def item_results(*items: Any) -> list[tuple[str | None, Any]]:
    return parse_items(SearchRequestItem, list(items), "search_request")


@pytest.mark.parametrize(
    ("changes", "code", "mentions"),
    [
        (
            {"timestamp": "2025-01-15T10:30:00"},
            SearchReason.TIMESTAMP_INVALID,
            "message.search_request[0].timestamp '2025-01-15T10:30:00' has no timezone",
        ),
        ({"timestamp": ...}, SearchReason.TIMESTAMP_INVALID, "timestamp is required"),
        (
            {"reference_id": "r" * 100},
            SearchReason.REFERENCE_ID_INVALID,
            "message.search_request[0].reference_id is 100 characters long",
        ),
        ({"reference_id": ""}, SearchReason.REFERENCE_ID_INVALID, "reference_id must not be empty"),
        (
            {"search_criteria": "UIN 1"},
            SearchReason.SEARCH_CRITERIA_INVALID,
            "search_criteria must be a JSON object",
        ),
        (
            {"search_criteria": {"query": {}}},
            SearchReason.SEARCH_CRITERIA_INVALID,
            "search_criteria.query_type is required",
        ),
        (
            {
                "search_criteria": {
                    "query_type": "predicate",
                    "query": [],
                    "sort": [{"attribute_name": "a", "sort_order": "up"}],
                }
            },
            SearchReason.SORT_INVALID,
            "search_criteria.sort[0].sort_order is 'up'",
        ),
        (
            {
                "search_criteria": {
                    "query_type": "predicate",
                    "query": [],
                    "pagination": {"page_size": "ten"},
                }
            },
            SearchReason.PAGINATION_INVALID,
            "pagination.page_size must be an integer (got 'ten')",
        ),
    ],
    ids=[
        "timestamp-without-timezone",
        "no-timestamp",
        "reference-id-too-long",
        "reference-id-empty",
        "criteria-not-object",
        "no-query-type",
        "sort-order",
        "page-size-text",
    ],
)
def test_item_problems_reject_only_that_item(changes: dict[str, Any], code: str, mentions: str):
    bad = {k: v for k, v in item(**{"reference_id": "r-2", **changes}).items() if v is not ...}
    (_, first), (ref, second), (_, third) = item_results(item(), bad, item(reference_id="r-3"))
    assert isinstance(first, SearchRequestItem) and isinstance(third, SearchRequestItem)
    assert isinstance(second, ItemRejected)
    assert second.code == code
    assert mentions.replace("search_request[0]", "search_request[1]") in second.message
    assert ref == (bad["reference_id"] if isinstance(bad.get("reference_id"), str) else None)


@pytest.mark.parametrize("locale", ["en", "ENG", "en-GB", "english", 5])
def test_bad_locale_rejects_the_message(locale: Any):
    error = dci_error(item_results, item(locale=locale))
    assert error.code == ErrorCode.REQUEST_BAD
    assert "message.search_request[0].locale" in error.message


def test_locale_may_be_absent_or_blank():
    ((_, absent), (_, blank)) = item_results(item(locale=None), item(reference_id="r-2", locale=""))
    assert absent.locale is None and blank.locale is None


def test_non_object_item_rejects_the_message():
    assert (
        "message.search_request[1] must be a JSON object"
        in dci_error(item_results, item(), "r-2").message
    )


def test_duplicate_reference_id_rejects_the_second_item():
    (_, first), (ref, second) = item_results(item(), item())
    assert isinstance(first, SearchRequestItem)
    assert isinstance(second, ItemRejected) and ref == "r-1"
    assert second.code == SearchReason.REFERENCE_ID_DUPLICATE
    assert "'r-1' appears more than once" in second.message


def test_subscribe_request_lenient_shapes():
    raw = {
        "transaction_id": "t-1",
        "subscribe_request": {
            "reference_id": "r-1",
            "timestamp": TS,
            "locale": "",
            "subscribe_criteria": {
                "reg_event_type": "LiveBirth",
                "frequency": "",
                "filter_type": "",
                "notify_record_type": "Person",
            },
        },
    }
    request = parse_message(SubscribeRequest, raw)
    assert len(request.subscribe_request) == 1


def test_unsubscribe_request_accepts_the_std_typos():
    request = parse_message(
        UnsubscribeRequest,
        {"transaction_id": "t-1", "timesstamp": TS, "sunscription_codes": ["S-1"]},
    )
    assert request.timestamp == TS and request.subscription_codes == ["S-1"]
    error = dci_error(
        parse_message,
        UnsubscribeRequest,
        {"transaction_id": "t-1", "timestamp": "2025-01-15T10:30:00", "subscription_codes": []},
    )
    assert "message.timestamp" in error.message


def test_txn_status_request_single_object():
    request = parse_message(
        TxnStatusRequest,
        {
            "transaction_id": "t-9",
            "txnstatus_request": {
                "reference_id": "r",
                "txn_type": "search",
                "attribute_type": "transaction_id",
                "attribute_value": "t-1",
                "locale": "",
            },
        },
    )
    assert request.txnstatus_request.attribute_value == "t-1"
    assert request.txnstatus_request.locale is None
    error = dci_error(
        parse_message,
        TxnStatusRequest,
        {
            "transaction_id": "t",
            "txnstatus_request": {
                "reference_id": "r",
                "txn_type": "search",
                "attribute_type": "transaction_id",
                "attribute_value": "t-1",
                "locale": "en",
            },
        },
    )
    assert "locale 'en'" in error.message


def test_enrollment_updates_both_shapes():
    newest = parse_message(
        EnrollmentUpdatesRequest,
        {"transaction_id": "t", "enrolled_updates": {"beneficiaries": [{"a": 1}]}},
    )
    assert newest.beneficiaries == [{"a": 1}] and newest.update_type is None
    older = parse_message(
        EnrollmentUpdatesRequest,
        {
            "transaction_id": "t",
            "receipt_information": {"receipt_type": "enrollment", "beneficiaries": {"a": 2}},
        },
    )
    assert older.beneficiaries == [{"a": 2}] and older.update_type == "enrollment"
    assert (
        "beneficiaries is required"
        in dci_error(parse_message, EnrollmentUpdatesRequest, {"transaction_id": "t"}).message
    )


def test_request_header_required_members():
    with pytest.raises(ValidationError) as info:
        MsgHeader.model_validate({})
    missing = {e["loc"][0] for e in info.value.errors() if e["type"] == "missing"}
    assert missing == {"message_id", "message_ts", "action", "sender_id", "total_count"}


# ---------------------------------------------------------------------------------------------
# What dcihub emits


def test_format_ts_is_utc_with_milliseconds_and_z():
    text = format_ts()
    assert text.endswith("Z") and len(text) == len("2025-01-15T10:30:00.000Z")
    assert abs(parse_timestamp(text) - datetime.now(UTC)) < timedelta(seconds=5)
    moment = datetime(2025, 1, 15, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_ts(moment) == "2025-01-15T10:00:00.123Z"


def test_acks():
    body = ack("c-1")
    assert body == {
        "message": {
            "ack_status": "ACK",
            "timestamp": body["message"]["timestamp"],
            "correlation_id": "c-1",
        }
    }
    parse_timestamp(body["message"]["timestamp"])
    error = err_ack("err.request.bad", "x" * 2000, "c-2", timestamp=TS)
    assert error["message"]["ack_status"] == "ERR"
    assert error["message"]["error"]["code"] == "err.request.bad"
    assert len(error["message"]["error"]["message"]) == 999
    assert error["message"]["timestamp"] == TS
    assert http_error_body("err.request.unauthorized", "no token") == {
        "errors": [{"code": "err.request.unauthorized", "message": "no token"}]
    }


def test_callback_header_has_optional_members_only_when_given():
    header = callback_header(
        message_id="m",
        action="on-search",
        status="succ",
        sender_id="crvs.node",
        receiver_id=None,
        total_count=2,
        completed_count=2,
    )
    assert "receiver_id" not in header and "status_reason_code" not in header
    assert "meta" not in header
    parse_callback_header(header, "on-search")
    full = callback_header(
        message_id="m",
        action="on-search",
        status="rjct",
        sender_id="crvs.node",
        receiver_id="spmis",
        total_count=1,
        completed_count=0,
        reason_code="rjct.total_count.invalid",
        reason_message="y" * 1200,
        meta={"k": "v"},
    )
    assert full["receiver_id"] == "spmis" and full["meta"] == {"k": "v"}
    assert len(full["status_reason_message"]) == 999
    assert parse_callback_header(full, "on-search").status == "rjct"


def test_search_response_items():
    good = search_response_item(
        reference_id="r-1",
        timestamp=TS,
        status="succ",
        reg_type="ns:org:RegistryType:Civil",
        reg_record_type="Person",
        records=[{"@id": "p"}],
        pagination={"page_size": 10, "page_number": 1, "total_count": 1},
        locale=None,
    )
    assert good["data"] == {
        "version": "1.0.0",
        "reg_type": "ns:org:RegistryType:Civil",
        "reg_record_type": "Person",
        "reg_records": [{"@id": "p"}],
    }
    assert good["pagination"]["total_count"] == 1 and good["locale"] == "eng"
    assert "status_reason_code" not in good
    empty = search_response_item(reference_id="r-2", timestamp=TS, status="succ")
    assert empty["data"]["reg_records"] == []
    bad = rejected_item("r-3", TS, ItemRejected(SearchReason.SORT_INVALID, "z" * 1500), "fra")
    assert bad["status"] == "rjct" and bad["status_reason_code"] == "rjct.sort.invalid"
    assert len(bad["status_reason_message"]) == 999
    assert "data" not in bad and "pagination" not in bad and bad["locale"] == "fra"


def test_built_responses_satisfy_the_contracts(spec_dir):
    from contract import load_contract

    contract = load_contract(spec_dir, "crvs")
    items = [
        search_response_item(
            reference_id="r-1",
            timestamp=TS,
            status="succ",
            reg_type="ns:org:RegistryType:Civil",
            reg_record_type="Person",
            records=[],
            pagination={"page_size": 10, "page_number": 1, "total_count": 0},
        ),
        rejected_item("r-2", TS, ItemRejected(SearchReason.SEARCH_CRITERIA_INVALID, "no")),
    ]
    header = callback_header(
        message_id="m-2",
        action="on-search",
        status="succ",
        sender_id="crvs.node",
        receiver_id="spmis",
        total_count=2,
        completed_count=2,
        timestamp=TS,
    )
    body = {
        "header": header,
        "message": {"transaction_id": "t-1", "correlation_id": "c-1", "search_response": items},
    }
    contract.validate_response("/registry/sync/search", body)
    contract.validate_request("/registry/on-search", body)
    contract.validate_response("/registry/search", ack("c-1"))
    contract.validate_response("/registry/search", err_ack(ErrorCode.REQUEST_BAD, "bad", "c-1"))
