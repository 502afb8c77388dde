"""Errors a caller can cause, expressed in the standard's own terms.

`DCIError` rejects a whole message (HTTP 4xx with an ERR ack carrying an `err.*` code);
`ItemRejected` rejects one item of a batch (`status: rjct` with an item reason code) while the
other items are still answered.
"""

from __future__ import annotations

from .codes import ErrorCode


class DCIError(Exception):
    """A whole message is refused: answered with an ERR ack and an `err.*` code."""

    code: str  # the spec's err.* code
    message: str  # what the caller can act on (at most 999 characters, as the spec allows)
    http_status: int

    def __init__(self, code: str | ErrorCode, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message[:999]
        self.http_status = http_status

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"DCIError({self.code!r}, {self.message!r}, {self.http_status})"


class ItemRejected(Exception):
    """One item of a batch is refused with an item-level `rjct.*` reason code."""

    code: str  # the item's rjct.* reason code
    message: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message[:999]

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ItemRejected({self.code!r}, {self.message!r})"


def bad_request(message: str) -> DCIError:
    return DCIError(ErrorCode.REQUEST_BAD, message, 400)


class MessageRejected(DCIError):
    """A whole message refused with a `MsgHeaderStatusReasonCode` (e.g. rjct.message_ts.invalid).

    A sync endpoint answers with its response envelope whose header has status 'rjct' and the
    reason code; an async endpoint answers with an ERR ack (err.request.bad) naming the code."""

    reason: str  # the MsgHeaderStatusReasonCode
    detail: str  # its status_reason_message

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(ErrorCode.REQUEST_BAD, f"{reason}: {message}", 400)
        self.reason = reason
        self.detail = message[:999]
