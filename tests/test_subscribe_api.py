"""Subscribe, unsubscribe, notify and txn/status in detail, against the session's live node
(SQLite and PostgreSQL): rejections in the standard's terms, periodic batches, callbacks to a
partner's callback base, minimised notifications, txn/status by subscription code; and the
pure parts (event types of each profile, frequencies)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest
from sqlalchemy import select

import support
from contract import load_contract
from dcihub.standard.errors import ItemRejected
from dcihub.standard.messages import EventFrequency
from dcihub.standard.profiles import PROFILES
from dcihub.standard.subscriptions import cron_of, parse_schedule
from receiver import CallbackReceiver
from support import DCIClient, header, now_ts
from test_subscriptions import subscribe_envelope, unsubscribe_envelope


@pytest.fixture(scope="module")
def server(backend, country, tmp_path_factory):
    """A node of its own: these tests change registry data (deaths, marriages), which the
    session's node keeps as the other tests expect it."""
    from dcihub.population.load import load_country
    from dcihub.store import Store

    with support.store_url_for(backend, tmp_path_factory.mktemp("subs")) as url:
        store = Store(url)
        store.upgrade()
        load_country(store, country)
        settings = support.test_settings(
            url,
            data_dir=tmp_path_factory.mktemp("subs-node"),
            delivery={"poll_interval": 0.2, "backoff_base": 0.2, "backoff_max": 1.0},
        )
        running = support.live_server(settings, store)
        yield running
        running.stop()
        store.dispose()


@pytest.fixture(scope="module")
def client(server):
    return DCIClient(server, server.partner)


def post_and_wait(
    client: DCIClient, receiver: CallbackReceiver, registry: str, path: str, envelope: dict
) -> dict[str, Any]:
    before = len(receiver.received)
    response = client.post(registry, path, envelope)
    assert response.status_code == 202, response.text
    return receiver.wait_for(before + 1, timeout=30)[before].json()


def some_person(server: Any, living: bool = True) -> dict[str, Any]:
    store = server.store
    main = store.records.tables("crvs", "Person").main
    with store.read() as conn:
        query = select(main.c.record).order_by(main.c.pk.desc()).limit(50)
        if living:
            query = query.where(main.c.a_death_date.is_(None))
        rows = conn.execute(query).scalars().all()
    return orjson.loads(rows[int(time.time() * 1000) % len(rows)])


def change(server: Any, *records: dict[str, Any], registry: str = "crvs") -> None:
    with server.store.begin() as conn:
        for record in records:
            server.store.records.upsert(conn, registry, record)


def partner_client(server: Any, partner: support.TestPartner) -> DCIClient:
    """A client of a partner just added to the partner file, once the node knows it (it
    re-reads the file within seconds)."""
    made = DCIClient(server, partner)
    deadline = time.monotonic() + 20
    while True:
        token = made.http.post(
            f"{server.base_url}/oauth2/client/token",
            data={
                "grant_type": "client_credentials",
                "client_id": partner.client_id,
                "client_secret": partner.client_secret,
            },
        )
        if token.status_code == 200:
            return made
        assert time.monotonic() < deadline, token.text
        time.sleep(0.2)


def death_filter(attribute: str, operator: str, value: Any) -> dict[str, Any]:
    return {
        "reg_event_type": "Death",
        "filter_type": "predicate",
        "filter": [
            {
                "seq_num": 1,
                "expression1": {
                    "attribute_name": attribute,
                    "operator": operator,
                    "attribute_value": value,
                },
            }
        ],
    }


def test_rejections_name_the_problem(server, client, receiver, spec_dir):
    contract = load_contract(spec_dir, "crvs")
    target = receiver.url("/registry/on-subscribe")
    death = {
        "reg_event_type": "Death",
        "filter_type": "predicate",
        "filter": [
            {
                "seq_num": 1,
                "expression1": {
                    "attribute_name": "sex",
                    "operator": "eq",
                    "attribute_value": "female",
                },
            }
        ],
    }
    cases = [
        death,
        death,  # the same again in this message
        {
            "reg_event_type": "Death",
            "filter_type": "predicate",
            "filter": [
                {
                    "seq_num": 1,
                    "expression1": {
                        "attribute_name": "shoe_size",
                        "operator": "eq",
                        "attribute_value": "9",
                    },
                }
            ],
        },
        {
            "reg_event_type": "Death",
            "frequency": {
                "start_time": now_ts(),
                "end_time": "2099-01-01T00:00:00Z",
                "frequency": "every full moon",
            },
        },
        {"reg_event_type": "Death", "notify_record_type": "Household"},
        {"reg_event_type": "Wedding"},
    ]
    body = post_and_wait(client, receiver, "crvs", "subscribe", subscribe_envelope(target, *cases))
    contract.validate_request("/registry/on-subscribe", body)
    items = body["message"]["subscribe_response"]
    assert [i["status"] for i in items] == ["succ", "rjct", "rjct", "rjct", "rjct", "rjct"]
    reasons = [i.get("status_reason_code") for i in items[1:]]
    assert reasons == [
        "rjct.event.already_subscribed",
        "rjct.notify_details.invalid",
        "rjct.notify_details.invalid",
        "rjct.notify_details.invalid",
        "rjct.notify_types.invalid",
    ]
    assert "shoe_size" in items[2]["status_reason_message"]
    assert "every full moon" in items[3]["status_reason_message"]
    assert "Household" in items[4]["status_reason_message"]
    code = items[0]["subscriptions"][0]["code"]

    # the same subscription in a later message: already subscribed, naming the code
    again = post_and_wait(client, receiver, "crvs", "subscribe", subscribe_envelope(target, death))
    (item,) = again["message"]["subscribe_response"]
    assert item["status_reason_code"] == "rjct.event.already_subscribed"
    assert code in item["status_reason_message"]

    # unknown codes: the unsubscribe is ACKed, the rejection is in on-unsubscribe
    unsub_target = receiver.url("/registry/on-unsubscribe")
    body = post_and_wait(
        client,
        receiver,
        "crvs",
        "unsubscribe",
        unsubscribe_envelope(unsub_target, ["sub-nope", code]),
    )
    contract.validate_request("/registry/on-unsubscribe", body)
    message = body["message"]
    assert message["status"] == "rjct"
    assert message["status_reason_code"] == "rjct.subscription_code.invalid"
    assert "sub-nope" in message["status_reason_message"]
    assert message["subscription_status"] == [{"code": code, "status": "subscribe"}]  # unchanged

    body = post_and_wait(
        client, receiver, "crvs", "unsubscribe", unsubscribe_envelope(unsub_target, [code])
    )
    assert body["message"]["status"] == "succ"
    body = post_and_wait(
        client, receiver, "crvs", "unsubscribe", unsubscribe_envelope(unsub_target, [code])
    )
    assert body["message"]["status_reason_code"] == "rjct.event.already_unsubscribed"

    # without sender_uri and without a callback base: refused at once
    envelope = subscribe_envelope(target, death)
    del envelope["header"]["sender_uri"]
    response = client.post("crvs", "subscribe", envelope)
    assert response.status_code == 400
    assert response.json()["message"]["error"]["code"] == "err.sender_uri.invalid"


def test_another_partners_code_is_refused_and_callbacks_go_to_the_callback_base(
    server, client, receiver, spec_dir
):
    """A second partner registered with a callback base sends no sender_uri: its on-subscribe,
    on-unsubscribe and txn/on-status go to base + the standard path. It may not unsubscribe
    the first partner's subscription (rjct.requester.invalid). Its notifications carry only
    the fields it may receive."""
    other = support.provision(
        server.settings,
        sender_id="spmis.other",
        client_id="spmis-other",
        callback_base=f"{receiver.base_url}/other",
        fields={"crvs": ["identifier", "death_date"]},
    )
    second = partner_client(server, other)

    mine = post_and_wait(
        client,
        receiver,
        "crvs",
        "subscribe",
        subscribe_envelope(receiver.url("/registry/on-subscribe"), {"reg_event_type": "Divorce"}),
    )
    my_code = mine["message"]["subscribe_response"][0]["subscriptions"][0]["code"]

    envelope = subscribe_envelope("unused", {"reg_event_type": "Death"})
    envelope["header"] = header("subscribe", sender_id="spmis.other")
    before = len(receiver.received)
    assert second.post("crvs", "subscribe", envelope).status_code == 202
    answer = receiver.wait_for(before + 1)[before]
    assert answer.path == "/other/registry/on-subscribe"
    code = answer.json()["message"]["subscribe_response"][0]["subscriptions"][0]["code"]

    envelope = unsubscribe_envelope("unused", [my_code])
    envelope["header"] = header("unsubscribe", sender_id="spmis.other")
    before = len(receiver.received)
    assert second.post("crvs", "unsubscribe", envelope).status_code == 202
    answer = receiver.wait_for(before + 1)[before]
    assert answer.path == "/other/registry/on-unsubscribe"
    message = answer.json()["message"]
    assert message["status_reason_code"] == "rjct.requester.invalid"
    assert message["subscription_status"] == []  # nothing about another partner's code

    person = some_person(server)
    person["death_date"] = "2026-02-02"
    before = len(receiver.received)
    change(server, person)
    notice = receiver.wait_for(before + 1)[before]
    assert notice.path == "/other/registry/notify"
    doc = notice.json()
    load_contract(spec_dir, "crvs").validate_request("/registry/notify", doc)
    assert doc["header"]["meta"]["subscription_codes"] == [code]
    record = doc["message"]["notify_event"][0]["data"]["reg_records"]
    assert set(record) == {"identifier", "death_date"}  # minimised for this partner

    # txn/status by subscription code, sync and async (to the callback base)
    status = {
        "header": header("txn-status", sender_id="spmis.other"),
        "message": {
            "transaction_id": f"t-{uuid.uuid4().hex[:8]}",
            "txnstatus_request": {
                "reference_id": "r-1",
                "txn_type": "subscribe",
                "attribute_type": "subscription_code_list",
                "attribute_value": [code, my_code],
            },
        },
    }
    reply = second.post("crvs", "sync/txn/status", status)
    assert reply.status_code == 200, reply.text
    load_contract(spec_dir, "crvs").validate_response("/registry/sync/txn/status", reply.json())
    found = reply.json()["message"]["txnstatus_response"]["txn_status"]["subscribe_response"]
    assert [s["subscriptions"][0]["code"] for s in found] == [code]  # not the other's code
    status["header"] = header("txn-status", sender_id="spmis.other")
    before = len(receiver.received)
    assert second.post("crvs", "txn/status", status).status_code == 202
    answer = receiver.wait_for(before + 1)[before]
    assert answer.path == "/other/registry/txn/on-status"


def test_txn_status_of_a_subscribe_transaction(server, client, receiver, spec_dir):
    envelope = subscribe_envelope(
        receiver.url("/registry/on-subscribe"), {"reg_event_type": "Marriage"}
    )
    body = post_and_wait(client, receiver, "crvs", "subscribe", envelope)
    code = body["message"]["subscribe_response"][0]["subscriptions"][0]["code"]
    for attribute_type, value in (
        ("transaction_id", envelope["message"]["transaction_id"]),
        ("correlation_id", body["message"]["correlation_id"]),
    ):
        reply = client.post(
            "crvs",
            "sync/txn/status",
            {
                "header": header("txn-status"),
                "message": {
                    "transaction_id": f"t-{uuid.uuid4().hex[:8]}",
                    "txnstatus_request": {
                        "reference_id": "r-1",
                        "txn_type": "subscribe",
                        "attribute_type": attribute_type,
                        "attribute_value": value,
                    },
                },
            },
        )
        assert reply.status_code == 200, reply.text
        load_contract(spec_dir, "crvs").validate_response("/registry/sync/txn/status", reply.json())
        status = reply.json()["message"]["txnstatus_response"]["txn_status"]
        assert status["transaction_id"] == envelope["message"]["transaction_id"]
        (item,) = status["subscribe_response"]
        assert item["subscriptions"][0]["code"] == code
        assert item["subscriptions"][0]["status"] == "subscribe"


def test_a_periodic_subscription_is_notified_in_one_batch(server, client, receiver, spec_dir):
    """Events of a periodic subscription wait for its next run (6-field cron: every second),
    then go as one notification carrying them all."""
    target = receiver.url("/registry/on-subscribe")
    a, b = some_person(server), some_person(server)
    while b["@id"] == a["@id"]:
        b = some_person(server)
    criteria = {
        "reg_event_type": "Marriage",
        "frequency": {
            "start_time": now_ts(),
            "end_time": "2099-01-01T00:00:00Z",
            "frequency": "* * * * * ?",
        },
        "filter_type": "idtype-value",
        "filter": {"type": "UIN", "value": a["identifier"][0]["identifier_value"]},
    }
    second = {
        **criteria,
        "filter": {"type": "UIN", "value": b["identifier"][0]["identifier_value"]},
    }
    body = post_and_wait(
        client, receiver, "crvs", "subscribe", subscribe_envelope(target, criteria, second)
    )
    codes = [i["subscriptions"][0]["code"] for i in body["message"]["subscribe_response"]]
    before = len(receiver.received)
    for person in (a, b):
        person["marriage_date"] = [*(person.get("marriage_date") or []), "2026-03-03"]
    change(server, a, b)
    got = receiver.wait_for(before + 2, timeout=30)[before:]
    assert {g.path for g in got} == {"/registry/notify"}
    for notice in got:
        doc = notice.json()
        load_contract(spec_dir, "crvs").validate_request("/registry/notify", doc)
        assert len(doc["header"]["meta"]["subscription_codes"]) == 1
    assert sorted(g.json()["header"]["meta"]["subscription_codes"][0] for g in got) == sorted(codes)


def test_a_filter_is_held_to_the_partners_query_fields(server, receiver, spec_dir):
    """A subscription filter may use only the fields the partner may query, as a search may:
    a filter on another field is rejected (rjct.notify_details.invalid) naming the field; a
    derived attribute counts as the field it is computed from."""
    narrow = support.provision(
        server.settings,
        sender_id="spmis.narrow",
        client_id="spmis-narrow",
        fields={"crvs": ["identifier"]},
        query_fields={"crvs": ["identifier", "death_date"]},
    )
    client = partner_client(server, narrow)
    person = some_person(server)
    uin = person["identifier"][0]["identifier_value"]
    cases = [
        death_filter("sex", "eq", "female"),  # not a field it may query
        death_filter("age", "ge", 60),  # derived from birth_date: not either
        death_filter("death_date", "ge", "2026-01-01"),
        {
            "reg_event_type": "Death",
            "filter_type": "idtype-value",
            "filter": {"type": "UIN", "value": uin},
        },
    ]
    envelope = subscribe_envelope(receiver.url("/registry/on-subscribe"), *cases)
    envelope["header"] = header(
        "subscribe",
        len(cases),
        sender_id="spmis.narrow",
        sender_uri=receiver.url("/registry/on-subscribe"),
    )
    assert client.post("crvs", "subscribe", envelope).status_code == 202
    body = receiver.wait_for(1, timeout=30)[0].json()
    load_contract(spec_dir, "crvs").validate_request("/registry/on-subscribe", body)
    items = body["message"]["subscribe_response"]
    assert [i["status"] for i in items] == ["rjct", "rjct", "succ", "succ"]
    for item, field in zip(items[:2], ("sex", "birth_date"), strict=True):
        assert item["status_reason_code"] == "rjct.notify_details.invalid"
        message = item["status_reason_message"]
        assert f"'{field}'" in message and "query_fields" in message, message
        assert "subscribe_criteria.filter" in message, message

    # the partner with every field may filter on sex
    mine = DCIClient(server, server.partner)
    body = post_and_wait(
        mine,
        receiver,
        "crvs",
        "subscribe",
        subscribe_envelope(
            receiver.url("/registry/on-subscribe"), death_filter("sex", "eq", "male")
        ),
    )
    assert body["message"]["subscribe_response"][0]["status"] == "succ"


def test_a_notification_refused_with_401_goes_again_with_a_fresh_token(server, receiver):
    """The partner's endpoint no longer accepts the token it gave out (401): the notification
    is sent again at once, in the same attempt, with a token fetched anew from the partner's
    token_url — not retried later, not given up."""
    tokened = support.provision(
        server.settings,
        sender_id="spmis.tokened",
        client_id="spmis-tokened",
        token_url=receiver.token_url,
        callback_client_id="registry-at-tokened",
        callback_client_secret="tokened-secret",
    )
    client = partner_client(server, tokened)
    person = some_person(server)
    uin = person["identifier"][0]["identifier_value"]
    criteria = {
        "reg_event_type": "Death",
        "filter_type": "idtype-value",
        "filter": {"type": "UIN", "value": uin},
    }
    envelope = subscribe_envelope(receiver.url("/registry/on-subscribe"), criteria)
    envelope["header"] = header(
        "subscribe", sender_id="spmis.tokened", sender_uri=receiver.url("/registry/on-subscribe")
    )
    assert client.post("crvs", "subscribe", envelope).status_code == 202
    (answer,) = receiver.wait_for(1, timeout=30)
    assert answer.path == "/registry/on-subscribe"
    assert answer.headers["authorization"] == "Bearer token-1"
    assert answer.json()["message"]["subscribe_response"][0]["status"] == "succ"

    receiver.refused_tokens.add("token-1")  # the partner side has let token-1 go
    person["death_date"] = "2026-04-04"
    change(server, person)
    notice = receiver.wait_for(2, timeout=30)[1]
    assert notice.path == "/registry/notify"
    assert notice.headers["authorization"] == "Bearer token-2"
    assert [r.path for r in receiver.refused] == ["/registry/notify"]
    assert receiver.refused[0].headers["authorization"] == "Bearer token-1"
    assert receiver.issued == ["token-1", "token-2"]
    outbox = server.store.outbox.t
    deadline = time.monotonic() + 10
    while True:  # the outcome is written just after the receiver answered
        with server.store.read() as conn:
            row = conn.execute(
                select(outbox.c.status, outbox.c.attempts, outbox.c.last_error).where(
                    outbox.c.sender_id == "spmis.tokened", outbox.c.action == "notify"
                )
            ).one()
        if row.status != "inflight" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert tuple(row) == ("done", 1, None)  # one attempt: no retry, no error kept


# ---------------------------------------------------------------------------------------------
# Pure parts


def test_frequencies() -> None:
    assert cron_of("daily", "f") == "0 0 * * *"
    assert cron_of("WEEKLY", "f") == "0 0 * * 0"
    assert cron_of("monthly", "f") == "0 0 1 * *"
    assert cron_of("immediate", "f") is None
    for text in ("*/5 * * * *", "0 0 12 * * ?", "0 0 0 5,15 * ? *"):
        assert cron_of(text, "f") == text
    for bad in ("every day", "61 * * * *", "* * *", "0 0 0 0 0 0 0 0"):
        with pytest.raises(ItemRejected) as caught:
            cron_of(bad, "f.frequency")
        assert caught.value.code == "rjct.notify_details.invalid"
        assert "f.frequency" in caught.value.message
    now = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    schedule = parse_schedule(
        EventFrequency(
            start_time="2026-01-01T00:00:00Z",
            end_time="2026-02-01T00:00:00Z",
            frequency="0 0 0 5,15 * ? *",
        ),
        now,
        "f",
    )
    first = schedule.next_run(now)
    assert first == now + 4 * 86400  # the 5th
    assert schedule.next_run(first) == now + 14 * 86400  # the 15th
    assert schedule.next_run(now + 20 * 86400) is None  # past the end
    assert (
        parse_schedule(
            EventFrequency(start_time=None, end_time=None, frequency="daily"), now, "f"
        ).end
        is None
    )
    with pytest.raises(ItemRejected):
        parse_schedule(
            EventFrequency(
                start_time="2026-01-02T00:00:00Z",
                end_time="2026-01-01T00:00:00Z",
                frequency="daily",
            ),
            now,
            "f",
        )


def test_each_profile_declares_the_events_of_its_contract(spec_dir) -> None:
    """The events a profile marks as its contract's are exactly its notify enum (where the
    contract has one); every profile raises events on registration."""
    import yaml

    for name, profile in PROFILES.items():
        assert profile.has_subscriptions, name
        doc = yaml.safe_load((spec_dir / "spec" / profile.contract).read_text())
        schema = doc["components"]["schemas"]["NotifyEventRequest"]["properties"]["notify_event"]
        enum = schema["items"]["properties"]["data"]["properties"]["reg_event_type"].get("enum")
        ours = [e.name for e in profile.event_types if e.contract]
        if enum is not None:
            assert ours == enum, name
        assert profile.events is not None, name


def test_events_of_changes() -> None:
    crvs = PROFILES["crvs"]
    person = {"@id": "p", "birth_date": "1950-01-01", "identifier": []}
    assert [e.type for e in crvs.changes(None, person)] == ["LiveBirth"]
    assert [e.type for e in crvs.changes(None, {**person, "death_date": "1950-01-01"})] == [
        "FetalDeath"
    ]
    assert [e.type for e in crvs.changes(person, {**person, "death_date": "2026-01-01"})] == [
        "Death"
    ]
    married = {**person, "marriage_date": ["2000-01-01"]}
    assert [e.type for e in crvs.changes(person, married)] == ["Marriage"]
    divorced = {**married, "divorce_date": ["2010-01-01"]}
    assert [e.type for e in crvs.changes(married, divorced)] == ["Divorce"]
    assert crvs.changes(person, dict(person)) == []
    social = PROFILES["social"]
    home = {"@id": "g", "member_list": [{"@id": "m1"}]}
    joined = {"@id": "g", "member_list": [{"@id": "m1"}, {"@id": "m2"}]}
    assert [(e.type, e.record["@id"]) for e in social.changes(home, joined)] == [
        ("NewHouseHoldMember", "m2")
    ]
    assert [e.type for e in social.changes(joined, home)] == ["HouseHoldMemberLeft"]
    assert [e.type for e in social.changes(None, home)] == ["REGISTER"]
    ibr = PROFILES["ibr"]
    enrolment = {"@id": "ibr:OAP:1", "enrollment_status": "1"}
    assert [e.type for e in ibr.changes(None, enrolment)] == ["enrollement"]
    assert [e.type for e in ibr.changes(enrolment, {**enrolment, "enrollment_status": "4"})] == [
        "enrollement_status_change"
    ]
    ess = PROFILES["ess"]
    member = {"@id": "ess:m", "employment_status": "2", "programme_enrolments": []}
    assert [e.type for e in ess.changes(member, {**member, "employment_status": "1"})] == [
        "employment_status_change"
    ]
    enrolled = {**member, "programme_enrolments": [{"@id": "e1", "enrollment_status": "1"}]}
    assert [e.type for e in ess.changes(member, enrolled)] == ["enrolment"]
    dr = PROFILES["dr"]
    pwd = {"@id": "d", "disability_status": "1"}
    assert [e.type for e in dr.changes(pwd, {**pwd, "disability_status": "0"})] == [
        "DisabilityStatusChange"
    ]
    assert crvs.event_type("spdci-common:RegistryEventType:live_birth").name == "LiveBirth"


def test_record_and_deliveries_commands(tmp_path) -> None:
    import yaml
    from typer.testing import CliRunner

    from dcihub.cli import app
    from dcihub.population.generator import generate_country
    from dcihub.population.load import load_country
    from dcihub.store import Store

    url = f"sqlite:///{tmp_path}/cli.db"
    store = Store(url)
    store.upgrade()
    country = generate_country(people=100, seed=5)
    load_country(store, country)
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"store_url": url}))
    runner = CliRunner()
    person = next(r for r in country.records("crvs") if not r.get("death_date"))
    uin = person["identifier"][0]["identifier_value"]

    done = runner.invoke(app, ["record", "death", "crvs", "--id", f"UIN={uin}", "-c", str(config)])
    assert done.exit_code == 0, done.output
    assert f"updated {person['@id']}" in done.stdout
    assert "notifications queued: 0" in done.stdout  # nobody subscribed
    with store.read() as conn:
        assert store.records.get(conn, "crvs", person["@id"])["death_date"]
    again = runner.invoke(app, ["record", "death", "crvs", "--id", f"UIN={uin}", "-c", str(config)])
    assert again.exit_code == 2 and "deceased already" in again.stderr
    unknown = runner.invoke(app, ["record", "wedding", "crvs", "-c", str(config)])
    assert unknown.exit_code == 2
    assert "birth, fetal-death, death, marriage, divorce, adoption" in unknown.stderr
    missing = runner.invoke(app, ["record", "birth", "crvs", "-c", str(config)])
    assert missing.exit_code == 2 and "--mother" in missing.stderr
    listed = runner.invoke(app, ["record", "list", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    names = {tuple(line.split()[:2]) for line in listed.stdout.splitlines()}
    assert ("fr", "register") in names and ("ess", "enrolment-status") in names
    assert ("crvs", "death") in names
    one = runner.invoke(app, ["record", "list", "dr", "-c", str(config)])
    assert {line.split()[0] for line in one.stdout.splitlines()} == {"dr"}
    no_registry = runner.invoke(app, ["record", "death", "-c", str(config)])
    assert no_registry.exit_code == 2 and "give the registry" in no_registry.stderr
    registered = runner.invoke(
        app,
        ["record", "register", "fr", "--name", "Ama Owusu", "--sex", "female"]
        + ["--birth-date", "1980-05-06", "-c", str(config)],
    )
    assert registered.exit_code == 0, registered.output
    assert "created fr:farmer:" in registered.stdout
    bad_day = runner.invoke(
        app,
        ["record", "register", "ess", "--name", "A", "--sex", "male"]
        + ["--birth-date", "1980-13-01", "-c", str(config)],
    )
    assert bad_day.exit_code == 2 and "--birth-date '1980-13-01'" in bad_day.stderr

    with store.begin() as conn:
        dead = store.outbox.enqueue(
            conn,
            "deliver",
            registry="crvs",
            sender_id="spmis.x",
            target_url="http://x/registry/notify",
            action="notify",
            payload="{}",
        )
        store.outbox.give_up(conn, dead, "HTTP 400: no")
        store.outbox.enqueue(
            conn,
            "deliver",
            registry="ibr",
            sender_id="spmis.y",
            target_url="http://y/",
            action="notify",
            payload="{}",
        )
    listed = runner.invoke(app, ["deliveries", "--state", "dead", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "dead" in listed.stdout and "spmis.x" in listed.stdout and "spmis.y" not in listed.stdout
    both = runner.invoke(app, ["deliveries", "--json", "-c", str(config)])
    assert [orjson.loads(line)["state"] for line in both.stdout.splitlines()] == ["dead", "pending"]
    only = runner.invoke(
        app, ["deliveries", "--registry", "ibr", "--partner", "spmis.y", "-c", str(config)]
    )
    assert "spmis.y" in only.stdout and "spmis.x" not in only.stdout
    retried = runner.invoke(app, ["deliveries", "--state", "dead", "--retry", "-c", str(config)])
    assert retried.exit_code == 0 and "1 delivery will be tried again" in retried.stderr
    with store.read() as conn:
        (row,) = [r for r in store.outbox.rows(conn) if r["pk"] == dead]
    assert row["status"] == "pending" and row["attempts"] == 0
    store.dispose()
