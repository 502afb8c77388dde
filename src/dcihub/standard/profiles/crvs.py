"""Civil Registration and Vital Statistics (CRVS): one record per person ever registered, living
or dead (extensions/crvs CRVSPerson = Person + birth/death places, marital status, marriage and
divorce dates, parents' identifiers)."""

from __future__ import annotations

from typing import Any

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
    values_at,
)
from .changes import added_values, became_set, day_option
from .common import UIN_NAMES, address_attributes, person_attributes, registration_attributes

PERSON = Entity(
    name="Person",
    aliases=("CRVSPerson", "CRVS_Person", "Person", "CivilPerson", "dci:Person"),
    identifier_paths=("identifier",),
    identifier_types=("UIN", "BRN", "DRN", "MRN"),
    any_identifier_names=UIN_NAMES,
    attributes=(
        *person_attributes(""),
        *registration_attributes(),
        *address_attributes(),
        Attribute(
            "marital_status",
            "code",
            "marital_status",
            ("civil_status",),
            code_dir="marital_status",
            description="marital status (S M W A D L U)",
        ),
        Attribute(
            "marriage_date",
            "date",
            "marriage_date",
            ("marriagedate",),
            multi=True,
            description="date of a marriage",
        ),
        Attribute(
            "divorce_date",
            "date",
            "divorce_date",
            ("divorcedate",),
            multi=True,
            description="date of a divorce",
        ),
        Attribute(
            "birth_place",
            "text",
            "birth_place.name",
            ("birthplace", "place_of_birth"),
            description="name of the place of birth",
        ),
        Attribute(
            "birth_region",
            "text",
            "birth_place.contained_in_place.name",
            (),
            description="region containing the place of birth",
        ),
        Attribute(
            "death_place",
            "text",
            "death_place.name",
            ("deathplace", "place_of_death"),
            description="name of the place of death",
        ),
        Attribute(
            "parent1_identifier",
            "text",
            "parent1_identifier.identifier_value",
            ("parent1",),
            description="identifier value of the first parent",
        ),
        Attribute(
            "parent2_identifier",
            "text",
            "parent2_identifier.identifier_value",
            ("parent2",),
            description="identifier value of the second parent",
        ),
    ),
    description="a person in the civil register (CRVSPerson)",
)

EVENT_TYPES = (
    EventType("LiveBirth", "Person", "a birth is registered (a new person)", ("birth",)),
    EventType("Death", "Person", "a death is registered (death_date set)"),
    EventType("FetalDeath", "Person", "a fetal death is registered (born and died the same day)"),
    EventType("Marriage", "Person", "a marriage is registered (a new marriage_date)"),
    EventType("Divorce", "Person", "a divorce is registered (a new divorce_date)"),
    EventType("Adoption", "Person", "an adoption is registered (a parent identifier changes)"),
)

PARENTS = ("parent1_identifier.identifier_value", "parent2_identifier.identifier_value")


def events(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Event]:
    """The vital events a change of one civil record raises (vital_event code list)."""
    if after is None:
        return []
    out: list[str] = []
    if before is None:
        died = first_value(after, "death_date")
        if died is not None and died == first_value(after, "birth_date"):
            out.append("FetalDeath")
        else:
            out.append("LiveBirth")
            if died is not None:
                out.append("Death")
    else:
        if became_set(before, after, "death_date"):
            out.append("Death")
        if added_values(before, after, "marriage_date"):
            out.append("Marriage")
        if added_values(before, after, "divorce_date"):
            out.append("Divorce")
        if any(
            first_value(before, p) is not None and first_value(before, p) != first_value(after, p)
            for p in PARENTS
        ) or (
            any(first_value(after, p) is not None for p in PARENTS)
            and not any(list(values_at(before, p)) for p in PARENTS)
        ):
            out.append("Adoption")
    return [Event(name, "Person", after) for name in out]


# ---------------------------------------------------------------------------------------------
# What an operator may record (`dcihub record <change> crvs ...`)

TITLE = "Civil Registration and Vital Statistics registry"


def _updated(ctx: ChangeContext, record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "last_updated": ctx.now()}


def _uin(record: dict[str, Any]) -> dict[str, str]:
    for ident in record.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("identifier_type") == "UIN":
            return {"identifier_type": "UIN", "identifier_value": str(ident["identifier_value"])}
    raise ValueError(f"record {record.get('@id')} has no UIN")


def record_birth(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """A child born to --mother (and --father): a new person with a new UIN and BRN."""
    mother = found(ctx, options, "mother", TITLE)
    father = found(ctx, options, "father", TITLE) if options.get("father") else None
    day = day_option(ctx, options)
    uin = ctx.new_id("UIN")
    surname = (father or mother).get("name", {}).get("surname", "")
    place = options.get("place") or first_value(mother, "address.locality") or "unknown"
    child: dict[str, Any] = {
        "@type": "CRVSPerson",
        "@id": f"crvs:person:{uin}",
        "identifier": [
            {"identifier_type": "UIN", "identifier_value": uin},
            {"identifier_type": "BRN", "identifier_value": ctx.new_id("BRN")},
        ],
        "name": {"surname": surname, "given_name": options.get("name") or "Newborn"},
        "sex": options.get("sex") or "female",
        "birth_date": day,
        "birth_place": {"name": place},
        "address": mother.get("address") or [],
        "marital_status": "S",
        "parent1_identifier": _uin(mother),
        "registration_date": ctx.now(),
        "last_updated": ctx.now(),
    }
    if father is not None:
        child["parent2_identifier"] = _uin(father)
    return [child]


def record_fetal_death(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """A child of --mother (and --father) born dead (on --date): born and died the same day."""
    (child,) = record_birth(ctx, options)
    child["death_date"] = child["birth_date"]
    child["death_place"] = child["birth_place"]
    return [child]


def record_death(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """The death of --id (on --date, at --place)."""
    person = found(ctx, options, "id", TITLE)
    if person.get("death_date"):
        raise ValueError(f"{person['@id']} is registered as deceased already")
    changed = _updated(ctx, person)
    changed["death_date"] = options.get("date") or ctx.today().isoformat()
    if options.get("place"):
        changed["death_place"] = {"name": options["place"]}
    return [changed]


def _union(ctx: ChangeContext, options: dict[str, str], field: str, status: str) -> list[Any]:
    person = found(ctx, options, "id", TITLE)
    spouse = found(ctx, options, "spouse", TITLE)
    day = options.get("date") or ctx.today().isoformat()
    out = []
    for record in (person, spouse):
        changed = _updated(ctx, record)
        changed[field] = [*(changed.get(field) or []), day]
        changed["marital_status"] = status
        out.append(changed)
    return out


def record_marriage(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """The marriage of --id and --spouse (on --date)."""
    return _union(ctx, options, "marriage_date", "M")


def record_divorce(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """The divorce of --id and --spouse (on --date)."""
    return _union(ctx, options, "divorce_date", "D")


def record_adoption(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """The adoption of --id by --mother (and/or --father)."""
    child = _updated(ctx, found(ctx, options, "id", TITLE))
    if not options.get("mother") and not options.get("father"):
        raise ValueError("give --mother and/or --father (the adoptive parents)")
    for slot, name in (("parent1_identifier", "mother"), ("parent2_identifier", "father")):
        if options.get(name):
            id_type, value = identifier_option(options, name)
            child[slot] = _uin(found(ctx, options, name, TITLE))
    return [child]


RECORD_CHANGES = (
    RecordChange("birth", "a child born to --mother [--father]", record_birth),
    RecordChange("fetal-death", "a child of --mother [--father] born dead", record_fetal_death),
    RecordChange("death", "the death of --id [--date] [--place]", record_death),
    RecordChange("marriage", "the marriage of --id and --spouse [--date]", record_marriage),
    RecordChange("divorce", "the divorce of --id and --spouse [--date]", record_divorce),
    RecordChange("adoption", "the adoption of --id by --mother/--father", record_adoption),
)


PROFILE = RegistryProfile(
    name="crvs",
    contract="crvs_api_v1.0.0.yaml",
    title="Civil Registration and Vital Statistics registry",
    reg_type="ns:org:RegistryType:Civil",
    entities=(PERSON,),
    default_entity="Person",
    txn_types=("search", "subscribe", "unsubscribe"),
    event_types=EVENT_TYPES,
    events=events,
    record_changes=RECORD_CHANGES,
    builder="dcihub.population.crvs:build",
)
