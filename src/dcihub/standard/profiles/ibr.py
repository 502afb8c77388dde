"""Integrated Beneficiary Registry: who is enrolled in which programme (extensions/ibr
Beneficiary), fed by SP-MIS systems through `sync/enrollment/updates` and asked through
`sync/enrolled` and search.

One record per enrolment: a beneficiary (a member, or a household) in one programme. Its key is
`ibr:<programme_identifier>:<UIN or HHID>`, so an update for the same person and programme
replaces the earlier record.
"""

from __future__ import annotations

from typing import Any

from .. import codedirs
from ..calls import CallContext, CallReply, ItemResult, SpecialEndpoint
from ..codes import ErrorCode, RequestStatus, SearchReason
from ..envelope import has_control_chars
from ..errors import DCIError
from ..messages import EnrolledRequest, EnrollmentUpdatesRequest
from .base import (
    Attribute,
    Entity,
    RegistryProfile,
    canonical_id_type,
    first_value,
    to_date,
)
from .common import member_attributes

ENROLLED_STATUSES = ("1", "4")  # Active, Suspended: still enrolled; Deceased/Graduated are not


def beneficiary_key(record: dict[str, Any]) -> str:
    programme = programme_id(record)
    holder = holder_id(record)
    if not programme or not holder:
        raise ValueError("a beneficiary needs a programme identifier and a UIN or HHID")
    return f"ibr:{programme}:{holder}"


def programme_id(record: dict[str, Any]) -> str | None:
    value = first_value(record, "programme_identifier.programme_identifier")
    return str(value) if value not in (None, "") else None


def holder_id(record: dict[str, Any]) -> str | None:
    for path in (
        "member.member_identifier",
        "member.demographic_info.identifier",
        "group.group_identifier",
    ):
        for ident in _identifiers(record, path):
            return ident
    return None


def _identifiers(record: dict[str, Any], path: str) -> list[str]:
    node: Any = record
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node = [node]
    out = []
    for ident in node or []:
        if isinstance(ident, dict) and ident.get("identifier_value") not in (None, ""):
            out.append(str(ident["identifier_value"]))
    return out


BENEFICIARY = Entity(
    name="Beneficiary",
    aliases=("Member", "IBRPerson", "Enrollment", "Enrolment", "Beneficiary"),
    identifier_paths=(
        "member.member_identifier",
        "member.demographic_info.identifier",
        "group.group_identifier",
    ),
    identifier_types=("UIN", "HHID"),
    any_identifier_names=(
        "person_identifier",
        "member_identifier",
        "beneficiary_identifier",
        "identifier",
        "member.member_identifier",
        "national_id",
        "group_identifier",
        "household_identifier",
    ),
    key=beneficiary_key,
    attributes=(
        *member_attributes("member."),
        Attribute(
            "programme_identifier",
            "text",
            "programme_identifier.programme_identifier",
            (
                "programme",
                "program",
                "programme_id",
                "program_identifier",
                "programme_identifier.program.programme_identifier",
                "programme_identifier.programme.programme_identifier",
            ),
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
            code_dir="enrollment_status",
            description="1 Active, 2 Deceased, 3 Graduated, 4 Suspended",
        ),
        Attribute("enrollment_date", "date", "enrollment_date", ("enrolment_date",)),
        Attribute("assistance_unit", "code", "assistance_unit", (), code_dir="assistance_unit"),
        Attribute(
            "benefit_type", "code", "benefits.benefit_type", (), code_dir="benefit_type", multi=True
        ),
    ),
    description="an enrolment of a member or household in a programme (Beneficiary)",
)


def is_enrolled(record: dict[str, Any]) -> bool:
    return record.get("enrollment_status") in ENROLLED_STATUSES


# ---------------------------------------------------------------------------------------------
# Reading beneficiaries sent by SP-MIS (newest shape, and the older STD sample shape)

_SEX = {"f": "female", "m": "male", "o": "other", "u": "unknown"}


def normalise_beneficiary(raw: Any) -> dict[str, Any]:
    """Return the beneficiary in the newest shape, or raise ValueError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("each beneficiary must be a JSON object")
    _check_text(raw)
    record = {k: v for k, v in raw.items() if v not in ("", None)}
    member = record.get("member")
    if member is not None and not isinstance(member, dict):
        raise ValueError("member must be an object (a Member)")
    if isinstance(member, dict):
        member = _normalise_member(dict(member), record)
        record["member"] = member
    programmes = _programmes(record)
    if not programmes:
        raise ValueError(
            "programme_identifier is required: a list of Programme objects with "
            'programme_identifier (e.g. [{"programme_identifier": "OAP"}])'
        )
    record["programme_identifier"] = programmes
    for old, new in (
        ("enrolment_date", "enrollment_date"),
        ("enrolment_status", "enrollment_status"),
    ):
        if old in record and new not in record:
            record[new] = record.pop(old)
    status = record.get("enrollment_status")
    if status is None:
        raise ValueError(
            "enrollment_status is required (1 Active, 2 Deceased, 3 Graduated, 4 Suspended)"
        )
    code = codedirs.get("enrollment_status").normalise(status)
    if code is None:
        raise ValueError(
            f"enrollment_status '{status}' is not a code of enrollment_status "
            "(1 Active, 2 Deceased, 3 Graduated, 4 Suspended)"
        )
    record["enrollment_status"] = code
    if "enrollment_date" in record:
        day = to_date(record["enrollment_date"])
        if day is None:
            raise ValueError(
                f"enrollment_date '{record['enrollment_date']}' is not a date (YYYY-MM-DD)"
            )
        record["enrollment_date"] = day.isoformat()
    if holder_id(record) is None:
        raise ValueError(
            "the beneficiary has no identifier: give member.member_identifier "
            "(e.g. a UIN) or group.group_identifier (HHID)"
        )
    _check_identifiers(record)
    record["@type"] = "Beneficiary"
    record["@id"] = beneficiary_key(record)
    if len(record["@id"]) > MAX_KEY_LENGTH:
        raise ValueError(
            "the programme identifier and the beneficiary's identifier are too "
            f"long together (the key '{record['@id'][:40]}...' exceeds "
            f"{MAX_KEY_LENGTH} characters)"
        )
    return record


MAX_KEY_LENGTH = 200  # record_key column
MAX_ID_TYPE_LENGTH = 40  # identifier type column
MAX_ID_VALUE_LENGTH = 256  # identifier value column
MAX_CODE_LENGTH = 200  # index columns of codes and text


def _check_identifiers(record: dict[str, Any]) -> None:
    for path in BENEFICIARY.identifier_paths:
        node: Any = record
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        for ident in node if isinstance(node, list) else [node] if node else []:
            if not isinstance(ident, dict):
                continue
            id_type, value = ident.get("identifier_type"), ident.get("identifier_value")
            if isinstance(id_type, str) and len(id_type) > MAX_ID_TYPE_LENGTH:
                raise ValueError(
                    f"{path}: identifier_type '{id_type[:40]}...' is longer than "
                    f"{MAX_ID_TYPE_LENGTH} characters"
                )
            if isinstance(value, dict | list | bool):
                raise ValueError(f"{path}: identifier_value must be a string")
            if value is not None and len(str(value)) > MAX_ID_VALUE_LENGTH:
                raise ValueError(
                    f"{path}: identifier_value is longer than {MAX_ID_VALUE_LENGTH} characters"
                )


def _check_text(node: Any, where: str = "beneficiary") -> None:
    """No NUL characters anywhere (PostgreSQL text cannot hold them)."""
    if isinstance(node, str):
        if "\x00" in node:
            raise ValueError(f"{where} contains a NUL character")
    elif isinstance(node, dict):
        for key, value in node.items():
            _check_text(key, where)
            _check_text(value, f"{where}.{key}" if where != "beneficiary" else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_text(value, f"{where}[{index}]")


def _normalise_member(member: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    demo = member.get("demographic_info")
    if isinstance(demo, dict) and isinstance(demo.get("person"), dict):
        demo = dict(demo["person"])  # STD sample wraps the Person in "person"
    if isinstance(demo, dict):
        demo = {k: v for k, v in demo.items() if v not in ("", None)}
        sex = demo.get("sex")
        if isinstance(sex, str):
            demo["sex"] = codedirs.get("sex").normalise(sex) or _SEX.get(sex.lower(), sex)
        for field in ("birth_date", "death_date"):
            if field in demo:
                day = to_date(demo[field])
                if day is not None:
                    demo[field] = day.isoformat()
        member["demographic_info"] = demo
    for key in ("member_identifier",):
        idents = member.get(key)
        if isinstance(idents, dict):
            idents = [idents]
        if isinstance(idents, list):
            member[key] = [
                {**i, "identifier_type": canonical_id_type(str(i.get("identifier_type", "")))}
                for i in idents
                if isinstance(i, dict)
            ]
    legacy = member.pop("programme_identifier", None)
    if isinstance(legacy, dict):  # STD sample nests the enrolment inside the member
        programme = legacy.get("programme") or legacy.get("program")
        if isinstance(programme, dict) and "programme_identifier" not in record:
            record["programme_identifier"] = [programme]
        for old, new in (
            ("enrolment_date", "enrollment_date"),
            ("enrolment_status", "enrollment_status"),
            ("enrollment_date", "enrollment_date"),
            ("enrollment_status", "enrollment_status"),
        ):
            if legacy.get(old) not in (None, "") and new not in record:
                record[new] = legacy[old]
        if isinstance(legacy.get("benefits"), dict) and "benefits" not in record:
            record["benefits"] = [legacy["benefits"]]
    return {k: v for k, v in member.items() if v not in ("", None)}


def _programmes(record: dict[str, Any]) -> list[dict[str, Any]]:
    value = record.get("programme_identifier")
    if isinstance(value, str):
        return [{"programme_identifier": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if isinstance(item, str):
            out.append({"programme_identifier": item})
        elif isinstance(item, dict):
            inner = item.get("programme") or item.get("program")
            programme = inner if isinstance(inner, dict) else item
            if programme.get("programme_identifier") not in (None, ""):
                out.append(programme)
    return out


# ---------------------------------------------------------------------------------------------
# The IBR's special calls (DIGEST §1.3, §6 #19)


def enrolled(ctx: CallContext, request: EnrolledRequest) -> CallReply:
    """`sync/enrolled`: is this person (or household) enrolled (in this programme)? yes / no."""
    criteria = request.enrolled_criteria
    found = ctx.match(
        criteria.query_type,
        criteria.query,
        "message.enrolled_criteria",
        response_entity=criteria.response_entity,
    )
    records = found.records
    active = [r for r in records if is_enrolled(r)]
    # the reason names only what the partner may see of these records
    seen = {
        name: ctx.may_see(found.entity, path)
        for name, path in (
            ("programme", "programme_identifier.programme_identifier"),
            ("status", "enrollment_status"),
            ("since", "enrollment_date"),
        )
    }
    if active:
        status, reason = "yes", f"enrolled in {_enrolments(active, seen, since=True)}"
    elif records:
        status = "no"
        reason = f"no active enrolment; ended: {_enrolments(records, seen, since=False)}"
    else:
        status, reason = "no", f"no enrolment in the {ctx.title} matches"
    item = {
        "reference_id": request.transaction_id,
        "timestamp": ctx.now(),
        "status": RequestStatus.SUCCESS.value,
        "status_reason_message": reason[:999],
        "enrolled_status": status,
    }
    ctx.touched(found.refs)
    result = ItemResult(
        request.transaction_id, reason_message=reason[:999], result={"enrolled_status": status}
    )
    ctx.record(request.transaction_id, "search", [result])
    message = {
        "transaction_id": request.transaction_id,
        "correlation_id": ctx.correlation_id,
        "enrolled_response": [item],
    }
    return CallReply("on-search", message)


def _enrolments(records: list[dict[str, Any]], seen: dict[str, bool], since: bool) -> str:
    """The enrolments, named as far as the partner may see them."""
    if not seen["programme"] and not seen["status"] and not (since and seen["since"]):
        return f"{len(records)} programme{'' if len(records) == 1 else 's'}"
    listed = []
    for r in records:
        details = []
        if seen["status"]:
            details.append(f"status {r.get('enrollment_status')}")
        if since and seen["since"] and r.get("enrollment_date"):
            details.append(f"since {r['enrollment_date']}")
        name = programme_id(r) if seen["programme"] else "a programme"
        listed.append(f"{name} ({', '.join(details)})" if details else name)
    return ", ".join(listed)


def enrollment_updates(ctx: CallContext, request: EnrollmentUpdatesRequest) -> CallReply:
    """`sync/enrollment/updates`: an SP-MIS reports enrolments and status changes.

    Every beneficiary is normalised (or rejected alone, with the reason); the accepted records
    are written in the same commit as the transaction record, the audit entry and the replay
    memory (all or nothing), before the reply is sent."""
    count = len(request.beneficiaries)
    limit = ctx.max_batch_items
    if count == 0:
        raise DCIError(ErrorCode.REQUEST_BAD, "message.enrolled_updates.beneficiaries is empty")
    if count > limit:
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            f"message.enrolled_updates.beneficiaries has {count} items; at most {limit} per "
            "message (rjct.total_count.limit_exceeded)",
        )
    total = ctx.header_total_count
    if total not in (None, count):
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            f"header.total_count is {total} but the message holds {count} beneficiaries "
            "(rjct.total_count.invalid)",
        )
    now = ctx.now()
    entity = ctx.default_entity
    replies: list[dict[str, Any]] = []
    results: list[ItemResult] = []
    records: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(request.beneficiaries):
        where = f"message.enrolled_updates.beneficiaries[{index}]"
        reference = (
            str(raw.get("reference_id") or index + 1) if isinstance(raw, dict) else str(index + 1)
        )
        try:
            if len(reference) > 99 or has_control_chars(reference):
                reference = str(index + 1)
                raise ValueError(
                    "reference_id must be 1 to 99 characters without control characters"
                )
            record = normalise_beneficiary(raw)
        except ValueError as exc:
            reason = f"{where}: {exc}"[:999]
            replies.append(
                {
                    "reference_id": reference,
                    "timestamp": now,
                    "status": RequestStatus.REJECTED.value,
                    "status_reason_message": reason,
                }
            )
            results.append(
                ItemResult(
                    reference,
                    RequestStatus.REJECTED.value,
                    SearchReason.SEARCH_CRITERIA_INVALID.value,
                    reason,
                )
            )
            continue
        key = record["@id"]
        records[key] = record
        if reference == str(index + 1):
            reference = key
        replies.append(
            {"reference_id": reference, "timestamp": now, "status": RequestStatus.SUCCESS.value}
        )
        results.append(ItemResult(reference, result={"entity": entity, "keys": [key]}))
    known = ctx.existing_keys(entity, list(records))
    for n, (reply, result) in enumerate(zip(replies, results, strict=True)):
        if result.status == RequestStatus.SUCCESS.value and result.result:
            key = result.result["keys"][0]
            reason = f"{'updated' if key in known else 'enrolled'} {key}"
            reply["status_reason_message"] = reason
            results[n] = ItemResult(
                result.reference_id, result.status, reason_message=reason, result=result.result
            )
    ctx.store_records(list(records.values()))
    ctx.record(request.transaction_id, "receipt", results, action="notify")
    ctx.touched(list(records))
    message = {
        "transaction_id": request.transaction_id,
        "correlation_id": ctx.correlation_id,
        "enrolled_response": replies,
    }
    return CallReply("on-notify", message, len(replies))


PROFILE = RegistryProfile(
    name="ibr",
    title="Integrated Beneficiary Registry",
    reg_type="ns:org:RegistryType:IBR",
    entities=(BENEFICIARY,),
    default_entity="Beneficiary",
    txn_types=("search", "subscribe", "receipt"),
    reg_event_types=("enrollement", "enrollement_status_change"),
    contract="ibr_api_v1.0.0.yaml",
    special_endpoints=(
        SpecialEndpoint(
            "sync/enrollment/updates",
            enrollment_updates,
            EnrollmentUpdatesRequest,
            "notify",
            "on-notify",
            header="callback",
            summary="SP-MIS reports enrolments and status changes to the IBR",
            example={
                "transaction_id": "t-1",
                "enrolled_updates": {
                    "beneficiaries": [
                        {
                            "member": {
                                "member_identifier": [
                                    {"identifier_type": "UIN", "identifier_value": "<UIN>"}
                                ]
                            },
                            "programme_identifier": [{"programme_identifier": "OAP"}],
                            "enrollment_status": "1",
                            "enrollment_date": "2026-01-01",
                        }
                    ]
                },
            },
        ),
        SpecialEndpoint(
            "sync/enrolled",
            enrolled,
            EnrolledRequest,
            "search",
            "on-search",
            summary="is this person enrolled (in this programme)? (yes/no)",
            example={
                "transaction_id": "t-1",
                "enrolled_criteria": {
                    "query_type": "expression",
                    "query": {"member.member_identifier": {"eq": "<UIN>"}},
                },
            },
        ),
    ),
)
