"""Social Registry: households (`Group`) with their members (`Member`) embedded in
`member_list`, poverty scores and socio-economic attributes (extensions/social)."""

from __future__ import annotations

from typing import Any

from .base import Attribute, Entity, Event, EventType, RegistryProfile
from .changes import embedded
from .common import UIN_NAMES, address_attributes, member_attributes, registration_attributes

GROUP = Entity(
    name="Group",
    aliases=("Household", "HouseHold", "Family", "SRGroup", "spdci:Group"),
    identifier_paths=("group_identifier",),
    identifier_types=("HHID",),
    any_identifier_names=("group_identifier", "household_identifier"),
    attributes=(
        Attribute(
            "poverty_score",
            "float",
            "poverty_score",
            ("pmt_score",),
            description="poverty score (lower is poorer)",
        ),
        Attribute("poverty_score_type", "text", "poverty_score_type", ()),
        Attribute(
            "group_size",
            "int",
            "group_size",
            ("household_size", "family_size"),
            description="number of members",
        ),
        Attribute(
            "group_type",
            "code",
            "group_type",
            ("household_type",),
            code_dir="assistance_unit",
            description="assistance unit type",
        ),
        *registration_attributes(),
        *address_attributes(),
    ),
    description="a household or family (Group)",
)

MEMBER = Entity(
    name="Member",
    aliases=("SRPerson", "SR_Person", "Person", "Individual", "spdci:Member"),
    identifier_paths=("member_identifier", "demographic_info.identifier"),
    identifier_types=("UIN",),
    any_identifier_names=UIN_NAMES,
    parent="Group",
    embedded_at="member_list",
    attributes=(
        *member_attributes(""),
        *registration_attributes(),
    ),
    description="a member of a household (Member)",
)

EVENT_TYPES = (
    EventType("REGISTER", "Group", "a household is registered"),
    EventType(
        "NewHouseHoldMember", "Member", "a member joins a household", ("new_household_member",)
    ),
    EventType(
        "HouseHoldMemberLeft",
        "Group",
        "a member leaves a household (the household as it is after)",
        ("member_left", "household_member_left"),
        contract=False,
    ),
)


def events(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Event]:
    """Registration of a household; members joining it or leaving it."""
    if after is None:
        return []
    if before is None:
        return [Event("REGISTER", "Group", after)]
    old, new = embedded(before, "member_list"), embedded(after, "member_list")
    out = [Event("NewHouseHoldMember", "Member", m) for key, m in new.items() if key not in old]
    if any(key not in new for key in old):
        out.append(Event("HouseHoldMemberLeft", "Group", after))
    return out


PROFILE = RegistryProfile(
    name="social",
    contract="social_api_v1.0.0.yaml",
    title="Social Registry",
    reg_type="ns:org:RegistryType:Social",
    entities=(GROUP, MEMBER),
    default_entity="Group",
    txn_types=("search", "subscribe", "receipt"),
    event_types=EVENT_TYPES,
    events=events,
    builder="dcihub.population.social:build",
)
