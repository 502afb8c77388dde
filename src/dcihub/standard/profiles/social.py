"""Social Registry: households (`Group`) with their members (`Member`) embedded in
`member_list`, poverty scores and socio-economic attributes (extensions/social)."""

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
    identifier_option,
    option,
)
from .changes import embedded, registered_at, registrant
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


def _household(ctx: ChangeContext, options: dict[str, str]) -> dict[str, Any]:
    hhid = option(options, "household")
    found = ctx.find("HHID", hhid)
    if found is None:
        raise ValueError(f"the Social Registry holds no household {hhid}")
    return found


def record_join(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """--id (a UIN; a new one when not given) joins --household, with --name and --sex."""
    household = dict(_household(ctx, options))
    uin = identifier_option(options, "id")[1] if options.get("id") else ctx.new_id("UIN")
    members = list(household.get("member_list") or [])
    if any(f"social:member:{uin}" == m.get("@id") for m in members if isinstance(m, dict)):
        raise ValueError(f"UIN {uin} is a member of household {options['household']} already")
    ident = [{"identifier_type": "UIN", "identifier_value": uin}]
    member: dict[str, Any] = {
        "@type": "Member",
        "@id": f"social:member:{uin}",
        "member_identifier": ident,
        "demographic_info": {
            "identifier": ident,
            "name": {"given_name": options.get("name") or "New member"},
            "sex": options.get("sex") or "female",
            "birth_date": options.get("date") or ctx.today().isoformat(),
        },
        "registration_date": ctx.now(),
        "last_updated": ctx.now(),
    }
    household["member_list"] = [*members, member]
    household["group_size"] = len(household["member_list"])
    household["last_updated"] = ctx.now()
    return [household]


def record_register(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """A household is registered with its head --id (UIN; from the civil register when the
    node holds it, else --name, --sex, --birth-date), a new HHID, [--place locality]
    [--date registration day]."""
    uin, person, marital = registrant(ctx, options)
    household = ctx.find("UIN", uin)
    if household is not None:
        raise ValueError(f"UIN {uin} is a member of household {household['@id']} already")
    hhid = ctx.new_id("HHID")
    registered = registered_at(ctx, options)
    head: dict[str, Any] = {
        "@type": "Member",
        "@id": f"social:member:{uin}",
        "member_identifier": [{"identifier_type": "UIN", "identifier_value": uin}],
        "demographic_info": person,
        "marital_status": marital,
        "registration_date": registered,
        "last_updated": ctx.now(),
    }
    group: dict[str, Any] = {
        "@type": "Group",
        "@id": f"social:group:{hhid}",
        "group_identifier": [{"identifier_type": "HHID", "identifier_value": hhid}],
        "group_type": "2",
        "group_size": 1,
        "group_head_info": dict(head),
        "member_list": [head],
        "registration_date": registered,
        "last_updated": ctx.now(),
    }
    if person.get("address"):
        group["address"] = person["address"]
    if options.get("place"):
        group["geographical_location"] = {"name": options["place"]}
    return [group]


def record_leave(ctx: ChangeContext, options: dict[str, str]) -> list[dict[str, Any]]:
    """--id (a UIN) leaves --household."""
    household = dict(_household(ctx, options))
    uin = identifier_option(options, "id")[1]
    members = [
        m
        for m in household.get("member_list") or []
        if not (isinstance(m, dict) and m.get("@id") == f"social:member:{uin}")
    ]
    if len(members) == len(household.get("member_list") or []):
        raise ValueError(f"UIN {uin} is not a member of household {options['household']}")
    household["member_list"] = members
    household["group_size"] = len(members)
    household["last_updated"] = ctx.now()
    return [household]


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
    record_changes=(
        RecordChange(
            "register", "a household is registered with its head --id (UIN)", record_register
        ),
        RecordChange("member-join", "--id (UIN) joins --household HHID", record_join),
        RecordChange("member-leave", "--id (UIN) leaves --household HHID", record_leave),
    ),
    builder="dcihub.population.social:build",
)
