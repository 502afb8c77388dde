"""Disability Registry: persons with disabilities (extensions/dr PWD_Person: personal details,
disability status and level, impairment details, support needs), with the DR's three special
synchronous calls."""

from __future__ import annotations

from typing import Any

from .. import codedirs
from ..calls import CallContext, CallReply, ItemResult, SpecialEndpoint
from ..codes import ErrorCode, RequestStatus
from ..errors import DCIError
from ..messages import DisabledRequest
from .base import (
    SEARCH_ENDPOINTS,
    SUBSCRIBE_ENDPOINTS,
    Attribute,
    ChangeContext,
    Entity,
    Event,
    EventType,
    RecordChange,
    RegistryProfile,
    found,
    option,
)
from .changes import changed, registered_at, registrant
from .common import UIN_NAMES, member_attributes, registration_attributes

APPROVED = "0"

PERSON = Entity(
    name="DisabledPerson",
    aliases=("PWD_Person", "PWDPerson", "DRPerson", "DR_Person", "Person", "DisabledPerson"),
    identifier_paths=(
        "personal_details.member_identifier",
        "personal_details.demographic_info.identifier",
    ),
    identifier_types=("UIN", "PWDN"),
    any_identifier_names=(
        *UIN_NAMES,
        "personal_details.member_identifier",
        "member.member_identifier",
    ),
    attributes=(
        *member_attributes("personal_details."),
        *registration_attributes(),
        Attribute(
            "disability_status",
            "code",
            "disability_status",
            ("status",),
            code_dir="disability_status",
            description="0 Approved, 1 Pending, 2 Expired",
        ),
        Attribute(
            "disability_status_level",
            "code",
            "disability_status_level",
            ("disability_level",),
            code_dir="disability_level",
        ),
        Attribute(
            "impairment_type",
            "code",
            "disability_details.impairment_type",
            ("impairement_type",),
            code_dir="impairment_type",
            multi=True,
        ),
        Attribute(
            "impairment_level",
            "code",
            "disability_details.impairment_level",
            (),
            code_dir="impairment_level",
            multi=True,
        ),
        Attribute(
            "impairment_cause",
            "code",
            "disability_details.impairment_cause",
            (),
            code_dir="impairment_cause",
            multi=True,
        ),
        Attribute(
            "age_on_set",
            "code",
            "disability_details.age_on_set",
            ("age_of_onset",),
            code_dir="disability_onset",
            multi=True,
        ),
        Attribute(
            "transport_requirement",
            "code",
            "transport_requirement",
            (),
            code_dir="transport_requirement",
        ),
        Attribute("housing_type", "code", "housing_type", (), code_dir="housing_type"),
    ),
    description="a person with a disability (PWD_Person)",
)


def is_disabled(record: dict[str, Any]) -> bool:
    """Registered as disabled: an Approved disability status, not withdrawn in the member."""
    details = record.get("personal_details") or {}
    return record.get("disability_status") == APPROVED and details.get("is_disabled") is not False


# ---------------------------------------------------------------------------------------------
# The DR's special calls (DIGEST §1.3, §6 #20): `reference_id` is the request's transaction_id,
# since these requests carry none.


def disabled(ctx: CallContext, request: DisabledRequest) -> CallReply:
    """`sync/disabled`: is this one person registered as disabled? yes / no."""
    criteria = request.disabled_criteria
    found = ctx.match(criteria.query_type, criteria.query, "message.disabled_criteria")
    if len(found.records) > 1:
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            f"the criteria match {len(found.records)} persons; sync/disabled answers for one "
            "person: identify them, e.g. by UIN",
        )
    if not found.records:
        status, reason = "no", f"no record in the {ctx.title} matches the criteria"
    else:
        record = found.records[0]
        status = "yes" if is_disabled(record) else "no"
        reason = "registered as disabled" if status == "yes" else "not registered as disabled"
        if ctx.may_see(found.entity, "disability_status"):  # the reason names what it may see
            reason += f" (disability_status {record.get('disability_status')})"
    item = {
        "reference_id": request.transaction_id,
        "timestamp": ctx.now(),
        "status": RequestStatus.SUCCESS.value,
        "status_reason_message": reason,
        "disabled_status": status,
    }
    ctx.touched(found.refs)
    result = ItemResult(
        request.transaction_id, reason_message=reason, result={"disabled_status": status}
    )
    ctx.record(request.transaction_id, "search", [result])
    message = {
        "transaction_id": request.transaction_id,
        "correlation_id": ctx.correlation_id,
        "disabled_response": [item],
    }
    return CallReply("on-search", message)


def _view(ctx: CallContext, request: DisabledRequest, view: str) -> CallReply:
    criteria = request.disabled_criteria
    found = ctx.match(criteria.query_type, criteria.query, "message.disabled_criteria")
    records = [ctx.shape(found.entity, r) for r in found.records]
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
    pagination = {
        "page_size": found.page_size,
        "page_number": 1,
        "total_count": found.total_count,
    }
    item = {
        "reference_id": request.transaction_id,
        "timestamp": ctx.now(),
        "status": RequestStatus.SUCCESS.value,
        "data": {
            "version": "1.0.0",
            "reg_type": ctx.reg_type,
            "reg_record_type": found.entity,
            "reg_records": reg_records,
        },
        "pagination": pagination,
        "locale": "eng",
    }
    ctx.touched(found.refs)
    result = {"entity": found.entity, "pks": found.pks, "pagination": pagination}
    ctx.record(
        request.transaction_id, "search", [ItemResult(request.transaction_id, result=result)]
    )
    message = {
        "transaction_id": request.transaction_id,
        "correlation_id": ctx.correlation_id,
        "search_response": [item],
    }
    return CallReply("on-search", message)


def disability_support(ctx: CallContext, request: DisabledRequest) -> CallReply:
    """`sync/get-disability-support`: the support a person with disability receives."""
    return _view(ctx, request, "support")


def disability_details(ctx: CallContext, request: DisabledRequest) -> CallReply:
    """`sync/get-disability-details`: the impairment details of a person."""
    return _view(ctx, request, "details")


_BY_UIN = {
    "transaction_id": "t-1",
    "disabled_criteria": {
        "query_type": "expression",
        "query": {"personal_details.member_identifier": {"eq": "<UIN>"}},
    },
}


def record_register(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """A person with disability is registered: --id (UIN; from the civil register when the
    node holds it, else --name, --sex, --birth-date), a new PWDN, --status (default 1
    Pending: awaiting assessment) [--date registration day]."""
    uin, person, marital = registrant(ctx, options)
    if ctx.get(f"dr:pwd:{uin}") is not None:
        raise ValueError(f"UIN {uin} is in the Disability Registry already")
    code = codedirs.get("disability_status").normalise(options.get("status") or "1")
    if code is None:
        raise ValueError("--status: one of 0 Approved, 1 Pending, 2 Expired")
    registered = registered_at(ctx, options)
    member: dict[str, Any] = {
        "@type": "Member",
        "member_identifier": [
            {"identifier_type": "UIN", "identifier_value": uin},
            {"identifier_type": "PWDN", "identifier_value": ctx.new_id("PWDN")},
        ],
        "demographic_info": person,
        "marital_status": marital,
        "is_disabled": code != "2",
        "registration_date": registered,
        "last_updated": ctx.now(),
    }
    return [
        {
            "@type": "DisabledPerson",
            "@id": f"dr:pwd:{uin}",
            "personal_details": member,
            "disability_status": code,
            "registration_date": registered,
            "last_updated": ctx.now(),
        }
    ]


def record_status(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """The disability status of --id becomes --status (0 Approved, 1 Pending, 2 Expired)."""
    person = found(ctx, options, "id", "Disability Registry")
    code = codedirs.get("disability_status").normalise(option(options, "status"))
    if code is None:
        raise ValueError("--status: one of 0 Approved, 1 Pending, 2 Expired")
    if person.get("disability_status") == code:
        raise ValueError(f"the disability status of {person['@id']} is {code} already")
    return [{**person, "disability_status": code, "last_updated": ctx.now()}]


def events(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Event]:
    """Registration; a change of disability status."""
    if after is None:
        return []
    if before is None:
        return [Event("REGISTER", "DisabledPerson", after)]
    if changed(before, after, "disability_status"):
        return [Event("DisabilityStatusChange", "DisabledPerson", after)]
    return []


PROFILE = RegistryProfile(
    name="dr",
    title="Disability Registry",
    reg_type="ns:org:RegistryType:DR",
    entities=(PERSON,),
    default_entity="DisabledPerson",
    txn_types=("search", "subscribe", "unsubscribe"),
    event_types=(
        EventType("REGISTER", "DisabledPerson", "a person with disability is registered"),
        EventType(
            "DisabilityStatusChange",
            "DisabledPerson",
            "the disability status changes (approved, pending, expired)",
            ("status_change", "disability_status_change"),
            contract=False,
        ),
    ),
    events=events,
    record_changes=(
        RecordChange(
            "register",
            "a person with disability is registered: --id (UIN) [--status]",
            record_register,
        ),
        RecordChange(
            "disability-status", "the disability status of --id becomes --status", record_status
        ),
    ),
    # neither DR contract has txn/status (upstream #49)
    generic_endpoints=SEARCH_ENDPOINTS + SUBSCRIBE_ENDPOINTS,
    contract="dr_api_v1.0.0.yaml",
    builder="dcihub.population.dr:build",
    special_endpoints=(
        SpecialEndpoint(
            "sync/disabled",
            disabled,
            DisabledRequest,
            "search",
            "on-search",
            summary="is this person registered as disabled? (yes/no)",
            example=_BY_UIN,
        ),
        SpecialEndpoint(
            "sync/get-disability-support",
            disability_support,
            DisabledRequest,
            "search",
            "on-search",
            summary="the support a person with disability receives",
            example=_BY_UIN,
        ),
        SpecialEndpoint(
            "sync/get-disability-details",
            disability_details,
            DisabledRequest,
            "search",
            "on-search",
            summary="the impairment details of a person",
            example=_BY_UIN,
        ),
    ),
)
