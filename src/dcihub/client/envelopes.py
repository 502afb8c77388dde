"""Reading what a registry sends back, without I/O: acks, and envelopes (sync replies and
callbacks alike) — verified with the registry's keys, their header checked, decrypted.

Shared by the clients (`ClientCore.parse_reply` / `open_reply`) and the `CallbackReceiver`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from dcihub.security.errors import EncryptionError, SecurityError
from dcihub.security.jwe import decrypt_message, is_encrypted_message
from dcihub.security.signatures import KeyResolver, SignatureInfo, verify
from dcihub.standard.codes import Ack as AckStatus
from dcihub.standard.codes import Action, ErrorCode, RequestStatus
from dcihub.standard.envelope import (
    SUPPORTED_VERSIONS,
    MsgCallbackHeader,
    MsgHeader,
    describe_validation_error,
)

from .errors import DecryptionError, ProtocolError, RejectedError, SignatureVerificationError
from .keys import OwnKeys
from .results import Ack, as_str

__all__ = [
    "new_id",
    "RawReply",
    "Opened",
    "open_envelope",
    "check_rejected",
    "check_transaction",
    "read_header",
    "read_ack",
]

# Actions older registries put on replies (DIGEST §6 #11: samples answer `search`).
_LEGACY_REPLY_ACTIONS = {
    Action.ON_SEARCH.value: {Action.SEARCH.value},
    Action.TXN_ON_STATUS.value: {Action.TXN_STATUS.value},
    Action.ON_SUBSCRIBE.value: {Action.SUBSCRIBE.value},
    Action.ON_UNSUBSCRIBE.value: {Action.UNSUBSCRIBE.value},
    "on-notify": {Action.NOTIFY.value},
}


# Callbacks whose contract gives them the request header (DIGEST §6 #7).
_REQUEST_HEADER_CALLBACKS = (Action.ON_SUBSCRIBE.value, Action.ON_UNSUBSCRIBE.value)


def new_id() -> str:
    """A fresh message / transaction / reference id: a UUIDv7 (time-ordered, RFC 9562)."""
    h = f"{time.time_ns() // 1_000_000:012x}" + os.urandom(10).hex()
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


@dataclass
class RawReply:
    """A parsed HTTP answer: either an ack or an envelope still to be opened."""

    status: int
    ack: Ack | None = None
    body: dict[str, Any] = field(default_factory=dict)
    signature: str | None = None
    info: SignatureInfo | None = None
    bare: bool = False  # a bare response message without an envelope (accepted unverified)

    @property
    def kid(self) -> str | None:
        return self.info.kid if self.info is not None else None


@dataclass
class Opened:
    """A verified, decrypted envelope."""

    header: dict[str, Any]
    message: dict[str, Any]
    signed_by: str | None  # "<profile>:<kid>", or None when not signed (and not required)
    http_status: int | None = None

    @property
    def sender_id(self) -> str | None:
        return as_str(self.header.get("sender_id"))


def open_envelope(
    body: dict[str, Any],
    *,
    expected_action: str,
    resolve: KeyResolver | None,
    keys: OwnKeys,
    require_signature: bool,
    info: SignatureInfo | None = None,
    http_status: int | None = None,
) -> Opened:
    """Verify the signature, check the header and decrypt the message of an envelope.

    Raises SignatureVerificationError, ProtocolError or DecryptionError. A header saying the
    whole message was rejected is not raised here (`check_rejected` does): a callback carrying
    a rejection is still a well-formed callback."""
    raw_header = body.get("header")
    if not isinstance(raw_header, dict):
        raise ProtocolError("the envelope's 'header' is not a JSON object")
    message = body.get("message")
    signature = body.get("signature")
    signed_by = None
    if signature is not None and not isinstance(signature, str):
        raise SignatureVerificationError("the envelope's 'signature' is not a string")
    if signature:
        if resolve is None:
            raise SignatureVerificationError(
                "the envelope is signed but the registry's keys are unknown (jwks_url)"
            )
        try:
            verified = verify(signature, raw_header, message, resolve, info=info)
        except SecurityError as exc:
            raise SignatureVerificationError(
                f"the {_what(expected_action)} signature does not verify: {exc.message}"
            ) from None
        signed_by = f"{verified.profile}:{verified.kid}"
    elif require_signature:
        raise SignatureVerificationError(
            f"the {_what(expected_action)} is not signed; a registry must sign its replies and "
            "callbacks (verify_replies=False accepts unsigned ones)",
            code=ErrorCode.SIGNATURE_MISSING.value,
        )
    header = read_header(raw_header, expected_action)
    if raw_header.get("is_msg_encrypted") is True or is_encrypted_message(message):
        if not is_encrypted_message(message):
            raise DecryptionError(
                "header.is_msg_encrypted is true but the message is not an EncryptedMessage"
            )
        assert isinstance(message, dict)
        if not keys.decryption:
            raise DecryptionError(
                "the message is encrypted but the client has no decryption key (keys_file)"
            )
        try:
            message = decrypt_message(message, keys.decryption_key)
        except EncryptionError as exc:
            raise DecryptionError(f"cannot decrypt the {_what(expected_action)}: {exc}") from None
    if message is None:
        message = {}
    if not isinstance(message, dict):
        raise ProtocolError(f"the {_what(expected_action)}'s message is not a JSON object")
    return Opened(header, message, signed_by, http_status)


def check_rejected(opened: Opened) -> Opened:
    """Raise RejectedError when the header says the whole message was rejected."""
    header = opened.header
    if header.get("status") == RequestStatus.REJECTED.value:
        raise RejectedError(
            as_str(header.get("status_reason_code")),
            as_str(header.get("status_reason_message")),
            http_status=opened.http_status,
        )
    return opened


def _what(action: str) -> str:
    return "reply" if action in ("on-search", "txn-on-status", "on-notify") else action


def read_header(raw: dict[str, Any], expected_action: str) -> dict[str, Any]:
    """Check a reply or callback header (callback or request header, DIGEST §6 #7)."""
    model: type[MsgCallbackHeader] | type[MsgHeader] = MsgCallbackHeader
    if "status" not in raw and expected_action in _REQUEST_HEADER_CALLBACKS:
        model = MsgHeader  # on-subscribe / on-unsubscribe carry the request header
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        raise ProtocolError(describe_validation_error(exc, "header")) from None
    if parsed.version not in SUPPORTED_VERSIONS:
        raise ProtocolError(f"header.version {parsed.version!r} is not 1.0.0")
    allowed = {expected_action, *_LEGACY_REPLY_ACTIONS.get(expected_action, ())}
    if parsed.action not in allowed:
        raise ProtocolError(
            f"header.action is {parsed.action!r}; expected {expected_action!r} here"
        )
    return {**raw, "total_count": getattr(parsed, "total_count", None)}


def check_transaction(opened: Opened, transaction_id: str) -> None:
    got = opened.message.get("transaction_id")
    if got is not None and got != transaction_id:
        raise ProtocolError(
            f"the reply is about transaction {got!r}, not {transaction_id!r} (the one sent)"
        )


def read_ack(message: dict[str, Any], status: int) -> Ack:
    ack_status = as_str(message.get("ack_status"))
    if ack_status not in (AckStatus.ACK.value, AckStatus.NACK.value, AckStatus.ERR.value):
        raise ProtocolError(
            f"the ack's ack_status is {message.get('ack_status')!r}; expected ACK, NACK or ERR "
            f"(HTTP {status})"
        )
    return Ack(ack_status, as_str(message.get("correlation_id")), as_str(message.get("timestamp")))
