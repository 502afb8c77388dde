"""Typed models of every DCI message body of the five registry contracts (CMP shapes, DIGEST §2.9).

Requests are parsed in two steps so that one bad item never sinks a batch: the outer model
checks `transaction_id` and that the batch is a list; each item is then validated on its own
and a failure becomes an item-level `rjct.*` (see `parse_items`). Older shapes are accepted on
input (DIGEST §6 #1, #11, #19): `reg_event_type` for `reg_record_type`, a single object where a
list is due, "" for absent optional members, `receipt_information` for `enrolled_updates`.
What dcihub emits is always the newest shape, built by the `*_response` helpers below.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from .codes import ErrorCode, RequestStatus, SearchReason
from .envelope import (
    Id,
    LenientModel,
    Timestamp,
    describe_validation_error,
)
from .errors import DCIError, ItemRejected

LOCALE_RE = re.compile(r"^[a-z]{3}$")

Model = TypeVar("Model", bound=BaseModel)


def check_locale(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not LOCALE_RE.match(value):
        raise ValueError(
            f"'{value}' is not an ISO 639-3 language code (three lower-case letters, e.g. 'eng')"
        )
    return value


Locale = Annotated[str, AfterValidator(check_locale)]


# ---------------------------------------------------------------------------------------------
# Shared small objects


class Pagination(LenientModel):
    page_size: int
    page_number: int = 1


class SortItem(LenientModel):
    attribute_name: str
    sort_order: Literal["asc", "desc"] = "asc"


class Purpose(LenientModel):
    text: str | None = None
    code: str | None = None
    ref_uri: str | None = None


class ConsentOrAuthorize(BaseModel):
    """`Consent` / `Authorize`: `{ts, purpose: {text, code, ref_uri}}` (+ JSON-LD members)."""

    model_config = ConfigDict(extra="allow")
    ts: Any = None
    purpose: Any = None

    def purpose_code(self) -> str | None:
        if isinstance(self.purpose, dict):
            code = self.purpose.get("code")
            return code if isinstance(code, str) else None
        return None


# ---------------------------------------------------------------------------------------------
# Search


class SearchCriteria(LenientModel):
    version: str | None = "1.0.0"
    reg_type: str | None = None
    reg_record_type: str | None = None
    reg_event_type: str | None = None  # STD (older) name of reg_record_type
    query_type: str
    query: Any
    response_entity: str | None = None
    sort: list[SortItem] | None = None
    pagination: Pagination | None = None
    consent: ConsentOrAuthorize | None = None
    authorize: ConsentOrAuthorize | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_objects(cls, data: Any) -> Any:
        # Samples send {} for absent pagination/consent/authorize.
        if isinstance(data, dict):
            data = {
                k: v
                for k, v in data.items()
                if not (k in ("pagination", "consent", "authorize") and v in ({}, ""))
            }
        return data


class SearchRequestItem(LenientModel):
    reference_id: Id
    timestamp: Timestamp
    search_criteria: SearchCriteria
    locale: Locale | None = None
    # Where some implementations put it; read like search_criteria.pagination (never emitted).
    pagination: Pagination | None = None

    def effective_criteria(self, where: str) -> SearchCriteria:
        """The criteria, with the item-level pagination moved in (refused if both differ)."""
        criteria = self.search_criteria
        if self.pagination is None:
            return criteria
        if criteria.pagination is None:
            return criteria.model_copy(update={"pagination": self.pagination})
        if criteria.pagination != self.pagination:
            raise ItemRejected(
                SearchReason.PAGINATION_INVALID,
                f"{where}.pagination and {where}.search_criteria.pagination differ; send one "
                "(search_criteria.pagination is the standard's place)",
            )
        return criteria


class TransactionMessage(LenientModel):
    transaction_id: Id


class SearchRequest(TransactionMessage):
    search_request: list[dict[str, Any]]

    @model_validator(mode="before")
    @classmethod
    def _single_to_list(cls, data: Any) -> Any:
        return single_to_list(data, "search_request")


# ---------------------------------------------------------------------------------------------
# Subscribe / notify / unsubscribe


class EventFrequency(LenientModel):
    start_time: str | None = None
    end_time: str | None = None
    frequency: str | None = None


class SubscribeCriteria(LenientModel):
    version: str | None = "1.0.0"
    reg_type: str | None = None
    reg_event_type: str
    frequency: EventFrequency | None = None
    filter_type: str | None = None
    filter: Any = None
    notify_record_type: str | None = None
    authorize: ConsentOrAuthorize | None = None


class SubscribeRequestItem(LenientModel):
    reference_id: Id
    timestamp: Timestamp
    subscribe_criteria: SubscribeCriteria
    locale: Locale | None = None


class SubscribeRequest(TransactionMessage):
    subscribe_request: list[dict[str, Any]]

    @model_validator(mode="before")
    @classmethod
    def _single_to_list(cls, data: Any) -> Any:
        return single_to_list(data, "subscribe_request")


class UnsubscribeRequest(TransactionMessage):
    timestamp: Timestamp
    subscription_codes: list[str]

    @model_validator(mode="before")
    @classmethod
    def _typos(cls, data: Any) -> Any:
        # STD spells them `timesstamp` and `sunscription_codes`.
        if isinstance(data, dict):
            data = dict(data)
            if "timestamp" not in data and "timesstamp" in data:
                data["timestamp"] = data.pop("timesstamp")
            if "subscription_codes" not in data and "sunscription_codes" in data:
                data["subscription_codes"] = data.pop("sunscription_codes")
        return data


class NotifyEventItem(LenientModel):
    reference_id: Id
    timestamp: Timestamp
    data: dict[str, Any]
    locale: Locale | None = None


class NotifyEventRequest(TransactionMessage):
    notify_event: list[NotifyEventItem]


# ---------------------------------------------------------------------------------------------
# Transaction status


class TxnStatusItem(LenientModel):
    reference_id: Id
    txn_type: str
    attribute_type: str
    attribute_value: Any
    locale: Locale | None = None


class TxnStatusRequest(TransactionMessage):
    txnstatus_request: TxnStatusItem


# ---------------------------------------------------------------------------------------------
# Registry-specific calls (DR, IBR)


class DisabledCriteria(LenientModel):
    query_type: str = "expression"
    query: Any


class DisabledRequest(TransactionMessage):
    """DR `sync/disabled`, `sync/get-disability-support`, `sync/get-disability-details`."""

    disabled_criteria: DisabledCriteria


class EnrolledCriteria(LenientModel):
    query_type: str = "expression"
    response_entity: str | None = None
    query: Any


class EnrolledRequest(TransactionMessage):
    """IBR `sync/enrolled`."""

    enrolled_criteria: EnrolledCriteria


class EnrollmentUpdatesRequest(TransactionMessage):
    """IBR `sync/enrollment/updates`: `enrolled_updates.beneficiaries` (CMP) or the older
    `receipt_information.beneficiaries` of the STD sample."""

    beneficiaries: list[Any]
    update_type: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shapes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        holder = data.get("enrolled_updates")
        if holder is None:
            holder = data.get("receipt_information")
            if isinstance(holder, dict):
                data["update_type"] = holder.get("receipt_type")
        if isinstance(holder, dict):
            beneficiaries = holder.get("beneficiaries")
            if isinstance(beneficiaries, dict):
                beneficiaries = [beneficiaries]
            data["beneficiaries"] = beneficiaries
        elif holder is not None:
            data["beneficiaries"] = holder
        return data


# ---------------------------------------------------------------------------------------------
# Parsing helpers


def single_to_list(data: Any, key: str) -> Any:
    """STD samples send one object where the contract wants a list."""
    if isinstance(data, dict) and isinstance(data.get(key), dict):
        data = dict(data)
        data[key] = [data[key]]
    return data


def parse_message(model: type[Model], raw: Any, what: str = "message") -> Model:
    """Validate the outer message; problems reject the whole message (err.request.bad)."""
    if not isinstance(raw, dict):
        raise DCIError(ErrorCode.REQUEST_BAD, f"'{what}' must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise DCIError(ErrorCode.REQUEST_BAD, describe_validation_error(exc, what)) from None


# Which item-level reason code a schema problem in an item field maps to.
_ITEM_FIELD_CODES: dict[str, str] = {
    "reference_id": SearchReason.REFERENCE_ID_INVALID,
    "timestamp": SearchReason.TIMESTAMP_INVALID,
    "search_criteria": SearchReason.SEARCH_CRITERIA_INVALID,
    "subscribe_criteria": SearchReason.SEARCH_CRITERIA_INVALID,
    "pagination": SearchReason.PAGINATION_INVALID,
}
_CRITERIA_FIELD_CODES: dict[str, str] = {
    "sort": SearchReason.SORT_INVALID,
    "pagination": SearchReason.PAGINATION_INVALID,
}


def item_reason(exc: ValidationError) -> str | None:
    """The item reason code for the first error, or None if it is a message-level problem."""
    loc = exc.errors()[0]["loc"]
    first = str(loc[0]) if loc else ""
    if first in ("search_criteria", "subscribe_criteria") and len(loc) > 1:
        return _CRITERIA_FIELD_CODES.get(str(loc[1]), SearchReason.SEARCH_CRITERIA_INVALID)
    return _ITEM_FIELD_CODES.get(first)


def parse_items(
    model: type[Model], raw_items: list[Any], list_name: str
) -> list[tuple[str | None, Model | ItemRejected]]:
    """Validate each batch item on its own.

    Returns (reference_id or None, parsed item or ItemRejected) per item. Schema problems that
    have an item reason code (reference_id, timestamp, criteria, sort, pagination) reject that
    item only; problems without one (a non-object item, a bad locale) reject the message, since
    the standard gives no item code for them.
    """
    out: list[tuple[str | None, Model | ItemRejected]] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_items):
        where = f"message.{list_name}[{index}]"
        if not isinstance(raw, dict):
            raise DCIError(ErrorCode.REQUEST_BAD, f"{where} must be a JSON object")
        ref = raw.get("reference_id") if isinstance(raw.get("reference_id"), str) else None
        try:
            item = model.model_validate(raw)
        except ValidationError as exc:
            code = item_reason(exc)
            text = describe_validation_error(exc, where)
            if code is None:
                raise DCIError(ErrorCode.REQUEST_BAD, text) from None
            out.append((ref, ItemRejected(code, text)))
            continue
        if ref in seen:
            out.append(
                (
                    ref,
                    ItemRejected(
                        SearchReason.REFERENCE_ID_DUPLICATE,
                        f"{where}.reference_id '{ref}' appears more than once in this message",
                    ),
                )
            )
            continue
        seen.add(ref)  # type: ignore[arg-type]
        out.append((ref, item))
    return out


# ---------------------------------------------------------------------------------------------
# Building responses (newest shape)


def search_response_item(
    *,
    reference_id: str,
    timestamp: str,
    status: str,
    reg_type: str | None = None,
    reg_record_type: str | None = None,
    records: list[Any] | None = None,
    pagination: dict[str, int] | None = None,
    reason_code: str | None = None,
    reason_message: str | None = None,
    locale: str | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"reference_id": reference_id, "timestamp": timestamp, "status": status}
    if reason_code:
        item["status_reason_code"] = reason_code
    if reason_message:
        item["status_reason_message"] = reason_message[:999]
    if status == RequestStatus.SUCCESS:
        data: dict[str, Any] = {"version": "1.0.0"}
        if reg_type:
            data["reg_type"] = reg_type
        if reg_record_type:
            data["reg_record_type"] = reg_record_type
        data["reg_records"] = records if records is not None else []
        item["data"] = data
        if pagination is not None:
            item["pagination"] = pagination
    item["locale"] = locale or "eng"
    return item


def rejected_item(
    reference_id: str, timestamp: str, rejection: ItemRejected, locale: str | None = None
) -> dict[str, Any]:
    return search_response_item(
        reference_id=reference_id,
        timestamp=timestamp,
        status=RequestStatus.REJECTED,
        reason_code=rejection.code,
        reason_message=rejection.message,
        locale=locale,
    )
