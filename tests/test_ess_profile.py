"""The ESS profile: `enrolment_status` (the `enrolled_status` of sync/check-enrollment) and how
its queries bind (members and their embedded enrolments)."""

from __future__ import annotations

import pytest

from dcihub.standard import codedirs
from dcihub.standard.profiles import PROFILES
from dcihub.standard.profiles.ess import ENROLLED_STATUS, enrolment_status

# The contract's EnrolledResponse.enrolled_status enum (spec/ess_api_v1.0.0.yaml), restated.
CONTRACT_ENUM = {"Active", "Deceased", "Suspended", "Inactive", "Reinstated", "Awaiting Renewal"}


def enrolment(status: object) -> dict:
    return {"@type": "Beneficiary", "enrollment_status": status}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("1", "Active"),
        ("2", "Deceased"),
        ("3", "Inactive"),  # Exited is not in the contract's enum (DIGEST §9)
        ("4", "Suspended"),
        ("5", "Inactive"),
        ("6", "Reinstated"),
        ("7", "Awaiting Renewal"),
        ("Exited", "Inactive"),
        ("awaiting renewal", "Awaiting Renewal"),
        (6, "Reinstated"),
    ],
)
def test_an_enrolment_maps_to_the_contract_enum(status: object, expected: str) -> None:
    assert enrolment_status(enrolment(status)) == expected


def test_every_code_of_the_list_maps_into_the_contract_enum() -> None:
    codes = set(codedirs.get("ess_enrolment_status").codes)
    assert set(ENROLLED_STATUS) == codes
    assert set(ENROLLED_STATUS.values()) == CONTRACT_ENUM


def test_the_older_spelling_is_read() -> None:
    assert enrolment_status({"enrolment_status": "4"}) == "Suspended"


def test_a_member_answers_with_its_most_current_enrolment() -> None:
    member = {
        "@type": "Member",
        "programme_enrolments": [enrolment("3"), enrolment("4"), enrolment("1")],
    }
    assert enrolment_status(member) == "Active"
    member["programme_enrolments"] = [enrolment("2"), enrolment("3")]
    assert enrolment_status(member) == "Inactive"
    member["programme_enrolments"] = [enrolment("2")]
    assert enrolment_status(member) == "Deceased"


@pytest.mark.parametrize(
    "record",
    [
        {"@type": "Member"},
        {"@type": "Member", "programme_enrolments": []},
        enrolment("Dancing"),
        enrolment(None),
        "1",
    ],
)
def test_no_or_an_unknown_status_is_refused(record: object) -> None:
    with pytest.raises(ValueError, match="enrol"):
        enrolment_status(record)  # type: ignore[arg-type]


def test_the_profile() -> None:
    profile = PROFILES["ess"]
    assert profile.title == "Employment Support System"
    assert profile.reg_type == "ns:org:RegistryType:ESS"
    assert profile.txn_types == ("search", "subscribe", "receipt")
    # the contract's notify events, then the ESS's own (named in header.meta when notified)
    assert profile.reg_event_types == (
        "enrolment",
        "enrolment_status_change",
        "REGISTER",
        "employment_status_change",
    )
    assert [e.name for e in profile.event_types if e.contract] == [
        "enrolment",
        "enrolment_status_change",
    ]
    assert profile.builder == "dcihub.population.ess:build"
    assert [e.path for e in profile.special_endpoints] == ["sync/check-enrollment"]
    assert profile.contract == "ess_api_v1.0.0.yaml" and profile.has_txn_status
    member, beneficiary = profile.entity("Member"), profile.entity("Beneficiary")
    assert beneficiary.parent == "Member" and beneficiary.embedded_at == "programme_enrolments"
    assert profile.find_entity("spdci-extensions-dci:ESSPerson") is member
    assert profile.find_entity("Enrolment") is beneficiary
    for entity in (member, beneficiary):
        assert entity.has_identifier("UIN") and entity.has_identifier("ESSRN")
    for name in ("employment_status", "employment_type", "unemployment_reason", "region", "age"):
        assert member.attribute(name) is not None, name
    for name in ("enrollment_status", "programme", "age", "sex"):
        assert beneficiary.attribute(name) is not None, name
    assert beneficiary.attribute("employment_status") is None  # the member's (the parent's)
    assert member.attribute("unemployment_reason").code_dir == "unemployment_reason"
    assert member.attribute("employment_type").code_dir == "employment_type"
    assert beneficiary.attribute("status").code_dir == "ess_enrolment_status"
