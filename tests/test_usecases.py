"""Every use case of the standard's samples (`samples/*/usecaselist.json`) as an end-to-end test.

Each test sends the request of its process flow in the NEWEST spec shape (not the legacy shape
of the sample) to the real server, and checks that the records returned are exactly the ones
the use case means: the expected identifiers and counts are computed independently from the
generated population (`expect.py`), never hard-coded.

    CRVS 1 generic lookup        CRVS 2 old-age allowance     CRVS 3 stop allowance on death
    CRVS 4 widow allowance       CRVS 5 child allowance       CRVS 6 proactive child enrolment
    Social 1-1 poverty score     Social 1-2 group size        Social 1-3 female widows
    DR 1 disability criteria     DR 2 confirm status          DR 3 old-age grant eligibility
    DR 4 approved-disability registrations                    FR 1 farmer criteria
    IBR 1 enrolment updates      IBR 2 programmes of a beneficiary
    + txn/status (sync and async) of an earlier search, per registry
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from dcihub.standard.profiles import PROFILES
from expect import (
    beneficiary,
    callback_header,
    crop_types,
    crvs_born_since,
    crvs_by_uin,
    crvs_children_of,
    crvs_deaths_since,
    crvs_living_widows,
    crvs_old_living,
    crvs_uin,
    crvs_with_identifier,
    crvs_younger_than,
    disabled_envelope,
    dr_age,
    dr_uin,
    dr_where,
    enrolled_envelope,
    enrollment_updates_envelope,
    first_id,
    fr_uin,
    fr_where,
    group_hhid,
    ibr_beneficiaries,
    ibr_enrolments_of,
    ibr_programmes,
    ibr_uin,
    impairment_types,
    is_dead,
    is_female_widow,
    keys,
    land_size,
    member_uin,
    members,
    new_id,
    parents_of,
    record_ids,
    reference_day,
    remove_ibr_records,
    send,
    server_today,
    social_groups,
    social_members,
    txn_status_envelope,
)
from support import expr, idtype, mongo, pred, predicate, search_envelope

# ---------------------------------------------------------------------------------------------
# Helpers


def paged(item: dict[str, Any], page_size: int, page_number: int = 1) -> dict[str, Any]:
    criteria = {
        **item["search_criteria"],
        "pagination": {"page_size": page_size, "page_number": page_number},
    }
    return {**item, "search_criteria": criteria}


def fetch_all(
    client, registry: str, item: dict[str, Any], page_size: int = 1000
) -> tuple[list[dict[str, Any]], int]:
    """Every record of one search item and the total_count the registry reported."""
    records: list[dict[str, Any]] = []
    total: int | None = None
    page = 1
    while True:
        body = client.sync_search(registry, paged(item, page_size, page))
        result = body["message"]["search_response"][0]
        assert result["status"] == "succ", result
        assert total in (None, result["pagination"]["total_count"]), "total changed while paging"
        total = result["pagination"]["total_count"]
        page_records = result["data"]["reg_records"]
        records.extend(page_records)
        if len(records) >= total or not page_records:
            return records, total
        page += 1


def only_item(body: dict[str, Any]) -> dict[str, Any]:
    items = body["message"]["search_response"]
    assert len(items) == 1, items
    return items[0]


def assert_found(records: list[dict[str, Any]], total: int, key, expected: set[str]) -> None:
    got = keys(records, key)
    assert got == expected, (
        f"missing {sorted(expected - got)[:10]}, unexpected {sorted(got - expected)[:10]}"
    )
    assert total == len(expected)


def post_ok(client, registry: str, path: str, envelope: dict[str, Any]) -> dict[str, Any]:
    response = send(client, registry, path, envelope)
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------------------------------------
# CRVS


def test_crvs1_generic_lookup_by_uin_brn_drn_mrn(client, country):
    """Process flow 1: the SP-System asks the CRVS for a person by any civil identifier; one
    message, one item per identifier type."""
    wanted = {"UIN", "BRN", "DRN", "MRN"}
    samples = [s for s in country.samples()["crvs"]["identifiers"] if s["type"] in wanted]
    assert {s["type"] for s in samples} == wanted
    unknown = {"type": "UIN", "value": "0000000000"}
    items = [idtype(s["type"], s["value"]) for s in [*samples, unknown]]
    body = client.sync_search("crvs", *items)
    results = body["message"]["search_response"]
    assert [r["reference_id"] for r in results] == [i["reference_id"] for i in items]
    assert body["header"]["total_count"] == body["header"]["completed_count"] == len(items)
    for sample, result in zip([*samples, unknown], results, strict=True):
        assert result["status"] == "succ", result
        expected = crvs_with_identifier(country, sample["type"], sample["value"])
        assert_found(
            result["data"]["reg_records"],
            result["pagination"]["total_count"],
            lambda r: r["@id"],
            expected,
        )
    assert all(r["data"]["reg_records"] for r in results[:-1])
    assert results[-1]["data"]["reg_records"] == []  # the unknown UIN names nobody


def test_crvs2_old_age_allowance(client, country):
    """Process flow 2: living persons aged 65 or more (age relative to the registry's date)."""
    item = predicate(
        pred(1, expr("age", "ge", "65"), "and", expr("is_deceased", "eq", False)),
        sort=[{"attribute_name": "birth_date", "sort_order": "asc"}],
    )
    records = client.records("crvs", item)
    expected = crvs_old_living(country, 65, server_today())
    assert len(expected) > 50
    first = only_item(client.sync_search("crvs", paged(item, 7)))
    assert_found(records, first["pagination"]["total_count"], crvs_uin, expected)
    assert len(first["data"]["reg_records"]) == 7
    births = [r["birth_date"] for r in records]
    assert births == sorted(births)


def test_crvs3_stop_allowance_on_death(client, country):
    """Process flow 3: the OAP beneficiaries known to the IBR are checked against the CRVS in
    one batched message (one idtype-value item per beneficiary); the dead among them are
    exactly the generated "still enrolled but dead" pensioners."""
    item = predicate(
        pred(
            1,
            expr("programme_identifier", "eq", "OAP"),
            "and",
            expr("enrollment_status", "eq", "1"),
        )
    )
    beneficiaries, total = fetch_all(client, "ibr", item)
    expected_oap = keys(ibr_beneficiaries(country, "OAP", "1"), ibr_uin)
    assert_found(beneficiaries, total, ibr_uin, expected_oap)

    uins = sorted(expected_oap)
    items = [idtype("UIN", u, reference_id=f"oap-{n}") for n, u in enumerate(uins)]
    body = client.sync_search("crvs", *items)
    assert body["header"]["completed_count"] == len(items)
    dead = set()
    for uin, result in zip(uins, body["message"]["search_response"], strict=True):
        assert result["status"] == "succ", result
        assert result["pagination"]["total_count"] == 1, (uin, result)
        person = result["data"]["reg_records"][0]
        assert crvs_uin(person) == uin
        if person.get("death_date"):
            dead.add(uin)

    people = crvs_by_uin(country)
    expected_dead = {u for u in expected_oap if is_dead(people[u])}
    assert dead == expected_dead
    assert expected_dead, "the generated population should have pensioners still paid though dead"
    ghosts = {
        g["value"] for g in country.samples()["ibr"]["deceased_enrolled"] if g["programme"] == "OAP"
    }
    assert ghosts <= dead


def test_crvs3_deaths_in_the_last_90_days(client, country):
    """Process flow 3, the other way round: the deaths registered in the last 90 days."""
    since = reference_day(country) - timedelta(days=90)
    item = predicate(pred(1, expr("death_date", "ge", since.isoformat())))
    records, total = fetch_all(client, "crvs", item)
    expected = crvs_deaths_since(country, since)
    assert expected
    assert_found(records, total, crvs_uin, expected)
    assert {d["value"] for d in country.samples()["crvs"]["deceased"]} <= expected


def test_crvs4_widow_allowance(client, country):
    """Process flow 4: living women whose marital status is W (widowed)."""
    item = predicate(
        pred(1, expr("sex", "eq", "female"), "and", expr("marital_status", "eq", "W")),
        pred(2, expr("is_deceased", "eq", False)),
    )
    records, total = fetch_all(client, "crvs", item)
    expected = crvs_living_widows(country)
    assert len(expected) > 10
    assert_found(records, total, crvs_uin, expected)
    widowed_samples = {s["value"] for s in country.samples()["crvs"]["widowed"]}
    people = crvs_by_uin(country)
    assert {u for u in widowed_samples if people[u]["sex"] == "female"} <= expected


def test_crvs5_child_allowance(client, country):
    """Process flow 5: the children under 18 of a given parent (first or second parent)."""
    today = server_today()
    children: Counter[str] = Counter()
    for record in country.crvs:
        for parent in parents_of(record):
            children[parent] += 1
    # a parent with several children, at least one of them under 18
    parent = next(
        p
        for p, n in sorted(children.items(), key=lambda kv: (-kv[1], kv[0]))
        if n >= 2 and crvs_children_of(country, p, 18, today)
    )
    item = predicate(
        pred(1, expr("age", "lt", "18")),
        pred(
            2,
            expr("parent1_identifier", "eq", parent),
            "or",
            expr("parent2_identifier", "eq", parent),
        ),
    )
    records, total = fetch_all(client, "crvs", item)
    expected = crvs_children_of(country, parent, 18, today)
    assert_found(records, total, crvs_uin, expected)
    for record in records:
        assert parent in parents_of(record)


def test_crvs6_proactive_child_enrolment(client, country):
    """Process flow 6: newborns, to enrol them proactively in the child allowance.

    The standard's flow is a subscription to birth events (subscribe -> on-subscribe ->
    notify); that form belongs to the subscriptions issue. Here the search form of the same
    question is tested: births in the last 90 days, and children not yet one year old."""
    since = reference_day(country) - timedelta(days=90)
    records, total = fetch_all(
        client, "crvs", predicate(pred(1, expr("birth_date", "ge", since.isoformat())))
    )
    expected = crvs_born_since(country, since)
    assert expected
    assert_found(records, total, crvs_uin, expected)
    assert {s["value"] for s in country.samples()["crvs"]["newborn"]} <= expected

    today = server_today()
    records, total = fetch_all(client, "crvs", predicate(pred(1, expr("age", "lt", "1"))))
    assert_found(records, total, crvs_uin, crvs_younger_than(country, 1, today))


# ---------------------------------------------------------------------------------------------
# Social Registry


def test_social1_1_poverty_score(client, country):
    """Process flow 1-1: households with a poverty score below 5 (Mongo-style expression)."""
    item = mongo(
        {"$and": [{"poverty_score": {"$lt": 5}}]},
        collection="Group",
        response_entity="Group",
        sort=[{"attribute_name": "poverty_score", "sort_order": "asc"}],
    )
    records, total = fetch_all(client, "social", item)
    expected = social_groups(country, lambda g: g["poverty_score"] < 5)
    assert len(expected) > 50
    assert_found(records, total, group_hhid, expected)
    scores = [r["poverty_score"] for r in records]
    assert scores == sorted(scores)
    assert only_item(client.sync_search("social", item))["data"]["reg_record_type"] == "Group"

    # the members of those households: a condition on the enclosing Group of each Member
    members_item = mongo({"poverty_score": {"$lt": 5}}, response_entity="Member")
    records, total = fetch_all(client, "social", members_item)
    expected = {member_uin(m) for g in country.social if g["poverty_score"] < 5 for m in members(g)}
    assert_found(records, total, member_uin, expected)


def test_social1_2_group_size(client, country):
    """Process flow 1-2: households of fewer than 5 members -- by `group_size`, and by the
    sample's `household_size` on its `HouseHold` collection."""
    expected = social_groups(country, lambda g: g["group_size"] < 5)
    assert 0 < len(expected) < len(country.social)
    for item in (
        mongo({"group_size": {"$lt": 5}}, collection="Group", response_entity="Group"),
        mongo(
            {"$and": [{"household_size": {"$lt": 5}}]},
            collection="HouseHold",
            response_entity="Household",
            sort=[{"attribute_name": "household_size", "sort_order": "asc"}],
        ),
    ):
        records, total = fetch_all(client, "social", item)
        assert_found(records, total, group_hhid, expected)
        assert all(len(members(r)) == r["group_size"] < 5 for r in records)


def test_social1_3_female_widows_as_members(client, country):
    """Process flow 1-3: female widows, returned as Member records (the sample's field names
    `demographic_info.person.sex` on a Group collection, and the plain attribute names)."""
    expected = social_members(country, is_female_widow)
    assert expected
    household_score = {
        member_uin(m): g["poverty_score"] for g in country.social for m in members(g)
    }
    for document in (
        {
            "$and": [
                {"demographic_info.person.sex": {"$eq": "female"}},
                {"marital_status": {"$eq": "W"}},
            ]
        },
        {"sex": "female", "marital_status": {"$eq": "W"}},
    ):
        item = mongo(
            document,
            collection="Group",
            response_entity="Member",
            sort=[{"attribute_name": "poverty_score", "sort_order": "asc"}],
        )
        records, total = fetch_all(client, "social", item)
        assert_found(records, total, member_uin, expected)
        assert all(is_female_widow(r) for r in records)
        # sorted as the sample asks: by the poverty score of each member's household
        scores = [household_score[member_uin(r)] for r in records]
        assert scores == sorted(scores)


def test_social1_3_households_with_a_female_widow(client, country):
    """Process flow 1-3 with response_entity Group: households having a member who is both
    female and widowed -- the two conditions bind to the same member, not to any two."""
    expected = social_groups(country, lambda g: any(is_female_widow(m) for m in members(g)))
    loose = social_groups(
        country,
        lambda g: (
            any((m.get("demographic_info") or {}).get("sex") == "female" for m in members(g))
            and any(m.get("marital_status") == "W" for m in members(g))
        ),
    )
    assert expected < loose, "the data should hold households with a widower and a woman"
    item = mongo(
        {"$and": [{"sex": {"$eq": "female"}}, {"marital_status": {"$eq": "W"}}]},
        response_entity="Group",
    )
    records, total = fetch_all(client, "social", item)
    assert_found(records, total, group_hhid, expected)


# ---------------------------------------------------------------------------------------------
# Disability Registry


def approved_mobility(record: dict[str, Any]) -> bool:
    return record["disability_status"] == "0" and "3" in impairment_types(record)


def test_dr1_disability_criteria(client, country):
    """Process flow 1: persons with an approved disability of impairment type 3 (Mobility),
    by code and by the labels of the sample ("Approved", "Mobility")."""
    expected = dr_where(country, approved_mobility)
    assert expected
    for document in (
        {"$and": [{"disability_status": {"$eq": "0"}}, {"impairment_type": {"$eq": "3"}}]},
        {
            "$and": [
                {"disability_status": {"$eq": "Approved"}},
                {"disability_details.impairment_type": {"$eq": "Mobility"}},
            ]
        },
    ):
        records, total = fetch_all(client, "dr", mongo(document))
        assert_found(records, total, dr_uin, expected)


def disabled_status(client, uin: str) -> dict[str, Any]:
    envelope = disabled_envelope({"personal_details.member_identifier": {"eq": uin}})
    body = post_ok(client, "dr", "sync/disabled", envelope)
    assert body["header"]["action"] == "on-search"
    message = body["message"]
    assert message["transaction_id"] == envelope["message"]["transaction_id"]
    [item] = message["disabled_response"]
    assert item["reference_id"] == envelope["message"]["transaction_id"]
    assert item["status"] == "succ"
    assert item["status_reason_message"]
    return item


def test_dr2_confirm_disability_status(client, country):
    """Process flow 2: `sync/disabled` answers yes for an approved person, no for a person the
    registry does not know, and no for a Pending or Expired assessment."""
    by_status = {}
    for record in country.dr:
        by_status.setdefault(record["disability_status"], dr_uin(record))
    assert set(by_status) == {"0", "1", "2"}
    in_dr = {dr_uin(r) for r in country.dr}
    outsider = next(
        crvs_uin(r) for r in country.crvs if not is_dead(r) and crvs_uin(r) not in in_dr
    )
    assert disabled_status(client, by_status["0"])["disabled_status"] == "yes"
    assert disabled_status(client, outsider)["disabled_status"] == "no"
    assert disabled_status(client, by_status["1"])["disabled_status"] == "no"
    assert disabled_status(client, by_status["2"])["disabled_status"] == "no"


def test_dr3_old_age_grant_eligibility(client, country):
    """Process flow 3: persons aged 65 or more with an approved disability; then the impairment
    details and the support of one of them through the DR's own sync calls."""
    today = server_today()
    expected = dr_where(country, lambda r: r["disability_status"] == "0" and dr_age(r, today) >= 65)
    assert expected
    records, total = fetch_all(
        client,
        "dr",
        predicate(pred(1, expr("age", "ge", "65"), "and", expr("disability_status", "eq", "0"))),
    )
    assert_found(records, total, dr_uin, expected)
    born_by = (
        today.replace(year=today.year - 65)
        if (today.month, today.day) != (2, 29)
        else today.replace(year=today.year - 65, day=28)
    )
    records, total = fetch_all(
        client,
        "dr",
        mongo(
            {
                "$and": [
                    {"member.demographic_info.birth_date": {"$lte": born_by.isoformat()}},
                    {"disability_status": {"$eq": "Approved"}},
                ]
            },
            collection="DRPerson",
        ),
    )
    assert_found(records, total, dr_uin, expected)

    uin = sorted(expected)[0]
    record = next(r for r in country.dr if dr_uin(r) == uin)
    query = {"personal_details.member_identifier": {"eq": uin}}
    details = only_item(
        post_ok(client, "dr", "sync/get-disability-details", disabled_envelope(query))
    )
    assert details["status"] == "succ"
    assert details["data"]["reg_records"] == [
        {"disability_details": record["disability_details"], "disability_status": "0"}
    ]
    support = only_item(
        post_ok(client, "dr", "sync/get-disability-support", disabled_envelope(query))
    )
    assert support["data"]["reg_records"] == [record["disability_support"]]


def test_dr4_approved_disability_registrations(client, country):
    """Process flow 4: the SP-System registers for notifications of persons whose disability is
    approved. The subscription form (subscribe -> notify) belongs to the subscriptions issue;
    here the search form of the sample's filter is tested, narrowed to recent registrations."""
    since = reference_day(country) - timedelta(days=365)
    item = mongo(
        {
            "$and": [
                {"disability_status": {"$eq": "Approved"}},
                {"registration_date": {"$gt": since.isoformat()}},
            ]
        },
        collection="DRPerson",
    )
    records, total = fetch_all(client, "dr", item)
    expected = dr_where(
        country,
        lambda r: r["disability_status"] == "0" and r["registration_date"][:10] > since.isoformat(),
    )
    assert expected
    assert_found(records, total, dr_uin, expected)


# ---------------------------------------------------------------------------------------------
# Farmer Registry


def test_fr1_farmer_criteria(client, country):
    """Process flow 1: small farms (farm type 1 or 2, less than 2 ha in all); cereal growers;
    and both at once."""

    def small(r):
        return r["farm_type"] in ("1", "2") and land_size(r) < 2

    def cereals(r):
        return "1" in crop_types(r)

    small_farm = pred(1, expr("farm_type", "in", ["1", "2"]), "and", expr("land_size", "lt", "2"))
    cereal = pred(2, expr("crop_type", "eq", "1"))
    for item, test in (
        (predicate(small_farm), small),
        (predicate(cereal), cereals),
        (predicate(small_farm, cereal), lambda r: small(r) and cereals(r)),
    ):
        expected = fr_where(country, test)
        assert 0 < len(expected) < len(country.fr)
        records, total = fetch_all(client, "fr", item)
        assert_found(records, total, fr_uin, expected)


# ---------------------------------------------------------------------------------------------
# Integrated Beneficiary Registry


def enrolled_status(client, query: dict[str, Any]) -> dict[str, Any]:
    envelope = enrolled_envelope(query)
    body = post_ok(client, "ibr", "sync/enrolled", envelope)
    [item] = body["message"]["enrolled_response"]
    assert item["reference_id"] == envelope["message"]["transaction_id"]
    assert item["status"] == "succ" and item["status_reason_message"]
    return item


def programme_records(client, programme: str, uins: list[str]) -> dict[str, str]:
    """The enrolment statuses of these persons in `programme`."""
    query = predicate(
        pred(1, expr("programme_identifier", "eq", programme), "and", expr("UIN", "in", uins))
    )
    records, total = fetch_all(client, "ibr", query)
    assert total == len(records)
    return {ibr_uin(r): r["enrollment_status"] for r in records}


@pytest.fixture()
def own_programme(server):
    """A programme the IBR knows (it refuses unknown ones), for enrolments of persons of this
    test only; they are removed afterwards."""
    created: list[str] = []
    yield "WA", created
    remove_ibr_records(server.store, created)


def test_ibr1_enrolment_and_status_change(client, own_programme):
    """Process flow 1: the SP-System reports new enrolments, then a status change, through
    `sync/enrollment/updates`; `sync/enrolled` and search see both."""
    programme, created = own_programme
    alice, bob = (f"T{uuid.uuid4().hex[:12].upper()}" for _ in range(2))
    created += [f"ibr:{programme}:{alice}", f"ibr:{programme}:{bob}"]

    envelope = enrollment_updates_envelope(
        [beneficiary(alice, programme, "1"), beneficiary(bob, programme, "1", sex="male")]
    )
    body = post_ok(client, "ibr", "sync/enrollment/updates", envelope)
    assert body["header"]["status"] == "succ"
    message = body["message"]
    assert message["transaction_id"] == envelope["message"]["transaction_id"]
    assert [i["status"] for i in message["enrolled_response"]] == ["succ", "succ"]
    assert programme_records(client, programme, [alice, bob]) == {alice: "1", bob: "1"}

    change = beneficiary(bob, programme, "3", sex="male")  # Graduated: no longer enrolled
    body = post_ok(client, "ibr", "sync/enrollment/updates", enrollment_updates_envelope([change]))
    [item] = body["message"]["enrolled_response"]
    assert item["status"] == "succ" and "updated" in item["status_reason_message"]
    assert programme_records(client, programme, [alice, bob]) == {alice: "1", bob: "3"}

    in_programme = "programme_identifier.program.programme_identifier"
    assert (
        enrolled_status(
            client, {"person_identifier": {"eq": alice}, in_programme: {"eq": programme}}
        )["enrolled_status"]
        == "yes"
    )
    assert (
        enrolled_status(
            client, {"person_identifier": {"eq": bob}, in_programme: {"eq": programme}}
        )["enrolled_status"]
        == "no"
    )
    assert enrolled_status(client, {"person_identifier": {"eq": alice}})["enrolled_status"] == "yes"

    # leave the session's store as generated (other tests compare the IBR with the data)
    assert remove_ibr_records(client.server.store, created) == 2
    assert programme_records(client, programme, [alice, bob]) == {}


def test_ibr1_std_sample_body_is_normalised(client, server, spec_dir):
    """Process flow 1 with the older STD sample body (`receipt_information`, a `person`
    wrapper, NID, "F", "Active", legacy enrolment nesting): accepted and stored in the newest
    shape."""
    sample = json.loads((spec_dir / "samples/ibr/processflow1req.json").read_text())
    message = dict(sample["message"], transaction_id=new_id("std"))
    raw = message["receipt_information"]["beneficiaries"][0]
    uin = raw["member"]["member_identifier"][0]["identifier_value"]
    enrolment = raw["member"]["programme_identifier"]  # the sample nests it in the member
    # the sample's programme (DCI001) is not one this IBR runs: enrol in one it does
    enrolment["programme"]["programme_identifier"] = "WA"
    programme = enrolment["programme"]["programme_identifier"]
    key = f"ibr:{programme}:{uin}"
    try:
        body = post_ok(
            client,
            "ibr",
            "sync/enrollment/updates",
            {"header": callback_header("notify", 1), "message": message},
        )
        [item] = body["message"]["enrolled_response"]
        assert item["status"] == "succ", item

        record = only_item(client.sync_search("ibr", idtype("UIN", uin)))["data"]["reg_records"]
        assert len(record) == 1
        stored = record[0]
        assert stored["@id"] == key and stored["@type"] == "Beneficiary"
        assert ibr_programmes(stored) == [programme]
        assert stored["enrollment_status"] == "1"  # "Active"
        assert stored["enrollment_date"] == enrolment["enrolment_date"][:10]
        person = stored["member"]["demographic_info"]
        assert person["sex"] == "female"  # "F"
        assert (
            person["birth_date"] == raw["member"]["demographic_info"]["person"]["birth_date"][:10]
        )
        assert stored["member"]["member_identifier"][0]["identifier_type"] == "UIN"  # "NID"
        assert (
            enrolled_status(
                client,
                {
                    "person_identifier": {"eq": uin},
                    "programme_identifier.program.programme_identifier": {"eq": programme},
                },
            )["enrolled_status"]
            == "yes"
        )
    finally:
        remove_ibr_records(server.store, [key])


def test_ibr2_programmes_of_a_beneficiary(client, country):
    """Process flow 2: which programmes a person is enrolled in (search by UIN), and the
    yes/no of `sync/enrolled`."""
    uins = sorted({ibr_uin(r) for r in country.ibr})
    enrolments = {u: ibr_enrolments_of(country, u) for u in uins}
    busiest = max(uins, key=lambda u: (len(enrolments[u]), u))
    assert len(enrolments[busiest]) >= 2
    result = only_item(client.sync_search("ibr", idtype("UIN", busiest)))
    assert result["pagination"]["total_count"] == len(enrolments[busiest])
    listed = {
        p: r["enrollment_status"] for r in result["data"]["reg_records"] for p in ibr_programmes(r)
    }
    assert listed == enrolments[busiest]

    def enrolled(uin: str, programme: str | None = None) -> str:
        query: dict[str, Any] = {"person_identifier": {"eq": uin}}
        if programme:
            query["programme_identifier.program.programme_identifier"] = {"eq": programme}
        return enrolled_status(client, query)["enrolled_status"]

    active = {"1", "4"}
    expected = "yes" if set(enrolments[busiest].values()) & active else "no"
    assert enrolled(busiest) == expected
    for programme, status in enrolments[busiest].items():
        assert enrolled(busiest, programme) == ("yes" if status in active else "no")
    others = sorted({p for e in enrolments.values() for p in e} - set(enrolments[busiest]))
    assert enrolled(busiest, others[0]) == "no"

    ended = next(u for u in uins if not set(enrolments[u].values()) & active)
    assert enrolled(ended) == "no"
    outsider = next(crvs_uin(r) for r in country.crvs if crvs_uin(r) not in enrolments)
    assert enrolled(outsider) == "no"

    # a household enrolled as a unit (child grant): asked by its HHID as group_identifier
    households = {
        first_id((r.get("group") or {}).get("group_identifier"), "HHID"): r["enrollment_status"]
        for r in country.ibr
        if r.get("group")
    }
    for status in ("1", "3"):
        hhid = min(h for h, s in households.items() if s == status)
        answer = enrolled_status(client, {"group_identifier": {"eq": hhid}})["enrolled_status"]
        assert answer == ("yes" if status in active else "no"), hhid


# ---------------------------------------------------------------------------------------------
# Transaction status of an earlier search, per registry

TXN_REGISTRIES = tuple(name for name, profile in PROFILES.items() if profile.has_txn_status)


def records_by_reference(search_response: list[dict[str, Any]]) -> dict[str, set[str]]:
    return {i["reference_id"]: record_ids(i["data"]["reg_records"]) for i in search_response}


@pytest.mark.parametrize("registry", TXN_REGISTRIES)
def test_txn_status_of_an_earlier_search(client, country, receiver, registry):
    """`sync/txn/status` by transaction_id, reference_id_list and correlation_id, and async
    `txn/status` with its `txn/on-status` callback, give back the records of the search; an
    unknown transaction is answered as a valid no-match (rjct.reference_id.invalid)."""
    samples = country.samples()[registry]["identifiers"][:2]
    items = [idtype(s["type"], s["value"]) for s in samples]
    if len(items) < 2:
        items.append(predicate(pred(1, expr("age", "ge", "80"))))
    transaction_id = new_id("t")
    searched = post_ok(
        client, registry, "sync/search", search_envelope(*items, transaction_id=transaction_id)
    )
    first = searched["message"]["search_response"]
    wanted = records_by_reference(first)
    assert all(wanted.values()), "every sample identifier should find records"
    refs = [i["reference_id"] for i in items]

    def status(attribute_type: str, value: Any) -> dict[str, Any]:
        body = post_ok(
            client, registry, "sync/txn/status", txn_status_envelope(attribute_type, value)
        )
        assert body["header"]["action"] == "txn-on-status"
        response = body["message"]["txnstatus_response"]
        assert response["txn_type"] == "search"
        assert response["txn_status"]["transaction_id"] == transaction_id
        return response["txn_status"]

    assert (
        records_by_reference(status("transaction_id", transaction_id)["search_response"]) == wanted
    )
    assert records_by_reference(status("reference_id_list", [refs[1]])["search_response"]) == {
        refs[1]: wanted[refs[1]]
    }
    by_correlation = status("correlation_id", searched["message"]["correlation_id"])
    assert by_correlation["correlation_id"] == searched["message"]["correlation_id"]
    assert records_by_reference(by_correlation["search_response"]) == wanted

    url = receiver.url("/registry/txn/on-status")
    response = send(
        client,
        registry,
        "txn/status",
        txn_status_envelope("transaction_id", transaction_id, sender_uri=url),
    )
    assert response.status_code == 202, response.text
    ack = response.json()["message"]
    assert ack["ack_status"] == "ACK"
    callback = receiver.wait_for(1)[0]
    assert callback.path == "/registry/txn/on-status"
    delivered = callback.json()
    assert delivered["header"]["action"] == "txn-on-status"
    assert delivered["message"]["correlation_id"] == ack["correlation_id"]
    txn_status = delivered["message"]["txnstatus_response"]["txn_status"]
    assert records_by_reference(txn_status["search_response"]) == wanted

    # an asynchronous search, asked about by the correlation_id of its ack once answered
    async_id = new_id("t")
    response = send(
        client,
        registry,
        "search",
        search_envelope(
            *items, transaction_id=async_id, sender_uri=receiver.url("/registry/on-search")
        ),
    )
    assert response.status_code == 202, response.text
    correlation_id = response.json()["message"]["correlation_id"]
    on_search = receiver.wait_for(2)[1].json()
    assert records_by_reference(on_search["message"]["search_response"]) == wanted
    body = post_ok(
        client, registry, "sync/txn/status", txn_status_envelope("correlation_id", correlation_id)
    )
    txn_status = body["message"]["txnstatus_response"]["txn_status"]
    assert txn_status["transaction_id"] == async_id
    assert records_by_reference(txn_status["search_response"]) == wanted

    for attribute_type, value in (
        ("transaction_id", new_id("nope")),
        ("reference_id_list", [new_id("nope")]),
        ("correlation_id", str(uuid.uuid4())),
    ):
        body = post_ok(
            client, registry, "sync/txn/status", txn_status_envelope(attribute_type, value)
        )
        [item] = body["message"]["txnstatus_response"]["txn_status"]["search_response"]
        assert item["status"] == "rjct"
        assert item["status_reason_code"] == "rjct.reference_id.invalid"
        assert "is known" in item["status_reason_message"]


def test_dr_has_no_txn_status(client, country):
    """Neither DR contract defines txn/status (upstream issue #49): the DR answers 404 ERR
    naming the endpoints it does serve."""
    for path in ("sync/txn/status", "txn/status"):
        response = send(client, "dr", path, txn_status_envelope("transaction_id", "t-1"))
        assert response.status_code == 404, response.text
        error = response.json()["message"]
        assert error["ack_status"] == "ERR" and error["error"]["code"] == "err.request.not_found"
        assert "/registry/sync/disabled" in error["error"]["message"]
