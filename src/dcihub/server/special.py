"""Serving the special calls that registry profiles declare (`standard.calls`).

One handler for every special endpoint: it parses the message with the endpoint's request model,
runs the profile's handler in a worker thread over a `CallContext` bound to this message, and
wraps its answer in the standard sync envelope (DIGEST §6 #19, #20). The context reuses the
search path: the flat `{"dotted.path": {"eq": value}}` form (or any other expression or
predicate) is bound to the registry profile like a search. No registry is named here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ..standard.calls import CallContext, ItemResult, Matched, SpecialEndpoint
from ..standard.codes import ErrorCode, RequestStatus, SearchReason
from ..standard.envelope import format_ts
from ..standard.errors import DCIError, ItemRejected
from ..standard.fields import check_plan
from ..standard.messages import SearchCriteria, parse_message
from ..standard.plan import Limits, plan_search
from ..standard.query import parse_query
from ..store.transactions import ItemRow, NewTxn
from .pipeline import Inbound, Reply

if TYPE_CHECKING:
    from .node import RegistryNode


class InboundCallContext(CallContext):
    """The `CallContext` of one inbound message (used from a worker thread)."""

    def __init__(self, node: RegistryNode, inbound: Inbound) -> None:
        self.node = node
        self.inbound = inbound
        self._shape = node.shaper(inbound.partner, inbound.registry)
        self._sees = node.field_access(inbound.partner, inbound.registry, query=False)
        self._queries = node.field_access(inbound.partner, inbound.registry, query=True)

    @property
    def registry(self) -> str:
        return self.inbound.registry

    @property
    def title(self) -> str:
        return self.inbound.profile.title

    @property
    def reg_type(self) -> str:
        return self.inbound.profile.reg_type

    @property
    def default_entity(self) -> str:
        return self.inbound.profile.default_entity

    @property
    def correlation_id(self) -> str:
        return self.inbound.correlation_id

    @property
    def header_total_count(self) -> int | None:
        return getattr(self.inbound.header, "total_count", None)

    @property
    def max_batch_items(self) -> int:
        return self.node.settings.limits.max_batch_items

    def now(self) -> str:
        return format_ts()

    def match(
        self,
        query_type: str,
        query: Any,
        where: str,
        response_entity: str | None = None,
        max_matches: int = 100,
    ) -> Matched:
        inbound, node = self.inbound, self.node
        profile = inbound.profile
        if node.consent(inbound.registry, inbound.partner) is not None:
            raise DCIError(
                ErrorCode.REQUEST_FORBIDDEN,
                f"the {profile.title} requires consent for every search, and "
                f"/registry/{inbound.endpoint.path} cannot carry one: use "
                "/registry/sync/search with search_criteria.consent",
                403,
            )
        query_type = query_type or "expression"
        # A free-text response_entity (IBR's example says "Beneficiary") is used when it names
        # a record type of the registry, ignored otherwise.
        if response_entity and profile.find_entity(response_entity) is None:
            response_entity = None
        try:
            parsed = parse_query(query_type, query, where)
            criteria = SearchCriteria(
                query_type=query_type, query=query, response_entity=response_entity
            )
            limits = Limits(max_matches, max_matches, None, node.limits.max_query_terms)
            plan = plan_search(profile, criteria, parsed, node.today(), limits)
            if self._queries is not None:
                check_plan(plan, self._queries, where)
        except ItemRejected as exc:
            raise DCIError(ErrorCode.REQUEST_BAD, f"{exc.message} ({exc.code})") from None
        with node.store.read() as conn:
            result = node.store.records.search(conn, inbound.registry, plan, cap=max_matches)
        if result.total_count > max_matches:
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"the criteria match more than {max_matches} records; identify the person, "
                f"e.g. by UIN ({SearchReason.TOO_MANY_RECORDS})",
            )
        return Matched(
            entity=plan.entity.name,
            records=[orjson.loads(record) for _, record in result.rows],
            pks=[pk for pk, _ in result.rows],
            total_count=result.total_count,
            page_size=plan.page_size,
        )

    def shape(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        return self._shape(entity, record) if self._shape is not None else record

    def may_see(self, entity: str, path: str) -> bool:
        return self._sees is None or self._sees.allows(entity, path)

    def existing_keys(self, entity: str, keys: list[str]) -> set[str]:
        store = self.node.store
        with store.read() as conn:
            return set(store.records.fetch_keys(conn, self.registry, entity, keys))

    def known_values(self, entity: str, attribute: str, values: list[str]) -> set[str]:
        configured = self.node.settings.registries.get(self.registry)
        listed = configured.known_values.get(attribute) if configured is not None else None
        if listed is not None:
            allowed = {str(v).casefold() for v in listed}
            return {v for v in values if v.casefold() in allowed}
        store = self.node.store
        with store.read() as conn:
            return store.records.known_values(conn, self.registry, entity, attribute, values)

    def store_records(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        store, registry = self.node.store, self.registry

        def write(conn: Any) -> None:
            for record in records:
                store.records.upsert(conn, registry, record)

        self.inbound.writes.writes.append(write)

    def record(
        self, transaction_id: str, txn_type: str, items: list[ItemResult], action: str | None = None
    ) -> None:
        inbound = self.inbound
        now = format_ts()
        rows = [
            ItemRow(
                seq,
                item.reference_id,
                item.status,
                now,
                reason_code=item.reason_code,
                reason_message=item.reason_message,
                result=item.result,
            )
            for seq, item in enumerate(items)
        ]
        inbound.writes.txns.append(
            (
                NewTxn(
                    registry=inbound.registry,
                    sender_id=inbound.sender_id,
                    transaction_id=transaction_id,
                    correlation_id=inbound.correlation_id,
                    message_id=inbound.header.message_id,
                    action=action or inbound.endpoint.action,
                    txn_type=txn_type,
                    mode="sync",
                    status=RequestStatus.SUCCESS,
                    total_count=len(rows),
                    completed_count=len(rows),
                    items=rows,
                ),
                None,
            )
        )

    def touched(self, refs: list[str]) -> None:
        self.inbound.records.extend(refs)


class SpecialCalls:
    """The handler of every special endpoint of every profile served."""

    def __init__(self, node: RegistryNode) -> None:
        self.node = node

    async def handle(self, inbound: Inbound) -> Reply:
        endpoint: SpecialEndpoint | None = inbound.endpoint.special
        assert endpoint is not None, "a special endpoint without its declaration"
        request = parse_message(endpoint.request_model, inbound.message)
        context = InboundCallContext(self.node, inbound)
        answer = await self.node.access.run(endpoint.handler, context, request)
        envelope = self.node.envelope(
            inbound.registry,
            inbound.sender_id,
            answer.action,
            answer.message,
            answer.count,
            answer.count,
        )
        return Reply(200, envelope, is_envelope=True)
