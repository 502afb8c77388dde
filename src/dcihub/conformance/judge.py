"""The judging vocabulary of the server checks: a check's context (`Ctx`: the session, the
receiver, what earlier checks learnt, the findings so far), and the judges every check uses
for an acknowledgement, a refusal, and a reply or callback envelope.

A finding is one verdict on one requirement (`Ctx.expect(requirement_id, ok, why)`); a
requirement fails when any finding on it failed, passes when it had findings and none failed,
and is skipped when no check could judge it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from dcihub.client.core import ClientCore
from dcihub.client.results import Record
from dcihub.security.signatures import verify
from dcihub.standard.codes import ErrorCode, RequestStatus
from dcihub.standard.envelope import MsgCallbackHeader, MsgHeader, describe_validation_error
from dcihub.standard.profiles import RegistryProfile
from dcihub.standard.profiles.base import canonical_id_type

from .contract import Contract, is_rfc3339_date_time
from .session import Callback, Exchange, Receiver, Session, Target

__all__ = ["Ctx", "Finding", "Skip", "error_code", "record_keys"]

STATUSES = {s.value for s in RequestStatus}
ERR_CODES = {c.value for c in ErrorCode}
SKEW = datetime.timedelta(minutes=5)
# the item lists of each reply message, to count its items
_ITEM_LISTS = ("search_response", "subscribe_response", "unsubscribe_response")
_REQUEST_HEADER_CALLBACKS = ("on-subscribe", "on-unsubscribe")


class Skip(Exception):
    """The check cannot run here (the message says why)."""


@dataclass
class Finding:
    requirement: str
    passed: bool
    detail: str
    exchange: int | None = None  # index into the check's exchanges


@dataclass
class Ctx:
    """What a check works with; `state` carries what earlier checks learnt (the known
    record, a finished transaction) to later ones."""

    session: Session
    receiver: Receiver
    profile: RegistryProfile
    core: ClientCore
    contract: Contract | None
    state: dict[str, Any]
    selected: set[str]  # the requirement ids this run judges
    findings: list[Finding] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    skips: dict[str, str] = field(default_factory=dict)  # requirement -> why it is not judged

    @property
    def target(self) -> Target:
        return self.session.target

    # -- findings ----------------------------------------------------------------------------

    def expect(
        self, requirement: str, ok: bool, why: str, exchange: Exchange | None = None
    ) -> bool:
        """Record a verdict on `requirement` (`why` says what was seen when it fails)."""
        if requirement in self.selected:
            index = None
            if exchange is not None and exchange in self.exchanges:
                index = self.exchanges.index(exchange)
            elif self.exchanges:
                index = len(self.exchanges) - 1
            self.findings.append(Finding(requirement, bool(ok), "" if ok else why, index))
        return bool(ok)

    def skip_requirement(self, requirement: str, why: str) -> None:
        """`requirement` cannot be judged here (it is reported skipped, saying why)."""
        self.skips[requirement] = why

    # -- exchanges ---------------------------------------------------------------------------

    def record(self, exchange: Exchange) -> Exchange:
        self.exchanges.append(exchange)
        return exchange

    def post(
        self, label: str, path: str, envelope: Any, token: str | None | bool = True
    ) -> Exchange:
        return self.record(self.session.post(label, path, envelope, token=token))

    def send(self, label: str, path: str, body: bytes, token: str | None | bool = True) -> Exchange:
        session = self.session
        return self.record(
            session.send_bytes(label, session.url(path), body, session.headers(token))
        )

    def callback_exchange(self, callback: Callback) -> Exchange:
        """A received callback shown as an exchange (the registry's request to the tester)."""
        exchange = Exchange(
            f"callback {callback.path}",
            "POST",
            self.receiver.callback_url(callback.path),
            callback.headers,
            callback.body,
            202,
        )
        return self.record(exchange)

    def reachable(self, exchange: Exchange) -> None:
        """Stop the check (it is judged on what it saw) when the registry did not answer."""
        if exchange.error is not None:
            raise Skip(f"the registry did not answer {exchange.url}: {exchange.error}")

    # -- judges ------------------------------------------------------------------------------

    def judge_ack(self, exchange: Exchange, path: str) -> dict[str, Any] | None:
        """ACK-001 (and CONTRACT-001): an HTTP 2xx ack with ack_status ACK; its message."""
        self.reachable(exchange)
        doc = exchange.json()
        message = doc.get("message") if isinstance(doc, dict) else None
        status = exchange.status or 0
        if not self.expect(
            "ACK-001",
            200 <= status < 300 and isinstance(message, dict),
            f"{path}: expected an HTTP 2xx ack, got HTTP {status}: {_brief(doc)}",
            exchange,
        ):
            return None
        assert isinstance(message, dict)
        ack_status = message.get("ack_status")
        self.expect(
            "ACK-001",
            ack_status == "ACK",
            f"{path}: ack_status is {ack_status!r}; ACK belongs to an accepted request",
            exchange,
        )
        if ack_status in ("ERR", "NACK"):
            return None  # no callback will follow
        assert isinstance(message, dict)
        self.expect(
            "ACK-001",
            isinstance(message.get("correlation_id"), str) and bool(message["correlation_id"]),
            f"{path}: the ack carries no correlation_id",
            exchange,
        )
        self.expect(
            "ACK-001",
            isinstance(message.get("timestamp"), str)
            and is_rfc3339_date_time(message["timestamp"]),
            f"{path}: the ack's timestamp {message.get('timestamp')!r} is not an RFC 3339 "
            "date-time",
            exchange,
        )
        self.check_contract_response(exchange, path, doc)
        return message

    def judge_refusal(
        self,
        exchange: Exchange,
        requirement: str,
        codes: tuple[str, ...] = (),
        statuses: tuple[int, ...] = (),
        what: str = "",
    ) -> bool:
        """`requirement`: the request was refused — HTTP 4xx (one of `statuses` when given)
        and, when `codes` are given, one of them named in the answer; ACK-002: a refusal
        carries a DCI error body. Never a 5xx."""
        self.reachable(exchange)
        status = exchange.status or 0
        doc = exchange.json()
        found = error_code(doc)
        if status >= 500:
            return self.expect(
                requirement,
                False,
                f"{what}: HTTP {status} (a server error) instead of a refusal: {_brief(doc)}",
                exchange,
            )
        refused = 400 <= status < 500 and (not statuses or status in statuses)
        if not refused and status < 300:
            # a sync endpoint may refuse with a rejected envelope or rejected items (HTTP 200)
            refused = bool(codes) and found in codes
        ok = self.expect(
            requirement,
            refused,
            f"{what}: expected a refusal (HTTP {'/'.join(map(str, statuses)) or '4xx'}), got "
            f"HTTP {status}: {_brief(doc)}",
            exchange,
        )
        if ok and codes:
            ok = self.expect(
                requirement,
                found in codes or any(_mentions(doc, code) for code in codes),
                f"{what}: refused (HTTP {status}) but with {found or 'no error code'} where "
                f"{' or '.join(codes)} belongs",
                exchange,
            )
        if 400 <= status < 500:
            self.expect(
                "ACK-002",
                found is not None,
                f"{what}: the HTTP {status} refusal carries no DCI error body (an ERR ack, an "
                f"HttpErrorResponse or a rejected envelope): {_brief(doc)}",
                exchange,
            )
        return ok

    def judge_envelope(
        self,
        exchange: Exchange,
        *,
        path: str,
        action: str,
        request_header: dict[str, Any],
        transaction_id: str | None,
        callback: bool = False,
    ) -> dict[str, Any] | None:
        """A sync reply or a callback: the envelope rules, the signature and the contract.
        Returns its message (decrypted), or None when there is none to read."""
        self.reachable(exchange)
        doc = exchange.json() if not callback else exchange.request_json()
        what = f"{'callback' if callback else 'reply to'} {path}"
        if not callback:
            status = exchange.status or 0
            if not self.expect(
                "SEARCH-SYNC-001" if path == "sync/search" else "CONTRACT-001",
                200 <= status < 300 and isinstance(doc, dict) and "header" in doc,
                f"{what}: expected an HTTP 2xx envelope, got HTTP {status}: {_brief(doc)}",
                exchange,
            ):
                return None
        if not isinstance(doc, dict) or not isinstance(doc.get("header"), dict):
            self.expect("CONTRACT-001", False, f"{what}: not an envelope: {_brief(doc)}", exchange)
            return None
        header: dict[str, Any] = doc["header"]
        message = doc.get("message")
        # signature
        signature = doc.get("signature")
        if not signature:
            self.expect("SEC-SIG-003", False, f"{what}: not signed (no signature)", exchange)
        elif self.session.resolver is None:
            self.expect(
                "SEC-SIG-003",
                False,
                f"{what}: signed, but the registry's JWKS could not be read "
                f"({self.session.jwks_error})",
                exchange,
            )
        else:
            try:
                verify(str(signature), header, message, self.session.resolver.resolve)
            except Exception as exc:  # noqa: BLE001 - SecurityError / a malformed signature
                self.expect(
                    "SEC-SIG-003", False, f"{what}: the signature does not verify: {exc}", exchange
                )
            else:
                self.expect("SEC-SIG-003", True, "", exchange)
        self.judge_header(exchange, header, action, request_header, what)
        # the message (decrypted)
        if header.get("is_msg_encrypted") is True and isinstance(message, dict):
            try:
                message = self.session.decrypt(message)
            except Exception as exc:  # noqa: BLE001 - EncryptionError / no key
                self.expect("SEC-ENC-001", False, f"{what}: cannot decrypt: {exc}", exchange)
                return None
        if callback:
            self.check_contract_request(exchange, path, {**doc, "message": message})
        else:
            self.check_contract_response(exchange, path, {**doc, "message": message})
        if not isinstance(message, dict):
            self.expect("CONTRACT-001", False, f"{what}: the message is not an object", exchange)
            return None
        if transaction_id is not None:
            self.expect(
                "ENV-TXN-001",
                message.get("transaction_id") == transaction_id,
                f"{what}: message.transaction_id is {message.get('transaction_id')!r}, not the "
                f"request's {transaction_id!r}",
                exchange,
            )
        if action not in _REQUEST_HEADER_CALLBACKS:
            corr = message.get("correlation_id")
            self.expect(
                "ENV-TXN-001",
                isinstance(corr, str) and bool(corr),
                f"{what}: the message carries no correlation_id",
                exchange,
            )
        self.judge_counts(exchange, header, message, what)
        return message

    def judge_header(
        self,
        exchange: Exchange,
        header: dict[str, Any],
        action: str,
        request_header: dict[str, Any],
        what: str,
    ) -> None:
        self.expect(
            "ENV-VERSION-001",
            header.get("version") == "1.0.0",
            f"{what}: header.version is {header.get('version')!r}, not '1.0.0'",
            exchange,
        )
        message_id = header.get("message_id")
        self.expect(
            "ENV-MSGID-001",
            isinstance(message_id, str)
            and bool(message_id.strip())
            and message_id != request_header.get("message_id"),
            f"{what}: header.message_id is {message_id!r} (empty, not a string, or the "
            "request's own)",
            exchange,
        )
        ts = header.get("message_ts")
        self.expect(
            "ENV-TS-001",
            _fresh_timestamp(ts),
            f"{what}: header.message_ts {ts!r} is not an RFC 3339 date-time with a time zone "
            "within 5 minutes of now",
            exchange,
        )
        self.expect(
            "ENV-ACTION-001",
            header.get("action") == action,
            f"{what}: header.action is {header.get('action')!r}; {action!r} belongs here",
            exchange,
        )
        sender = header.get("sender_id")
        expected_sender = self.target.receiver_id
        self.expect(
            "ENV-PARTIES-001",
            isinstance(sender, str)
            and bool(sender)
            and sender != self.target.sender_id
            and (expected_sender is None or sender == expected_sender),
            f"{what}: header.sender_id is {sender!r}; the registry's id "
            f"({expected_sender or 'not the tester'}) belongs here",
            exchange,
        )
        receiver = header.get("receiver_id")
        self.expect(
            "ENV-PARTIES-001",
            receiver in (None, "", self.target.sender_id),
            f"{what}: header.receiver_id is {receiver!r}, not the tester {self.target.sender_id!r}",
            exchange,
        )
        if "status" in header or action not in _REQUEST_HEADER_CALLBACKS:
            self.expect(
                "ENV-STATUS-001",
                header.get("status") in STATUSES,
                f"{what}: header.status is {header.get('status')!r}; one of "
                f"{', '.join(sorted(STATUSES))} belongs here",
                exchange,
            )
        # dcihub's models of the standard (CONTRACT-001)
        model: type[MsgHeader] | type[MsgCallbackHeader] = MsgCallbackHeader
        if "status" not in header and action in _REQUEST_HEADER_CALLBACKS:
            model = MsgHeader
        try:
            model.model_validate(header)
        except ValidationError as exc:
            self.expect(
                "CONTRACT-001",
                False,
                f"{what}: {describe_validation_error(exc, 'header')}",
                exchange,
            )
        else:
            self.expect("CONTRACT-001", True, "", exchange)

    def judge_counts(
        self, exchange: Exchange, header: dict[str, Any], message: dict[str, Any], what: str
    ) -> None:
        items = next((message[k] for k in _ITEM_LISTS if isinstance(message.get(k), list)), None)
        total, completed = header.get("total_count"), header.get("completed_count")
        if items is not None and total is not None:
            self.expect(
                "ENV-STATUS-001",
                total == len(items),
                f"{what}: header.total_count is {total!r} for {len(items)} item(s)",
                exchange,
            )
        if isinstance(total, int) and completed is not None:
            self.expect(
                "ENV-STATUS-001",
                isinstance(completed, int) and 0 <= completed <= total,
                f"{what}: header.completed_count {completed!r} is not between 0 and "
                f"total_count {total}",
                exchange,
            )

    def check_contract_response(self, exchange: Exchange, path: str, body: Any) -> None:
        if self.contract is None:
            return
        try:
            errors = self.contract.errors_response(f"/registry/{path}", body)
        except Exception as exc:  # noqa: BLE001 - the contract has no such path
            errors = [f"the contract cannot validate it: {exc}"]
        self.expect(
            "CONTRACT-001",
            not errors,
            f"the reply to {path} violates the official contract: {'; '.join(errors[:3])}",
            exchange,
        )

    def check_contract_request(self, exchange: Exchange, path: str, body: Any) -> None:
        if self.contract is None:
            return
        try:
            errors = self.contract.errors_request(f"/registry/{path}", body)
        except Exception as exc:  # noqa: BLE001 - the contract has no such path
            errors = [f"the contract cannot validate it: {exc}"]
        self.expect(
            "CONTRACT-001",
            not errors,
            f"the callback {path} violates the official contract: {'; '.join(errors[:3])}",
            exchange,
        )


def _fresh_timestamp(value: Any) -> bool:
    if not isinstance(value, str) or not is_rfc3339_date_time(value):
        return False
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        return False
    return abs(datetime.datetime.now(datetime.UTC) - when) <= SKEW


def error_code(doc: Any) -> str | None:
    """The DCI error code an answer carries (ERR ack, HttpErrorResponse, rejected header or
    a rejected item), or None when it carries none."""
    if not isinstance(doc, dict):
        return None
    message = doc.get("message")
    if isinstance(message, dict):
        error = message.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        if isinstance(code, str):
            return code
    header = doc.get("header")
    if isinstance(header, dict) and header.get("status") == "rjct":
        code = header.get("status_reason_code")
        if isinstance(code, str):
            return code
    if isinstance(message, dict):
        for item in message.get("search_response") or []:
            if isinstance(item, dict) and item.get("status") == "rjct":
                code = item.get("status_reason_code")
                if isinstance(code, str):
                    return code
    return None


def _mentions(doc: Any, code: str) -> bool:
    """The code named in the error's message (an ERR ack may carry a `rjct.*` reason there)."""
    if not isinstance(doc, dict):
        return False
    message = doc.get("message")
    if isinstance(message, dict) and isinstance(message.get("error"), dict):
        return code in str(message["error"].get("message", ""))
    header = doc.get("header")
    if isinstance(header, dict):
        return code in str(header.get("status_reason_message", ""))
    return False


def _brief(doc: Any) -> str:
    text = str(doc)
    return text if len(text) <= 300 else text[:300] + "…"


def record_keys(record: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """The identifiers a record holds, as (type, value) pairs — wherever the record keeps
    them (`identifier_type` / `identifier_value` objects at any depth, and what the client's
    `Record` reads); a record without any is known by its whole content."""
    found = {(i.type, i.value) for i in Record(record).identifiers}
    stack: list[Any] = [record]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            id_type, value = node.get("identifier_type"), node.get("identifier_value")
            if isinstance(id_type, str) and isinstance(value, str | int) and value != "":
                found.add((canonical_id_type(id_type), str(value)))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    if not found:
        found.add(("record", orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()))
    return frozenset(found)
