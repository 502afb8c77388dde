"""What can go wrong when a programme talks to a DCI registry, as typed exceptions.

Every exception is a `DCIClientError`, carries the `transaction_id` and `message_id` of the
message it is about (None when it happened before a message existed, e.g. a bad setting) and
prints as one readable line, never a traceback's worth of internals:

    DCIClientError
    ├── ConfigurationError          a setting is missing or wrong (no key, no URL, bad file)
    ├── TransportError              the registry could not be reached (refused, DNS, reset)
    │   └── RequestTimeout          no answer within the timeout
    ├── HTTPStatusError             an HTTP error that is not a DCI answer (a proxy's 502, …)
    ├── AuthenticationError         the token endpoint refused the client's credentials
    ├── ErrAckError                 the registry answered an ERR (or NACK) ack: code, message
    ├── RejectedError               a rejected item (`rjct` + reason code) or a rejected header
    ├── SignatureVerificationError  a reply's signature is missing or does not verify
    ├── DecryptionError             an encrypted reply cannot be decrypted
    ├── ProtocolError               a reply the client cannot read (says what it did not accept)
    └── CallbackTimeout             the callback of an asynchronous request did not arrive

`code` is the standard's `err.*` code where one applies (the callback receiver answers with
it); `http_status` is the HTTP status of the reply that caused the error, when there was one.
"""

from __future__ import annotations

__all__ = [
    "DCIClientError",
    "ConfigurationError",
    "TransportError",
    "RequestTimeout",
    "HTTPStatusError",
    "AuthenticationError",
    "ErrAckError",
    "RejectedError",
    "SignatureVerificationError",
    "DecryptionError",
    "ProtocolError",
    "CallbackTimeout",
]


class DCIClientError(Exception):
    """Base of every error of `dcihub.client`."""

    default_code: str = "err.request.bad"

    message: str
    transaction_id: str | None
    message_id: str | None
    code: str
    http_status: int | None

    def __init__(
        self,
        message: str,
        *,
        transaction_id: str | None = None,
        message_id: str | None = None,
        code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())  # one line, whatever the source said
        self.transaction_id = transaction_id
        self.message_id = message_id
        self.code = code or self.default_code
        self.http_status = http_status

    def __str__(self) -> str:
        return self.message + self._context()

    def _context(self) -> str:
        parts = []
        if self.transaction_id:
            parts.append(f"transaction {self.transaction_id}")
        if self.message_id:
            parts.append(f"message {self.message_id}")
        return f" [{', '.join(parts)}]" if parts else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"

    def with_ids(self, transaction_id: str | None, message_id: str | None) -> DCIClientError:
        """Fill in the ids of the message this error is about (when not known already)."""
        self.transaction_id = self.transaction_id or transaction_id
        self.message_id = self.message_id or message_id
        return self


class ConfigurationError(DCIClientError):
    """A setting is missing or wrong; nothing was sent."""


class TransportError(DCIClientError):
    """The registry (or its token endpoint, or its JWKS) could not be reached."""

    default_code = "err.service.unavailable"

    url: str | None

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        transaction_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        super().__init__(message, transaction_id=transaction_id, message_id=message_id)
        self.url = url


class RequestTimeout(TransportError):
    """No answer within the client's timeout (the registry may still process the message:
    `txn_status` tells)."""

    default_code = "err.request.timeout"


class HTTPStatusError(DCIClientError):
    """An HTTP error status whose body is not a DCI answer (e.g. a gateway's 502 page)."""

    body: str

    def __init__(
        self,
        message: str,
        *,
        http_status: int,
        body: str = "",
        transaction_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            http_status=http_status,
            transaction_id=transaction_id,
            message_id=message_id,
        )
        self.body = body


class AuthenticationError(DCIClientError):
    """The token endpoint refused the client's credentials, or the registry kept refusing the
    access token (401) after one fresh token."""

    default_code = "err.request.unauthorized"


class ErrAckError(DCIClientError):
    """The registry refused the whole message with an ERR ack (`code` is its `err.*` code,
    `detail` its message), or answered NACK (`ack_status` 'NACK': no callback will follow)."""

    detail: str
    ack_status: str
    correlation_id: str | None

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        http_status: int | None = None,
        ack_status: str = "ERR",
        correlation_id: str | None = None,
        transaction_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        where = f" (HTTP {http_status})" if http_status else ""
        super().__init__(
            f"the registry refused the message{where}: {code}: {detail}",
            code=code,
            http_status=http_status,
            transaction_id=transaction_id,
            message_id=message_id,
        )
        self.detail = detail
        self.ack_status = ack_status
        self.correlation_id = correlation_id


class RejectedError(DCIClientError):
    """A rejected item (`status: rjct`) or a rejected message header: `reason_code` is the
    standard's `rjct.*` code, `reason_message` the registry's explanation, `reference_id` the
    item's (None for a header rejection)."""

    reason_code: str
    reason_message: str
    reference_id: str | None

    def __init__(
        self,
        reason_code: str | None,
        reason_message: str | None,
        *,
        reference_id: str | None = None,
        http_status: int | None = None,
        transaction_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        code = reason_code or "rjct"
        what = f"item {reference_id}" if reference_id else "the message"
        text = f"the registry rejected {what}: {code}"
        if reason_message:
            text += f": {reason_message}"
        super().__init__(
            text,
            code="err.request.bad",
            http_status=http_status,
            transaction_id=transaction_id,
            message_id=message_id,
        )
        self.reason_code = code
        self.reason_message = reason_message or ""
        self.reference_id = reference_id


class SignatureVerificationError(DCIClientError):
    """A reply's (or callback's) signature is missing (`code` err.signature.missing) or does
    not verify with the registry's published keys (err.signature.invalid)."""

    default_code = "err.signature.invalid"


class DecryptionError(DCIClientError):
    """An encrypted message cannot be decrypted with the client's keys (or cannot be
    encrypted to the registry's)."""

    default_code = "err.encryption.invalid"


class ProtocolError(DCIClientError):
    """A reply (or callback) the client cannot read; the message names what it did not
    accept."""


class CallbackTimeout(DCIClientError):
    """The callback of an asynchronous request did not arrive in time (it may still come:
    `txn_status` tells where the transaction stands)."""

    default_code = "err.request.timeout"
