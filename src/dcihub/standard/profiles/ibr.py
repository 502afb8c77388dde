"""Integrated Beneficiary Registry: who is enrolled in which programme (extensions/ibr
Beneficiary), fed by SP-MIS systems through `sync/enrollment/updates` and asked through
`sync/enrolled` and search.

One record per enrolment: a beneficiary (a member, or a household) in one programme. Its key is
`ibr:<programme_identifier>:<UIN or HHID>`, so an update for the same person and programme
replaces the earlier record.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from .. import codedirs
from ..calls import CallContext, CallReply, ItemResult, SpecialEndpoint
from ..codes import ErrorCode, NotifyReason, RequestStatus
from ..envelope import has_control_chars
from ..errors import DCIError
from ..messages import EnrolledRequest, EnrollmentUpdatesRequest
from .base import (
    Attribute,
    ChangeContext,
    Entity,
    Event,
    EventType,
    RecordChange,
    RegistryProfile,
    canonical_id_type,
    first_value,
    identifier_option,
    option,
    to_bool,
    to_date,
    to_number,
)
from .changes import changed
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
# Checking beneficiaries sent by SP-MIS against the data model (extensions/ibr, core)
#
# What an SP-MIS sends is stored and served to every partner that searches the IBR, so every
# beneficiary is held to the data model before anything of it is kept: only the fields of its
# objects (Beneficiary, Member, Person, Programme, Benefit, ...; the older STD sample's
# spellings; JSON-LD `@context`, `@id`, `@type`), values of the right kind, codes from their
# code lists, bounded sizes and no markup. The programmes must be known to the registry (the
# handler asks the context).

MAX_BENEFICIARY_BYTES = 16 * 1024  # one beneficiary as JSON
MAX_TEXT_LENGTH = 1000  # any one string
MAX_LIST_ITEMS = 100  # any one list
MAX_DEPTH = 12  # nesting of objects and lists
_MARKUP = re.compile(r"<\s*[A-Za-z/!?]")  # the start of an HTML/XML tag, comment or directive
_CONTEXT_TERM = re.compile(r"^@?[A-Za-z][A-Za-z0-9_.-]{0,63}$")
JSON_LD = ("@context", "@id", "@type")


class BeneficiaryRejected(ValueError):
    """A beneficiary the IBR does not accept, with the reason code of its reply item."""

    def __init__(self, message: str, code: str = NotifyReason.NOTIFY_DETAILS_INVALID) -> None:
        super().__init__(message)
        self.code = code


# A field is one of: the name of an object model below (an object, or a list of them; one
# object is accepted where the model has a list, as the STD sample sends), or a value kind:
# "text", "texts" (a list of texts), "date", "dates", "bool", "int", "number", "code:<dir>"
# (a code of that code list, given as code or label), "label:<dir>" (stored as the code when it
# is a code or label of the list, else as short text: the STD sample's "Single", "Caregiver").
_IDENTIFIER = {"identifier_type": "text", "identifier_value": "text"}
_NAME = {
    "surname": "text",
    "given_name": "text",
    "second_name": "text",
    "maiden_name": "text",
    "prefix": "text",
    "suffix": "text",
    "first_name": "text",  # STD sample
}
_ADDRESS = {
    "address_line_1": "text",
    "address_line_2": "text",
    "locality": "text",
    "sub_region_code": "text",
    "region_code": "text",
    "postal_code": "text",
    "country_code": "text",
    "geo_location": "GeoLocation",
}
_GEO = {"latitude": "number", "longitude": "number", "altitude": "number", "type": "text"}
_PLACE = {
    "name": "text",
    "address_line": "text",
    "geo": "GeoLocation",
    "contained_in_place": "Place",
    "contains_place": "Place",
}
_PERSON = {
    "identifier": "Identifier",
    "name": "Name",
    "sex": "sex",
    "birth_date": "date",
    "death_date": "date",
    "address": "Address",
    "phone_number": "texts",
    "email": "texts",
    "registration_date": "date",
    "last_updated": "date",
}
_MEMBER = {
    "member_identifier": "Identifier",
    "demographic_info": "Person",
    "related_person": "RelatedPerson",
    "is_disabled": "bool",
    "disability_info": "DisabilityInfo",
    "marital_status": "label:marital_status",
    "employment_status": "label:employment_status",
    "occupation": "label:occupation",
    "income_level": "label:income_level",
    "language_code": "text",
    "education_level": "label:education_level",
    "additional_attributes": "texts",
    "registration_date": "date",
    "last_updated": "date",
    # the older STD sample
    "relationship_head": "text",
    "last_update": "date",
    "programme_identifier": "Enrolment",
}
_PROGRAMME = {
    "programme_name": "text",
    "programme_identifier": "text",
    "programme_description": "text",
    "implementing_institution": "text",
    "institution_type": "text",
    "legal_status": "text",
    "social_protection_functions": "texts",
    "contribution_type": "text",
    "programme_type": "code:programme_type",
    "benefit": "Benefit",
    "benefit_frequency": "BenefitFrequency",
    # the older STD sample wraps the programme in "programme" (or "program")
    "programme": "Programme",
    "program": "Programme",
}
_BENEFIT = {
    "benefit_type": "code:benefit_type",
    "benefit_date": "date",
    "benefit_value": "text",
    "benefit_description": "text",
    "benefit_quantity": "number",
    "benefit_frequency": "BenefitFrequency",  # STD sample ("Monthly")
}
_FREQUENCY = {
    "freq": "text",
    "dtstart": "date",
    "interval": "number",
    "wkst": "text",
    "count": "int",
    "until": "date",
}
_GROUP = {
    "group_identifier": "Identifier",
    "group_type": "text",
    "geographical_location": "Place",
    "address": "Address",
    "place_address": "bool",
    "poverty_score": "number",
    "poverty_score_type": "text",
    "group_head_info": "Member",
    "group_size": "int",
    "member_list": "Member",
    "registration_date": "date",
    "last_updated": "date",
    "additional_attributes": "texts",
}
_ENROLMENT = {  # an enrolment nested in the member (the older STD sample)
    "programme": "Programme",
    "program": "Programme",
    "enrolment_date": "date",
    "enrolment_status": "code:enrollment_status",
    "enrollment_date": "date",
    "enrollment_status": "code:enrollment_status",
    "status_change_date": "dates",
    "benefits": "Benefit",
}
_BENEFICIARY = {
    "assistance_unit": "code:assistance_unit",
    "group": "Group",
    "member": "Member",
    "programme_identifier": "Programme",
    "enrollment_date": "date",
    "enrollment_status": "code:enrollment_status",
    "status_change_date": "dates",
    "benefits": "Benefit",
    "additional_attributes": "texts",
    # older spellings
    "enrolment_date": "date",
    "enrolment_status": "code:enrollment_status",
}
MODELS: dict[str, dict[str, str]] = {
    "Beneficiary": _BENEFICIARY,
    "Member": _MEMBER,
    "Person": {**_PERSON, "person": "Person"},  # STD sample: demographic_info.person
    "Identifier": _IDENTIFIER,
    "Name": _NAME,
    "Address": _ADDRESS,
    "GeoLocation": _GEO,
    "Place": _PLACE,
    "RelatedPerson": {"relationship_type": "text", "related_member": "Person"},
    "DisabilityInfo": {
        "disability_limitation_type": "label:functional_limitation_type",
        "functional_severity": "text",
    },
    "Group": _GROUP,
    "Programme": _PROGRAMME,
    "Benefit": _BENEFIT,
    "BenefitFrequency": _FREQUENCY,
    "Enrolment": _ENROLMENT,
}
# a single text is accepted for these objects (the STD sample: "benefit_frequency": "Monthly";
# a programme given by its identifier)
_TEXT_FOR_OBJECT = {"BenefitFrequency": "freq", "Programme": "programme_identifier"}


def check_beneficiary(raw: Any) -> dict[str, Any]:
    """The beneficiary held to the data model: unknown fields, wrong kinds of value, codes not
    in their code list, oversized values and markup raise `BeneficiaryRejected` naming the
    field; empty values are dropped, codes given by label become codes, dates become
    YYYY-MM-DD."""
    if not isinstance(raw, dict):
        raise BeneficiaryRejected("each beneficiary must be a JSON object")
    size = len(orjson.dumps(raw))
    if size > MAX_BENEFICIARY_BYTES:
        raise BeneficiaryRejected(
            f"the beneficiary is {size} bytes as JSON; this registry accepts at most "
            f"{MAX_BENEFICIARY_BYTES} per beneficiary"
        )
    raw = {k: v for k, v in raw.items() if k != "reference_id"}  # the item's, not the record's
    cleaned: dict[str, Any] = _clean_object(raw, "Beneficiary", "", 0)
    return cleaned


def _clean_object(value: Any, model: str, where: str, depth: int) -> Any:
    if model == "Identifier":  # a bad identifier: the person cannot be told
        try:
            return _clean_fields(value, model, where, depth)
        except BeneficiaryRejected as exc:
            raise BeneficiaryRejected(str(exc), NotifyReason.PERSON_ID_INVALID) from None
    return _clean_fields(value, model, where, depth)


def _clean_fields(value: Any, model: str, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise BeneficiaryRejected(f"{where or 'the beneficiary'} is nested too deeply")
    if isinstance(value, str) and model in _TEXT_FOR_OBJECT:
        return {_TEXT_FOR_OBJECT[model]: _clean_text(value, where)}
    if not isinstance(value, dict):
        raise BeneficiaryRejected(f"{where or 'the beneficiary'} must be an object (a {model})")
    fields = MODELS[model]
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{where}.{key}" if where else key
        if key in JSON_LD:
            if item not in ("", None):
                out[key] = _clean_json_ld(key, item, path)
            continue
        kind = fields.get(key)
        if kind is None:
            shown = key if len(key) <= 40 and key.isprintable() else f"{key[:40]!r}..."
            raise BeneficiaryRejected(
                f"'{shown}' is not a field of {model}"
                f"{' (at ' + where + ')' if where else ''}; its fields: "
                f"{', '.join(sorted(fields))}, and @context, @id, @type"
            )
        if item in ("", None):
            continue  # the STD sample sends "" for what it does not have
        out[key] = _clean_field(item, kind, path, depth + 1)
    return out


def _clean_field(value: Any, kind: str, where: str, depth: int) -> Any:
    if kind in MODELS:
        if isinstance(value, list):
            _check_list(value, where)
            return [
                _clean_object(v, kind, f"{where}[{i}]", depth + 1)
                for i, v in enumerate(value)
                if v not in ("", None)
            ]
        return _clean_object(value, kind, where, depth)
    if kind in ("texts", "dates"):
        items = value if isinstance(value, list) else [value]
        _check_list(items, where)
        single = kind[:-1]
        return [
            _clean_field(v, single, f"{where}[{i}]", depth)
            for i, v in enumerate(items)
            if v not in ("", None)
        ]
    if isinstance(value, dict | list):
        raise BeneficiaryRejected(f"{where} must be a single value, not an object or a list")
    if kind == "text":
        return _clean_text(value, where)
    if kind == "date":
        day = to_date(value) if isinstance(value, str) else None
        if day is None:
            raise BeneficiaryRejected(f"{where} '{_show(value)}' is not a date (YYYY-MM-DD)")
        return day.isoformat()
    if kind == "bool":
        flag = to_bool(value)
        if flag is None:
            raise BeneficiaryRejected(f"{where} '{_show(value)}' is not true or false")
        return flag
    if kind in ("int", "number"):
        number = to_number(value, integral=kind == "int")
        if number is None or not math.isfinite(number) or abs(number) > 1e15:
            raise BeneficiaryRejected(f"{where} '{_show(value)}' is not a valid number")
        return number
    if kind == "sex":
        text = _clean_text(value, where)
        code = codedirs.get("sex").normalise(text) or _SEX.get(text.lower())
        if code is None:
            raise BeneficiaryRejected(
                f"{where} '{_show(value)}' is not a code of sex (male, female, other, unknown)"
            )
        return code
    directory = kind.split(":", 1)[1]
    text = _clean_text(value, where)
    code = codedirs.get(directory).normalise(text)
    if code is not None:
        return code
    if kind.startswith("label:"):
        return text  # a descriptive value outside the code list: kept as (checked) text
    allowed = ", ".join(f"{c} ({label})" for c, label in codedirs.get(directory).codes.items())
    raise BeneficiaryRejected(
        f"{where.rsplit('.', 1)[-1]} '{_show(value)}' is not a code of {directory} "
        f"(at {where}); use one of: {allowed}"
    )


def _clean_text(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BeneficiaryRejected(f"{where} must be a text")
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise BeneficiaryRejected(f"{where} contains a NUL character")
    if has_control_chars(text):
        raise BeneficiaryRejected(f"{where} contains a control character")
    if len(text) > MAX_TEXT_LENGTH:
        raise BeneficiaryRejected(
            f"{where} is {len(text)} characters long; at most {MAX_TEXT_LENGTH} are accepted"
        )
    if _MARKUP.search(text):
        raise BeneficiaryRejected(f"{where} contains markup ('<...'); send plain text")
    return text


def _clean_json_ld(key: str, value: Any, where: str) -> Any:
    """`@id` and `@type` are texts; `@context` a text (an IRI), or terms mapped to texts, or
    a list of those."""
    if key != "@context" or isinstance(value, str):
        return _clean_text(value, where)
    items = value if isinstance(value, list) else [value]
    _check_list(items, where)
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            out.append(_clean_text(item, where))
        elif isinstance(item, dict):
            terms = {}
            for term, iri in item.items():
                if not _CONTEXT_TERM.match(term):
                    raise BeneficiaryRejected(f"{where}: '{_show(term)}' is not a JSON-LD term")
                terms[term] = _clean_text(iri, f"{where}.{term}")
            out.append(terms)
        else:
            raise BeneficiaryRejected(f"{where} must be an IRI or an object of terms")
    return out if isinstance(value, list) else out[0]


def _check_list(items: list[Any], where: str) -> None:
    if len(items) > MAX_LIST_ITEMS:
        raise BeneficiaryRejected(
            f"{where} has {len(items)} entries; at most {MAX_LIST_ITEMS} are accepted"
        )


def _show(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:40]}..."


# ---------------------------------------------------------------------------------------------
# Reading beneficiaries sent by SP-MIS (newest shape, and the older STD sample shape)

_SEX = {"f": "female", "m": "male", "o": "other", "u": "unknown"}


def normalise_beneficiary(raw: Any) -> dict[str, Any]:
    """Return the beneficiary in the newest shape, or raise `BeneficiaryRejected` (a
    ValueError) saying what is wrong."""
    record = check_beneficiary(raw)
    member = record.get("member")
    if member is not None and not isinstance(member, dict):
        raise BeneficiaryRejected("member must be an object (a Member)")
    if isinstance(member, dict):
        member = _normalise_member(dict(member), record)
        record["member"] = member
    programmes = _programmes(record)
    if not programmes:
        raise BeneficiaryRejected(
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
        raise BeneficiaryRejected(
            "enrollment_status is required (1 Active, 2 Deceased, 3 Graduated, 4 Suspended)"
        )
    code = codedirs.get("enrollment_status").normalise(status)
    if code is None:
        raise BeneficiaryRejected(
            f"enrollment_status '{status}' is not a code of enrollment_status "
            "(1 Active, 2 Deceased, 3 Graduated, 4 Suspended)"
        )
    record["enrollment_status"] = code
    if "enrollment_date" in record:
        day = to_date(record["enrollment_date"])
        if day is None:
            raise BeneficiaryRejected(
                f"enrollment_date '{record['enrollment_date']}' is not a date (YYYY-MM-DD)"
            )
        record["enrollment_date"] = day.isoformat()
    if holder_id(record) is None:
        raise BeneficiaryRejected(
            "the beneficiary has no identifier: give member.member_identifier "
            "(e.g. a UIN) or group.group_identifier (HHID)",
            NotifyReason.PERSON_ID_INVALID,
        )
    _check_identifiers(record)
    record["@type"] = "Beneficiary"
    record["@id"] = beneficiary_key(record)
    if len(record["@id"]) > MAX_KEY_LENGTH:
        raise BeneficiaryRejected(
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
                raise BeneficiaryRejected(
                    f"{path}: identifier_type '{id_type[:40]}...' is longer than "
                    f"{MAX_ID_TYPE_LENGTH} characters",
                    NotifyReason.PERSON_ID_INVALID,
                )
            if isinstance(value, dict | list | bool):
                raise BeneficiaryRejected(
                    f"{path}: identifier_value must be a string", NotifyReason.PERSON_ID_INVALID
                )
            if value is not None and len(str(value)) > MAX_ID_VALUE_LENGTH:
                raise BeneficiaryRejected(
                    f"{path}: identifier_value is longer than {MAX_ID_VALUE_LENGTH} characters",
                    NotifyReason.PERSON_ID_INVALID,
                )


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


def programme_ids(record: dict[str, Any]) -> list[str]:
    """The identifiers of the programmes of a (normalised) beneficiary."""
    out = []
    for programme in record.get("programme_identifier") or []:
        value = programme.get("programme_identifier") if isinstance(programme, dict) else None
        if value not in (None, ""):
            out.append(str(value))
    return out


def _unknown_programme(index: int, unknown: list[str], title: str) -> BeneficiaryRejected:
    names = ", ".join(f"'{p[:40]}'" for p in unknown)
    return BeneficiaryRejected(
        f"message.enrolled_updates.beneficiaries[{index}]: programme {names} is not known to "
        f"the {title}: it accepts the programmes configured for it (registries.<name>."
        "known_values.programme_identifier) or, if none are, those it holds already",
    )


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
        name = (programme_id(r) or "a programme") if seen["programme"] else "a programme"
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
    # 1. each beneficiary on its own: its reference, the data model, its identifiers
    checked: list[tuple[str, dict[str, Any] | BeneficiaryRejected]] = []
    references: set[str] = set()
    for index, raw in enumerate(request.beneficiaries):
        where = f"message.enrolled_updates.beneficiaries[{index}]"
        given = raw.get("reference_id") if isinstance(raw, dict) else None
        reference = str(given or index + 1)
        try:
            if len(reference) > 99 or has_control_chars(reference):
                reference = str(index + 1)
                raise BeneficiaryRejected(
                    "reference_id must be 1 to 99 characters without control characters",
                    NotifyReason.REFERENCE_ID_INVALID,
                )
            if given and reference in references:
                raise BeneficiaryRejected(
                    f"reference_id '{reference}' is used by an earlier beneficiary of this message",
                    NotifyReason.REFERENCE_ID_DUPLICATE,
                )
            references.add(reference)
            record: dict[str, Any] | BeneficiaryRejected = normalise_beneficiary(raw)
        except BeneficiaryRejected as exc:
            record = BeneficiaryRejected(f"{where}: {exc}"[:999], exc.code)
        checked.append((reference, record))
    # 2. the programmes must be known to the registry
    wanted = sorted(
        {p for _, r in checked if isinstance(r, dict) for p in programme_ids(r)}, key=str
    )
    known = ctx.known_values(entity, "programme_identifier", wanted) if wanted else set()
    for n, (reference, record) in enumerate(checked):
        if isinstance(record, dict):
            unknown = [p for p in programme_ids(record) if p not in known]
            if unknown:
                checked[n] = (reference, _unknown_programme(n, unknown, ctx.title))
    # 3. the replies, and the records to write
    replies: list[dict[str, Any]] = []
    results: list[ItemResult] = []
    records: dict[str, dict[str, Any]] = {}
    for index, (reference, record) in enumerate(checked):
        if isinstance(record, BeneficiaryRejected):
            reason = str(record)
            replies.append(
                {
                    "reference_id": reference,
                    "timestamp": now,
                    "status": RequestStatus.REJECTED.value,
                    "status_reason_code": record.code,
                    "status_reason_message": reason,
                }
            )
            results.append(ItemResult(reference, RequestStatus.REJECTED.value, record.code, reason))
            continue
        key = record["@id"]
        records[key] = record
        if reference == str(index + 1):
            reference = key
        replies.append(
            {"reference_id": reference, "timestamp": now, "status": RequestStatus.SUCCESS.value}
        )
        results.append(ItemResult(reference, result={"entity": entity, "keys": [key]}))
    existing = ctx.existing_keys(entity, list(records))
    for n, (reply, result) in enumerate(zip(replies, results, strict=True)):
        if result.status == RequestStatus.SUCCESS.value and result.result:
            key = result.result["keys"][0]
            reason = f"{'updated' if key in existing else 'enrolled'} {key}"
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


def record_enrol(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """--id (UIN) enrolled in --programme (with --status, default 1 Active)."""
    uin = identifier_option(options, "id")[1]
    programme = option(options, "programme")
    if ctx.get(f"ibr:{programme}:{uin}") is not None:
        raise ValueError(f"UIN {uin} is enrolled in {programme} already (change its --status)")
    record = normalise_beneficiary(
        {
            "member": {"member_identifier": [{"identifier_type": "UIN", "identifier_value": uin}]},
            "programme_identifier": [{"programme_identifier": programme}],
            "enrollment_date": options.get("date") or ctx.today().isoformat(),
            "enrollment_status": options.get("status") or "1",
            "status_change_date": [options.get("date") or ctx.today().isoformat()],
        }
    )
    return [record]


def record_status(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """The enrolment of --id in --programme takes --status (1 Active, 2 Deceased ...)."""
    uin = identifier_option(options, "id")[1]
    programme = option(options, "programme")
    record = ctx.get(f"ibr:{programme}:{uin}")
    if record is None:
        raise ValueError(f"UIN {uin} is not enrolled in {programme}")
    code = codedirs.get("enrollment_status").normalise(option(options, "status"))
    if code is None:
        raise ValueError("--status: one of 1 Active, 2 Deceased, 3 Graduated, 4 Suspended")
    day = options.get("date") or ctx.today().isoformat()
    changed = {**record, "enrollment_status": code}
    changed["status_change_date"] = [*(record.get("status_change_date") or []), day]
    return [changed]


def events(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Event]:
    """A new enrolment; a change of an enrolment's status."""
    if after is None:
        return []
    if before is None:
        return [Event("enrollement", "Beneficiary", after)]
    if changed(before, after, "enrollment_status"):
        return [Event("enrollement_status_change", "Beneficiary", after)]
    return []


PROFILE = RegistryProfile(
    name="ibr",
    title="Integrated Beneficiary Registry",
    reg_type="ns:org:RegistryType:IBR",
    entities=(BENEFICIARY,),
    default_entity="Beneficiary",
    txn_types=("search", "subscribe", "receipt"),
    event_types=(
        EventType(
            "enrollement",
            "Beneficiary",
            "a member or household is enrolled in a programme (the contract's spelling)",
            ("enrollment", "enrolment"),
        ),
        EventType(
            "enrollement_status_change",
            "Beneficiary",
            "the status of an enrolment changes",
            ("enrollment_status_change", "enrolment_status_change"),
        ),
    ),
    events=events,
    record_changes=(
        RecordChange("enrolment", "--id (UIN) enrolled in --programme [--status]", record_enrol),
        RecordChange(
            "enrolment-status", "the enrolment of --id in --programme takes --status", record_status
        ),
    ),
    contract="ibr_api_v1.0.0.yaml",
    builder="dcihub.population.ibr:build",
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
