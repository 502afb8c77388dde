"""Employment Support System use cases, end to end against the live server (SQLite and
PostgreSQL), in the style of `test_usecases.py`: each expected set is computed from the
generated records (`expect.py`), never hard-coded.

    ESS 1 unemployed people of a region (and of a district)
    ESS 2 people in the ESS who also receive a pension in the IBR (a search on each, joined)
    ESS 3 enrolments in a programme by status; members by an enrolment; enrolments by member
    ESS 4 deceased members: their enrolments are marked Deceased
    ESS 5 lookup by UIN and by ESS registration number
    ESS 6 sync/check-enrollment: a person's enrolments and their status
"""

from __future__ import annotations

from collections import Counter

import pytest

from expect import (
    age,
    crvs_by_uin,
    ess_enrolments,
    ess_members,
    ess_uin,
    ibr_beneficiaries,
    ibr_uin,
    is_dead,
    keys,
    server_today,
)
from support import expr, idtype, mongo, pred, predicate
from test_usecases import assert_found, fetch_all, only_item


def region_of(member: dict) -> str:
    return member["demographic_info"]["address"][0]["region_code"]


def district_of(member: dict) -> str:
    return member["demographic_info"]["address"][0]["locality"]


def test_ess1_unemployed_people_of_a_region(client, country):
    """Living members who are not employed, in one region (predicate form) and in one
    district (expression form); the answers are exactly the generated ones."""
    unemployed = [
        m
        for m in country.ess
        if m["employment_status"] == "2" and "death_date" not in m["demographic_info"]
    ]
    regions = Counter(region_of(m) for m in unemployed)
    assert len(regions) > 1
    region = sorted(regions)[1]
    item = predicate(
        pred(1, expr("employment_status", "eq", "2"), "and", expr("region", "eq", region)),
        pred(2, expr("is_deceased", "eq", False)),
    )
    records, total = fetch_all(client, "ess", item)
    expected = ess_members(
        country,
        lambda m: (
            m["employment_status"] == "2"
            and region_of(m) == region
            and "death_date" not in m["demographic_info"]
        ),
    )
    assert len(expected) == regions[region] > 5
    assert_found(records, total, ess_uin, expected)
    assert all(r["unemployment_reason"] for r in records)

    district = district_of(next(m for m in unemployed if region_of(m) == region))
    item = mongo(
        {"$and": [{"employment_status": {"$eq": "Not Employed"}}, {"district": {"$eq": district}}]},
        response_entity="Member",
    )
    records, total = fetch_all(client, "ess", item)
    expected = ess_members(
        country, lambda m: m["employment_status"] == "2" and district_of(m) == district
    )
    assert expected
    assert_found(records, total, ess_uin, expected)


def test_ess2_in_the_ess_and_receiving_a_pension(client, country):
    """Pensioners who work or look for work: a search of the IBR for the active Old Age
    Pensions and one of the ESS for its living members of pension age, joined by UIN."""
    pensions, total = fetch_all(
        client,
        "ibr",
        predicate(
            pred(
                1,
                expr("programme_identifier", "eq", "OAP"),
                "and",
                expr("enrollment_status", "eq", "1"),
            )
        ),
    )
    expected_pensioners = keys(ibr_beneficiaries(country, "OAP", "1"), ibr_uin)
    assert_found(pensions, total, ibr_uin, expected_pensioners)

    members, total = fetch_all(
        client,
        "ess",
        predicate(pred(1, expr("age", "ge", 65), "and", expr("is_deceased", "eq", False))),
    )
    today = server_today()
    expected_members = ess_members(
        country,
        lambda m: (
            age(m["demographic_info"]["birth_date"], today) >= 65
            and "death_date" not in m["demographic_info"]
        ),
    )
    assert_found(members, total, ess_uin, expected_members)

    both = keys(pensions, ibr_uin) & keys(members, ess_uin)
    in_ess = {ess_uin(m): m for m in country.ess}
    expected = {u for u in expected_pensioners if u in in_ess} & expected_members
    assert both == expected
    assert both, "the generated country should have pensioners known to the ESS"
    people = crvs_by_uin(country)
    assert all(not is_dead(people[u]) and age(people[u]["birth_date"], today) >= 65 for u in both)
    working = {u for u in both if in_ess[u]["employment_status"] in ("1", "4")}
    assert working, "most pensioners in the ESS are working"


def test_ess3_enrolments_by_programme_and_status(client, country):
    """Enrolment records (reg_record_type Beneficiary) by programme and status; members with
    an active enrolment (a condition on the embedded enrolments); enrolments of members
    who lost their job (a condition on the enclosing member)."""
    for programme, status in (("ESA", "Active"), ("ESA", "3"), ("VTP", "Exited")):
        item = predicate(
            pred(
                1,
                expr("programme_identifier", "eq", programme),
                "and",
                expr("enrollment_status", "eq", status),
            ),
            reg_record_type="Beneficiary",
        )
        records, total = fetch_all(client, "ess", item)
        code = {"Active": "1", "Exited": "3"}.get(status, status)
        expected = {
            e["@id"]
            for _, e in ess_enrolments(country)
            if e["programme_identifier"][0]["programme_identifier"] == programme
            and e["enrollment_status"] == code
        }
        assert expected, (programme, status)
        assert_found(records, total, lambda r: r["@id"], expected)

    item = predicate(
        pred(1, expr("enrollment_status", "eq", "1"), "and", expr("programme", "eq", "PWP"))
    )
    records, total = fetch_all(client, "ess", item)
    expected = {
        ess_uin(m)
        for m, e in ess_enrolments(country)
        if e["enrollment_status"] == "1"
        and e["programme_identifier"][0]["programme_identifier"] == "PWP"
    }
    assert expected
    assert_found(records, total, ess_uin, expected)
    assert all(r["@type"] == "Member" for r in records)

    item = predicate(pred(1, expr("unemployment_reason", "eq", "1")), reg_record_type="Beneficiary")
    records, total = fetch_all(client, "ess", item)
    expected = {e["@id"] for m, e in ess_enrolments(country) if m.get("unemployment_reason") == "1"}
    assert expected
    assert_found(records, total, lambda r: r["@id"], expected)


def test_ess4_deceased_members_enrolments_are_marked(client, country):
    """The ESS knows of its members' deaths: the enrolments marked Deceased are exactly the
    enrolments of members with a death date that had not ended before the death."""
    item = predicate(
        pred(1, expr("enrollment_status", "eq", "Deceased")), reg_record_type="Enrolment"
    )
    records, total = fetch_all(client, "ess", item)
    expected = {e["@id"] for m, e in ess_enrolments(country) if e["enrollment_status"] == "2"}
    assert expected
    assert_found(records, total, lambda r: r["@id"], expected)
    people = crvs_by_uin(country)
    for record in records:
        person = people[ess_uin(record)]
        assert is_dead(person)
        assert record["member"]["demographic_info"]["death_date"] == person["death_date"]
    dead_members, total = fetch_all(
        client, "ess", predicate(pred(1, expr("is_deceased", "eq", True)))
    )
    expected = ess_members(country, lambda m: "death_date" in m["demographic_info"])
    assert_found(dead_members, total, ess_uin, expected)
    assert {ess_uin(r) for r in records} <= expected
    samples = {s["value"] for s in country.samples()["ess"]["deceased"]}
    assert samples <= expected


def test_ess5_lookup_by_uin_and_registration_number(client, country):
    """The sample identifiers find their member; an unknown ESSRN finds nobody."""
    samples = country.samples()["ess"]["identifiers"]
    assert {s["type"] for s in samples} == {"UIN", "ESSRN"}
    items = [idtype(s["type"], s["value"]) for s in samples]
    items.append(idtype("ESSRN", "ESS-9999999"))
    body = client.sync_search("ess", *items)
    results = body["message"]["search_response"]
    uin = next(s["value"] for s in samples if s["type"] == "UIN")
    for result in results[:-1]:
        assert result["status"] == "succ", result
        assert [ess_uin(r) for r in result["data"]["reg_records"]] == [uin]
    assert results[-1]["data"]["reg_records"] == []
    enrolled = country.samples()["ess"]["enrolled"][0]
    result = only_item(
        client.sync_search("ess", idtype("UIN", enrolled["value"], reg_record_type="Beneficiary"))
    )
    got = {r["@id"] for r in result["data"]["reg_records"]}
    assert f"ess:{enrolled['programme']}:{enrolled['value']}" in got
    assert got == {e["@id"] for m, e in ess_enrolments(country) if ess_uin(m) == enrolled["value"]}


def check_enrollment_envelope(uin: str, sender_id: str) -> dict:
    from support import header

    return {
        "header": header("search", 1, sender_id),
        "message": {
            "transaction_id": f"t-ce-{uin}",
            "enrolled_criteria": {
                "query_type": "expression",
                "response_entity": "Member",
                "query": {"person_identifier": {"eq": uin}},
            },
        },
    }


@pytest.fixture(scope="module")
def ess_contract(spec_dir):
    from contract import load_contract

    return load_contract(spec_dir, "ess")


def test_ess6_check_enrollment_answers_each_enrolment_with_its_status(
    client, country, ess_contract
):
    """`sync/check-enrollment` (the ESS special call): one item per enrolment of the person,
    with the contract's enrolled_status (Exited answered as Inactive); a person without
    enrolments gets one Inactive item saying so. Each reply validates against the contract."""
    from dcihub.standard.profiles.ess import enrolment_status

    by_uin: dict[str, list[dict]] = {}
    for member, enrolment in ess_enrolments(country):
        by_uin.setdefault(ess_uin(member), []).append(enrolment)
    statuses = {s for es in by_uin.values() for s in map(enrolment_status, es)}
    assert len(statuses) >= 3, statuses  # the population exercises several statuses
    chosen = sorted(by_uin, key=lambda u: (-len(by_uin[u]), u))[:3]
    not_enrolled = next(ess_uin(m) for m in country.ess if not m.get("programme_enrolments"))
    for uin in [*chosen, not_enrolled, "000000000"]:
        response = client.post(
            "ess", "sync/check-enrollment", check_enrollment_envelope(uin, client.sender_id)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        ess_contract.validate_response("/registry/sync/check-enrollment", body)
        answered = sorted(i["enrolled_status"] for i in body["message"]["enrolled_response"])
        expected = sorted(enrolment_status(e) for e in by_uin.get(uin, [])) or ["Inactive"]
        assert answered == expected, uin
        assert all(s != "Exited" for s in answered)
