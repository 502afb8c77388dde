"""Subscriptions end to end, on loopback, on SQLite and PostgreSQL.

A programme subscribes (`registry/subscribe` -> ACK -> `on-subscribe` with a code per item);
changes of registry data recorded with `dcihub record` (a separate process writing the store)
raise events; the node delivers a signed `notify` to the programme's receiver, which verifies
it. The receiver is stopped and comes back; the node is killed with SIGKILL between the change
and the delivery; every notification still arrives exactly once. Unsubscribe stops the flow.
Every on-subscribe, on-unsubscribe and notify body is validated against its contract.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from contract import load_contract
from dcihub.security.signatures import verify
from dcihub.store import Store
from receiver import CallbackReceiver
from support import DCIClient, header, now_ts
from test_outbox_restart import Node, serve, wait_for

DCIHUB = Path(sys.executable).with_name("dcihub")


@pytest.fixture(scope="module")
def country():
    from dcihub.population.generator import generate_country

    return generate_country(people=300, seed=31)


def subscribe_envelope(
    target: str, *criteria: dict[str, Any], transaction_id: str | None = None
) -> dict[str, Any]:
    return {
        "header": header("subscribe", len(criteria), sender_uri=target),
        "message": {
            "transaction_id": transaction_id or f"t-sub-{uuid.uuid4().hex[:8]}",
            "subscribe_request": [
                {
                    "reference_id": f"r-{n}",
                    "timestamp": now_ts(),
                    "subscribe_criteria": {"version": "1.0.0", **c},
                    "locale": "eng",
                }
                for n, c in enumerate(criteria)
            ],
        },
    }


def unsubscribe_envelope(target: str, codes: list[str]) -> dict[str, Any]:
    return {
        "header": header("unsubscribe", len(codes), sender_uri=target),
        "message": {
            "transaction_id": f"t-unsub-{uuid.uuid4().hex[:8]}",
            "timestamp": now_ts(),
            "subscription_codes": codes,
        },
    }


def record(config: Path, *args: str) -> str:
    done = subprocess.run(
        [str(DCIHUB), "record", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def verified(received: Any, node_jwks: dict[str, Any], spec_dir: Path, registry: str) -> dict:
    """The body of a callback: signature verified with the node's published keys, and valid
    against the registry's contract at its callback path."""
    from dcihub.security.keys import load_jwk

    body = received.json()
    keys = {k["kid"]: load_jwk(k) for k in node_jwks["keys"]}
    verify(body["signature"], body["header"], body.get("message"), lambda kid, alg=None: keys[kid])
    load_contract(spec_dir, registry).validate_request(received.path, body)
    return body


def jwks(node: Node) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{node.settings.base_url}/.well-known/jwks.json", timeout=10).json()


def subscribe(
    client: DCIClient, receiver: CallbackReceiver, registry: str, *criteria: dict
) -> tuple[list[str], dict]:
    """Subscribe; returns the codes of the accepted items and the on-subscribe body."""
    before = len(receiver.received)
    envelope = subscribe_envelope(receiver.url("/registry/on-subscribe"), *criteria)
    response = client.post(registry, "subscribe", envelope)
    assert response.status_code == 202, response.text
    assert response.json()["message"]["ack_status"] == "ACK"
    got = receiver.wait_for(before + 1, timeout=30)
    answer = next(r for r in got[before:] if r.path == "/registry/on-subscribe")
    body = answer.json()
    assert body["message"]["transaction_id"] == envelope["message"]["transaction_id"]
    assert body["message"]["correlation_id"] == response.json()["message"]["correlation_id"]
    codes = [
        s["code"]
        for item in body["message"]["subscribe_response"]
        for s in item.get("subscriptions", [])
    ]
    return codes, body


def notifications(receiver: CallbackReceiver) -> list[Any]:
    return [r for r in receiver.received if r.path == "/registry/notify"]


def wait_notifications(receiver: CallbackReceiver, count: int, timeout: float = 40) -> list[Any]:
    return wait_for(
        lambda: (found := notifications(receiver)) and len(found) >= count and found,
        timeout=timeout,
        what=f"{count} notification(s)",
    )


def living_uins(store: Store, count: int) -> list[str]:
    from sqlalchemy import select

    person = store.records.tables("crvs", "Person")
    with store.read() as conn:
        rows = conn.execute(
            select(person.ids.c.id_value)
            .join(person.main, person.main.c.pk == person.ids.c.pk)
            .where(
                person.ids.c.id_type == "UIN",
                person.main.c.a_death_date.is_(None),
                person.main.c.a_birth_date < date(1990, 1, 1),
            )
            .order_by(person.main.c.pk)
            .limit(count)
        ).all()
    return [r[0] for r in rows]


def uin_of(record: dict[str, Any]) -> str:
    return next(
        i["identifier_value"] for i in record["identifier"] if i["identifier_type"] == "UIN"
    )


def test_deaths_are_notified_once_through_receiver_outage_and_sigkill(
    backend, country, tmp_path, spec_dir
):
    receiver = CallbackReceiver().start()
    with serve(backend, tmp_path, country) as (node, client, store):
        node.start()
        keys = jwks(node)
        codes, body = subscribe(
            client,
            receiver,
            "crvs",
            {"reg_event_type": "Death", "notify_record_type": "Person"},
            {"reg_event_type": "spdci-common:RegistryEventType:Nope"},
        )
        verified(receiver.received[0], keys, spec_dir, "crvs")
        (code,) = codes
        items = body["message"]["subscribe_response"]
        assert items[0]["status"] == "succ"
        assert items[1]["status"] == "rjct"
        assert items[1]["status_reason_code"] == "rjct.notify_types.invalid"
        assert "Death" in items[1]["status_reason_message"]

        first, second, third, fourth = living_uins(store, 4)
        out = record(node.config, "death", "crvs", "--id", f"UIN={first}", "--date", "2026-01-02")
        assert "notifications queued: 1" in out
        (notice,) = wait_notifications(receiver, 1)
        doc = verified(notice, keys, spec_dir, "crvs")
        assert doc["header"]["meta"]["subscription_codes"] == [code]
        assert doc["header"]["meta"]["transaction_id"] == body["message"]["transaction_id"]
        assert doc["message"]["transaction_id"] == body["message"]["transaction_id"]
        (event,) = doc["message"]["notify_event"]
        assert event["data"]["reg_event_type"] == "Death"
        person = event["data"]["reg_records"]
        assert uin_of(person) == first and person["death_date"] == "2026-01-02"

        # The receiver is down: two more deaths; it comes back; both arrive, each once.
        receiver.stop()
        record(node.config, "death", "crvs", "--id", f"UIN={second}")
        record(node.config, "death", "crvs", "--id", f"UIN={third}")
        time.sleep(1.0)  # a few attempts fail meanwhile
        revived = CallbackReceiver(port=receiver.port).start()
        try:
            got = wait_notifications(revived, 2)
            time.sleep(1.0)  # a duplicate would arrive within a few poll intervals
            got = notifications(revived)
            people = sorted(
                uin_of(
                    verified(n, keys, spec_dir, "crvs")["message"]["notify_event"][0]["data"][
                        "reg_records"
                    ]
                )
                for n in got
            )
            assert people == sorted([second, third])

            # Killed between the change and the delivery: delivered once after the restart.
            node.kill()
            record(node.config, "death", "crvs", "--id", f"UIN={fourth}")
            node.start()
            got = wait_notifications(revived, 3)
            time.sleep(1.0)
            got = notifications(revived)
            assert len(got) == 3, [g.json()["header"]["message_id"] for g in got]
            last = verified(got[-1], keys, spec_dir, "crvs")
            assert uin_of(last["message"]["notify_event"][0]["data"]["reg_records"]) == fourth
            assert len({g.json()["header"]["message_id"] for g in got}) == 3

            # Unsubscribe stops the flow.
            before = len(revived.received)
            response = client.post(
                "crvs",
                "unsubscribe",
                unsubscribe_envelope(revived.url("/registry/on-unsubscribe"), [code]),
            )
            assert response.status_code == 202, response.text
            answer = revived.wait_for(before + 1)[before]
            doc = verified(answer, keys, spec_dir, "crvs")
            assert doc["message"]["status"] == "succ"
            assert doc["message"]["subscription_status"] == [
                {"code": code, "status": "unsubscribe"}
            ]
            (other,) = living_uins(store, 1)
            out = record(node.config, "death", "crvs", "--id", f"UIN={other}")
            assert "notifications queued: 0" in out
            time.sleep(1.0)
            assert len(notifications(revived)) == 3
        finally:
            revived.stop()


def test_births_reach_a_proactive_child_grant(backend, country, tmp_path, spec_dir):
    """A child grant subscribes to births (with a filter on the mother's district of birth:
    evaluated in SQL over the new record) and to births of one mother (an identifier filter,
    found through the index)."""
    receiver = CallbackReceiver().start()
    try:
        with serve(backend, tmp_path, country) as (node, client, store):
            node.start()
            keys = jwks(node)
            mother_uin = living_uins(store, 1)[0]
            codes, _ = subscribe(
                client,
                receiver,
                "crvs",
                {
                    "reg_event_type": "LiveBirth",
                    "frequency": {
                        "start_time": now_ts(),
                        "end_time": "2099-01-01T00:00:00Z",
                        "frequency": "immediate",
                    },
                },
                {
                    "reg_event_type": "live_birth",
                    "filter_type": "predicate",
                    "filter": [
                        {
                            "seq_num": 1,
                            "expression1": {
                                "attribute_name": "parent1_identifier",
                                "operator": "eq",
                                "attribute_value": mother_uin,
                            },
                        }
                    ],
                },
                {
                    "reg_event_type": "LiveBirth",
                    "filter_type": "idtype-value",
                    "filter": {"type": "UIN", "value": "0000000000"},
                },
            )
            assert len(codes) == 3
            out = record(
                node.config, "birth", "crvs", "--mother", f"UIN={mother_uin}", "--name", "Ama"
            )
            assert "created crvs:person:" in out
            # one notification per subscribe transaction and callback: both matching codes
            (notice,) = wait_notifications(receiver, 1)
            doc = verified(notice, keys, spec_dir, "crvs")
            assert sorted(doc["header"]["meta"]["subscription_codes"]) == sorted(codes[:2])
            child = doc["message"]["notify_event"][0]["data"]["reg_records"]
            assert child["parent1_identifier"]["identifier_value"] == mother_uin
            assert child["name"]["given_name"] == "Ama"
            assert doc["message"]["notify_event"][0]["data"]["reg_event_type"] == "LiveBirth"
            time.sleep(0.6)
            assert len(notifications(receiver)) == 1
    finally:
        receiver.stop()


def test_new_household_members_enrolment_and_employment_changes(
    backend, country, tmp_path, spec_dir
):
    receiver = CallbackReceiver().start()
    try:
        with serve(backend, tmp_path, country, registries=["social", "ibr", "ess", "crvs"]) as (
            node,
            client,
            store,
        ):
            node.start()
            keys = jwks(node)
            samples = country.samples()
            hhid = next(s["value"] for s in samples["social"]["identifiers"] if s["type"] == "HHID")
            subscribe(
                client,
                receiver,
                "social",
                {
                    "reg_event_type": "NewHouseHoldMember",
                    "filter_type": "idtype-value",
                    "filter": {"type": "HHID", "value": hhid},
                },
            )
            subscribe(client, receiver, "ibr", {"reg_event_type": "enrollement_status_change"})
            subscribe(client, receiver, "ess", {"reg_event_type": "employment_status_change"})
            for r in list(receiver.received):
                verified(r, keys, spec_dir, r.json()["header"]["sender_id"].split(".")[0])

            record(node.config, "member-join", "social", "--household", hhid, "--name", "Kofi")
            (notice,) = wait_notifications(receiver, 1)
            doc = verified(notice, keys, spec_dir, "social")
            member = doc["message"]["notify_event"][0]["data"]
            assert member["reg_event_type"] == "NewHouseHoldMember"
            assert member["reg_record_type"] == "Member"
            assert member["reg_records"]["demographic_info"]["name"]["given_name"] == "Kofi"

            enrolled = next(iter(country.records("ibr")))
            uin = enrolled["member"]["member_identifier"][0]["identifier_value"]
            programme = enrolled["programme_identifier"][0]["programme_identifier"]
            record(
                node.config,
                "enrolment-status",
                "ibr",
                "--id",
                f"UIN={uin}",
                "--programme",
                programme,
                "--status",
                "4",
            )
            notice = wait_notifications(receiver, 2)[1]
            doc = verified(notice, keys, spec_dir, "ibr")
            data = doc["message"]["notify_event"][0]["data"]
            assert data["reg_event_type"] == "enrollement_status_change"
            assert data["reg_records"]["enrollment_status"] == "4"

            worker = next(r for r in country.records("ess") if r.get("employment_status") == "2")
            ess_uin = worker["member_identifier"][0]["identifier_value"]
            record(node.config, "employment", "ess", "--id", f"UIN={ess_uin}", "--status", "1")
            notice = wait_notifications(receiver, 3)[2]
            doc = verified(notice, keys, spec_dir, "ess")
            # not in the ESS contract's notify enum: named in header.meta only
            assert doc["header"]["meta"]["reg_event_types"] == ["employment_status_change"]
            data = doc["message"]["notify_event"][0]["data"]
            assert "reg_event_type" not in data
            assert data["reg_records"]["employment_status"] == "1"
    finally:
        receiver.stop()
