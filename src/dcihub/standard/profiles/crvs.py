"""Civil Registration and Vital Statistics (CRVS): one record per person ever registered, living
or dead (extensions/crvs CRVSPerson = Person + birth/death places, marital status, marriage and
divorce dates, parents' identifiers)."""

from __future__ import annotations

from .base import Attribute, Entity, RegistryProfile
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

PROFILE = RegistryProfile(
    name="crvs",
    contract="crvs_api_v1.0.0.yaml",
    title="Civil Registration and Vital Statistics registry",
    reg_type="ns:org:RegistryType:Civil",
    entities=(PERSON,),
    default_entity="Person",
    txn_types=("search", "subscribe", "unsubscribe"),
    reg_event_types=("LiveBirth", "Death", "Marriage", "Divorce"),
    builder="dcihub.population.crvs:build",
)
