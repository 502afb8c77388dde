"""Errors raised by the security layer, in the standard's own terms.

Every refusal carries the spec's `err.*` code (DIGEST §2.6), a message a person can act on, and
the HTTP status the server should answer with. The server maps them onto an ERR ack (or an
`HttpErrorResponse` for 401/403) without having to know which check failed.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from dcihub.standard.codes import ErrorCode


class SecurityError(Exception):
    """Base class: something a caller (or an operator's configuration) got wrong."""

    default_code: ClassVar[str] = ErrorCode.REQUEST_BAD
    default_status: ClassVar[int] = 400

    code: str  # the spec's err.* code
    message: str  # what the caller can act on (at most 999 characters, as the spec allows)
    http_status: int

    def __init__(
        self, message: str, *, code: str | ErrorCode | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = str(code or self.default_code)
        self.message = message[:999]
        self.http_status = http_status or self.default_status

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class SignatureError(SecurityError):
    """The `signature` of a message is missing (`err.signature.missing`) or does not verify."""

    default_code = ErrorCode.SIGNATURE_INVALID


class EncryptionError(SecurityError):
    """An `EncryptedMessage` cannot be built or decrypted (`err.encryption.invalid`)."""

    default_code = ErrorCode.ENCRYPTION_INVALID


class SenderUriError(SecurityError):
    """A callback URL is not one this partner registered, or points at a refused address."""

    default_code = ErrorCode.SENDER_URI_INVALID


TokenErrorKind = Literal[
    "missing", "malformed", "expired", "not_yet_valid", "invalid_signature", "wrong_issuer"
]


class TokenError(SecurityError):
    """A bearer token is refused; `kind` says why (answered with HTTP 401)."""

    default_code = ErrorCode.REQUEST_UNAUTHORIZED
    default_status = 401
    KINDS: ClassVar[tuple[str, ...]] = get_args(TokenErrorKind)

    kind: TokenErrorKind

    def __init__(self, kind: TokenErrorKind, message: str) -> None:
        if kind not in self.KINDS:  # pragma: no cover - programming error
            raise ValueError(f"unknown token error kind {kind!r}")
        super().__init__(message)
        self.kind = kind


class TokenFetchError(SecurityError):
    """dcihub, as a client, could not obtain a token from a partner's token endpoint."""

    default_code = ErrorCode.REQUEST_UNAUTHORIZED
    default_status = 502


class KeyStoreError(SecurityError):
    """The local key directory is unusable (e.g. private key files readable by others).

    An operator problem, not a caller's: the server should refuse to start.
    """

    default_code = ErrorCode.SERVICE_UNAVAILABLE
    default_status = 503


class PartnerConfigError(SecurityError):
    """The partner registry file or a partner entry is invalid."""

    default_code = ErrorCode.SERVICE_UNAVAILABLE
    default_status = 503
