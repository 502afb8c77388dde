"""The DCI message envelope: `{signature, header, message}`, request and callback headers, acks.

Parsing is lenient toward the older shapes listed in DIGEST §6 (empty strings for optional
fields, `total_count` sent as a string, `meta: ""`) and strict about what the newest contracts
require: ids of at most 99 characters, timestamps with a timezone, a supported version, and an
`action` that matches the path. Everything a caller can get wrong raises `DCIError` with a
message that names the field.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from .codes import Ack, ErrorCode, RequestStatus
from .errors import DCIError

ID_MAX_LENGTH = 99
MESSAGE_MAX_LENGTH = 999
SUPPORTED_VERSIONS = frozenset({"1.0.0", "1.0"})


# ---------------------------------------------------------------------------------------------
# Small validators shared by all message models


def parse_timestamp(value: Any) -> datetime:
    """Parse an RFC 3339 / ISO 8601 date-time that carries a timezone.

    Raises ValueError with a human-readable reason otherwise.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("must be an ISO 8601 date-time string with a timezone")
    text = value.strip()
    if "T" not in text and " " not in text:
        raise ValueError(f"'{value}' is a date, not a date-time; send e.g. '{text}T00:00:00Z'")
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"'{value}' is not an ISO 8601 date-time (example: 2025-01-15T10:30:00+00:00)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"'{value}' has no timezone; add 'Z' or an offset such as '+00:00'")
    return parsed


def check_id(value: Any, field: str = "id") -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > ID_MAX_LENGTH:
        raise ValueError(f"is {len(value)} characters long; the maximum is {ID_MAX_LENGTH}")
    if has_control_chars(value):
        raise ValueError("must not contain control characters (such as NUL)")
    return value


def has_control_chars(text: str) -> bool:
    """True if `text` holds a C0 control character or DEL (NUL cannot even be stored in
    PostgreSQL text)."""
    return not text.isprintable() and any(ord(c) < 32 or ord(c) == 127 for c in text)


def now_utc() -> datetime:
    return datetime.now(UTC)


_last_ts: tuple[int, str] = (0, "")


def format_ts(moment: datetime | None = None) -> str:
    """Timestamps dcihub emits: UTC, millisecond precision, 'Z' for the offset."""
    global _last_ts
    if moment is None:
        millis = time.time_ns() // 1_000_000
        cached_millis, text = _last_ts
        if millis == cached_millis:
            return text
        moment = datetime.fromtimestamp(millis / 1000, UTC)
        text = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _last_ts = (millis, text)
        return text
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def blank_to_none(data: Any, fields: tuple[str, ...]) -> Any:
    """Older samples send "" for absent optional members; treat those as absent."""
    if isinstance(data, dict) and "" in data.values():
        for name in fields:
            if data.get(name) == "":
                data = {k: v for k, v in data.items() if k != name}
    return data


# ---------------------------------------------------------------------------------------------
# Field types shared by every message model


def _timestamp(value: str) -> str:
    parse_timestamp(value)
    return value


def _uri(value: str) -> str:
    if has_control_chars(value) or len(value) > 2000:
        raise ValueError("must be a URL of at most 2000 characters without control characters")
    return value


def _not_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must not be negative")
    return value


Id = Annotated[str, AfterValidator(check_id)]
Timestamp = Annotated[str, AfterValidator(_timestamp)]
Uri = Annotated[str, AfterValidator(_uri)]
Count = Annotated[int, AfterValidator(_not_negative)]


class LenientModel(BaseModel):
    """Base of the models dcihub reads: "" in an optional member means absent (older
    samples). Unknown members are ignored (headers keep them: `extra="allow"`)."""

    model_config = ConfigDict(extra="ignore")
    __optional_fields__: ClassVar[tuple[str, ...]] = ()  # set for each model class

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.__optional_fields__ = tuple(
            name for name, f in cls.model_fields.items() if not f.is_required()
        )

    @model_validator(mode="before")
    @classmethod
    def _blanks(cls, data: Any) -> Any:
        return blank_to_none(data, cls.__dict__.get("__optional_fields__", ()))


# ---------------------------------------------------------------------------------------------
# Headers


class MsgHeader(LenientModel):
    """`MsgHeader_V1.0.0`: header of requests (and of on-subscribe / on-unsubscribe)."""

    model_config = ConfigDict(extra="allow")

    version: str = "1.0.0"
    message_id: Id
    message_ts: Timestamp
    action: str
    sender_id: Id
    sender_uri: Uri | None = None
    receiver_id: str | None = None
    total_count: Count
    is_msg_encrypted: bool = False
    meta: dict[str, Any] | None = None


class MsgCallbackHeader(LenientModel):
    """`MsgCallbackHeader_V1.0.0`: header of callbacks, notifications and sync responses."""

    model_config = ConfigDict(extra="allow")

    version: str = "1.0.0"
    message_id: Id
    message_ts: Timestamp
    action: str
    status: RequestStatus
    status_reason_code: str | None = None
    status_reason_message: str | None = None
    total_count: Count | None = None
    completed_count: Count | None = None
    sender_id: Id | None = None
    receiver_id: str | None = None
    is_msg_encrypted: bool = False
    meta: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# Turning pydantic errors into messages a person can act on


def describe_validation_error(exc: ValidationError, prefix: str) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ""
        for part in (prefix, *err["loc"]):
            if isinstance(part, int):
                loc += f"[{part}]"
            elif part != "":
                loc += f".{part}" if loc else str(part)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] in ("int_parsing", "int_type", "int_from_float"):
            msg = f"must be an integer (got {err.get('input')!r})"
        elif err["type"] in ("bool_parsing", "bool_type"):
            msg = f"must be true or false (got {err.get('input')!r})"
        elif err["type"] in ("string_type",):
            msg = f"must be a string (got {type(err.get('input')).__name__})"
        elif err["type"] in ("dict_type", "model_type"):
            msg = f"must be a JSON object (got {type(err.get('input')).__name__})"
        elif err["type"] in ("list_type",):
            msg = f"must be a JSON array (got {type(err.get('input')).__name__})"
        elif err["type"] in ("literal_error", "enum"):
            msg = f"is {err.get('input')!r}; it {msg.replace('Input should', 'should', 1)}"
        parts.append(f"{loc} {msg}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more problem(s)")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Envelope parsing


def split_envelope(body: Any) -> tuple[dict[str, Any], Any, str | None]:
    """Return (raw header, raw message, signature) or raise DCIError (err.request.bad)."""
    if not isinstance(body, dict):
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            "the body must be a JSON object with 'header' and 'message'",
        )
    header = body.get("header")
    if header is None:
        raise DCIError(ErrorCode.REQUEST_BAD, "the envelope has no 'header'")
    if not isinstance(header, dict):
        raise DCIError(ErrorCode.REQUEST_BAD, "'header' must be a JSON object")
    if "message" not in body or body.get("message") is None:
        raise DCIError(ErrorCode.REQUEST_BAD, "the envelope has no 'message'")
    signature = body.get("signature")
    if signature is not None and not isinstance(signature, str):
        raise DCIError(ErrorCode.REQUEST_BAD, "'signature' must be a string")
    return header, body["message"], signature or None


def parse_request_header(raw: dict[str, Any], expected_action: str) -> MsgHeader:
    """Validate a request header and check its action against the path."""
    try:
        header = MsgHeader.model_validate(raw)
    except ValidationError as exc:
        raise DCIError(ErrorCode.REQUEST_BAD, describe_validation_error(exc, "header")) from None
    check_version(header.version)
    check_action(header.action, expected_action)
    return header


def parse_callback_header(raw: dict[str, Any], expected_action: str) -> MsgCallbackHeader:
    try:
        header = MsgCallbackHeader.model_validate(raw)
    except ValidationError as exc:
        raise DCIError(ErrorCode.REQUEST_BAD, describe_validation_error(exc, "header")) from None
    check_version(header.version)
    check_action(header.action, expected_action)
    return header


def check_version(version: str) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise DCIError(
            ErrorCode.VERSION_NOT_SUPPORTED,
            f"header.version '{version}' is not supported; this registry speaks 1.0.0",
        )


def check_action(action: str, expected: str) -> None:
    if action != expected:
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            f"header.action is '{action}' but this endpoint expects '{expected}' "
            "(rjct.action.invalid)",
        )


# ---------------------------------------------------------------------------------------------
# Building what dcihub emits (always the newest shape)


def ack(correlation_id: str, timestamp: str | None = None) -> dict[str, Any]:
    return {
        "message": {
            "ack_status": Ack.ACK.value,
            "timestamp": timestamp or format_ts(),
            "correlation_id": correlation_id,
        }
    }


def err_ack(
    code: str, message: str, correlation_id: str, timestamp: str | None = None
) -> dict[str, Any]:
    return {
        "message": {
            "ack_status": Ack.ERR.value,
            "timestamp": timestamp or format_ts(),
            "correlation_id": correlation_id,
            "error": {"code": code, "message": message[:MESSAGE_MAX_LENGTH]},
        }
    }


def http_error_body(code: str, message: str) -> dict[str, Any]:
    """`HttpErrorResponse` used for 401/403 at the HTTP layer."""
    return {"errors": [{"code": code, "message": message[:MESSAGE_MAX_LENGTH]}]}


def callback_header(
    *,
    message_id: str,
    action: str,
    status: str,
    sender_id: str,
    receiver_id: str | None,
    total_count: int,
    completed_count: int,
    reason_code: str | None = None,
    reason_message: str | None = None,
    timestamp: str | None = None,
    is_msg_encrypted: bool = False,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    header: dict[str, Any] = {
        "version": "1.0.0",
        "message_id": message_id,
        "message_ts": timestamp or format_ts(),
        "action": action,
        "status": str(status),  # a plain str (RequestStatus is a StrEnum): canonical JSON
        "total_count": total_count,
        "completed_count": completed_count,
        "sender_id": sender_id,
        "is_msg_encrypted": is_msg_encrypted,
    }
    if receiver_id:
        header["receiver_id"] = receiver_id
    if reason_code:
        header["status_reason_code"] = reason_code
    if reason_message:
        header["status_reason_message"] = reason_message[:MESSAGE_MAX_LENGTH]
    if meta:
        header["meta"] = meta
    return header
