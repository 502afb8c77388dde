"""Employment Support System: job seekers and workers (extensions/ess Member: the core Member
with `employment_info[]` and `unemployment_reason`), with their enrolments in
employment-support programmes (extensions/ess Beneficiary) embedded at `programme_enrolments`.

An ESS `Member` is employed (`employment_status` 1 or 4, the most recent `employment_info`
entry with an employer, a job title and an `employment_type`, and no `end_date`) or not
employed (`employment_status` 2, an `unemployment_reason`, and the job that ended, if any).
`employment_type`, `employer` and `job_title` read the most recent entry (listed first). A
`Beneficiary` is one enrolment of the member in one programme, keyed `ess:<programme>:<UIN>`,
with an enrolment status of the ESS code list (1 Active, 2 Deceased, 3 Exited, 4 Suspended,
5 Inactive, 6 Reinstated, 7 Awaiting Renewal).

`sync/check-enrollment` answers an `enrolled_status` from the contract's enum, which lacks
"Exited": `enrolment_status(record)` maps a record to it (Exited -> Inactive, DIGEST §9).
"""

from __future__ import annotations

from typing import Any

from .. import codedirs
from ..calls import CallContext, CallReply, ItemResult, SpecialEndpoint
from ..codes import RequestStatus
from ..messages import EnrolledRequest
from .base import (
    Attribute,
    ChangeContext,
    Entity,
    Event,
    EventType,
    RecordChange,
    RegistryProfile,
    first_value,
    found,
    identifier_option,
    option,
)
from .changes import changed, day_option, embedded, registered_at, registrant
from .common import (
    UIN_NAMES,
    address_attributes,
    member_attributes,
    person_attributes,
    registration_attributes,
)

MEMBER = Entity(
    name="Member",
    aliases=("ESSPerson", "ESS_Person", "ESSMember", "Person", "Individual", "spdci:Member"),
    identifier_paths=("member_identifier", "demographic_info.identifier"),
    identifier_types=("UIN", "ESSRN"),
    any_identifier_names=UIN_NAMES,
    attributes=(
        *member_attributes(""),
        *registration_attributes(),
        *address_attributes("demographic_info."),
        Attribute(
            "employment_type",
            "code",
            "employment_info.employment_type",
            (),
            code_dir="employment_type",
            description="employment type of the most recent job (the current one if employed)",
        ),
        Attribute(
            "employer",
            "text",
            "employment_info.employer",
            ("employer_name",),
            description="employer of the most recent job",
        ),
        Attribute(
            "job_title",
            "text",
            "employment_info.job_title",
            (),
            description="job title of the most recent job",
        ),
        Attribute(
            "employment_start_date",
            "date",
            "employment_info.start_date",
            ("start_date",),
            description="start of the most recent job",
        ),
        Attribute(
            "employment_end_date",
            "date",
            "employment_info.end_date",
            ("end_date",),
            description="end of the most recent job (absent while it lasts)",
        ),
        Attribute(
            "unemployment_reason",
            "code",
            "unemployment_reason",
            (),
            code_dir="unemployment_reason",
            description="why a member who is not employed is not",
        ),
    ),
    description="a job seeker or worker known to the employment services (ESS Member)",
)

BENEFICIARY = Entity(
    name="Beneficiary",
    aliases=("ESSBeneficiary", "Enrollment", "Enrolment", "Beneficiary"),
    identifier_paths=("member.member_identifier", "member.demographic_info.identifier"),
    identifier_types=("UIN", "ESSRN"),
    any_identifier_names=(*UIN_NAMES, "beneficiary_identifier", "member.member_identifier"),
    parent="Member",
    embedded_at="programme_enrolments",
    attributes=(
        # The person's own attributes; the Member's (employment, address ...) are the parent's.
        *person_attributes("member.demographic_info."),
        Attribute(
            "programme_identifier",
            "text",
            "programme_identifier.programme_identifier",
            ("programme", "program", "programme_id", "program_identifier"),
            multi=True,
            description="identifier of the programme",
        ),
        Attribute(
            "programme_type",
            "code",
            "programme_identifier.programme_type",
            (),
            code_dir="programme_type",
            multi=True,
        ),
        Attribute(
            "enrollment_status",
            "code",
            "enrollment_status",
            ("enrolment_status", "status"),
            code_dir="ess_enrolment_status",
            description="1 Active, 2 Deceased, 3 Exited, 4 Suspended, 5 Inactive, 6 Reinstated, "
            "7 Awaiting Renewal",
        ),
        Attribute("enrollment_date", "date", "enrollment_date", ("enrolment_date",)),
        Attribute("assistance_unit", "code", "assistance_unit", (), code_dir="assistance_unit"),
        Attribute(
            "benefit_type", "code", "benefits.benefit_type", (), code_dir="benefit_type", multi=True
        ),
    ),
    description="an enrolment of a member in an employment-support programme (ESS Beneficiary)",
)

# ---------------------------------------------------------------------------------------------
# `enrolled_status` of sync/check-enrollment

# The contract's `EnrolledResponse.enrolled_status` enum, by ESS EnrolmentStatus code.
ENROLLED_STATUS = {
    "1": "Active",
    "2": "Deceased",
    "3": "Inactive",  # Exited: not in the contract's enum (DIGEST §9 Choice)
    "4": "Suspended",
    "5": "Inactive",
    "6": "Reinstated",
    "7": "Awaiting Renewal",
}
# For a member with several enrolments, the one that says the most about being enrolled now.
_PRECEDENCE = ("1", "6", "7", "4", "5", "3", "2")


def enrolment_status(record: dict[str, Any]) -> str:
    """The contract's `enrolled_status` (Active, Deceased, Suspended, Inactive, Reinstated,
    Awaiting Renewal) of an ESS record.

    A `Beneficiary` (one enrolment) gives its own `enrollment_status` (a code or a label of the
    ESS enrolment status list; "Exited" becomes Inactive). A `Member` gives that of its
    enrolments which says the most about being enrolled now (Active, then Reinstated,
    Awaiting Renewal, Suspended, Inactive, Exited, Deceased). Raises ValueError when the record
    has no enrolment status (not enrolled) or an unknown one."""
    if not isinstance(record, dict):
        raise ValueError("an ESS record (a Member or an enrolment) is a JSON object")
    if "enrollment_status" in record or "enrolment_status" in record:
        return ENROLLED_STATUS[_status_code(record)]
    enrolments = record.get("programme_enrolments")
    codes = [_status_code(e) for e in enrolments or [] if isinstance(e, dict)]
    if not codes:
        raise ValueError("the record has no enrolment: the person is not enrolled")
    return ENROLLED_STATUS[min(codes, key=_PRECEDENCE.index)]


def _status_code(enrolment: dict[str, Any]) -> str:
    raw = first_value(enrolment, "enrollment_status")
    if raw is None:
        raw = first_value(enrolment, "enrolment_status")
    code = codedirs.get("ess_enrolment_status").normalise(raw) if raw is not None else None
    if code is None:
        raise ValueError(
            f"enrolment status {raw!r} is not a code of the ESS enrolment status list "
            "(1 Active, 2 Deceased, 3 Exited, 4 Suspended, 5 Inactive, 6 Reinstated, "
            "7 Awaiting Renewal)"
        )
    return code


# ---------------------------------------------------------------------------------------------
# sync/check-enrollment


def _programme_of(record: dict[str, Any]) -> str | None:
    value = first_value(record, "programme_identifier.programme_identifier")
    return str(value) if value not in (None, "") else None


def check_enrollment(ctx: CallContext, request: EnrolledRequest) -> CallReply:
    """`sync/check-enrollment`: the person's enrolments in employment-support programmes,
    one `enrolled_response` item per enrolment with the contract's `enrolled_status` (Exited
    answered as Inactive); a person with no enrolment gets one item `Inactive` saying so (the
    enum has no "not enrolled")."""
    criteria = request.enrolled_criteria
    # Members are matched (the contract's response_entity is Group or Member; the ESS has no
    # groups), and every enrolment of each is answered.
    found = ctx.match(
        criteria.query_type, criteria.query, "message.enrolled_criteria", response_entity="Member"
    )
    now = ctx.now()
    items: list[dict[str, Any]] = []
    results: list[ItemResult] = []
    for member in found.records:
        for enrolment in member.get("programme_enrolments") or []:
            if not isinstance(enrolment, dict):
                continue
            try:
                status = enrolment_status(enrolment)
            except ValueError:
                continue
            programme = _programme_of(enrolment)
            reason = f"enrolment in {programme}" if programme else "enrolment"
            items.append(
                {
                    "reference_id": request.transaction_id,
                    "timestamp": now,
                    "status": RequestStatus.SUCCESS.value,
                    "status_reason_message": reason,
                    "enrolled_status": status,
                }
            )
            results.append(
                ItemResult(
                    request.transaction_id,
                    reason_message=reason,
                    result={"enrolled_status": status, "programme": programme},
                )
            )
    if not items:
        reason = f"no enrolment in the {ctx.title} matches the criteria"
        items.append(
            {
                "reference_id": request.transaction_id,
                "timestamp": now,
                "status": RequestStatus.SUCCESS.value,
                "status_reason_message": reason,
                "enrolled_status": "Inactive",
            }
        )
        results.append(
            ItemResult(
                request.transaction_id,
                reason_message=reason,
                result={"enrolled_status": "Inactive"},
            )
        )
    ctx.touched(found.refs)
    ctx.record(request.transaction_id, "search", results)
    message = {
        "transaction_id": request.transaction_id,
        "correlation_id": ctx.correlation_id,
        "enrolled_response": items,
    }
    return CallReply("on-search", message, len(items))


def record_employment(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """The employment status of --id becomes --status (employment_status code)."""
    member = found(ctx, options, "id", "Employment Support System")
    code = codedirs.get("employment_status").normalise(option(options, "status"))
    if code is None:
        raise ValueError("--status: a code of the employment_status list (1 employed, 2 ...)")
    changed = {**member, "employment_status": code, "last_updated": ctx.now()}
    if code in ("1", "4"):
        changed.pop("unemployment_reason", None)
    return [changed]


def record_register(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """A job seeker or worker is registered: --id (UIN; from the civil register when the node
    holds it, else --name, --sex, --birth-date), a new ESSRN, --status (employment_status,
    default 2 unemployed) [--date registration day]."""
    uin, person, marital = registrant(ctx, options)
    if ctx.get(f"ess:member:{uin}") is not None:
        raise ValueError(f"UIN {uin} is registered with the employment services already")
    code = codedirs.get("employment_status").normalise(options.get("status") or "2")
    if code is None:
        raise ValueError("--status: a code of the employment_status list (1 employed, 2 ...)")
    registered = registered_at(ctx, options)
    return [
        {
            "@type": "Member",
            "@id": f"ess:member:{uin}",
            "member_identifier": [
                {"identifier_type": "UIN", "identifier_value": uin},
                {"identifier_type": "ESSRN", "identifier_value": ctx.new_id("ESSRN")},
            ],
            "demographic_info": person,
            "marital_status": marital,
            "employment_status": code,
            "registration_date": registered,
            "last_updated": ctx.now(),
        }
    ]


def _enrolment_status(options: dict[str, str], default: str | None = None) -> str:
    text = options.get("status") or default
    code = codedirs.get("ess_enrolment_status").normalise(text) if text else None
    if code is None:
        raise ValueError(
            "--status: one of 1 Active, 2 Deceased, 3 Exited, 4 Suspended, 5 Inactive, "
            "6 Reinstated, 7 Awaiting Renewal"
        )
    return code


def record_enrol(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """The member --id is enrolled in --programme (with --status, default 1 Active) [--date]."""
    member = found(ctx, options, "id", "Employment Support System")
    programme = option(options, "programme")
    uin = identifier_option(options, "id")[1]
    enrolments = list(member.get("programme_enrolments") or [])
    key = f"ess:{programme}:{member['@id'].rsplit(':', 1)[-1]}"
    if any(isinstance(e, dict) and e.get("@id") == key for e in enrolments):
        raise ValueError(f"UIN {uin} is enrolled in {programme} already (change its --status)")
    day = day_option(ctx, options)
    info = member.get("demographic_info") or {}
    enrolment = {
        "@type": "Beneficiary",
        "@id": key,
        "assistance_unit": "1",
        "member": {
            "@type": "Member",
            "member_identifier": member.get("member_identifier") or [],
            "demographic_info": {k: v for k, v in info.items() if k != "address"},
        },
        "programme_identifier": [{"programme_identifier": programme}],
        "enrollment_date": day,
        "enrollment_status": _enrolment_status(options, "1"),
        "status_change_date": [day],
    }
    return [{**member, "programme_enrolments": [*enrolments, enrolment], "last_updated": ctx.now()}]


def record_enrolment_status(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """The enrolment of --id in --programme takes --status (1 Active ... 7 Awaiting Renewal)."""
    member = found(ctx, options, "id", "Employment Support System")
    programme = option(options, "programme")
    code = _enrolment_status(options)
    day = day_option(ctx, options)
    enrolments, hit = [], False
    for enrolment in member.get("programme_enrolments") or []:
        ids = [p.get("programme_identifier") for p in enrolment.get("programme_identifier") or []]
        if isinstance(enrolment, dict) and programme in ids and not hit:
            hit = True
            if enrolment.get("enrollment_status") == code:
                raise ValueError(f"the enrolment in {programme} has status {code} already")
            enrolment = {
                **enrolment,
                "enrollment_status": code,
                "status_change_date": [*(enrolment.get("status_change_date") or []), day],
            }
        enrolments.append(enrolment)
    if not hit:
        raise ValueError(f"{member['@id']} is not enrolled in {programme}")
    return [{**member, "programme_enrolments": enrolments, "last_updated": ctx.now()}]


def events(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Event]:
    """Registration and employment status changes of a member; enrolments and their status
    changes."""
    if after is None:
        return []
    out = []
    if before is None:
        out.append(Event("REGISTER", "Member", after))
    elif changed(before, after, "employment_status"):
        out.append(Event("employment_status_change", "Member", after))
    old, new = embedded(before, "programme_enrolments"), embedded(after, "programme_enrolments")
    for key, enrolment in new.items():
        if key not in old:
            out.append(Event("enrolment", "Beneficiary", enrolment))
        elif changed(old[key], enrolment, "enrollment_status"):
            out.append(Event("enrolment_status_change", "Beneficiary", enrolment))
    return out


PROFILE = RegistryProfile(
    name="ess",
    title="Employment Support System",
    reg_type="ns:org:RegistryType:ESS",
    entities=(MEMBER, BENEFICIARY),
    default_entity="Member",
    txn_types=("search", "subscribe", "receipt"),
    event_types=(
        EventType("enrolment", "Beneficiary", "a member is enrolled in a programme"),
        EventType("enrolment_status_change", "Beneficiary", "the status of an enrolment changes"),
        EventType("REGISTER", "Member", "a job seeker or worker is registered", contract=False),
        EventType(
            "employment_status_change",
            "Member",
            "a member's employment status changes (employed, unemployed ...)",
            ("employment_change",),
            contract=False,
        ),
    ),
    events=events,
    record_changes=(
        RecordChange(
            "register",
            "a job seeker or worker is registered: --id (UIN) [--status]",
            record_register,
        ),
        RecordChange(
            "employment", "the employment status of --id becomes --status", record_employment
        ),
        RecordChange("enrolment", "--id (UIN) enrolled in --programme [--status]", record_enrol),
        RecordChange(
            "enrolment-status",
            "the enrolment of --id in --programme takes --status",
            record_enrolment_status,
        ),
    ),
    contract="ess_api_v1.0.0.yaml",
    builder="dcihub.population.ess:build",
    special_endpoints=(
        SpecialEndpoint(
            "sync/check-enrollment",
            check_enrollment,
            EnrolledRequest,
            "search",
            "on-search",
            summary="the person's enrolments in employment-support programmes, with status",
            example={
                "transaction_id": "t-1",
                "enrolled_criteria": {
                    "query_type": "expression",
                    "response_entity": "Member",
                    "query": {"person_identifier": {"eq": "<UIN>"}},
                },
            },
        ),
    ),
)
