"""Civil Registration and Vital Statistics (CRVS): one record per person ever registered, living
or dead (extensions/crvs CRVSPerson = Person + birth/death places, marital status, marriage and
divorce dates, parents' identifiers)."""

from __future__ import annotations

from typing import Any

from .base import Attribute, Entity, Event, EventType, RegistryProfile, first_value, values_at
from .changes import added_values, became_set
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
    builder="dcihub.population.crvs:build",
)
