"""Farmer Registry: farmers with their farms, land, crops, livestock and machinery
(extensions/fr Farmer_Person)."""

from __future__ import annotations

from .base import Attribute, Entity, Event, EventType, RegistryProfile
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
    builder="dcihub.population.fr:build",
)
