"""Disability Registry: persons with disabilities (extensions/dr PWD_Person: personal details,
disability status and level, impairment details, support needs), with the DR's three special
synchronous calls."""

from __future__ import annotations

from typing import Any

from .base import Attribute, Entity, RegistryProfile, SpecialEndpoint
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

PROFILE = RegistryProfile(
    name="dr",
    title="Disability Registry",
    reg_type="ns:org:RegistryType:DR",
    entities=(PERSON,),
    default_entity="DisabledPerson",
    txn_types=("search", "subscribe", "unsubscribe"),
    reg_event_types=("REGISTER",),
    builder="dcihub.population.dr:build",
    has_txn_status=False,  # neither DR contract has txn/status (upstream issue #49)
    special_endpoints=(
        SpecialEndpoint(
            "sync/disabled",
            "disabled",
            "search",
            "on-search",
            summary="is this person registered as disabled? (yes/no)",
        ),
        SpecialEndpoint(
            "sync/get-disability-support",
            "disability_support",
            "search",
            "on-search",
            summary="the support a person with disability receives",
        ),
        SpecialEndpoint(
            "sync/get-disability-details",
            "disability_details",
            "search",
            "on-search",
            summary="the impairment details of a person",
        ),
    ),
)


def is_disabled(record: dict[str, Any]) -> bool:
    """Registered as disabled: an Approved disability status, not withdrawn in the member."""
    details = record.get("personal_details") or {}
    return record.get("disability_status") == APPROVED and details.get("is_disabled") is not False
