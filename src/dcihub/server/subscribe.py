"""`registry/subscribe` and `registry/unsubscribe` of every registry that serves them, and the
subscription side of txn/status.

Both are asynchronous: the message is checked, ACKed, and its answer (`on-subscribe` with one
subscription code per accepted item, `on-unsubscribe`) is queued in the outbox in the same
database transaction that stores the subscriptions and the transaction record. Rejections are
in the answer, per item, in the standard's terms (`rjct.notify_types.invalid`,
`rjct.notify_details.invalid`, `rjct.event.already_subscribed`, `rjct.subscription_code.invalid`,
`rjct.requester.invalid`, `rjct.event.already_unsubscribed`). No registry is named here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from ..standard.codes import (
    ErrorCode,
    RequestStatus,
    SubscribeReason,
    SubscriptionStatus,
    UnsubscribeReason,
)
from ..standard.envelope import ack, check_id, format_ts
from ..standard.errors import DCIError, ItemRejected
from ..standard.fields import check_plan
from ..standard.messages import (
    SearchCriteria,
    SubscribeRequest,
    SubscribeRequestItem,
    UnsubscribeRequest,
    parse_items,
    parse_message,
)
from ..standard.subscriptions import (
    SubscribeTerms,
    bind_filter,
    index_keys,
    read_terms,
    subscription_info,
)
from ..store.access import Reader
from ..store.subscriptions import NewSubscription, Subscription, held_back, new_code
from ..store.transactions import ItemRow
from .pipeline import Inbound, Reply
from .search import check_batch

if TYPE_CHECKING:
    from .node import RegistryNode

from .node import ENCRYPT_KEY


def notify_url(callback: str, base: str | None) -> str:
    """Where a subscription's notifications go: the on-subscribe URL with its last path
    segment `notify` (`…/registry/on-subscribe` -> `…/registry/notify`), else the partner's
    callback base + `/registry/notify`, else the on-subscribe URL itself."""
    path, sep, query = callback.partition("?")
    if path.rstrip("/").endswith("/on-subscribe"):
        return path.rstrip("/")[: -len("on-subscribe")] + "notify" + sep + query
    if base:
        return f"{base.rstrip('/')}/registry/notify"
    return callback


class SubscriptionService:
    """The subscribe / unsubscribe handlers of a node."""

    def __init__(self, node: RegistryNode) -> None:
        self.node = node
        self.store = node.store

    # ----------------------------------------------------------------------------- subscribe

    async def subscribe(self, inbound: Inbound) -> Reply:
        node, profile = self.node, inbound.profile
        request = parse_message(SubscribeRequest, inbound.message)
        raw_items = request.subscribe_request
        check_batch(
            inbound.header.total_count,
            len(raw_items),
            node.settings.limits.max_batch_items,
            "subscribe_request",
        )
        target = node.callback_url(inbound, "on-subscribe")
        partner = inbound.partner
        notify_target = notify_url(target, partner.callback_base if partner else None)
        consent = node.consent(inbound.registry, partner)
        # a filter is held to the fields the partner may query, as a search is
        queries = node.field_access(partner, inbound.registry, query=True)
        now = time.time()
        today = node.today()
        parsed = parse_items(SubscribeRequestItem, raw_items, "subscribe_request")
        accepted: list[tuple[int, str, SubscribeTerms, list[str]]] = []
        outcomes: list[dict[str, Any]] = []
        seen: dict[str, str] = {}
        for index, (ref, item) in enumerate(parsed):
            where = f"message.subscribe_request[{index}]"
            reference = ref or str(index + 1)
            if isinstance(item, ItemRejected):
                outcomes.append(_rejected(reference, item, None))
                continue
            try:
                terms = read_terms(profile, item, now, today, node.limits, where)
                if consent is not None:
                    _check_consent(consent, terms, where)
                plan = bind_filter(profile, terms, today, node.limits, f"{where}.filter")
                if plan is not None and queries is not None:
                    check_plan(plan, queries, f"{where}.subscribe_criteria", query="filter")
            except ItemRejected as exc:
                outcomes.append(_rejected(reference, exc, item.locale))
                continue
            key = terms.dedupe_key(inbound.registry, inbound.sender_id)
            if key in seen:
                outcomes.append(
                    _rejected(
                        reference,
                        ItemRejected(
                            SubscribeReason.EVENT_ALREADY_SUBSCRIBED,
                            f"{where} repeats subscribe_request item '{seen[key]}' of this message",
                        ),
                        item.locale,
                    )
                )
                continue
            seen[key] = reference
            outcomes.append({"reference_id": reference, "locale": item.locale or "eng"})
            keys = index_keys(plan.node if plan is not None else None)
            accepted.append((len(outcomes) - 1, key, terms, keys))
        existing = await node.access.read(
            lambda reader: self.store.subscriptions.existing(
                reader.conn, [key for _, key, _, _ in accepted]
            ),
            light=True,
        )
        stamp = format_ts()
        new: list[NewSubscription] = []
        for slot, key, terms, keys in accepted:
            outcome = outcomes[slot]
            if key in existing:
                outcomes[slot] = _rejected(
                    outcome["reference_id"],
                    ItemRejected(
                        SubscribeReason.EVENT_ALREADY_SUBSCRIBED,
                        f"this partner is subscribed to {terms.event.name} with the same "
                        f"criteria already (subscription code {existing[key]})",
                    ),
                    outcome["locale"],
                )
                continue
            code = new_code()
            info = subscription_info(code, SubscriptionStatus.SUBSCRIBE, stamp, profile, terms)
            outcome.update(
                {
                    "timestamp": stamp,
                    "status": RequestStatus.SUCCESS.value,
                    "subscriptions": [info],
                }
            )
            new.append(
                NewSubscription(
                    code,
                    inbound.registry,
                    inbound.sender_id,
                    request.transaction_id,
                    outcome["reference_id"],
                    terms,
                    notify_target,
                    info,
                    keys,
                )
            )
        items = [_response_item(o, stamp) for o in outcomes]
        message = {
            "transaction_id": request.transaction_id,
            "correlation_id": inbound.correlation_id,
            "subscribe_response": items,
        }
        done = sum(1 for i in items if i["status"] == RequestStatus.SUCCESS)
        envelope = node.envelope(
            inbound.registry, inbound.sender_id, "on-subscribe", message, len(items), len(items)
        )
        if inbound.encrypted:
            envelope[ENCRYPT_KEY] = True
        payload = orjson.dumps(envelope).decode()
        rows = [
            ItemRow(
                seq,
                item["reference_id"],
                item["status"],
                stamp,
                locale=item.get("locale"),
                reason_code=item.get("status_reason_code"),
                reason_message=item.get("status_reason_message"),
                result={"codes": [s["code"] for s in item.get("subscriptions", [])]},
            )
            for seq, item in enumerate(items)
        ]
        txn = node._new_txn(
            inbound,
            request.transaction_id,
            "subscribe",
            "async",
            RequestStatus.SUCCESS,
            len(items),
            done,
            sender_uri=target,
            items=rows,
        )

        def accept(conn: Any, txn_pk: int) -> None:
            self.store.subscriptions.create(conn, new)
            self.store.outbox.enqueue(
                conn,
                "deliver",
                registry=inbound.registry,
                txn_pk=txn_pk,
                sender_id=inbound.sender_id,
                target_url=target,
                action="on-subscribe",
                payload=payload,
            )

        inbound.writes.txns.append((txn, accept))
        node.wakeup()
        return Reply(202, ack(inbound.correlation_id))

    # ----------------------------------------------------------------------------- unsubscribe

    async def unsubscribe(self, inbound: Inbound) -> Reply:
        node = self.node
        request = parse_message(UnsubscribeRequest, inbound.message)
        codes = list(dict.fromkeys(request.subscription_codes))
        if not codes:
            raise DCIError(ErrorCode.REQUEST_BAD, "message.subscription_codes is empty")
        limit = node.settings.limits.max_batch_items
        if len(codes) > limit:
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"message.subscription_codes has {len(codes)} codes; at most {limit} per message",
            )
        for index, code in enumerate(codes):
            try:
                check_id(code)
            except ValueError as exc:
                raise DCIError(
                    ErrorCode.REQUEST_BAD, f"message.subscription_codes[{index}] {exc}"
                ) from None
        target = node.callback_url(inbound, "on-unsubscribe")
        found = await node.access.read(
            lambda reader: self.store.subscriptions.by_codes(reader.conn, codes), light=True
        )
        problems: list[tuple[str, str]] = []
        own: list[Subscription] = []
        for code in codes:
            sub = found.get(code)
            if sub is None or sub.registry != inbound.registry:
                problems.append(
                    (
                        UnsubscribeReason.SUBSCRIPTION_CODE_INVALID,
                        f"subscription code '{code}' is not known to the {inbound.profile.title}",
                    )
                )
            elif sub.sender_id != inbound.sender_id:
                problems.append(
                    (
                        UnsubscribeReason.REQUESTER_INVALID,
                        f"subscription code '{code}' belongs to another partner",
                    )
                )
            else:
                own.append(sub)
                if sub.status == SubscriptionStatus.UNSUBSCRIBE:
                    problems.append(
                        (
                            UnsubscribeReason.EVENT_ALREADY_UNSUBSCRIBED,
                            f"subscription code '{code}' was unsubscribed already",
                        )
                    )
        stamp = format_ts()
        message: dict[str, Any] = {
            "transaction_id": request.transaction_id,
            "correlation_id": inbound.correlation_id,
            "timestamp": stamp,
        }
        if problems:
            # All or nothing: nothing is unsubscribed; every problem is named.
            message["status"] = RequestStatus.REJECTED.value
            message["status_reason_code"] = str(problems[0][0])
            message["status_reason_message"] = (
                "; ".join(text for _, text in problems) + "; nothing was unsubscribed"
            )[:999]
            message["subscription_status"] = [{"code": s.code, "status": s.status} for s in own]
        else:
            message["status"] = RequestStatus.SUCCESS.value
            message["subscription_status"] = [
                {"code": s.code, "status": SubscriptionStatus.UNSUBSCRIBE.value} for s in own
            ]
        envelope = node.envelope(
            inbound.registry, inbound.sender_id, "on-unsubscribe", message, len(codes), len(codes)
        )
        if inbound.encrypted:
            envelope[ENCRYPT_KEY] = True
        payload = orjson.dumps(envelope).decode()
        row = ItemRow(
            0,
            request.transaction_id,
            message["status"],
            stamp,
            reason_code=message.get("status_reason_code"),
            reason_message=message.get("status_reason_message"),
            result={"codes": codes},
        )
        txn = node._new_txn(
            inbound,
            request.transaction_id,
            "unsubscribe",
            "async",
            RequestStatus.SUCCESS,
            1,
            1,
            sender_uri=target,
            items=[row],
        )
        pks = [] if problems else [s.pk for s in own]

        def accept(conn: Any, txn_pk: int) -> None:
            self.store.subscriptions.unsubscribe(conn, pks)
            self.store.outbox.enqueue(
                conn,
                "deliver",
                registry=inbound.registry,
                txn_pk=txn_pk,
                sender_id=inbound.sender_id,
                target_url=target,
                action="on-unsubscribe",
                payload=payload,
            )

        inbound.writes.txns.append((txn, accept))
        node.wakeup()
        return Reply(202, ack(inbound.correlation_id))

    # ----------------------------------------------------------------------------- txn/status

    def subscribe_status(self, reader: Reader, txn: Any, items: list[ItemRow]) -> dict[str, Any]:
        """`SubscribeResponse` of a subscribe transaction, with each subscription as it is now."""
        codes = [c for item in items for c in (item.result or {}).get("codes", [])]
        subs = self.store.subscriptions.by_codes(reader.conn, codes)
        out = []
        for item in items:
            entry: dict[str, Any] = {
                "reference_id": item.reference_id or "",
                "timestamp": item.timestamp or format_ts(),
                "status": item.status,
            }
            if item.reason_code:
                entry["status_reason_code"] = item.reason_code
            if item.reason_message:
                entry["status_reason_message"] = item.reason_message
            listed = [
                subs[c].current_info() for c in (item.result or {}).get("codes", []) if c in subs
            ]
            if listed:
                entry["subscriptions"] = listed
            entry["locale"] = item.locale or "eng"
            out.append(entry)
        return {
            "transaction_id": txn.transaction_id,
            "correlation_id": txn.correlation_id,
            "subscribe_response": out,
        }

    def unsubscribe_status(self, reader: Reader, txn: Any, items: list[ItemRow]) -> dict[str, Any]:
        """`UnSubscribeResponse` of an unsubscribe transaction (codes as they are now)."""
        item = items[0] if items else None
        codes = (item.result or {}).get("codes", []) if item else []
        subs = self.store.subscriptions.by_codes(reader.conn, codes)
        body: dict[str, Any] = {
            "transaction_id": txn.transaction_id,
            "correlation_id": txn.correlation_id,
            "timestamp": (item.timestamp if item else None) or format_ts(),
            "status": item.status if item else RequestStatus.SUCCESS.value,
        }
        if item is not None and item.reason_code:
            body["status_reason_code"] = item.reason_code
        if item is not None and item.reason_message:
            body["status_reason_message"] = item.reason_message
        body["subscription_status"] = [
            {"code": c, "status": subs[c].status}
            for c in codes
            if c in subs and subs[c].sender_id == txn.sender_id
        ]
        return body

    def filters_refused(
        self, reader: Reader, partner: Any, registry: str, codes: list[str]
    ) -> str | None:
        """Why a notification of these subscriptions may not go to `partner` any more: a
        filter on a field it may no longer query (its `query_fields` were narrowed since it
        subscribed). None: every filter is still allowed."""
        queries = self.node.field_access(partner, registry, query=True)
        if queries is None or not codes:
            return None
        profile = self.node.profiles[registry]
        today = self.node.today()
        for code, sub in self.store.subscriptions.by_codes(reader.conn, codes).items():
            reason = held_back(profile, sub, queries, today, self.node.limits)
            if reason is not None:
                return (
                    f"subscription {code} is held back: its filter is no longer allowed for "
                    f"partner '{sub.sender_id}' ({reason}); widen the partner's "
                    "query_fields and retry the delivery, or the partner unsubscribes"
                )
        return None

    def unsubscribe_as_subscribe(
        self, reader: Reader, txn: Any, items: list[ItemRow]
    ) -> dict[str, Any]:
        """An unsubscribe transaction in the `SubscribeResponse` shape (for contracts without
        txn_type `unsubscribe`): each of its subscriptions with its status now; a rejected
        unsubscribe as one rejected item with its reason."""
        item = items[0] if items else None
        codes = (item.result or {}).get("codes", []) if item else []
        subs = self.store.subscriptions.by_codes(reader.conn, codes)
        own = [subs[c] for c in codes if c in subs and subs[c].sender_id == txn.sender_id]
        stamp = (item.timestamp if item else None) or format_ts()
        note = (
            f"the {self.node.profiles[txn.registry].title} answers txn_type unsubscribe as "
            f"subscribe (its contract has no unsubscribe txn_type): unsubscribe transaction "
            f"'{txn.transaction_id}', each subscription with its status now"
        )
        if item is not None and item.status == RequestStatus.REJECTED:
            response = [
                {
                    "reference_id": item.reference_id or txn.transaction_id,
                    "timestamp": stamp,
                    "status": RequestStatus.REJECTED.value,
                    "status_reason_code": item.reason_code or "rjct.subscription_code.invalid",
                    "status_reason_message": f"{item.reason_message or ''} ({note})"[:999],
                    "locale": item.locale or "eng",
                }
            ]
        else:
            response = [
                {
                    "reference_id": s.reference_id,
                    "timestamp": stamp,
                    "status": RequestStatus.SUCCESS.value,
                    "status_reason_message": note[:999],
                    "subscriptions": [s.current_info()],
                    "locale": s.locale or "eng",
                }
                for s in own
            ]
        return {
            "transaction_id": txn.transaction_id,
            "correlation_id": txn.correlation_id,
            "subscribe_response": response,
        }

    def codes_status(
        self,
        reader: Reader,
        inbound: Inbound,
        txn_type: str,
        transaction_id: str,
        codes: list[str],
    ) -> dict[str, Any] | None:
        """txn/status by `subscription_code_list`: the partner's own subscriptions among
        `codes` (None when it has none of them: answered as unknown)."""
        found = self.store.subscriptions.by_codes(reader.conn, codes)
        own = [
            found[c]
            for c in codes
            if c in found
            and found[c].sender_id == inbound.sender_id
            and found[c].registry == inbound.registry
        ]
        if not own:
            return None
        stamp = format_ts()
        if txn_type == "unsubscribe":
            return {
                "transaction_id": transaction_id,
                "correlation_id": inbound.correlation_id,
                "timestamp": stamp,
                "status": RequestStatus.SUCCESS.value,
                "subscription_status": [{"code": s.code, "status": s.status} for s in own],
            }
        return {
            "transaction_id": own[0].transaction_id
            if len({s.transaction_id for s in own}) == 1
            else transaction_id,
            "correlation_id": inbound.correlation_id,
            "subscribe_response": [
                {
                    "reference_id": s.reference_id,
                    "timestamp": stamp,
                    "status": RequestStatus.SUCCESS.value,
                    "subscriptions": [s.current_info()],
                    "locale": s.locale or "eng",
                }
                for s in own
            ],
        }


def _check_consent(consent: Any, terms: SubscribeTerms, where: str) -> None:
    from ..standard.messages import ConsentOrAuthorize

    authorize = (
        ConsentOrAuthorize(purpose={"code": terms.authorize_purpose})
        if terms.authorize_purpose
        else None
    )
    criteria = SearchCriteria(query_type="expression", query=None, authorize=authorize)
    try:
        consent(criteria, f"{where}.subscribe_criteria.authorize")
    except ItemRejected as exc:
        raise ItemRejected(SubscribeReason.NOTIFY_DETAILS_INVALID, exc.message) from None


_SUBSCRIBE_CODES = {str(c) for c in SubscribeReason}


def _rejected(reference: str, exc: ItemRejected, locale: str | None) -> dict[str, Any]:
    # a schema problem in the criteria has a search code; subscribe's list names it otherwise
    code = (
        str(exc.code)
        if str(exc.code) in _SUBSCRIBE_CODES
        else SubscribeReason.NOTIFY_DETAILS_INVALID
    )
    return {
        "reference_id": reference,
        "status": RequestStatus.REJECTED.value,
        "status_reason_code": str(code),
        "status_reason_message": exc.message[:999],
        "locale": locale or "eng",
    }


def _response_item(outcome: dict[str, Any], stamp: str) -> dict[str, Any]:
    item = {"reference_id": outcome["reference_id"], "timestamp": stamp}
    item.update({k: v for k, v in outcome.items() if k not in ("reference_id", "timestamp")})
    item.setdefault("status", RequestStatus.SUCCESS.value)
    return item
