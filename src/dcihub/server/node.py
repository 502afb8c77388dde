"""The registry node: endpoint table and handlers for every registry profile served.

Handlers receive an `Inbound` that passed the pipeline and return a `Reply`. Store work goes
through the store's access policy (`store.access`, see `dcihub.store.access`): handlers say
whether a read is light, the policy decides whether it runs on the event loop or in a thread. Asynchronous
requests are acknowledged at once; their work and their callback go through the outbox in the
same database transaction as the state change (see `server.worker`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson

from ..config import Settings
from ..security.partners import Partner
from ..standard.codes import ErrorCode, RequestStatus, TxnAttributeType
from ..standard.envelope import ack, callback_header, format_ts, has_control_chars
from ..standard.errors import DCIError
from ..standard.fields import FieldAccess
from ..standard.messages import TxnStatusRequest, parse_message
from ..standard.profiles import PROFILES
from ..standard.profiles.base import RegistryProfile
from ..store import Store
from ..store.access import Reader
from ..store.transactions import ItemRow, NewTxn
from .committer import GroupCommitter
from .pipeline import EndpointSpec, Handler, Inbound, Reply, new_correlation_id
from .search import ConsentCheck, Outcome, ReplyBudget, SearchService, completed, consent_check

# cuts a record to what a partner may receive: (partner, registry, entity, record) -> record
Shape = Callable[[Partner, str, str | None, dict[str, Any]], dict[str, Any]]

# A sync reply with more records than this is sealed (signed, encrypted) and serialised in a
# worker thread rather than on the event loop.
HEAVY_REPLY_RECORDS = 200

# Marker kept beside a queued callback (never sent): encrypt it, as its request was encrypted.
ENCRYPT_KEY = "dcihub:encrypt"

# Older spellings of txn_type accepted on input (DIGEST §6 #17).
TXN_TYPE_ALIASES = {
    "subscibe": "subscribe",
    "on-search": "search",
    "on-subscribe": "subscribe",
    "on-unsubscribe": "unsubscribe",
}


# The generic endpoints a profile may declare: path -> (handler, action, async, response).
_GENERIC_HANDLERS: dict[str, tuple[str, str, bool, str]] = {
    "search": ("async_search", "search", True, ""),
    "sync/search": ("sync_search", "search", False, "on-search"),
    "txn/status": ("async_txn_status", "txn-status", True, ""),
    "sync/txn/status": ("sync_txn_status", "txn-status", False, "txn-on-status"),
    "subscribe": ("subscribe", "subscribe", True, ""),
    "unsubscribe": ("unsubscribe", "unsubscribe", True, ""),
}


def endpoints_for(profile: RegistryProfile) -> list[EndpointSpec]:
    """Every DCI endpoint a registry serves: the generic ones it declares, then its own."""
    name = profile.name
    specs = []
    for path in profile.generic_endpoints:
        kind, action, asynchronous, response_action = _GENERIC_HANDLERS[path]
        specs.append(
            EndpointSpec(
                name, path, kind, action, asynchronous=asynchronous, response_action=response_action
            )
        )
    for special in profile.special_endpoints:
        specs.append(
            EndpointSpec(
                name,
                special.path,
                "special",
                special.request_action,
                header=special.header,
                response_action=special.response_action,
                scope=special.scope_action,
                special=special,
            )
        )
    return specs


class RegistryNode:
    """Everything the HTTP layer and the worker need to answer DCI messages."""

    def __init__(
        self, settings: Settings, store: Store, profiles: dict[str, RegistryProfile] | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        all_profiles = profiles or PROFILES
        self.profiles = {n: all_profiles[n] for n in settings.registries}
        self.limits = settings.limits.search_limits()
        self.search = SearchService(store, self.limits, settings.limits.max_batch_items)
        self.access = store.access
        self.committer = GroupCommitter(
            store,
            replay_window=settings.security.replay_window if settings.security.enabled else None,
        )
        self.wakeup: Callable[[], None] = lambda: None
        self.shape: Shape | None = None
        # partner, registry -> (fields it may receive, fields it may query); None: all
        self.fields: Callable[[Partner, str], tuple[list[str] | None, list[str] | None]] | None = (
            None
        )
        from .special import SpecialCalls
        from .subscribe import SubscriptionService

        self.special = SpecialCalls(self)
        self.subscriptions = SubscriptionService(self)
        self.handlers: dict[str, Handler] = {
            "sync_search": self.sync_search,
            "async_search": self.async_search,
            "sync_txn_status": self.sync_txn_status,
            "async_txn_status": self.async_txn_status,
            "subscribe": self.subscriptions.subscribe,
            "unsubscribe": self.subscriptions.unsubscribe,
            "special": self.special.handle,
        }

    # ----------------------------------------------------------------------------- helpers

    def today(self) -> date:
        return datetime.now(UTC).date()

    def registry_id(self, registry: str) -> str:
        return self.settings.registry_id(registry)

    def shaper(
        self, partner: Partner | None, registry: str
    ) -> Callable[[str | None, dict[str, Any]], dict[str, Any]] | None:
        if self.shape is None or partner is None:
            return None
        shape = self.shape
        return lambda entity, record: shape(partner, registry, entity, record)

    def field_access(
        self, partner: Partner | None, registry: str, query: bool
    ) -> FieldAccess | None:
        """The fields of `registry`'s records `partner` may filter and sort on (`query`) or
        receive; None: all of them."""
        if self.fields is None or partner is None:
            return None
        receive, queryable = self.fields(partner, registry)
        paths = queryable if query else receive
        if paths is None:
            return None
        setting = "query_fields (by default its fields)" if query else "fields"
        return FieldAccess(self.profiles[registry], tuple(paths), setting)

    def consent(self, registry: str, partner: Partner | None) -> ConsentCheck | None:
        """The consent rule for `partner` on `registry` (None: no consent required)."""
        required = self.settings.security.require_consent.get(registry)
        if required is None:
            return None
        purposes = list(partner.consent_purposes) if partner is not None else []
        return consent_check(required, purposes, self.profiles[registry].title)

    def reply_budget(self, partner: Any) -> ReplyBudget:
        """The records and bytes one reply to `partner` may carry: the node's limits, unless
        the partner's entry sets its own."""
        limits = self.settings.limits
        partner = getattr(partner, "partner", partner)
        records = getattr(partner, "max_reply_records", None)
        size = getattr(partner, "max_reply_bytes", None)
        own = f"of partner '{getattr(partner, 'sender_id', '')}'"
        return ReplyBudget(
            limits.max_reply_records if records is None else records,
            limits.max_reply_bytes if size is None else size,
            "limits.max_reply_records" if records is None else f"max_reply_records {own}",
            "limits.max_reply_bytes" if size is None else f"max_reply_bytes {own}",
        )

    def envelope(
        self,
        inbound_registry: str,
        receiver_id: str | None,
        action: str,
        message: dict[str, Any],
        total: int,
        done: int,
        status: str = RequestStatus.SUCCESS,
    ) -> dict[str, Any]:
        header = callback_header(
            message_id=new_correlation_id(),
            action=action,
            status=status,
            sender_id=self.registry_id(inbound_registry),
            receiver_id=receiver_id,
            total_count=total,
            completed_count=done,
        )
        return {"header": header, "message": message}

    def callback_url(self, inbound: Inbound, path: str) -> str:
        """Where the async reply goes (DIGEST §6 #14): header.sender_uri, the full URL of the
        callback; without one, the partner's callback base agreed at onboarding
        (`callback_base`) + `/registry/<path>`; with neither, refused."""
        uri = getattr(inbound.header, "sender_uri", None)
        if uri:
            return str(uri)
        partner = inbound.partner
        if partner is not None and partner.callback_base:
            return partner.callback_url(path)
        raise DCIError(
            ErrorCode.SENDER_URI_INVALID,
            "header.sender_uri is required for an asynchronous request: give the full URL of "
            f"your /registry/{path} endpoint (or ask the registry operator to register your "
            "callback base URL)",
        )

    # ----------------------------------------------------------------------------- search

    async def sync_search(self, inbound: Inbound) -> Reply:
        profile = inbound.profile
        request, prepared = self.search.prepare(
            profile,
            inbound.message,
            inbound.header.total_count,
            self.today(),
            self.consent(inbound.registry, inbound.partner),
            self.field_access(inbound.partner, inbound.registry, query=True),
        )
        budget = self.reply_budget(inbound.partner)
        shape = self.shaper(inbound.partner, inbound.registry)
        # only batched identifier lookups are light; a compiled query (and what it returns)
        # never runs on the event loop
        light = self.search.is_light(prepared)
        outcomes, rendered = await self.access.read(
            self._answer, inbound.registry, profile, prepared, budget, shape, light=light
        )
        message = {
            "transaction_id": request.transaction_id,
            "correlation_id": inbound.correlation_id,
            "search_response": rendered,
        }
        inbound.records = _record_refs(outcomes)
        now = format_ts()
        txn = self._new_txn(
            inbound,
            request.transaction_id,
            "search",
            "sync",
            RequestStatus.SUCCESS,
            len(outcomes),
            completed(outcomes),
            items=[o.item_row(now) for o in outcomes],
        )
        inbound.writes.txns.append((txn, None))
        envelope = self.envelope(
            inbound.registry,
            inbound.sender_id,
            "on-search",
            message,
            len(outcomes),
            completed(outcomes),
        )
        heavy = sum(len(o.records) for o in outcomes) > HEAVY_REPLY_RECORDS
        return Reply(200, envelope, is_envelope=True, heavy=heavy)

    def _answer(
        self,
        reader: Reader,
        registry: str,
        profile: RegistryProfile,
        prepared: list[Any],
        budget: ReplyBudget,
        shape: Callable[[str | None, dict[str, Any]], dict[str, Any]] | None,
    ) -> tuple[list[Outcome], list[dict[str, Any]]]:
        outcomes = self.search.execute(reader, registry, prepared, budget)
        return outcomes, self.search.render(profile, outcomes, shape=shape)

    def _new_txn(
        self,
        inbound: Inbound,
        transaction_id: str,
        txn_type: str,
        mode: str,
        status: str,
        total: int,
        done: int,
        **extra: Any,
    ) -> NewTxn:
        return NewTxn(
            registry=inbound.registry,
            sender_id=inbound.sender_id,
            transaction_id=transaction_id,
            correlation_id=inbound.correlation_id,
            message_id=inbound.header.message_id,
            action=inbound.endpoint.action,
            txn_type=txn_type,
            mode=mode,
            status=status,
            total_count=total,
            completed_count=done,
            **extra,
        )

    async def async_search(self, inbound: Inbound) -> Reply:
        profile = inbound.profile
        request, prepared = self.search.prepare(
            profile,
            inbound.message,
            inbound.header.total_count,
            self.today(),
            self.consent(inbound.registry, inbound.partner),
            self.field_access(inbound.partner, inbound.registry, query=True),
        )
        target = self.callback_url(inbound, "on-search")
        now = format_ts()
        txn = self._new_txn(
            inbound,
            request.transaction_id,
            "search",
            "async",
            RequestStatus.RECEIVED,
            len(prepared),
            0,
            sender_uri=target,
            request={
                "header": inbound.raw_header,
                "message": inbound.message,
                ENCRYPT_KEY: inbound.encrypted,
            },
            items=[
                ItemRow(
                    seq=p.seq,
                    reference_id=p.reference_id,
                    status=RequestStatus.RECEIVED,
                    timestamp=now,
                    locale=p.locale,
                )
                for p in prepared
            ],
        )

        def accept(conn: Any, txn_pk: int) -> None:
            self.store.outbox.enqueue(
                conn,
                "process",
                registry=inbound.registry,
                txn_pk=txn_pk,
                sender_id=inbound.sender_id,
                target_url=target,
                action="on-search",
            )

        inbound.writes.txns.append((txn, accept))
        self.wakeup()
        return Reply(202, ack(inbound.correlation_id))

    def plan_async_search(
        self, reader: Reader, txn_pk: int, partner: Partner | None = None
    ) -> Callable[[Any], None] | None:
        """Worker job: run an accepted async search (reads only) and return the write that
        stores its results and queues the callback in one database transaction. The write
        does nothing if another worker finished the transaction meanwhile."""
        txn = self.store.txns.get(reader.conn, txn_pk)
        if txn is None or txn.status != RequestStatus.RECEIVED or txn.request is None:
            return None
        profile = self.profiles[txn.registry]
        request = orjson.loads(txn.request)
        header = request["header"]
        total = header.get("total_count") if isinstance(header, dict) else None
        try:
            _, prepared = self.search.prepare(
                profile,
                request["message"],
                int(total or 0),
                self.today(),
                self.consent(txn.registry, partner),
                self.field_access(partner, txn.registry, query=True),
            )
        except DCIError as exc:  # cannot happen for an accepted message; never lose it
            error = exc
            return lambda conn: self._reject_async(conn, txn, error)
        outcomes = self.search.execute(reader, txn.registry, prepared, self.reply_budget(partner))
        now = format_ts()
        message = {
            "transaction_id": txn.transaction_id,
            "correlation_id": txn.correlation_id,
            "search_response": self.search.render(
                profile, outcomes, now, shape=self.shaper(partner, txn.registry)
            ),
        }
        envelope = self.envelope(
            txn.registry, txn.sender_id, "on-search", message, len(outcomes), completed(outcomes)
        )
        if request.get(ENCRYPT_KEY):
            envelope[ENCRYPT_KEY] = True  # the request came encrypted: so goes the reply
        payload = orjson.dumps(envelope).decode()
        items = [o.item_row(now) for o in outcomes]

        def write(conn: Any) -> None:
            current = self.store.txns.get(conn, txn.pk, lock=True)  # processed exactly once
            if current is None or current.status != RequestStatus.RECEIVED:
                return
            self.store.txns.finish(conn, txn.pk, RequestStatus.SUCCESS, completed(outcomes), items)
            self.store.outbox.enqueue(
                conn,
                "deliver",
                registry=txn.registry,
                txn_pk=txn.pk,
                sender_id=txn.sender_id,
                target_url=txn.sender_uri,
                action="on-search",
                payload=payload,
            )

        return write

    def _reject_async(self, conn: Any, txn: Any, exc: DCIError) -> None:
        envelope = self.envelope(
            txn.registry,
            txn.sender_id,
            "on-search",
            {
                "transaction_id": txn.transaction_id,
                "correlation_id": txn.correlation_id,
                "search_response": [],
            },
            txn.total_count,
            0,
            status=RequestStatus.REJECTED,
        )
        envelope["header"]["status_reason_message"] = exc.message
        self.store.txns.finish(conn, txn.pk, RequestStatus.REJECTED, 0, [])
        self.store.outbox.enqueue(
            conn,
            "deliver",
            registry=txn.registry,
            txn_pk=txn.pk,
            sender_id=txn.sender_id,
            target_url=txn.sender_uri,
            action="on-search",
            payload=orjson.dumps(envelope).decode(),
        )

    # ----------------------------------------------------------------------------- txn status

    async def sync_txn_status(self, inbound: Inbound) -> Reply:
        message = await self.access.read(self._txn_status_message, inbound, light=True)
        envelope = self.envelope(
            inbound.registry, inbound.sender_id, "txn-on-status", message, 1, 1
        )
        return Reply(200, envelope, is_envelope=True)

    async def async_txn_status(self, inbound: Inbound) -> Reply:
        target = self.callback_url(inbound, "txn/on-status")
        message = await self.access.read(self._txn_status_message, inbound, light=True)
        envelope = self.envelope(
            inbound.registry, inbound.sender_id, "txn-on-status", message, 1, 1
        )
        if inbound.encrypted:
            envelope[ENCRYPT_KEY] = True
        payload = orjson.dumps(envelope).decode()
        inbound.writes.writes.append(
            lambda conn: self.store.outbox.enqueue(
                conn,
                "deliver",
                registry=inbound.registry,
                sender_id=inbound.sender_id,
                target_url=target,
                action="txn-on-status",
                payload=payload,
            )
        )
        self.wakeup()
        return Reply(202, ack(inbound.correlation_id))

    def _txn_status_message(self, reader: Reader, inbound: Inbound) -> dict[str, Any]:
        request = parse_message(TxnStatusRequest, inbound.message)
        if inbound.header.total_count not in (0, 1):
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"header.total_count is {inbound.header.total_count}; a txn/status "
                "message holds one txnstatus_request (rjct.total_count.invalid)",
            )
        item = request.txnstatus_request
        txn_type = TXN_TYPE_ALIASES.get(item.txn_type, item.txn_type)
        allowed = set(inbound.profile.txn_types) | {"search", "subscribe", "unsubscribe", "receipt"}
        if txn_type not in allowed:
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"message.txnstatus_request.txn_type '{item.txn_type}' is not one of "
                f"{', '.join(inbound.profile.txn_types)}",
            )
        attribute_type = item.attribute_type
        value = _txn_attribute_value(attribute_type, item.attribute_value)
        # A registry whose contract has no txn_type `unsubscribe` (SR, IBR, ESS) answers about
        # unsubscriptions in its `subscribe` form: each subscription with its status now.
        answer_type = txn_type
        if txn_type == "unsubscribe" and "unsubscribe" not in inbound.profile.txn_types:
            answer_type = "subscribe"
        found: list[Any] = []
        status: dict[str, Any] | None = None
        if attribute_type == TxnAttributeType.SUBSCRIPTION_CODE_LIST and txn_type in (
            "subscribe",
            "unsubscribe",
        ):
            status = self.subscriptions.codes_status(
                reader, inbound, answer_type, request.transaction_id, value
            )
            found = [status] if status is not None else []
        elif attribute_type != TxnAttributeType.SUBSCRIPTION_CODE_LIST:
            conn = reader.conn
            found = self.store.txns.find(
                conn, inbound.registry, inbound.sender_id, attribute_type, value
            )
            found = [(t, items) for t, items in found if t.txn_type == txn_type]
            if attribute_type == TxnAttributeType.REFERENCE_ID_LIST and found:
                found = [f for f in found if f[1]]
            if found:
                txn, items = found[0]
                if answer_type != txn_type:
                    status = self.subscriptions.unsubscribe_as_subscribe(reader, txn, items)
                else:
                    status = self._txn_status_body(reader, inbound, txn, items)
        if not found or status is None:
            # Unknown here, or another partner's: the same answer either way, in the shape of
            # the transaction asked about, saying that nothing matches.
            status = _unknown_txn_status(
                answer_type,
                request.transaction_id,
                inbound.correlation_id,
                item.reference_id,
                f"no {txn_type} transaction of sender '{inbound.sender_id}' with "
                f"{attribute_type} {_show(value)} is known to the {inbound.profile.title}",
            )
        if "unsubscribe" not in inbound.profile.txn_types and "subscribe_response" in status:
            # These contracts' txn_status is a search response or a receipt only: the
            # subscribe items are mirrored as search_response items (status and message), the
            # subscriptions themselves beside them in subscribe_response.
            status["search_response"] = [_as_search_item(i) for i in status["subscribe_response"]]
        return {
            "transaction_id": request.transaction_id,
            "correlation_id": inbound.correlation_id,
            "txnstatus_response": {"txn_type": answer_type, "txn_status": status},
        }

    def _txn_status_body(
        self, reader: Reader, inbound: Inbound, txn: Any, items: list[ItemRow]
    ) -> dict[str, Any]:
        conn = reader.conn
        profile = self.profiles[txn.registry]
        if txn.txn_type == "subscribe":
            return self.subscriptions.subscribe_status(reader, txn, items)
        if txn.txn_type == "unsubscribe":
            return self.subscriptions.unsubscribe_status(reader, txn, items)
        if txn.txn_type == "receipt":
            beneficiaries = []
            shape = self.shaper(inbound.partner, txn.registry)
            for item in items:
                result = item.result or {}
                entity, keys = result.get("entity"), result.get("keys")
                if not entity or not keys:
                    continue  # a rejected beneficiary: nothing was stored
                fetched = self.store.records.fetch_keys(conn, txn.registry, entity, keys)
                for key in keys:
                    if key in fetched:
                        record = orjson.loads(fetched[key])
                        beneficiaries.append(shape(entity, record) if shape else record)
            return {
                "transaction_id": txn.transaction_id,
                "receipt_information": {"beneficiaries": beneficiaries},
            }
        outcomes = []
        for item in items:
            outcome = Outcome(
                item.seq,
                item.reference_id or "",
                item.locale,
                item.status,
                item.reason_code,
                item.reason_message,
            )
            result = item.result or {}
            if item.status == RequestStatus.SUCCESS and result.get("entity"):
                outcome.entity = result["entity"]
                outcome.pagination = result.get("pagination")
                pks = result.get("pks") or []
                by_pk = self.store.records.fetch(conn, txn.registry, outcome.entity, pks)
                outcome.pks = [pk for pk in pks if pk in by_pk]
                outcome.records = [by_pk[pk] for pk in outcome.pks]
            outcomes.append(outcome)
        inbound.records = _record_refs(outcomes)
        return {
            "transaction_id": txn.transaction_id,
            "correlation_id": txn.correlation_id,
            "search_response": self.search.render(
                profile, outcomes, shape=self.shaper(inbound.partner, txn.registry)
            ),
        }


def _as_search_item(item: dict[str, Any]) -> dict[str, Any]:
    """A subscribe_response item as a search_response item: its reference, time, status and
    a message naming its reason and subscriptions (the reason code is subscribe's, not one of
    search's, so it is in the message)."""
    parts = [str(item["status_reason_code"])] if item.get("status_reason_code") else []
    if item.get("status_reason_message"):
        parts.append(str(item["status_reason_message"]))
    for sub in item.get("subscriptions") or []:
        parts.append(f"subscription {sub.get('code')}: {sub.get('status')}")
    out = {
        "reference_id": item.get("reference_id") or "",
        "timestamp": item.get("timestamp") or format_ts(),
        "status": item.get("status") or RequestStatus.SUCCESS.value,
    }
    if parts:
        out["status_reason_message"] = "; ".join(parts)[:999]
    if item.get("locale"):
        out["locale"] = item["locale"]
    return out


def _unknown_txn_status(
    txn_type: str, transaction_id: str, correlation_id: str, reference_id: str, reason: str
) -> dict[str, Any]:
    """`txn_status` of a transaction this registry does not know (for this sender)."""
    now = format_ts()
    if txn_type == "unsubscribe":
        return {
            "transaction_id": transaction_id,
            "correlation_id": correlation_id,
            "timestamp": now,
            "status": RequestStatus.REJECTED.value,
            "status_reason_code": "rjct.subscription_code.invalid",
            "status_reason_message": reason,
            "subscription_status": [],
        }
    item = {
        "reference_id": reference_id,
        "timestamp": now,
        "status": RequestStatus.REJECTED.value,
        "status_reason_code": "rjct.reference_id.invalid",
        "status_reason_message": reason,
    }
    key = "subscribe_response" if txn_type == "subscribe" else "search_response"
    return {"transaction_id": transaction_id, "correlation_id": correlation_id, key: [item]}


def _txn_attribute_value(attribute_type: str, value: Any) -> Any:
    if attribute_type in (TxnAttributeType.TRANSACTION_ID, TxnAttributeType.CORRELATION_ID):
        if (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > 99
            or has_control_chars(value)
        ):
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"message.txnstatus_request.attribute_value must be the {attribute_type}"
                " (a string of 1 to 99 characters, no control characters)",
            )
        return value
    if attribute_type in (
        TxnAttributeType.REFERENCE_ID_LIST,
        TxnAttributeType.SUBSCRIPTION_CODE_LIST,
    ):
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v and not has_control_chars(v) for v in value)
        ):
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"message.txnstatus_request.attribute_value must be a list of strings "
                f"for {attribute_type}",
            )
        return value
    raise DCIError(
        ErrorCode.REQUEST_BAD,
        f"message.txnstatus_request.attribute_type '{attribute_type}' is not one of "
        "transaction_id, reference_id_list, correlation_id, subscription_code_list",
    )


def _show(value: Any) -> str:
    return ", ".join(f"'{v}'" for v in value) if isinstance(value, list) else f"'{value}'"


def _record_refs(outcomes: list[Outcome]) -> list[str]:
    refs = []
    for o in outcomes:
        for pk in o.pks:
            refs.append(f"{o.entity}:{pk}")
    return refs
