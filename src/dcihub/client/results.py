"""Typed results of the client's operations, read leniently from what registries send.

Records keep the registry's JSON as it came (`Record.raw`) and expose the common fields of
the standard's person-like records (identifiers, name, birth and death dates, sex) wherever
the registries put them: at the top (CRVS Person), under `demographic_info` (Member),
`personal_details` (DR), `member` (IBR Beneficiary) or an older `person` wrapper.

Reading is tolerant of the older shapes of DIGEST §6: `total_count` sent as a string,
`reg_records` as one object instead of a list, `reg_event_type` for `reg_record_type`. What
cannot be read raises `ProtocolError` naming the member it did not accept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dcihub.standard.codes import RequestStatus
from dcihub.standard.profiles.base import canonical_id_type, first_value, values_at

from .errors import ProtocolError, RejectedError

__all__ = [
    "Ack",
    "Identifier",
    "Name",
    "Record",
    "SearchResult",
    "BatchResult",
    "TxnStatusResult",
    "Subscription",
    "SubscribeItem",
    "SubscribeResult",
    "UnsubscribeResult",
    "NotifyEvent",
    "Notification",
    "CallResult",
    "ItemStatus",
    "DisabledAnswer",
    "EnrolledAnswer",
    "EnrollmentUpdatesResult",
]

# Where person-like records keep their fields, most specific first.
_PREFIXES = (
    "",
    "demographic_info.",
    "personal_details.demographic_info.",
    "personal_details.",
    "member.demographic_info.",
    "member.",
    "person.",
    "demographic_info.person.",
    "member.demographic_info.person.",
)
_IDENTIFIER_PATHS = (
    "identifier",
    "member_identifier",
    "group_identifier",
    "demographic_info.identifier",
    "personal_details.member_identifier",
    "personal_details.demographic_info.identifier",
    "member.member_identifier",
    "member.demographic_info.identifier",
    "person.identifier",
)


@dataclass(frozen=True, slots=True)
class Ack:
    """The registry's acknowledgement of an asynchronous request."""

    ack_status: str
    correlation_id: str | None
    timestamp: str | None


@dataclass(frozen=True, slots=True)
class Identifier:
    type: str
    value: str


@dataclass(frozen=True, slots=True)
class Name:
    given_name: str | None
    surname: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def full(self) -> str:
        return " ".join(p for p in (self.given_name, self.surname) if p)

    def __str__(self) -> str:
        return self.full


@dataclass(frozen=True)
class Record:
    """One registry record: the JSON as received (`raw`, also `record["field"]`) plus the
    common fields of person-like records."""

    raw: dict[str, Any]
    record_type: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, path: str, default: Any = None) -> Any:
        """The first value at a dotted path (walking through lists), else `default`."""
        value = first_value(self.raw, path)
        return default if value is None else value

    def _find(self, name: str) -> Any:
        for prefix in _PREFIXES:
            value = first_value(self.raw, prefix + name)
            if value is not None:
                return value
        return None

    @property
    def identifiers(self) -> list[Identifier]:
        """Every identifier of the record (`NID` and `NationalID` read as `UIN`)."""
        found: list[Identifier] = []
        for path in _IDENTIFIER_PATHS:
            for ident in values_at(self.raw, path):
                if not isinstance(ident, dict):
                    continue
                id_type = ident.get("identifier_type", ident.get("type"))
                value = ident.get("identifier_value", ident.get("value"))
                if isinstance(id_type, str) and value not in (None, ""):
                    item = Identifier(canonical_id_type(id_type), str(value))
                    if item not in found:
                        found.append(item)
        return found

    def identifier(self, id_type: str = "UIN") -> str | None:
        wanted = canonical_id_type(id_type)
        for ident in self.identifiers:
            if ident.type == wanted:
                return ident.value
        return None

    @property
    def uin(self) -> str | None:
        return self.identifier("UIN")

    @property
    def name(self) -> Name | None:
        value = self._find("name")
        if isinstance(value, dict):
            given = value.get("given_name", value.get("first_name"))
            surname = value.get("surname", value.get("last_name"))
            return Name(
                str(given) if given else None, str(surname) if surname else None, dict(value)
            )
        if isinstance(value, str) and value:
            return Name(value, None, {"name": value})
        given = self._find("given_name") or self._find("first_name")
        surname = self._find("surname") or self._find("last_name")
        if given or surname:
            return Name(given, surname)
        return None

    @property
    def birth_date(self) -> str | None:
        value = self._find("birth_date") or self._find("date_of_birth")
        return str(value) if value is not None else None

    @property
    def death_date(self) -> str | None:
        value = self._find("death_date") or self._find("date_of_death")
        return str(value) if value is not None else None

    @property
    def is_deceased(self) -> bool:
        """True when a death date is recorded (or the record says `is_deceased`)."""
        flag = self._find("is_deceased")
        if isinstance(flag, bool):
            return flag or self.death_date is not None
        return self.death_date is not None

    @property
    def sex(self) -> str | None:
        value = self._find("sex") or self._find("gender")
        return str(value) if value is not None else None

    def __repr__(self) -> str:
        name = self.name
        return (
            f"Record({self.record_type or 'record'} uin={self.uin!r}"
            f"{' name=' + repr(name.full) if name else ''})"
        )


# ---------------------------------------------------------------------------------------------
# Search


@dataclass(frozen=True)
class SearchResult:
    """One answered search item: its records and pagination (or its rejection)."""

    reference_id: str
    status: str
    records: list[Record]
    total_count: int | None = None
    page: int | None = None
    page_size: int | None = None
    reg_type: str | None = None
    reg_record_type: str | None = None
    reason_code: str | None = None
    reason_message: str | None = None
    locale: str | None = None
    transaction_id: str | None = None
    correlation_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == RequestStatus.SUCCESS.value

    @property
    def first(self) -> Record | None:
        return self.records[0] if self.records else None

    def raise_for_status(self) -> SearchResult:
        if self.status == RequestStatus.REJECTED.value:
            raise RejectedError(
                self.reason_code,
                self.reason_message,
                reference_id=self.reference_id,
                transaction_id=self.transaction_id,
            )
        return self

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class BatchResult:
    """The items of one search message, by `reference_id` (in the order sent)."""

    transaction_id: str
    correlation_id: str | None
    results: dict[str, SearchResult]
    status: str = RequestStatus.SUCCESS.value

    def __getitem__(self, reference_id: str) -> SearchResult:
        return self.results[reference_id]

    def __iter__(self) -> Iterator[SearchResult]:
        return iter(self.results.values())

    def __len__(self) -> int:
        return len(self.results)

    @property
    def rejected(self) -> list[SearchResult]:
        return [r for r in self.results.values() if r.status == RequestStatus.REJECTED.value]


# ---------------------------------------------------------------------------------------------
# Transaction status, subscriptions, notifications


@dataclass(frozen=True)
class Subscription:
    code: str
    status: str
    timestamp: str | None = None
    reg_event_type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class SubscribeItem:
    reference_id: str
    status: str
    subscriptions: list[Subscription]
    reason_code: str | None = None
    reason_message: str | None = None

    def raise_for_status(self) -> SubscribeItem:
        if self.status == RequestStatus.REJECTED.value:
            raise RejectedError(
                self.reason_code, self.reason_message, reference_id=self.reference_id
            )
        return self


@dataclass(frozen=True)
class SubscribeResult:
    """The registry's `on-subscribe`: the subscription codes it gave, per item."""

    transaction_id: str
    correlation_id: str | None
    items: list[SubscribeItem]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def codes(self) -> list[str]:
        return [s.code for item in self.items for s in item.subscriptions]

    @property
    def subscriptions(self) -> list[Subscription]:
        return [s for item in self.items for s in item.subscriptions]


@dataclass(frozen=True)
class UnsubscribeResult:
    """The registry's `on-unsubscribe`."""

    transaction_id: str
    correlation_id: str | None
    status: str
    subscription_status: dict[str, str]
    reason_code: str | None = None
    reason_message: str | None = None
    timestamp: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == RequestStatus.SUCCESS.value


@dataclass(frozen=True)
class TxnStatusResult:
    """Where a transaction stands (txn/status). `known` is False when the registry knows no
    such transaction of this sender."""

    transaction_id: str
    correlation_id: str | None
    txn_type: str
    known: bool
    results: list[SearchResult] = field(default_factory=list)
    beneficiaries: list[Record] = field(default_factory=list)
    subscribe: SubscribeResult | None = None
    unsubscribe: UnsubscribeResult | None = None
    about_transaction_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def statuses(self) -> dict[str, str]:
        """reference_id -> status of each search item (`rcvd`, `pdng`, `succ`, `rjct`)."""
        return {r.reference_id: r.status for r in self.results}


@dataclass(frozen=True)
class NotifyEvent:
    reference_id: str
    timestamp: str | None
    reg_type: str | None
    reg_event_type: str | None
    reg_record_type: str | None
    records: list[Record]
    locale: str | None = None


@dataclass(frozen=True)
class Notification:
    """A `notify` the registry sent: events of a subscription (its codes, when the registry
    names them in `header.meta`, DIGEST §6 #13)."""

    transaction_id: str
    message_id: str
    sender_id: str | None
    events: list[NotifyEvent]
    subscription_codes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def records(self) -> list[Record]:
        return [r for e in self.events for r in e.records]


# ---------------------------------------------------------------------------------------------
# Registry-specific calls


@dataclass(frozen=True)
class CallResult:
    """The answer of a registry-specific call: its header and bare message."""

    path: str
    transaction_id: str
    correlation_id: str | None
    header: dict[str, Any]
    message: dict[str, Any]

    @property
    def items(self) -> list[dict[str, Any]]:
        """The response items: the first list member of the message (e.g.
        `disabled_response`, `enrolled_response`, `search_response`)."""
        for value in self.message.values():
            if isinstance(value, list):
                return [v for v in value if isinstance(v, dict)]
        return []


@dataclass(frozen=True)
class ItemStatus:
    reference_id: str
    status: str
    reason_code: str | None = None
    reason_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == RequestStatus.SUCCESS.value


@dataclass(frozen=True)
class DisabledAnswer:
    """DR `sync/disabled`: is this person registered as disabled?"""

    status: str  # "yes" | "no"
    reason: str | None
    result: CallResult = field(repr=False)

    @property
    def disabled(self) -> bool:
        return self.status.strip().lower() == "yes"

    def __bool__(self) -> bool:
        return self.disabled


_ENROLLED = {"yes", "active", "suspended", "reinstated", "awaiting renewal"}


@dataclass(frozen=True)
class EnrolledAnswer:
    """IBR `sync/enrolled` (yes/no) or ESS `sync/check-enrollment` (Active, Deceased,
    Suspended, Inactive, Reinstated, Awaiting Renewal). `enrolled` is True for yes, Active,
    Suspended, Reinstated and Awaiting Renewal (suspended enrolments are enrolments, as the
    IBR counts them)."""

    status: str
    reason: str | None
    result: CallResult = field(repr=False)

    @property
    def enrolled(self) -> bool:
        return self.status.strip().lower() in _ENROLLED

    def __bool__(self) -> bool:
        return self.enrolled


@dataclass(frozen=True)
class EnrollmentUpdatesResult:
    """IBR `sync/enrollment/updates`: one status per beneficiary sent."""

    transaction_id: str
    correlation_id: str | None
    items: list[ItemStatus]
    result: CallResult = field(repr=False)

    @property
    def rejected(self) -> list[ItemStatus]:
        return [i for i in self.items if i.status == RequestStatus.REJECTED.value]


# ---------------------------------------------------------------------------------------------
# Reading (lenient)


def as_int(value: Any, where: str) -> int | None:
    """An integer sent as a number or a string (DIGEST §6 #11), or None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ProtocolError(f"{where} is {value!r}; expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ProtocolError(f"{where} is {value!r}; expected an integer")


def as_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def as_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} is {_kind(value)}; expected a JSON object")
    return value


def as_list(value: Any, where: str, *, single_ok: bool = True) -> list[Any]:
    """A list, or one object where the older shapes send a single item (DIGEST §6 #8)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if single_ok and isinstance(value, dict):
        return [value]
    raise ProtocolError(f"{where} is {_kind(value)}; expected a list")


def _kind(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    return f"a {type(value).__name__}"


def read_records(data: dict[str, Any], where: str) -> tuple[list[Record], str | None]:
    """`data.reg_records` (a list, or one object) and the record type."""
    record_type = as_str(data.get("reg_record_type")) or as_str(data.get("reg_event_type"))
    raw = data.get("reg_records")
    if raw is None:
        return [], record_type
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ProtocolError(
            f"{where}.reg_records is {_kind(raw)}; expected a list of records or one record"
        )
    records = []
    for index, item in enumerate(raw):
        if isinstance(item, dict):
            records.append(Record(item, record_type))
        elif isinstance(item, list):  # DR get-disability-support: an array of arrays
            records.append(Record({"disability_support": item}, record_type))
        else:
            raise ProtocolError(f"{where}.reg_records[{index}] is {_kind(item)}; expected a record")
    return records, record_type


def read_search_item(
    item: Any, where: str, transaction_id: str | None, correlation_id: str | None
) -> SearchResult:
    item = as_object(item, where)
    reference_id = as_str(item.get("reference_id")) or ""
    status = as_str(item.get("status"))
    if status is None:
        raise ProtocolError(f"{where}.status is missing")
    data = item.get("data")
    records: list[Record] = []
    record_type = None
    reg_type = None
    if data is not None:
        data = as_object(data, f"{where}.data")
        records, record_type = read_records(data, f"{where}.data")
        reg_type = as_str(data.get("reg_type"))
    pagination = item.get("pagination")
    total = page = size = None
    if isinstance(pagination, dict):
        total = as_int(pagination.get("total_count"), f"{where}.pagination.total_count")
        page = as_int(pagination.get("page_number"), f"{where}.pagination.page_number")
        size = as_int(pagination.get("page_size"), f"{where}.pagination.page_size")
    elif pagination is not None:
        raise ProtocolError(f"{where}.pagination is {_kind(pagination)}; expected an object")
    if total is None and status == RequestStatus.SUCCESS.value:
        total = len(records)
    return SearchResult(
        reference_id=reference_id,
        status=status,
        records=records,
        total_count=total,
        page=page,
        page_size=size,
        reg_type=reg_type,
        reg_record_type=record_type,
        reason_code=as_str(item.get("status_reason_code")),
        reason_message=as_str(item.get("status_reason_message")),
        locale=as_str(item.get("locale")),
        transaction_id=transaction_id,
        correlation_id=correlation_id,
        raw=item,
    )


def read_search_response(message: dict[str, Any], where: str = "message") -> BatchResult:
    transaction_id = as_str(message.get("transaction_id")) or ""
    correlation_id = as_str(message.get("correlation_id"))
    items = as_list(message.get("search_response"), f"{where}.search_response")
    results: dict[str, SearchResult] = {}
    for index, raw in enumerate(items):
        result = read_search_item(
            raw, f"{where}.search_response[{index}]", transaction_id, correlation_id
        )
        results[result.reference_id or str(index)] = result
    return BatchResult(transaction_id, correlation_id, results)


def read_subscribe_response(message: dict[str, Any], where: str = "message") -> SubscribeResult:
    items = []
    for index, raw in enumerate(
        as_list(message.get("subscribe_response"), f"{where}.subscribe_response")
    ):
        here = f"{where}.subscribe_response[{index}]"
        raw = as_object(raw, here)
        subscriptions = []
        for n, sub in enumerate(as_list(raw.get("subscriptions"), f"{here}.subscriptions")):
            sub = as_object(sub, f"{here}.subscriptions[{n}]")
            code = as_str(sub.get("code", sub.get("subscription_code")))
            if code is None:
                raise ProtocolError(f"{here}.subscriptions[{n}].code is missing")
            criteria = sub.get("subscribe_criteria") if isinstance(sub, dict) else None
            event = sub.get("reg_event_type") or (
                criteria.get("reg_event_type") if isinstance(criteria, dict) else None
            )
            subscriptions.append(
                Subscription(
                    code,
                    as_str(sub.get("status")) or "subscribe",
                    as_str(sub.get("timestamp")),
                    as_str(event),
                    sub,
                )
            )
        items.append(
            SubscribeItem(
                as_str(raw.get("reference_id")) or str(index),
                as_str(raw.get("status")) or "",
                subscriptions,
                as_str(raw.get("status_reason_code")),
                as_str(raw.get("status_reason_message")),
            )
        )
    return SubscribeResult(
        as_str(message.get("transaction_id")) or "",
        as_str(message.get("correlation_id")),
        items,
        message,
    )


def read_unsubscribe_response(message: dict[str, Any], where: str = "message") -> UnsubscribeResult:
    statuses: dict[str, str] = {}
    for index, raw in enumerate(
        as_list(message.get("subscription_status"), f"{where}.subscription_status")
    ):
        raw = as_object(raw, f"{where}.subscription_status[{index}]")
        code = as_str(raw.get("code"))
        if code:
            statuses[code] = as_str(raw.get("status")) or ""
    return UnsubscribeResult(
        transaction_id=as_str(message.get("transaction_id")) or "",
        correlation_id=as_str(message.get("correlation_id")),
        status=as_str(message.get("status")) or "",
        subscription_status=statuses,
        reason_code=as_str(message.get("status_reason_code")),
        reason_message=as_str(message.get("status_reason_message")),
        timestamp=as_str(message.get("timestamp") or message.get("timesatmp")),
        raw=message,
    )


def read_txn_status(message: dict[str, Any], where: str = "message") -> TxnStatusResult:
    transaction_id = as_str(message.get("transaction_id")) or ""
    correlation_id = as_str(message.get("correlation_id"))
    response = as_object(message.get("txnstatus_response"), f"{where}.txnstatus_response")
    txn_type = as_str(response.get("txn_type")) or ""
    txn_type = {"on-search": "search", "on-subscribe": "subscribe"}.get(txn_type, txn_type)
    txn_type = {"on-unsubscribe": "unsubscribe", "subscibe": "subscribe"}.get(txn_type, txn_type)
    status = as_object(response.get("txn_status"), f"{where}.txnstatus_response.txn_status")
    here = f"{where}.txnstatus_response.txn_status"
    about = as_str(status.get("transaction_id"))
    results: list[SearchResult] = []
    beneficiaries: list[Record] = []
    subscribe = unsubscribe = None
    if "search_response" in status:
        results = list(read_search_response(status, here).results.values())
        known = not _only_unknown([(r.status, r.reason_code) for r in results])
    elif "subscribe_response" in status:
        subscribe = read_subscribe_response(status, here)
        known = not _only_unknown([(i.status, i.reason_code) for i in subscribe.items])
    elif "subscription_status" in status or txn_type == "unsubscribe":
        unsubscribe = read_unsubscribe_response(status, here)
        known = not (
            unsubscribe.status == RequestStatus.REJECTED.value
            and not unsubscribe.subscription_status
        )
    elif "receipt_information" in status:
        info = as_object(status["receipt_information"], f"{here}.receipt_information")
        beneficiaries = [
            Record(b, "Beneficiary")
            for b in as_list(info.get("beneficiaries"), f"{here}.receipt_information")
            if isinstance(b, dict)
        ]
        known = True
    else:
        raise ProtocolError(
            f"{here} holds none of search_response, subscribe_response, subscription_status "
            "or receipt_information"
        )
    return TxnStatusResult(
        transaction_id=transaction_id,
        correlation_id=correlation_id,
        txn_type=txn_type,
        known=known,
        results=results,
        beneficiaries=beneficiaries,
        subscribe=subscribe,
        unsubscribe=unsubscribe,
        about_transaction_id=about,
        raw=message,
    )


def _only_unknown(items: list[tuple[str | None, str | None]]) -> bool:
    """One rejected item saying the reference is unknown: what dcihub (and the spec's
    reason codes) answer for a transaction the registry does not know."""
    return len(items) == 1 and items[0] == ("rjct", "rjct.reference_id.invalid")


def read_notification(
    header: dict[str, Any], message: dict[str, Any], where: str = "message"
) -> Notification:
    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    # An event type outside the registry's contract enum is left out of `data` and named in
    # `header.meta.reg_event_types` (dcihub: one event type per notification).
    named = meta.get("reg_event_types")
    fallback = named[0] if isinstance(named, list) and len(named) == 1 else None
    events = []
    for index, raw in enumerate(as_list(message.get("notify_event"), f"{where}.notify_event")):
        here = f"{where}.notify_event[{index}]"
        raw = as_object(raw, here)
        data = as_object(raw.get("data") or {}, f"{here}.data")
        records, record_type = read_records(data, f"{here}.data")
        events.append(
            NotifyEvent(
                reference_id=as_str(raw.get("reference_id")) or str(index),
                timestamp=as_str(raw.get("timestamp")),
                reg_type=as_str(data.get("reg_type")),
                reg_event_type=as_str(data.get("reg_event_type")) or as_str(fallback),
                reg_record_type=as_str(data.get("reg_record_type")) or record_type,
                records=records,
                locale=as_str(raw.get("locale")),
            )
        )
    codes: list[str] = []
    for key in ("subscription_codes", "subscription_code"):
        value = meta.get(key)
        if isinstance(value, str):
            codes.append(value)
        elif isinstance(value, list):
            codes.extend(str(v) for v in value)
    return Notification(
        transaction_id=as_str(message.get("transaction_id")) or "",
        message_id=str(header.get("message_id") or ""),
        sender_id=as_str(header.get("sender_id")),
        events=events,
        subscription_codes=codes,
        raw=message,
    )


def read_item_statuses(items: list[dict[str, Any]]) -> list[ItemStatus]:
    return [
        ItemStatus(
            as_str(i.get("reference_id")) or str(n),
            as_str(i.get("status")) or "",
            as_str(i.get("status_reason_code")),
            as_str(i.get("status_reason_message")),
        )
        for n, i in enumerate(items)
    ]
