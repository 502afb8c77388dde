"""Registry-specific synchronous calls: DR `sync/disabled`, `sync/get-disability-support`,
`sync/get-disability-details`; IBR `sync/enrolled` and `sync/enrollment/updates`.

They reuse the generic query engine: the flat `{"dotted.path": {"eq": value}}` form (or any
other expression / predicate) is bound to the registry profile like a search. The answers use
the contract's bare response bodies inside the standard sync envelope (DIGEST §6 #19, #20):
`reference_id` is the request's `transaction_id`, since these requests carry none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ..standard.codes import ErrorCode, RequestStatus, SearchReason
from ..standard.envelope import format_ts, has_control_chars
from ..standard.errors import DCIError, ItemRejected
from ..standard.messages import (
    DisabledRequest,
    EnrolledRequest,
    EnrollmentUpdatesRequest,
    SearchCriteria,
    parse_message,
)
from ..standard.plan import Limits, plan_search
from ..standard.profiles import dr, ibr
from ..standard.query import parse_query
from ..store.records import SearchResult
from ..store.transactions import ItemRow, NewTxn
from .pipeline import Handler, Inbound, Reply

if TYPE_CHECKING:
    from .node import RegistryNode

MAX_MATCHES = 100


class SpecialCalls:
    def __init__(self, node: RegistryNode) -> None:
        self.node = node

    def handlers(self) -> dict[str, Handler]:
        return {
            "disabled": self.disabled,
            "disability_support": self.disability_support,
            "disability_details": self.disability_details,
            "enrolled": self.enrolled,
            "enrollment_updates": self.enrollment_updates,
        }

    # ----------------------------------------------------------------------------- shared

    def _match(self, inbound: Inbound, criteria: Any, where: str) -> tuple[Any, SearchResult]:
        """Run the criteria of a special call as a search over the registry's records."""
        profile = inbound.profile
        if self.node.consent(inbound.registry, inbound.partner) is not None:
            raise DCIError(
                ErrorCode.REQUEST_FORBIDDEN,
                f"the {profile.title} requires consent for every search, and "
                f"/registry/{inbound.endpoint.path} cannot carry one: use "
                "/registry/sync/search with search_criteria.consent",
                403,
            )
        query_type = criteria.query_type or "expression"
        # IBR's enrolled_criteria.response_entity is free text ("Beneficiary" in the example):
        # used when it names a record type of the registry, ignored otherwise.
        entity = getattr(criteria, "response_entity", None)
        if entity and profile.find_entity(entity) is None:
            entity = None
        try:
            parsed = parse_query(query_type, criteria.query, f"message.{where}")
            search_criteria = SearchCriteria(
                query_type=query_type, query=criteria.query, response_entity=entity
            )
            plan = plan_search(
                profile,
                search_criteria,
                parsed,
                self.node.today(),
                Limits(MAX_MATCHES, MAX_MATCHES, None),
            )
        except ItemRejected as exc:
            raise DCIError(ErrorCode.REQUEST_BAD, f"{exc.message} ({exc.code})") from None
        with self.node.store.read() as conn:
            result = self.node.store.records.search(conn, inbound.registry, plan, cap=MAX_MATCHES)
        if result.total_count > MAX_MATCHES:
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"the criteria match more than {MAX_MATCHES} records; identify the "
                f"person, e.g. by UIN ({SearchReason.TOO_MANY_RECORDS})",
            )
        return plan, result

    def _record(
        self, inbound: Inbound, transaction_id: str, txn_type: str, items: list[ItemRow]
    ) -> None:
        """Queue the transaction record; the pipeline commits it before replying."""
        inbound.writes.txns.append(
            (
                NewTxn(
                    registry=inbound.registry,
                    sender_id=inbound.sender_id,
                    transaction_id=transaction_id,
                    correlation_id=inbound.correlation_id,
                    message_id=inbound.header.message_id,
                    action=inbound.endpoint.action,
                    txn_type=txn_type,
                    mode="sync",
                    status=RequestStatus.SUCCESS,
                    total_count=len(items),
                    completed_count=len(items),
                    items=items,
                ),
                None,
            )
        )

    def _reply(self, inbound: Inbound, action: str, message: dict[str, Any], count: int) -> Reply:
        envelope = self.node.envelope(
            inbound.registry, inbound.sender_id, action, message, count, count
        )
        return Reply(200, envelope, is_envelope=True)

    # ----------------------------------------------------------------------------- DR

    async def disabled(self, inbound: Inbound) -> Reply:
        request = parse_message(DisabledRequest, inbound.message)
        return await self.node.access.run(self._disabled, inbound, request)

    def _disabled(self, inbound: Inbound, request: DisabledRequest) -> Reply:
        _, result = self._match(inbound, request.disabled_criteria, "disabled_criteria")
        records = [orjson.loads(r) for _, r in result.rows]
        if len(records) > 1:
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"the criteria match {len(records)} persons; sync/disabled answers for "
                "one person: identify them, e.g. by UIN",
            )
        if not records:
            status, reason = "no", "no record in the Disability Registry matches the criteria"
        else:
            record = records[0]
            status = "yes" if dr.is_disabled(record) else "no"
            reason = f"disability_status {record.get('disability_status')}"
        now = format_ts()
        item = {
            "reference_id": request.transaction_id,
            "timestamp": now,
            "status": RequestStatus.SUCCESS.value,
            "status_reason_message": reason,
            "disabled_status": status,
        }
        inbound.facts["records"] = [f"DisabledPerson:{pk}" for pk, _ in result.rows]
        self._record(
            inbound,
            request.transaction_id,
            "search",
            [
                ItemRow(
                    0,
                    request.transaction_id,
                    RequestStatus.SUCCESS,
                    now,
                    reason_message=reason,
                    result={"disabled_status": status},
                )
            ],
        )
        message = {
            "transaction_id": request.transaction_id,
            "correlation_id": inbound.correlation_id,
            "disabled_response": [item],
        }
        return self._reply(inbound, "on-search", message, 1)

    async def disability_support(self, inbound: Inbound) -> Reply:
        request = parse_message(DisabledRequest, inbound.message)
        return await self.node.access.run(self._disability_view, inbound, request, "support")

    async def disability_details(self, inbound: Inbound) -> Reply:
        request = parse_message(DisabledRequest, inbound.message)
        return await self.node.access.run(self._disability_view, inbound, request, "details")

    def _disability_view(self, inbound: Inbound, request: DisabledRequest, view: str) -> Reply:
        plan, result = self._match(inbound, request.disabled_criteria, "disabled_criteria")
        records = [orjson.loads(r) for _, r in result.rows]
        shape = self.node.shaper(inbound.partner, inbound.registry)
        if shape is not None:  # data minimisation: only the fields this partner may receive
            records = [shape(plan.entity.name, r) for r in records]
        if view == "support":
            reg_records: list[Any] = [list(r.get("disability_support") or []) for r in records]
        else:
            reg_records = [
                {
                    "disability_details": list(r.get("disability_details") or []),
                    "disability_status": r.get("disability_status"),
                }
                for r in records
            ]
        now = format_ts()
        item = {
            "reference_id": request.transaction_id,
            "timestamp": now,
            "status": RequestStatus.SUCCESS.value,
            "data": {
                "version": "1.0.0",
                "reg_type": inbound.profile.reg_type,
                "reg_record_type": plan.entity.name,
                "reg_records": reg_records,
            },
            "pagination": {
                "page_size": plan.page_size,
                "page_number": 1,
                "total_count": result.total_count,
            },
            "locale": "eng",
        }
        inbound.facts["records"] = [f"DisabledPerson:{pk}" for pk, _ in result.rows]
        self._record(
            inbound,
            request.transaction_id,
            "search",
            [
                ItemRow(
                    0,
                    request.transaction_id,
                    RequestStatus.SUCCESS,
                    now,
                    result={
                        "entity": plan.entity.name,
                        "pks": [pk for pk, _ in result.rows],
                        "pagination": item["pagination"],
                    },
                )
            ],
        )
        message = {
            "transaction_id": request.transaction_id,
            "correlation_id": inbound.correlation_id,
            "search_response": [item],
        }
        return self._reply(inbound, "on-search", message, 1)

    # ----------------------------------------------------------------------------- IBR

    async def enrolled(self, inbound: Inbound) -> Reply:
        request = parse_message(EnrolledRequest, inbound.message)
        return await self.node.access.run(self._enrolled, inbound, request)

    def _enrolled(self, inbound: Inbound, request: EnrolledRequest) -> Reply:
        _, result = self._match(inbound, request.enrolled_criteria, "enrolled_criteria")
        records = [orjson.loads(r) for _, r in result.rows]
        active = [r for r in records if ibr.is_enrolled(r)]
        if active:
            listed = ", ".join(
                f"{ibr.programme_id(r)} (status {r.get('enrollment_status')}"
                f"{', since ' + r['enrollment_date'] if r.get('enrollment_date') else ''})"
                for r in active
            )
            status, reason = "yes", f"enrolled in {listed}"
        elif records:
            status = "no"
            reason = "no active enrolment; ended: " + ", ".join(
                f"{ibr.programme_id(r)} (status {r.get('enrollment_status')})" for r in records
            )
        else:
            status, reason = "no", "no enrolment in the Integrated Beneficiary Registry matches"
        now = format_ts()
        item = {
            "reference_id": request.transaction_id,
            "timestamp": now,
            "status": RequestStatus.SUCCESS.value,
            "status_reason_message": reason[:999],
            "enrolled_status": status,
        }
        inbound.facts["records"] = [f"Beneficiary:{pk}" for pk, _ in result.rows]
        self._record(
            inbound,
            request.transaction_id,
            "search",
            [
                ItemRow(
                    0,
                    request.transaction_id,
                    RequestStatus.SUCCESS,
                    now,
                    reason_message=reason[:999],
                    result={"enrolled_status": status},
                )
            ],
        )
        message = {
            "transaction_id": request.transaction_id,
            "correlation_id": inbound.correlation_id,
            "enrolled_response": [item],
        }
        return self._reply(inbound, "on-search", message, 1)

    async def enrollment_updates(self, inbound: Inbound) -> Reply:
        request = parse_message(EnrollmentUpdatesRequest, inbound.message)
        count = len(request.beneficiaries)
        limit = self.node.settings.limits.max_batch_items
        if count == 0:
            raise DCIError(ErrorCode.REQUEST_BAD, "message.enrolled_updates.beneficiaries is empty")
        if count > limit:
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"message.enrolled_updates.beneficiaries has {count} items; at most "
                f"{limit} per message (rjct.total_count.limit_exceeded)",
            )
        total = inbound.header.total_count
        if total not in (None, count):
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"header.total_count is {total} but the message holds {count} "
                "beneficiaries (rjct.total_count.invalid)",
            )
        return await self.node.access.run(self._enrollment_updates, inbound, request)

    def _enrollment_updates(self, inbound: Inbound, request: EnrollmentUpdatesRequest) -> Reply:
        """Normalise every beneficiary now; the records are written by the pipeline's group
        commit together with the transaction record, the audit entry and the replay memory
        (all or nothing), before the reply is sent."""
        now = format_ts()
        response_items: list[dict[str, Any]] = []
        rows: list[ItemRow] = []
        records: dict[str, dict[str, Any]] = {}
        entity = inbound.profile.default_entity
        for index, raw in enumerate(request.beneficiaries):
            where = f"message.enrolled_updates.beneficiaries[{index}]"
            reference = (
                str(raw.get("reference_id") or index + 1)
                if isinstance(raw, dict)
                else str(index + 1)
            )
            try:
                if len(reference) > 99 or has_control_chars(reference):
                    reference = str(index + 1)
                    raise ValueError(
                        "reference_id must be 1 to 99 characters without control characters"
                    )
                record = ibr.normalise_beneficiary(raw)
            except ValueError as exc:
                reason = f"{where}: {exc}"
                response_items.append(
                    {
                        "reference_id": reference,
                        "timestamp": now,
                        "status": RequestStatus.REJECTED.value,
                        "status_reason_message": reason[:999],
                    }
                )
                rows.append(
                    ItemRow(
                        index,
                        reference,
                        RequestStatus.REJECTED,
                        now,
                        reason_code=SearchReason.SEARCH_CRITERIA_INVALID,
                        reason_message=reason[:999],
                    )
                )
                continue
            key = record["@id"]
            records[key] = record
            if reference == str(index + 1):
                reference = key
            response_items.append(
                {"reference_id": reference, "timestamp": now, "status": RequestStatus.SUCCESS.value}
            )
            rows.append(
                ItemRow(
                    index,
                    reference,
                    RequestStatus.SUCCESS,
                    now,
                    result={"entity": entity, "keys": [key]},
                )
            )
        with self.node.store.read() as conn:
            known = set(
                self.node.store.records.fetch_keys(conn, inbound.registry, entity, list(records))
            )
        for item, row in zip(response_items, rows, strict=True):
            if row.status == RequestStatus.SUCCESS and row.result:
                key = row.result["keys"][0]
                reason = f"{'updated' if key in known else 'enrolled'} {key}"
                item["status_reason_message"] = row.reason_message = reason
        registry = inbound.registry
        store = self.node.store

        def write(conn: Any) -> None:
            for record in records.values():
                store.records.upsert(conn, registry, record)

        inbound.writes.writes.append(write)
        inbound.writes.txns.append(
            (
                NewTxn(
                    registry=registry,
                    sender_id=inbound.sender_id,
                    transaction_id=request.transaction_id,
                    correlation_id=inbound.correlation_id,
                    message_id=inbound.header.message_id,
                    action="notify",
                    txn_type="receipt",
                    mode="sync",
                    status=RequestStatus.SUCCESS,
                    total_count=len(rows),
                    completed_count=len(rows),
                    items=rows,
                ),
                None,
            )
        )
        inbound.facts["records"] = list(records)
        message = {
            "transaction_id": request.transaction_id,
            "correlation_id": inbound.correlation_id,
            "enrolled_response": response_items,
        }
        return self._reply(inbound, "on-notify", message, len(response_items))
