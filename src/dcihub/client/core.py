"""The client's envelope logic, without I/O: shared by `RegistryClient`, `AsyncRegistryClient`
and the `CallbackReceiver`.

An operation is planned as a `Plan`: the endpoint, the request header and message, and how to
read what comes back (the sync reply, or the callback of an asynchronous request). `seal`
turns a plan into the bytes to POST (encrypt-then-sign, DIGEST §4.2); `parse_reply` reads the
HTTP answer (ack, ERR ack, error status or envelope); `open_reply` verifies, checks and
decrypts it with `envelopes.open_envelope` — the same steps the receiver takes for a callback.
The clients only move bytes and fetch tokens and keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

import orjson

from dcihub.security.errors import EncryptionError, SecurityError
from dcihub.security.jwe import encrypt_message
from dcihub.security.keys import AsymmetricKey
from dcihub.security.signatures import KeyResolver, inspect_signature, sign
from dcihub.standard.calls import SpecialEndpoint
from dcihub.standard.codes import Ack as AckStatus
from dcihub.standard.codes import Action, ErrorCode, RequestStatus, TxnAttributeType
from dcihub.standard.envelope import (
    callback_header,
    format_ts,
)
from dcihub.standard.profiles import PROFILES, RegistryProfile

from .envelopes import (
    Opened,
    RawReply,
    check_rejected,
    check_transaction,
    new_id,
    open_envelope,
    read_ack,
)
from .errors import (
    ConfigurationError,
    DCIClientError,
    DecryptionError,
    ErrAckError,
    HTTPStatusError,
    ProtocolError,
    RejectedError,
    SignatureVerificationError,
)
from .keys import OwnKeys
from .query import Query
from .results import (
    BatchResult,
    CallResult,
    DisabledAnswer,
    EnrolledAnswer,
    EnrollmentUpdatesResult,
    SearchResult,
    SubscribeResult,
    TxnStatusResult,
    UnsubscribeResult,
    as_str,
    read_item_statuses,
    read_search_response,
    read_subscribe_response,
    read_txn_status,
    read_unsubscribe_response,
)
from .settings import ClientSettings

__all__ = ["ClientCore", "Plan", "Sort", "Consent"]

T = TypeVar("T")
U = TypeVar("U")
Sort = str | tuple[str, str] | Mapping[str, str]
Consent = str | Mapping[str, Any]


@dataclass
class Plan(Generic[T]):
    """One request: where it goes, what it carries, how to read the answer."""

    path: str  # after /registry/, e.g. "sync/search"
    action: str
    header: dict[str, Any]
    message: dict[str, Any]
    read: Callable[[Opened], T]
    reply_action: str | None = None  # the sync reply's action; None: an ack is expected
    body: bytes = b""  # set by ClientCore.seal

    @property
    def transaction_id(self) -> str:
        return str(self.message.get("transaction_id") or "")

    @property
    def message_id(self) -> str:
        return str(self.header["message_id"])

    @property
    def expects_ack(self) -> bool:
        return self.reply_action is None

    def error(self, exc: DCIClientError) -> DCIClientError:
        return exc.with_ids(self.transaction_id, self.message_id)

    def then(self, fn: Callable[[T], U]) -> Plan[U]:
        """The same request, its answer read further by `fn`."""
        read = self.read
        return Plan(
            self.path,
            self.action,
            self.header,
            self.message,
            lambda opened: fn(read(opened)),
            self.reply_action,
        )


class ClientCore:
    """Builds, seals and opens the messages of one client."""

    def __init__(self, settings: ClientSettings, keys: OwnKeys) -> None:
        self.settings = settings
        self.keys = keys
        self.profile: RegistryProfile | None = (
            PROFILES.get(settings.registry) if settings.registry else None
        )
        self._signing_key: AsymmetricKey | None = None
        if settings.sign:
            self._signing_key = keys.signing_key(settings.signature_profile)
        if settings.encrypt and not keys.decryption:
            raise ConfigurationError(
                "encrypt=True needs a decryption key in the client's keys: the registry "
                "encrypts its replies to an encrypted request"
            )

    # -- headers and envelopes -----------------------------------------------------------------

    def request_header(
        self, action: str, total_count: int, sender_uri: str | None = None
    ) -> dict[str, Any]:
        header: dict[str, Any] = {
            "version": "1.0.0",
            "message_id": new_id(),
            "message_ts": format_ts(),
            "action": action,
            "sender_id": self.settings.sender_id,
            "total_count": total_count,
            "is_msg_encrypted": False,
        }
        if sender_uri:
            header["sender_uri"] = sender_uri
        if self.settings.receiver_id:
            header["receiver_id"] = self.settings.receiver_id
        return header

    def callback_style_header(self, action: str, total_count: int) -> dict[str, Any]:
        """The header of a call the standard gives a callback header (IBR enrollment/updates)."""
        return callback_header(
            message_id=new_id(),
            action=action,
            status=RequestStatus.SUCCESS.value,
            sender_id=self.settings.sender_id,
            receiver_id=self.settings.receiver_id,
            total_count=total_count,
            completed_count=total_count,
        )

    def seal(self, plan: Plan[T], encrypt_to: AsymmetricKey | None = None) -> bytes:
        """The bytes to POST: the message encrypted (when asked), then the envelope signed."""
        header, message = plan.header, plan.message
        sent: Any = message
        if self.settings.encrypt:
            if encrypt_to is None:
                raise plan.error(
                    DecryptionError(
                        "encrypt=True but the registry publishes no encryption key (use 'enc') "
                        f"in its JWKS ({self.settings.jwks_url or 'registry_jwks'})"
                    )
                )
            try:
                sent = encrypt_message(message, encrypt_to)
            except EncryptionError as exc:
                raise plan.error(
                    DecryptionError(f"cannot encrypt to the registry: {exc}")
                ) from None
            header = {**header, "is_msg_encrypted": True}
            plan.header = header
        envelope: dict[str, Any] = {"header": header, "message": sent}
        try:
            if self._signing_key is not None:
                signature = sign(header, sent, self._signing_key, self.settings.signature_profile)
                envelope = {"signature": signature, **envelope}
            plan.body = orjson.dumps(envelope)
        except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
            raise plan.error(ConfigurationError(f"the message cannot be sent: {exc}")) from None
        return plan.body

    # -- replies ---------------------------------------------------------------------------------

    def parse_reply(self, plan: Plan[Any], status: int, content: bytes) -> RawReply:
        """Read an HTTP answer: an ack, a refusal (raised) or an envelope to open."""
        try:
            body = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            text = content[:300].decode("utf-8", "replace").strip().replace("\n", " ")
            if status >= 400:
                raise plan.error(
                    HTTPStatusError(
                        f"the registry answered HTTP {status} without a DCI answer: "
                        f"{text or 'empty body'}",
                        http_status=status,
                        body=text,
                    )
                )
            raise plan.error(
                ProtocolError(
                    f"the reply (HTTP {status}) is not a JSON object: {text or 'empty body'}",
                    http_status=status,
                )
            )
        message = body.get("message")
        if isinstance(message, dict) and "ack_status" in message:
            ack = read_ack(message, status)
            if ack.ack_status == AckStatus.ERR.value or ack.ack_status == AckStatus.NACK.value:
                error = message.get("error") if isinstance(message.get("error"), dict) else {}
                assert isinstance(error, dict)
                code = as_str(error.get("code")) or (
                    "NACK" if ack.ack_status == AckStatus.NACK.value else "err.request.bad"
                )
                detail = as_str(error.get("message")) or (
                    "no callback will follow" if ack.ack_status == "NACK" else "no reason given"
                )
                raise plan.error(
                    ErrAckError(
                        code,
                        detail,
                        http_status=status,
                        ack_status=ack.ack_status,
                        correlation_id=ack.correlation_id,
                    )
                )
            if not plan.expects_ack:
                raise plan.error(
                    ProtocolError(
                        f"expected a {plan.reply_action} envelope but the registry answered an "
                        f"{ack.ack_status} ack (HTTP {status})"
                    )
                )
            return RawReply(status, ack=ack)
        errors = body.get("errors")
        if "header" not in body and isinstance(errors, list) and errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            code = as_str(first.get("code")) or "err.request.bad"
            detail = as_str(first.get("message")) or "no reason given"
            raise plan.error(ErrAckError(code, detail, http_status=status))
        if "header" not in body and status < 400 and not plan.expects_ack:
            if "transaction_id" in body and not self.settings.verify_replies:
                return RawReply(status, body=body, bare=True)  # DIGEST §6 #19, unverified
            if "transaction_id" in body:
                raise plan.error(
                    SignatureVerificationError(
                        "the registry answered a bare response message without an envelope, "
                        "which cannot carry a signature (verify_replies=False accepts it "
                        "unverified)",
                        code=ErrorCode.SIGNATURE_MISSING.value,
                    )
                )
        if "header" not in body:
            if status >= 400:
                raise plan.error(
                    HTTPStatusError(
                        f"the registry answered HTTP {status} with neither an ack nor an "
                        f"envelope: {orjson.dumps(body)[:200].decode()}",
                        http_status=status,
                    )
                )
            raise plan.error(
                ProtocolError(
                    f"the reply (HTTP {status}) has neither 'header' nor an ack 'message'"
                )
            )
        if plan.expects_ack:
            raise plan.error(
                ProtocolError(
                    f"expected an ack but the registry answered an envelope (HTTP {status})"
                )
            )
        signature = body.get("signature")
        info = None
        if isinstance(signature, str) and signature:
            try:
                info = inspect_signature(signature)
            except SecurityError as exc:
                raise plan.error(
                    SignatureVerificationError(f"the reply's signature: {exc.message}")
                ) from None
        return RawReply(status, body=body, signature=signature or None, info=info)

    def open_reply(self, plan: Plan[T], raw: RawReply, resolve: KeyResolver) -> T:
        """Verify, check and decrypt a sync reply, then read it as the plan says."""
        assert plan.reply_action is not None
        try:
            if raw.bare:
                return plan.read(Opened({}, raw.body, None, raw.status))
            opened = open_envelope(
                raw.body,
                expected_action=plan.reply_action,
                resolve=resolve,
                keys=self.keys,
                require_signature=self.settings.verify_replies,
                info=raw.info,
                http_status=raw.status,
            )
            check_rejected(opened)
            check_transaction(opened, plan.transaction_id)
            return plan.read(opened)
        except DCIClientError as exc:
            raise plan.error(exc) from None

    # -- search ------------------------------------------------------------------------------------

    def search_item(
        self,
        query: Query,
        *,
        reference_id: str | None = None,
        page_size: int | None = None,
        page_number: int = 1,
        sort: Sort | Sequence[Sort] | None = None,
        record_type: str | None = None,
        reg_type: str | None = None,
        response_entity: str | None = None,
        consent: Consent | None = None,
        authorize: Consent | None = None,
        locale: str | None = None,
    ) -> dict[str, Any]:
        if not isinstance(query, Query):
            raise ConfigurationError(
                f"a search needs a query built with Q (Q.id, Q.attr, Q.raw), not "
                f"{type(query).__name__}"
            )
        now = format_ts()
        criteria: dict[str, Any] = {"version": "1.0.0"}
        if reg_type:
            criteria["reg_type"] = reg_type
        if record_type:
            criteria["reg_record_type"] = record_type
        criteria.update(query.criteria())
        if response_entity:
            criteria["response_entity"] = response_entity
        if sort:
            criteria["sort"] = sort_items(sort)
        if page_size is not None:
            if page_size < 1 or page_number < 1:
                raise ConfigurationError("page_size and page_number count from 1")
            criteria["pagination"] = {"page_size": page_size, "page_number": page_number}
        if consent is not None:
            criteria["consent"] = consent_object(consent, now)
        if authorize is not None:
            criteria["authorize"] = consent_object(authorize, now)
        return {
            "reference_id": reference_id or new_id(),
            "timestamp": now,
            "search_criteria": criteria,
            "locale": locale or self.settings.locale,
        }

    def search_plan(
        self,
        items: list[dict[str, Any]],
        read: Callable[[Opened], T],
        *,
        sender_uri: str | None = None,
    ) -> Plan[T]:
        path = "search" if sender_uri else "sync/search"
        message = {"transaction_id": new_id(), "search_request": items}
        return Plan(
            path,
            Action.SEARCH.value,
            self.request_header(Action.SEARCH.value, len(items), sender_uri),
            message,
            read,
            None if sender_uri else Action.ON_SEARCH.value,
        )

    # -- transaction status --------------------------------------------------------------------

    def txn_status_plan(
        self,
        transaction_id: str | None = None,
        *,
        reference_ids: Iterable[str] | None = None,
        correlation_id: str | None = None,
        subscription_codes: Iterable[str] | None = None,
        txn_type: str = "search",
        sender_uri: str | None = None,
    ) -> Plan[TxnStatusResult]:
        given = [
            (TxnAttributeType.TRANSACTION_ID.value, transaction_id),
            (
                TxnAttributeType.REFERENCE_ID_LIST.value,
                list(reference_ids) if reference_ids is not None else None,
            ),
            (TxnAttributeType.CORRELATION_ID.value, correlation_id),
            (
                TxnAttributeType.SUBSCRIPTION_CODE_LIST.value,
                list(subscription_codes) if subscription_codes is not None else None,
            ),
        ]
        chosen = [(t, v) for t, v in given if v is not None]
        if len(chosen) != 1:
            raise ConfigurationError(
                "txn_status needs exactly one of transaction_id, reference_ids, "
                "correlation_id, subscription_codes"
            )
        attribute_type, value = chosen[0]
        message = {
            "transaction_id": new_id(),
            "txnstatus_request": {
                "reference_id": new_id(),
                "txn_type": txn_type,
                "attribute_type": attribute_type,
                "attribute_value": value,
                "locale": self.settings.locale,
            },
        }
        path = "txn/status" if sender_uri else "sync/txn/status"
        return Plan(
            path,
            Action.TXN_STATUS.value,
            self.request_header(Action.TXN_STATUS.value, 1, sender_uri),
            message,
            read_txn_opened,
            None if sender_uri else Action.TXN_ON_STATUS.value,
        )

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe_plan(
        self,
        query: Query,
        *,
        event_type: str,
        sender_uri: str,
        record_type: str | None = None,
        frequency: str | None = None,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        reg_type: str | None = None,
        authorize: Consent | None = None,
    ) -> Plan[SubscribeResult]:
        if not isinstance(query, Query):
            raise ConfigurationError("subscribe needs a filter built with Q (Q.id, Q.attr, Q.raw)")
        if not event_type:
            raise ConfigurationError("subscribe needs an event_type (e.g. 'death', 'REGISTER')")
        record_type = record_type or (self.profile.default_entity if self.profile else None)
        if not record_type:
            raise ConfigurationError(
                "subscribe needs record_type (the notify_record_type) for a registry without a "
                "known dcihub profile"
            )
        now = format_ts()
        criteria: dict[str, Any] = {"version": "1.0.0"}
        if reg_type or self.profile:
            criteria["reg_type"] = reg_type or (self.profile.reg_type if self.profile else None)
        criteria["reg_event_type"] = event_type
        if frequency or start_time or end_time:
            start = _ts(start_time) if start_time else now
            end = _ts(end_time) if end_time else format_ts(datetime.now(UTC) + timedelta(days=365))
            criteria["frequency"] = {
                "start_time": start,
                "end_time": end,
                "frequency": frequency or "daily",
            }
        parts = query.criteria()
        criteria["filter_type"] = parts["query_type"]
        criteria["filter"] = parts["query"]
        criteria["notify_record_type"] = record_type
        if authorize is not None:
            criteria["authorize"] = consent_object(authorize, now)
        item = {
            "reference_id": new_id(),
            "timestamp": now,
            "subscribe_criteria": criteria,
            "locale": self.settings.locale,
        }
        message = {"transaction_id": new_id(), "subscribe_request": [item]}
        return Plan(
            "subscribe",
            Action.SUBSCRIBE.value,
            self.request_header(Action.SUBSCRIBE.value, 1, sender_uri),
            message,
            read_subscribe_opened,
        )

    def unsubscribe_plan(self, codes: Iterable[str], *, sender_uri: str) -> Plan[UnsubscribeResult]:
        listed = [str(c) for c in codes]
        if not listed:
            raise ConfigurationError("unsubscribe needs at least one subscription code")
        message = {
            "transaction_id": new_id(),
            "timestamp": format_ts(),
            "subscription_codes": listed,
        }
        return Plan(
            "unsubscribe",
            Action.UNSUBSCRIBE.value,
            self.request_header(Action.UNSUBSCRIBE.value, len(listed), sender_uri),
            message,
            read_unsubscribe_opened,
        )

    # -- registry-specific calls -------------------------------------------------------------------

    def special_endpoints(self) -> tuple[SpecialEndpoint, ...]:
        """The registry-specific calls the registry's dcihub profile declares."""
        return self.profile.special_endpoints if self.profile else ()

    def call_plan(
        self,
        path: str,
        message: Mapping[str, Any],
        *,
        action: str | None = None,
        reply_action: str | None = None,
        header: Literal["request", "callback"] | None = None,
        total_count: int | None = None,
    ) -> Plan[CallResult]:
        """A registry-specific sync call. The profile's declaration (if the registry has a
        dcihub profile that declares `path`) gives the actions and header kind; otherwise
        `action` (default `search`), `reply_action` (default `on-<action>`) and `header`."""
        path = path.strip().strip("/")
        if path.startswith("registry/"):
            path = path[len("registry/") :]
        endpoint = self.profile.special(path) if self.profile else None
        if endpoint is None and self.profile is not None and action is None:
            declared = ", ".join(e.path for e in self.profile.special_endpoints) or "none"
            raise ConfigurationError(
                f"the {self.profile.title} profile declares no call {path!r} (it declares: "
                f"{declared}); give action= to send it anyway"
            )
        request_action = action or (endpoint.request_action if endpoint else Action.SEARCH.value)
        answer_action = reply_action or (
            endpoint.response_action if endpoint else f"on-{request_action}"
        )
        kind = header or (endpoint.header if endpoint else "request")
        body = dict(message)
        body.setdefault("transaction_id", new_id())
        count = total_count if total_count is not None else 1
        head = (
            self.callback_style_header(request_action, count)
            if kind == "callback"
            else self.request_header(request_action, count)
        )

        def read(opened: Opened) -> CallResult:
            return CallResult(
                path,
                as_str(opened.message.get("transaction_id")) or str(body["transaction_id"]),
                as_str(opened.message.get("correlation_id")),
                opened.header,
                opened.message,
            )

        return Plan(path, request_action, head, body, read, answer_action)

    # -- operations (what the sync and async clients send) -------------------------------------

    def plan_search(
        self, query: Query, sender_uri: str | None = None, **options: Any
    ) -> Plan[SearchResult]:
        """One search item; its result (a rejected item raises RejectedError)."""
        item = self.search_item(query, **options)
        return self.search_plan([item], read_single_opened, sender_uri=sender_uri)

    def plan_batch(
        self,
        queries: Mapping[str, Query] | Iterable[Query | tuple[str, Query]],
        **options: Any,
    ) -> Plan[BatchResult]:
        """One message, one item per query; results by reference_id (given, or generated)."""
        pairs: list[tuple[str | None, Query]] = []
        if isinstance(queries, Mapping):
            pairs = [(str(ref), q) for ref, q in queries.items()]
        else:
            for entry in queries:
                if isinstance(entry, tuple):
                    pairs.append((str(entry[0]), entry[1]))
                else:
                    pairs.append((None, entry))
        if not pairs:
            raise ConfigurationError("search_batch needs at least one query")
        items = [self.search_item(q, reference_id=ref, **options) for ref, q in pairs]
        references = [str(i["reference_id"]) for i in items]
        return self.search_plan(items, ordered_batch(references))

    @staticmethod
    def next_page(result: SearchResult, page: int, seen: int) -> int | None:
        """The page to fetch after `page` (None: done), `seen` records read so far."""
        if not result.records:
            return None
        if result.total_count is not None and seen >= result.total_count:
            return None
        if result.page_size is not None and len(result.records) < result.page_size:
            return None
        return page + 1

    def plan_disabled(self, target: str | Query) -> Plan[DisabledAnswer]:
        """DR `sync/disabled`: is this person registered as disabled?"""
        message = {"disabled_criteria": person_criteria(target, "member.member_identifier")}
        return self.call_plan("sync/disabled", message, **self._special("sync/disabled")).then(
            read_disabled
        )

    def plan_dr_view(self, path: str, target: str | Query) -> Plan[SearchResult]:
        """DR `sync/get-disability-support` / `sync/get-disability-details`."""
        message = {"disabled_criteria": person_criteria(target, "member.member_identifier")}
        return self.call_plan(path, message, **self._special(path)).then(read_call_search)

    def plan_enrolled(
        self, target: str | Query, programme: str | None = None, response_entity: str | None = None
    ) -> Plan[EnrolledAnswer]:
        """IBR `sync/enrolled`: is this person enrolled (in `programme`)?"""
        criteria = person_criteria(target, "person_identifier")
        if programme is not None:
            if not isinstance(target, str):
                raise ConfigurationError("programme= goes with a UIN, not with a query")
            criteria["query"][PROGRAMME_PATH] = {"eq": programme}
        if response_entity:
            criteria["response_entity"] = response_entity
        message = {"enrolled_criteria": criteria}
        return self.call_plan("sync/enrolled", message, **self._special("sync/enrolled")).then(
            read_enrolled
        )

    def plan_check_enrollment(
        self, target: str | Query, response_entity: str | None = None
    ) -> Plan[EnrolledAnswer]:
        """ESS `sync/check-enrollment`: the person's enrolment status (Active, ...)."""
        criteria = person_criteria(target, "person_identifier")
        if response_entity:
            criteria["response_entity"] = response_entity
        path = "sync/check-enrollment"
        return self.call_plan(path, {"enrolled_criteria": criteria}, **self._special(path)).then(
            read_enrolled
        )

    def plan_enrollment_updates(
        self, beneficiaries: Sequence[Mapping[str, Any]]
    ) -> Plan[EnrollmentUpdatesResult]:
        """IBR `sync/enrollment/updates`: report enrolments and status changes."""
        listed = [dict(b) for b in beneficiaries]
        if not listed:
            raise ConfigurationError("enrollment_updates needs at least one beneficiary")
        path = "sync/enrollment/updates"
        options = self._special(path, action="notify", reply_action="on-notify", header="callback")
        return self.call_plan(
            path,
            {"enrolled_updates": {"beneficiaries": listed}},
            total_count=len(listed),
            **options,
        ).then(read_updates)

    def _special(self, path: str, **defaults: Any) -> dict[str, Any]:
        """The actions of a call the profile does not declare (a registry dcihub does not
        know, or a profile of another version): the contract's."""
        if self.profile is not None and self.profile.special(path) is not None:
            return {}
        return {"action": "search", "reply_action": "on-search", **defaults}


PROGRAMME_PATH = "programme_identifier.program.programme_identifier"


def person_criteria(target: str | Query, path: str) -> dict[str, Any]:
    """The criteria of the DR / IBR / ESS calls: the flat `{"<path>": {"eq": "<UIN>"}}` form
    of their contracts' examples, or the criteria of a query."""
    if isinstance(target, Query):
        return target.criteria()
    if not isinstance(target, str) or not target.strip():
        raise ConfigurationError("give the person's UIN (a non-empty string) or a query")
    return {"query_type": "expression", "query": {path: {"eq": target.strip()}}}


def read_call_search(result: CallResult) -> SearchResult:
    batch = read_search_response(result.message)
    if len(batch.results) != 1:
        raise ProtocolError(f"the {result.path} reply holds {len(batch.results)} items, not 1")
    return next(iter(batch)).raise_for_status()


def _only_item(result: CallResult) -> dict[str, Any]:
    items = result.items
    if len(items) != 1:
        raise ProtocolError(f"the {result.path} reply holds {len(items)} items, not 1")
    item = items[0]
    if item.get("status") == RequestStatus.REJECTED.value:
        raise RejectedError(
            as_str(item.get("status_reason_code")),
            as_str(item.get("status_reason_message")),
            reference_id=as_str(item.get("reference_id")),
        )
    return item


def read_disabled(result: CallResult) -> DisabledAnswer:
    item = _only_item(result)
    status = as_str(item.get("disabled_status"))
    if status is None:
        raise ProtocolError(f"the {result.path} reply has no disabled_status")
    return DisabledAnswer(status, as_str(item.get("status_reason_message")), result)


def read_enrolled(result: CallResult) -> EnrolledAnswer:
    item = _only_item(result)
    status = as_str(item.get("enrolled_status"))
    if status is None:
        raise ProtocolError(f"the {result.path} reply has no enrolled_status")
    return EnrolledAnswer(status, as_str(item.get("status_reason_message")), result)


def read_updates(result: CallResult) -> EnrollmentUpdatesResult:
    return EnrollmentUpdatesResult(
        result.transaction_id, result.correlation_id, read_item_statuses(result.items), result
    )


# ---------------------------------------------------------------------------------------------
# Readers of opened replies


def read_batch_opened(opened: Opened) -> BatchResult:
    batch = read_search_response(opened.message)
    return BatchResult(
        batch.transaction_id,
        batch.correlation_id,
        batch.results,
        as_str(opened.header.get("status")) or RequestStatus.SUCCESS.value,
    )


def read_single_opened(opened: Opened) -> SearchResult:
    batch = read_search_response(opened.message)
    if len(batch.results) != 1:
        raise ProtocolError(
            f"the reply holds {len(batch.results)} search_response items for one search item"
        )
    return next(iter(batch)).raise_for_status()


def read_txn_opened(opened: Opened) -> TxnStatusResult:
    return read_txn_status(opened.message)


def read_subscribe_opened(opened: Opened) -> SubscribeResult:
    return read_subscribe_response(opened.message)


def read_unsubscribe_opened(opened: Opened) -> UnsubscribeResult:
    return read_unsubscribe_response(opened.message)


def ordered_batch(reference_ids: list[str]) -> Callable[[Opened], BatchResult]:
    """A reader that returns the items in the order they were sent (unknown ones last)."""

    def read(opened: Opened) -> BatchResult:
        batch = read_batch_opened(opened)
        ordered = {r: batch.results[r] for r in reference_ids if r in batch.results}
        ordered.update({r: v for r, v in batch.results.items() if r not in ordered})
        return BatchResult(batch.transaction_id, batch.correlation_id, ordered, batch.status)

    return read


# ---------------------------------------------------------------------------------------------
# Small builders


def sort_items(sort: Sort | Sequence[Sort]) -> list[dict[str, str]]:
    """`"birth_date"`, `"-birth_date"` (descending), `("birth_date", "desc")`, a mapping
    `{"attribute_name", "sort_order"}`, or a list of those."""
    listed: Sequence[Sort] = (
        [sort] if isinstance(sort, str | Mapping) or _is_pair(sort) else sort  # type: ignore[list-item]
    )
    out = []
    for item in listed:
        if isinstance(item, str):
            name, order = (item[1:], "desc") if item.startswith("-") else (item, "asc")
        elif isinstance(item, Mapping):
            name = str(item.get("attribute_name", ""))
            order = str(item.get("sort_order", "asc"))
        elif _is_pair(item):
            name, order = str(item[0]), str(item[1])
        else:
            raise ConfigurationError(f"cannot read the sort {item!r}")
        if not name or order not in ("asc", "desc"):
            raise ConfigurationError(f"sort {item!r}: give an attribute and asc or desc")
        out.append({"attribute_name": name, "sort_order": order})
    return out


def _is_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
        and value[1] in ("asc", "desc")
    )


def consent_object(value: Consent, now: str) -> dict[str, Any]:
    """`Consent` / `Authorize`: a purpose code (e.g. "ELIG") or the object itself."""
    if isinstance(value, str):
        return {"ts": now, "purpose": {"code": value}}
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigurationError("consent must be a purpose code or a Consent object")


def _ts(value: datetime | str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"{value!r} has no timezone")
        return format_ts(value)
    return value
