"""Attribute sets shared by the person-based profiles.

`person_attributes(prefix)` declares the attributes of a Person found under `prefix` in a
record (e.g. `demographic_info.` in a Member): sex, birth and death dates, the derived `age` and
`is_deceased`, registration date and names. The aliases accept the field spellings of the
standard's samples (`gender`, `demographic_info.person.sex`, `date_of_birth`, ...).
"""

from __future__ import annotations

from .base import Attribute


def _aliases(name: str, prefix: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    spellings = {name, *extra}
    out = []
    for spelling in spellings:
        for p in (
            "demographic_info.",
            "demographic_info.person.",
            "member.demographic_info.",
            "person.",
            "member.demographic_info.person.",
            prefix,
        ):
            out.append(p + spelling)
        out.append(spelling)
    return tuple(sorted(set(out) - {prefix + name}))


def person_attributes(prefix: str) -> tuple[Attribute, ...]:
    """Searchable attributes of the Person at `prefix` (e.g. "" or "demographic_info.")."""
    return (
        Attribute(
            "sex",
            "code",
            f"{prefix}sex",
            _aliases("sex", prefix, ("gender",)),
            code_dir="sex",
            description="sex (male, female, other, unknown)",
        ),
        Attribute(
            "birth_date",
            "date",
            f"{prefix}birth_date",
            _aliases("birth_date", prefix, ("date_of_birth", "dob", "birthdate")),
            description="date of birth",
        ),
        Attribute(
            "age",
            "int",
            f"{prefix}birth_date",
            ("age_years",),
            derived="age",
            source="birth_date",
            description="whole years at query time, from birth_date",
        ),
        Attribute(
            "death_date",
            "date",
            f"{prefix}death_date",
            _aliases("death_date", prefix, ("date_of_death", "deathdate")),
            description="date of death",
        ),
        Attribute(
            "is_deceased",
            "bool",
            f"{prefix}death_date",
            ("deceased", "is_dead"),
            derived="is_set",
            source="death_date",
            description="true when a death date is recorded",
        ),
        Attribute(
            "surname",
            "text",
            f"{prefix}name.surname",
            _aliases("name.surname", prefix, ("last_name", "family_name")),
            description="surname",
        ),
        Attribute(
            "given_name",
            "text",
            f"{prefix}name.given_name",
            _aliases("name.given_name", prefix, ("first_name",)),
            description="given name",
        ),
    )


def member_attributes(prefix: str) -> tuple[Attribute, ...]:
    """Attributes of a Member (SCH core Member) found at `prefix` of a record."""
    return (
        *person_attributes(prefix + "demographic_info."),
        Attribute(
            "marital_status",
            "code",
            f"{prefix}marital_status",
            ("member.marital_status", "civil_status"),
            code_dir="marital_status",
            description="marital status (S M W A D L U)",
        ),
        Attribute(
            "is_disabled",
            "bool",
            f"{prefix}is_disabled",
            ("member.is_disabled", "disabled"),
            description="the member has a disability",
        ),
        Attribute(
            "disability_type",
            "code",
            f"{prefix}disability_info.disability_limitation_type",
            ("disability_limitation_type",),
            code_dir="functional_limitation_type",
            multi=True,
            description="functional limitation type (Washington Group)",
        ),
        Attribute(
            "employment_status",
            "code",
            f"{prefix}employment_status",
            (),
            code_dir="employment_status",
        ),
        Attribute("occupation", "code", f"{prefix}occupation", (), code_dir="occupation"),
        Attribute("income_level", "code", f"{prefix}income_level", (), code_dir="income_level"),
        Attribute(
            "education_level", "code", f"{prefix}education_level", (), code_dir="education_level"
        ),
    )


def registration_attributes(prefix: str = "") -> tuple[Attribute, ...]:
    return (
        Attribute(
            "registration_date",
            "date",
            f"{prefix}registration_date",
            ("registered_on",),
            description="date the record was registered",
        ),
        Attribute(
            "last_updated",
            "date",
            f"{prefix}last_updated",
            ("last_update",),
            description="date the record was last updated",
        ),
    )


def address_attributes(prefix: str = "") -> tuple[Attribute, ...]:
    return (
        Attribute(
            "region_code",
            "text",
            f"{prefix}address.region_code",
            ("region", "location"),
            description="region code of the address",
        ),
        Attribute(
            "locality",
            "text",
            f"{prefix}address.locality",
            ("district",),
            description="locality of the address",
        ),
    )


UIN_NAMES = ("member_identifier", "person_identifier", "identifier", "national_id")
