"""Every event type of every registry can be recorded by an operator (`dcihub record`), and
each recorded change reaches a subscriber: one node serves all six registries; the programme
subscribes to every event type of each; each change is recorded through the operator's write
path (`record_change`, what `dcihub record` runs); the receiver gets a signed `notify` for each
event, valid against the registry's contract, naming the event."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dcihub.standard.profiles import PROFILES
from dcihub.store import Store
from dcihub.store.changes import ChangeError, record_change
from receiver import CallbackReceiver
from test_outbox_restart import serve, wait_for
from test_subscriptions import jwks, subscribe, verified

ALL = ["crvs", "social", "dr", "fr", "ibr", "ess"]


@pytest.fixture(scope="module")
def country():
    from dcihub.population.generator import generate_country

    return generate_country(people=300, seed=31)


def uin(record: dict[str, Any], path: str = "identifier") -> str:
    node: Any = record
    for part in path.split("."):
        node = node[part]
    return next(i["identifier_value"] for i in node if i["identifier_type"] == "UIN")


def civil(country: Any) -> list[dict[str, Any]]:
    return [r for r in country.records("crvs") if not r.get("death_date")]


def adults_not_in(country: Any, registry: str, path: str) -> list[str]:
    taken = {uin(r, path) for r in country.records(registry)}
    return [
        uin(r) for r in civil(country) if r["birth_date"] < "2000-01-01" and uin(r) not in taken
    ]


def plan(country: Any) -> list[tuple[str, str, dict[str, str], set[str]]]:
    """(registry, change, options, events it raises) covering every event type."""
    people = civil(country)
    women = [
        r for r in people if r["sex"] == "female" and "1980-01-01" < r["birth_date"] < "2002-01-01"
    ]
    singles = [r for r in people if r.get("marital_status") == "S" and r["birth_date"] < "2000"]
    household = next(iter(country.records("social")))
    hhid = household["group_identifier"][0]["identifier_value"]
    leaver = household["member_list"][-1]["member_identifier"][0]["identifier_value"]
    pwd = next(iter(country.records("dr")))
    enrolment = next(iter(country.records("ibr")))
    ibr_uin = enrolment["member"]["member_identifier"][0]["identifier_value"]
    programme = enrolment["programme_identifier"][0]["programme_identifier"]
    jobless = next(r for r in country.records("ess") if r.get("employment_status") == "2")
    ess_uin = uin(jobless, "member_identifier")
    new_ibr = next(
        u for u in adults_not_in(country, "ibr", "member.member_identifier") if u != ibr_uin
    )
    return [
        ("crvs", "birth", {"mother": f"UIN={uin(women[0])}", "name": "Ama"}, {"LiveBirth"}),
        ("crvs", "fetal-death", {"mother": f"UIN={uin(women[1])}"}, {"FetalDeath"}),
        ("crvs", "death", {"id": f"UIN={uin(people[-1])}"}, {"Death"}),
        (
            "crvs",
            "marriage",
            {"id": f"UIN={uin(singles[0])}", "spouse": f"UIN={uin(singles[1])}"},
            {"Marriage"},
        ),
        (
            "crvs",
            "divorce",
            {"id": f"UIN={uin(singles[0])}", "spouse": f"UIN={uin(singles[1])}"},
            {"Divorce"},
        ),
        (
            "crvs",
            "adoption",
            {"id": f"UIN={uin(people[-2])}", "mother": f"UIN={uin(women[2])}"},
            {"Adoption"},
        ),
        (
            "social",
            "register",
            {"name": "Esi Mensah", "sex": "female", "birth_date": "1990-04-01"},
            {"REGISTER"},
        ),
        ("social", "member-join", {"household": hhid, "name": "Kofi"}, {"NewHouseHoldMember"}),
        (
            "social",
            "member-leave",
            {"household": hhid, "id": f"UIN={leaver}"},
            {"HouseHoldMemberLeft"},
        ),
        (
            "dr",
            "register",
            {"id": f"UIN={adults_not_in(country, 'dr', 'personal_details.member_identifier')[0]}"},
            {"REGISTER"},
        ),
        (
            "dr",
            "disability-status",
            {
                "id": f"UIN={uin(pwd, 'personal_details.member_identifier')}",
                "status": "2" if pwd["disability_status"] != "2" else "0",
            },
            {"DisabilityStatusChange"},
        ),
        (
            "fr",
            "register",
            {
                "id": f"UIN={adults_not_in(country, 'fr', 'farmer_personal_details.member_identifier')[0]}",
                "place": "North",
            },
            {"REGISTER"},
        ),
        ("ibr", "enrolment", {"id": f"UIN={new_ibr}", "programme": programme}, {"enrollement"}),
        (
            "ibr",
            "enrolment-status",
            {"id": f"UIN={ibr_uin}", "programme": programme, "status": "4"},
            {"enrollement_status_change"},
        ),
        (
            "ess",
            "register",
            {"id": f"UIN={adults_not_in(country, 'ess', 'member_identifier')[0]}"},
            {"REGISTER"},
        ),
        (
            "ess",
            "employment",
            {"id": f"UIN={ess_uin}", "status": "1"},
            {"employment_status_change"},
        ),
        ("ess", "enrolment", {"id": f"UIN={ess_uin}", "programme": "VTP"}, {"enrolment"}),
        (
            "ess",
            "enrolment-status",
            {"id": f"UIN={ess_uin}", "programme": "VTP", "status": "3"},
            {"enrolment_status_change"},
        ),
    ]


def test_the_plan_covers_every_event_type(country) -> None:
    covered = {(r, e) for r, _c, _o, events in plan(country) for e in events}
    declared = {(name, e) for name in ALL for e in PROFILES[name].reg_event_types}
    assert covered == declared
    changes = {(r, c) for r, c, _o, _e in plan(country)}
    assert changes == {(name, c.name) for name in ALL for c in PROFILES[name].record_changes}


def event_names(doc: dict[str, Any]) -> list[str]:
    data = doc["message"]["notify_event"][0]["data"]
    return (
        [data["reg_event_type"]]
        if "reg_event_type" in data
        else doc["header"]["meta"]["reg_event_types"]
    )


def test_every_recorded_change_is_notified(backend, country, tmp_path, spec_dir) -> None:
    receiver = CallbackReceiver().start()
    try:
        with serve(backend, tmp_path, country, registries=ALL) as (node, client, store):
            node.start()
            keys = jwks(node)
            for name in ALL:
                types = PROFILES[name].reg_event_types
                codes, body = subscribe(
                    client, receiver, name, *({"reg_event_type": t} for t in types)
                )
                assert len(codes) == len(types), body
                verified(receiver.received[-1], keys, spec_dir, name)
            seen = 0
            for registry, change, options, events in plan(country):
                done = record_change(store, registry, change, options)
                # a marriage or divorce changes both spouses: an event of each
                assert done.notifications == len(done.keys) * len(events), (registry, change)
                seen += done.notifications
                got = wait_for(
                    lambda want=seen: (
                        len(n := [r for r in receiver.received if r.path == "/registry/notify"])
                        >= want
                        and n
                    ),
                    timeout=40,
                    what=f"the notification of {change} {registry}",
                )
                for notice in got[-done.notifications :]:
                    doc = verified(notice, keys, spec_dir, registry)
                    assert doc["header"]["sender_id"].split(".")[0] == registry
                    assert set(event_names(doc)) == events, (registry, change)
    finally:
        receiver.stop()


def test_registrations_say_what_is_wrong(backend, country, tmp_path) -> None:
    from support import store_url_for

    with store_url_for(backend, tmp_path) as url:
        store = Store(url)
        store.upgrade()
        try:
            from dcihub.population.load import load_country

            load_country(store, country)
            farmer = next(iter(country.records("fr")))
            known = uin(farmer, "farmer_personal_details.member_identifier")
            with pytest.raises(ChangeError, match="registered as a farmer already"):
                record_change(store, "fr", "register", {"id": f"UIN={known}"})
            stranger = f"UIN=9{uuid.uuid4().int % 10**9:09d}"
            with pytest.raises(ChangeError, match="give --name, --sex, --birth-date"):
                record_change(store, "dr", "register", {"id": stranger})
            with pytest.raises(ChangeError, match="--birth-date 'soon'"):
                record_change(
                    store,
                    "ess",
                    "register",
                    {"id": stranger, "name": "A B", "sex": "male", "birth_date": "soon"},
                )
            with pytest.raises(ChangeError, match="--sex 'x'"):
                record_change(store, "fr", "register", {"id": stranger, "name": "A", "sex": "x"})
            done = record_change(
                store,
                "fr",
                "register",
                {"id": stranger, "name": "Yaw Boateng", "sex": "Male", "birth_date": "1970-02-03"},
            )
            ((key, created),) = done.keys
            assert created and done.notifications == 0
            with store.read() as conn:
                got = store.records.get(conn, "fr", key)
            person = got["farmer_personal_details"]["demographic_info"]
            assert person["name"] == {"given_name": "Yaw", "surname": "Boateng"}
            assert person["sex"] == "male" and person["birth_date"] == "1970-02-03"
            frn = [
                i["identifier_value"]
                for i in got["farmer_personal_details"]["member_identifier"]
                if i["identifier_type"] == "FRN"
            ]
            assert len(frn) == 1
            # from the civil register: name, sex, birth date of the person
            free = adults_not_in(country, "dr", "personal_details.member_identifier")[0]
            person = next(r for r in civil(country) if uin(r) == free)
            done = record_change(store, "dr", "register", {"id": f"UIN={free}"})
            with store.read() as conn:
                got = store.records.get(conn, "dr", done.keys[0][0])
            info = got["personal_details"]["demographic_info"]
            assert (info["name"], info["sex"], info["birth_date"]) == (
                person["name"],
                person["sex"],
                person["birth_date"],
            )
            assert got["disability_status"] == "1"
            with pytest.raises(ChangeError, match="not enrolled in NOPE"):
                ess = next(iter(country.records("ess")))
                record_change(
                    store,
                    "ess",
                    "enrolment-status",
                    {
                        "id": f"UIN={uin(ess, 'member_identifier')}",
                        "programme": "NOPE",
                        "status": "1",
                    },
                )
        finally:
            store.dispose()
