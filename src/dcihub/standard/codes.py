"""Status, error and reason codes of the DCI API standard (DIGEST §2.6-2.7)."""

from __future__ import annotations

from enum import StrEnum


class Ack(StrEnum):
    ACK = "ACK"
    NACK = "NACK"
    ERR = "ERR"


class RequestStatus(StrEnum):
    RECEIVED = "rcvd"
    PENDING = "pdng"
    SUCCESS = "succ"
    REJECTED = "rjct"


class ErrorCode(StrEnum):
    """`Error.code`: transport and envelope level errors carried in an ERR ack."""

    REQUEST_BAD = "err.request.bad"
    REQUEST_UNAUTHORIZED = "err.request.unauthorized"
    REQUEST_FORBIDDEN = "err.request.forbidden"
    REQUEST_NOT_FOUND = "err.request.not_found"
    REQUEST_TIMEOUT = "err.request.timeout"
    VERSION_NOT_SUPPORTED = "err.version.not_supported"
    TOO_MANY_REQUESTS = "err.request.too_many_requests"
    SENDER_ID_INVALID = "err.sender_id.invalid"
    SENDER_URI_INVALID = "err.sender_uri.invalid"
    RECEIVER_ID_INVALID = "err.receiver_id.invalid"
    SIGNATURE_MISSING = "err.signature.missing"
    SIGNATURE_INVALID = "err.signature.invalid"
    ENCRYPTION_INVALID = "err.encryption.invalid"
    SERVICE_UNAVAILABLE = "err.service.unavailable"


class HeaderReason(StrEnum):
    """`MsgHeaderStatusReasonCode`: why a whole message was rejected (callback header)."""

    VERSION_INVALID = "rjct.version.invalid"
    MESSAGE_ID_DUPLICATE = "rjct.message_id.duplicate"
    MESSAGE_TS_INVALID = "rjct.message_ts.invalid"
    ACTION_INVALID = "rjct.action.invalid"
    ACTION_NOT_SUPPORTED = "rjct.action.not_supported"
    TOTAL_COUNT_INVALID = "rjct.total_count.invalid"
    TOTAL_COUNT_LIMIT_EXCEEDED = "rjct.total_count.limit_exceeded"
    ERRORS_TOO_MANY = "rjct.errors.too_many"


class SearchReason(StrEnum):
    """`SearchStatusReasonCode`: why one search item was rejected."""

    REFERENCE_ID_INVALID = "rjct.reference_id.invalid"
    REFERENCE_ID_DUPLICATE = "rjct.reference_id.duplicate"
    TIMESTAMP_INVALID = "rjct.timestamp.invalid"
    SEARCH_CRITERIA_INVALID = "rjct.search_criteria.invalid"
    FILTER_INVALID = "rjct.filter.invalid"
    SORT_INVALID = "rjct.sort.invalid"
    PAGINATION_INVALID = "rjct.pagination.invalid"
    TOO_MANY_RECORDS = "rjct.search.too_many_records_found"


class NotifyReason(StrEnum):
    """Why one item of a notification sent to a registry (an IBR enrolment update) was
    rejected: the standard has no list of its own for these, so the codes of its lists that
    say what is wrong (DIGEST §2.7)."""

    REFERENCE_ID_INVALID = "rjct.reference_id.invalid"
    REFERENCE_ID_DUPLICATE = "rjct.reference_id.duplicate"
    PERSON_ID_INVALID = "rjct.person_id.invalid"  # no usable identifier of the beneficiary
    NOTIFY_DETAILS_INVALID = "rjct.notify_details.invalid"  # the content: model, codes, sizes


class SubscribeReason(StrEnum):
    REFERENCE_ID_INVALID = "rjct.reference_id.invalid"
    REFERENCE_ID_DUPLICATE = "rjct.reference_id.duplicate"
    TIMESTAMP_INVALID = "rjct.timestamp.invalid"
    NOTIFY_TYPES_INVALID = "rjct.notify_types.invalid"
    NOTIFY_DETAILS_INVALID = "rjct.notify_details.invalid"
    PERSON_ID_INVALID = "rjct.person_id.invalid"
    EVENT_ALREADY_SUBSCRIBED = "rjct.event.already_subscribed"


class UnsubscribeReason(StrEnum):
    REFERENCE_ID_INVALID = "rjct.reference_id.invalid"
    REFERENCE_ID_DUPLICATE = "rjct.reference_id.duplicate"
    TIMESTAMP_INVALID = "rjct.timestamp.invalid"
    SUBSCRIPTION_CODE_INVALID = "rjct.subscription_code.invalid"
    REQUESTER_INVALID = "rjct.requester.invalid"
    EVENT_ALREADY_UNSUBSCRIBED = "rjct.event.already_unsubscribed"


class SubscriptionStatus(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


class SortOrder(StrEnum):
    ASC = "asc"
    DESC = "desc"


class Action(StrEnum):
    SEARCH = "search"
    ON_SEARCH = "on-search"
    SUBSCRIBE = "subscribe"
    ON_SUBSCRIBE = "on-subscribe"
    NOTIFY = "notify"
    UNSUBSCRIBE = "unsubscribe"
    ON_UNSUBSCRIBE = "on-unsubscribe"
    TXN_STATUS = "txn-status"
    TXN_ON_STATUS = "txn-on-status"


class QueryType(StrEnum):
    IDTYPE_VALUE = "idtype-value"
    EXPRESSION = "expression"
    PREDICATE = "predicate"
    GRAPHQL = "graphql"


class Operator(StrEnum):
    GT = "gt"
    LT = "lt"
    EQ = "eq"
    GE = "ge"
    LE = "le"
    IN = "in"


class Condition(StrEnum):
    AND = "and"
    OR = "or"
    NOT = "not"


class TxnType(StrEnum):
    SEARCH = "search"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    RECEIPT = "receipt"


class TxnAttributeType(StrEnum):
    TRANSACTION_ID = "transaction_id"
    REFERENCE_ID_LIST = "reference_id_list"
    CORRELATION_ID = "correlation_id"
    SUBSCRIPTION_CODE_LIST = "subscription_code_list"
