"""Farmer Registry: farmers with their farms, land, crops, livestock and machinery
(extensions/fr Farmer_Person)."""

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
)
from .changes import registered_at, registrant
from .common import UIN_NAMES, address_attributes, member_attributes, registration_attributes

FARMER = Entity(
    name="Farmer",
    aliases=("FRPerson", "FR_Person", "Farmer_Person", "Person", "Farmer"),
    identifier_paths=(
        "farmer_personal_details.member_identifier",
        "farmer_personal_details.demographic_info.identifier",
    ),
    identifier_types=("UIN", "FRN"),
    any_identifier_names=(*UIN_NAMES, "farmer_personal_details.member_identifier"),
    attributes=(
        *member_attributes("farmer_personal_details."),
        *registration_attributes(),
        *address_attributes("farmer_personal_details.demographic_info."),
        Attribute("farm_type", "code", "farm_type", (), code_dir="farm_type"),
        Attribute(
            "land_size",
            "float",
            "farm_details.land_size",
            ("farm_size", "total_land_size"),
            aggregate="sum",
            description="total land in hectares over all farms",
        ),
        Attribute(
            "land_tenure",
            "code",
            "farm_details.land_tenure",
            (),
            code_dir="land_tenure",
            multi=True,
        ),
        Attribute(
            "crop_type",
            "code",
            "farm_details.farming_activities.crop_production.crop_type_name",
            ("crop_type_name", "crop"),
            code_dir="crop_type",
            multi=True,
        ),
        Attribute(
            "livestock_type",
            "code",
            "farm_details.farming_activities.animal_production.type",
            ("animal_type", "livestock"),
            code_dir="animal_type",
            multi=True,
        ),
        Attribute(
            "irrigation",
            "bool",
            "farm_details.farming_activities.crop_production.irrigation",
            ("irrigated",),
            multi=True,
        ),
        Attribute(
            "mixed_farming", "bool", "farm_details.farming_activities.mixed_farming", (), multi=True
        ),
        Attribute(
            "farm_region",
            "text",
            "farm_details.location.contained_in_place.name",
            (),
            multi=True,
            description="region of a farm",
        ),
    ),
    description="a farmer (Farmer_Person)",
)


def record_register(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """A farmer is registered: --id (UIN; taken from the civil register when the node holds
    it, else --name, --sex, --birth-date), with a new FRN, [--household HHID] [--place farm
    region] [--date registration day]."""
    uin, person, marital = registrant(ctx, options)
    if ctx.get(f"fr:farmer:{uin}") is not None:
        raise ValueError(f"UIN {uin} is registered as a farmer already")
    registered = registered_at(ctx, options)
    member: dict[str, Any] = {
        "@type": "Member",
        "member_identifier": [
            {"identifier_type": "UIN", "identifier_value": uin},
            {"identifier_type": "FRN", "identifier_value": ctx.new_id("FRN")},
        ],
        "demographic_info": person,
        "marital_status": marital,
        "employment_status": "6",
        "occupation": "6",
        "registration_date": registered,
        "last_updated": ctx.now(),
    }
    record: dict[str, Any] = {
        "@type": "Farmer",
        "@id": f"fr:farmer:{uin}",
        "farmer_personal_details": member,
    }
    if options.get("household"):
        record["family_details"] = {
            "group_identifier": [
                {"identifier_type": "HHID", "identifier_value": options["household"]}
            ]
        }
    if options.get("place"):
        record["farm_details"] = [{"location": {"contained_in_place": {"name": options["place"]}}}]
    record["registration_date"], record["last_updated"] = registered, ctx.now()
    return [record]


PROFILE = RegistryProfile(
    name="fr",
    contract="fr_api_v1.0.0.yaml",
    title="Farmer Registry",
    reg_type="ns:org:RegistryType:FR",
    entities=(FARMER,),
    default_entity="Farmer",
    txn_types=("search", "subscribe", "unsubscribe"),
    event_types=(EventType("REGISTER", "Farmer", "a farmer is registered"),),
    events=lambda before, after: (
        [Event("REGISTER", "Farmer", after)] if before is None and after is not None else []
    ),
    record_changes=(
        RecordChange(
            "register", "a farmer is registered: --id (UIN) [--place farm region]", record_register
        ),
    ),
    builder="dcihub.population.fr:build",
)
