"""Search as a service: prepare (validate + plan every item), execute (one batched store round
trip where possible), render (the newest SearchResponse shape).

Sync search, the async search worker, txn/status and the registry-specific calls all go through
this one path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
from sqlalchemy import Connection

from ..standard.codes import ErrorCode, RequestStatus, SearchReason
from ..standard.envelope import format_ts
from ..standard.errors import DCIError, ItemRejected
from ..standard.fields import FieldAccess, check_plan
from ..standard.messages import (
    SearchCriteria,
    SearchRequest,
    SearchRequestItem,
    parse_items,
    parse_message,
    search_response_item,
)
from ..standard.plan import IdCond, Limits, SearchPlan, plan_search
from ..standard.profiles.base import RegistryProfile
from ..standard.query import count_terms, parse_query
from ..store import Store
from ..store.access import Reader
from ..store.transactions import ItemRow


@dataclass
class PreparedItem:
    seq: int
    reference_id: str
    locale: str | None
    plan: SearchPlan | None = None
    rejection: ItemRejected | None = None
    request: SearchRequestItem | None = None
    terms: int = 0  # conditions plus `in` values (the message's work budget)


@dataclass
class Outcome:
    """The answer to one search item."""

    seq: int
    reference_id: str
    locale: str | None
    status: str
    reason_code: str | None = None
    reason_message: str | None = None
    entity: str | None = None
    pks: list[int] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # JSON text, in page order
    pagination: dict[str, int] | None = None

    def item_row(self, timestamp: str) -> ItemRow:
        result = None
        if self.status == RequestStatus.SUCCESS:
            result = {"entity": self.entity, "pks": self.pks, "pagination": self.pagination}
        return ItemRow(
            seq=self.seq,
            reference_id=self.reference_id,
            status=self.status,
            timestamp=timestamp,
            locale=self.locale,
            reason_code=self.reason_code,
            reason_message=self.reason_message,
            result=result,
        )


ConsentCheck = Callable[[SearchCriteria, str], None]


@dataclass
class ReplyBudget:
    """How many records, and how many bytes of records, one reply may still carry.

    The items of a message draw on it in order; an item whose records would pass either bound
    is rejected (`rjct.search.too_many_records_found`) and the items after it may still be
    answered from what is left. Bytes are those of the records as stored (their JSON text);
    minimisation only makes them smaller. The `*_setting` names say where each bound is set."""

    records: int | None
    bytes: int | None
    records_setting: str = "limits.max_reply_records"
    bytes_setting: str = "limits.max_reply_bytes"
    used_records: int = 0
    used_bytes: int = 0

    def fetch_limit(self, page_size: int) -> int:
        """Rows worth fetching for one item: one more than still fits tells it would not."""
        if self.records is None:
            return page_size
        return min(page_size, max(self.records - self.used_records, 0) + 1)

    def admit(self, rows: list[tuple[int, str]]) -> str | None:
        """Count these rows against the budget, or say (the item's reason) why they do not
        fit; rows that do not fit are not counted."""
        count = len(rows)
        if self.records is not None and self.used_records + count > self.records:
            return (
                f"the records of this item would take the reply past {self.records} records, "
                f"the most this registry returns in one reply ({self.records_setting}; "
                f"{self.used_records} used by the items before it): ask for them in another "
                "message or with a smaller page_size"
            )
        size = sum(len(record.encode()) for _, record in rows) if self.bytes is not None else 0
        if self.bytes is not None and self.used_bytes + size > self.bytes:
            return (
                f"the records of this item would take the reply past {self.bytes} bytes of "
                f"records, the most this registry returns in one reply ({self.bytes_setting}; "
                f"{self.used_bytes} used by the items before it): ask for them "
                "in another message or with a smaller page_size"
            )
        self.used_records += count
        self.used_bytes += size
        return None


def consent_check(
    required: list[str] | None, partner_purposes: list[str], registry_title: str
) -> ConsentCheck | None:
    """The consent rule of a registry for one partner, or None when the registry requires none.

    With a rule, every search item must carry a `consent` or `authorize` object whose
    `purpose.code` the partner may claim and (when the registry lists codes) the registry
    accepts. Anything else is refused: fail closed."""
    if required is None:
        return None
    accepted = set(partner_purposes) if not required else set(partner_purposes) & set(required)

    def check(criteria: SearchCriteria, where: str) -> None:
        codes = [
            obj.purpose_code() for obj in (criteria.consent, criteria.authorize) if obj is not None
        ]
        codes = [c for c in codes if c]
        allowed = ", ".join(sorted(accepted)) or "none (ask the registry operator)"
        if not codes:
            raise ItemRejected(
                SearchReason.SEARCH_CRITERIA_INVALID,
                f"{where}: the {registry_title} requires consent: send consent (or authorize) "
                f"with purpose.code, one of: {allowed}",
            )
        if not any(code in accepted for code in codes):
            raise ItemRejected(
                SearchReason.SEARCH_CRITERIA_INVALID,
                f"{where}: purpose code {', '.join(repr(c) for c in codes)} is not one this "
                f"partner may claim here (allowed: {allowed})",
            )

    return check


def check_batch(header_total: int | None, count: int, limit: int, list_name: str) -> None:
    if count == 0:
        raise DCIError(ErrorCode.REQUEST_BAD, f"message.{list_name} is empty")
    if count > limit:
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            f"message.{list_name} has {count} items; this registry accepts at most {limit} per "
            "message (rjct.total_count.limit_exceeded)",
        )
    if header_total != count:
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            f"header.total_count is {header_total} but message.{list_name} has {count} items "
            "(rjct.total_count.invalid)",
        )


class SearchService:
    def __init__(self, store: Store, limits: Limits, max_batch: int) -> None:
        self.store = store
        self.limits = limits
        self.max_batch = max_batch

    # ----------------------------------------------------------------------------- prepare

    def prepare(
        self,
        profile: RegistryProfile,
        message: Any,
        header_total: int | None,
        today: date,
        consent: ConsentCheck | None = None,
        access: FieldAccess | None = None,
    ) -> tuple[SearchRequest, list[PreparedItem]]:
        """Validate and plan every item. `consent(criteria, where)` refuses an item whose
        consent / authorize the registry does not accept (see `consent_check`); `access`
        refuses an item that filters or sorts on a field the partner may not query."""
        request = parse_message(SearchRequest, message)
        check_batch(header_total, len(request.search_request), self.max_batch, "search_request")
        prepared = []
        budget = self.limits.max_query_terms  # shared by the items of this message
        for seq, (ref, parsed) in enumerate(
            parse_items(SearchRequestItem, request.search_request, "search_request")
        ):
            item = self._prepare_item(profile, seq, ref, parsed, today, consent, budget, access)
            if item.plan is not None:
                budget -= item.terms
            prepared.append(item)
        return request, prepared

    def is_light(self, items: list[PreparedItem]) -> bool:
        """Whether answering these items is a light read (`store.access`): only batched
        identifier lookups are; any compiled query is heavy (never on the event loop)."""
        return all(item.plan is None or self._is_lookup(item.plan) for item in items)

    @staticmethod
    def _is_lookup(plan: SearchPlan) -> bool:
        node = plan.node
        return isinstance(node, IdCond) and node.entity == plan.entity.name and not plan.sort

    def _prepare_item(
        self,
        profile: RegistryProfile,
        seq: int,
        ref: str | None,
        parsed: SearchRequestItem | ItemRejected,
        today: date,
        consent: ConsentCheck | None,
        budget: int,
        access: FieldAccess | None = None,
    ) -> PreparedItem:
        reference = ref if ref else f"#{seq + 1}"
        if isinstance(parsed, ItemRejected):
            return PreparedItem(seq, reference, None, rejection=parsed)
        where = f"message.search_request[{seq}].search_criteria"
        try:
            criteria = parsed.effective_criteria(f"message.search_request[{seq}]")
            if consent is not None:
                consent(criteria, where)
            query = parse_query(criteria.query_type, criteria.query, where)
            terms = count_terms(query.node)
            limit = self.limits.max_query_terms
            if terms > limit:
                raise ItemRejected(
                    SearchReason.SEARCH_CRITERIA_INVALID,
                    f"{where}.query has {terms} terms (conditions plus the values of 'in' "
                    f"lists); this registry answers at most {limit} terms per message",
                )
            if terms > budget:
                raise ItemRejected(
                    SearchReason.SEARCH_CRITERIA_INVALID,
                    f"{where}.query has {terms} terms (conditions plus the values of 'in' "
                    f"lists) and the message's budget of {limit} terms has {max(budget, 0)} "
                    "left after the earlier items: send the rest in another message",
                )
            plan = plan_search(profile, criteria, query, today, self.limits)
            if access is not None:
                check_plan(plan, access, where)
        except ItemRejected as rejection:
            return PreparedItem(seq, reference, parsed.locale, rejection=rejection, request=parsed)
        return PreparedItem(seq, reference, parsed.locale, plan=plan, request=parsed, terms=terms)

    # ----------------------------------------------------------------------------- execute

    def execute(
        self,
        conn: Connection | Reader,
        registry: str,
        items: list[PreparedItem],
        budget: ReplyBudget | None = None,
    ) -> list[Outcome]:
        """Answer prepared items; `conn` is a Connection or a `Reader` (identifier lookups use
        its DBAPI connection, other searches open a SQLAlchemy connection only if needed).

        The items draw on `budget` in their order (the reply's records and bytes): a compiled
        search fetches no more rows than still fit, and an item that does not fit is
        rejected with `rjct.search.too_many_records_found`."""
        budget = budget or ReplyBudget(None, None)
        # identifier lookups first, batched: one statement per (entity, identifier type)
        pages: dict[int, tuple[str, int, list[tuple[int, str]]]] = {}
        batched: dict[tuple[str, str], list[PreparedItem]] = defaultdict(list)
        for item in items:
            plan = item.plan
            if item.rejection is None and plan is not None and self._is_lookup(plan):
                batched[(plan.entity.name, plan.node.id_type)].append(item)  # type: ignore[union-attr]
        for (entity, id_type), group in batched.items():
            values = [g.plan.node.value for g in group]  # type: ignore[union-attr]
            hits = self.store.records.lookup(conn, registry, entity, id_type, values)
            for g in group:
                assert g.plan is not None
                found = hits.get(g.plan.node.value, [])  # type: ignore[union-attr]
                page = found[g.plan.offset : g.plan.offset + g.plan.page_size]
                pages[g.seq] = (entity, len(found), page)
        outcomes = []
        for item in items:
            if item.rejection is not None:
                outcomes.append(self._rejected(item, item.rejection.code, item.rejection.message))
                continue
            assert item.plan is not None
            if item.seq in pages:
                entity, total, rows = pages[item.seq]
                outcome = self._page(item, entity, total, rows)
            else:
                outcome = self._search_one(conn, registry, item, budget)
            if outcome.status == RequestStatus.SUCCESS:
                refused = budget.admit(list(zip(outcome.pks, outcome.records, strict=True)))
                if refused is not None:
                    outcome = self._rejected(item, SearchReason.TOO_MANY_RECORDS, refused)
            outcomes.append(outcome)
        return outcomes

    @staticmethod
    def _rejected(item: PreparedItem, code: str, message: str) -> Outcome:
        return Outcome(
            item.seq, item.reference_id, item.locale, RequestStatus.REJECTED, code, message
        )

    def _search_one(
        self, conn: Connection | Reader, registry: str, item: PreparedItem, budget: ReplyBudget
    ) -> Outcome:
        plan = item.plan
        assert plan is not None
        if isinstance(conn, Reader):
            conn = conn.conn
        cap = self.limits.max_total_records
        limit = budget.fetch_limit(plan.page_size)
        result = self.store.records.search(conn, registry, plan, cap=cap, limit=limit)
        if cap is not None and result.total_count > cap:
            return self._rejected(
                item,
                SearchReason.TOO_MANY_RECORDS,
                f"the query matches more than {cap} records; narrow the criteria",
            )
        return self._page(item, plan.entity.name, result.total_count, result.rows)

    @staticmethod
    def _page(item: PreparedItem, entity: str, total: int, rows: list[tuple[int, str]]) -> Outcome:
        plan = item.plan
        assert plan is not None
        return Outcome(
            item.seq,
            item.reference_id,
            item.locale,
            RequestStatus.SUCCESS,
            entity=entity,
            pks=[pk for pk, _ in rows],
            records=[record for _, record in rows],
            pagination={
                "page_size": plan.page_size,
                "page_number": plan.page_number,
                "total_count": total,
            },
        )

    # ----------------------------------------------------------------------------- render

    @staticmethod
    def render(
        profile: RegistryProfile,
        outcomes: list[Outcome],
        timestamp: str | None = None,
        shape: Any = None,
    ) -> list[dict[str, Any]]:
        """SearchResponse items. `shape(entity, record_dict) -> dict` lets the caller cut a
        record to what the receiving partner may see (data minimisation)."""
        now = timestamp or format_ts()
        out = []
        for outcome in outcomes:
            records: list[Any] | None = None
            if outcome.status == RequestStatus.SUCCESS:
                records = [orjson.loads(r) for r in outcome.records]
                if shape is not None:
                    records = [shape(outcome.entity, r) for r in records]
            out.append(
                search_response_item(
                    reference_id=outcome.reference_id,
                    timestamp=now,
                    status=outcome.status,
                    reg_type=profile.reg_type,
                    reg_record_type=outcome.entity,
                    records=records,
                    pagination=outcome.pagination,
                    reason_code=outcome.reason_code,
                    reason_message=outcome.reason_message,
                    locale=outcome.locale,
                )
            )
        return out


def completed(outcomes: list[Outcome]) -> int:
    return sum(1 for o in outcomes if o.status in (RequestStatus.SUCCESS, RequestStatus.REJECTED))
