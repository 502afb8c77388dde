"""Subscriptions, the finer points: a change made in the node's own process (an API call
that writes records, an operator's change, the demo's life events) wakes the delivery worker
at once rather than at its next poll; txn/status of subscriptions on registries whose contract
has no `unsubscribe` txn_type; subscriptions whose filter a narrowing of the partner's
`query_fields` no longer allows."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import support
from expect import enrollment_updates_envelope
from receiver import CallbackReceiver
from support import DCIClient
from test_outbox_restart import wait_for
from test_subscriptions import subscribe, subscribe_envelope

SLOW_POLL = 60.0  # the worker polls once a minute: a delivery sooner was woken


@pytest.fixture(scope="module")
def server(backend, country, tmp_path_factory):
    from dcihub.population.load import load_country
    from dcihub.store import Store

    with support.store_url_for(backend, tmp_path_factory.mktemp("subs-more")) as url:
        store = Store(url)
        store.upgrade()
        load_country(store, country)
        settings = support.test_settings(
            url,
            data_dir=tmp_path_factory.mktemp("subs-more-node"),
            delivery={"poll_interval": SLOW_POLL, "backoff_base": 0.2, "backoff_max": 1.0},
        )
        running = support.live_server(settings, store)
        yield running
        running.stop()
        store.dispose()


@pytest.fixture(scope="module")
def client(server):
    return DCIClient(server, server.partner)


@pytest.fixture()
def receiver():
    running = CallbackReceiver().start()
    yield running
    running.stop()


def notices(receiver: CallbackReceiver, count: int, timeout: float = 15.0) -> list[Any]:
    """`count` notify callbacks, waited for well under the worker's poll interval."""
    assert timeout < SLOW_POLL / 2
    return wait_for(
        lambda: (
            len(n := [r for r in receiver.received if r.path == "/registry/notify"]) >= count and n
        ),
        timeout=timeout,
        what=f"{count} notification(s) before the worker's next poll",
    )


def test_changes_in_the_node_process_wake_the_worker(server, client, receiver) -> None:
    from dcihub.store.changes import record_change

    subscribe(client, receiver, "ibr", {"reg_event_type": "enrollement"})
    uin = f"7{uuid.uuid4().int % 10**9:09d}"
    # an API call that writes records: the SP-MIS reports a new enrolment to the IBR
    beneficiary = {
        "member": {
            "member_identifier": [{"identifier_type": "UIN", "identifier_value": uin}],
            "demographic_info": {"name": {"given_name": "Ana"}, "sex": "female"},
        },
        "programme_identifier": [{"programme_identifier": "OAP"}],
        "enrollment_status": "1",
        "enrollment_date": "2026-01-01",
    }
    response = client.post(
        "ibr", "sync/enrollment/updates", enrollment_updates_envelope([beneficiary])
    )
    assert response.status_code == 200, response.text
    (first,) = notices(receiver, 1)
    body = first.json()["message"]["notify_event"][0]["data"]["reg_records"]
    assert body["member"]["member_identifier"][0]["identifier_value"] == uin
    # another thread of the node's process (as the demo's life events)
    other = f"8{uuid.uuid4().int % 10**9:09d}"
    done = record_change(
        server.store, "ibr", "enrolment", {"id": f"UIN={other}", "programme": "OAP"}
    )
    assert done.notifications == 1
    second = notices(receiver, 2)[1].json()["message"]["notify_event"][0]["data"]["reg_records"]
    assert second["member"]["member_identifier"][0]["identifier_value"] == other


def test_a_rolled_back_change_wakes_nobody(server) -> None:
    """A change that queued notifications and then rolled back leaves no mark on the pooled
    connection (nothing to deliver, and the next transaction is not taken for one)."""
    from dcihub.store.outbox import QUEUED_FLAG

    woken: list[int] = []
    store = server.store
    saved = store.subscriptions.wakeup
    store.subscriptions.wakeup = lambda: woken.append(1)
    try:
        with pytest.raises(RuntimeError):
            with store.begin() as conn:
                conn.info[QUEUED_FLAG] = True
                raise RuntimeError("the change failed")
        with store.begin() as conn:
            assert QUEUED_FLAG not in conn.info
        assert woken == []
        with store.begin() as conn:
            conn.info[QUEUED_FLAG] = True
        assert woken == [1]
    finally:
        store.subscriptions.wakeup = saved


def txn_status(client: DCIClient, registry: str, txn_type: str, attribute: str, value: Any) -> Any:
    reply = client.post(
        registry,
        "sync/txn/status",
        {
            "header": support.header("txn-status"),
            "message": {
                "transaction_id": f"t-{uuid.uuid4().hex[:8]}",
                "txnstatus_request": {
                    "reference_id": "r-1",
                    "txn_type": txn_type,
                    "attribute_type": attribute,
                    "attribute_value": value,
                },
            },
        },
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize(
    ("registry", "event"),
    [("social", "NewHouseHoldMember"), ("ibr", "enrollement"), ("ess", "enrolment")],
)
def test_txn_status_of_an_unsubscribe_where_the_contract_has_no_such_txn_type(
    server, client, receiver, spec_dir, registry, event
) -> None:
    """SR, IBR and ESS list no `unsubscribe` txn_type: asked about an unsubscription, they
    answer in their `subscribe` form, each subscription with its status now (valid against
    the registry's contract); CRVS answers in the unsubscribe form."""
    from contract import load_contract
    from test_subscriptions import unsubscribe_envelope

    contract = load_contract(spec_dir, registry)
    follow = {"type": "UIN", "value": f"6{uuid.uuid4().int % 10**9:09d}"}
    criteria = {"reg_event_type": event, "filter_type": "idtype-value", "filter": follow}
    (code,), _ = subscribe(client, receiver, registry, criteria)
    before = len(receiver.received)
    envelope = unsubscribe_envelope(receiver.url("/registry/on-unsubscribe"), [code])
    assert client.post(registry, "unsubscribe", envelope).status_code == 202
    receiver.wait_for(before + 1, timeout=30)
    asked = [
        ("subscription_code_list", [code]),
        ("transaction_id", envelope["message"]["transaction_id"]),
    ]
    for attribute, value in asked:
        body = txn_status(client, registry, "unsubscribe", attribute, value)
        contract.validate_response("/registry/sync/txn/status", body)
        answer = body["message"]["txnstatus_response"]
        assert answer["txn_type"] == "subscribe", answer
        (item,) = answer["txn_status"]["subscribe_response"]
        assert item["status"] == "succ"
        assert item["subscriptions"][0]["code"] == code
        assert item["subscriptions"][0]["status"] == "unsubscribe"
        if attribute == "transaction_id":
            assert "answers txn_type unsubscribe as subscribe" in item["status_reason_message"]
    unknown = txn_status(client, registry, "unsubscribe", "transaction_id", "t-nope")
    contract.validate_response("/registry/sync/txn/status", unknown)
    (item,) = unknown["message"]["txnstatus_response"]["txn_status"]["subscribe_response"]
    assert item["status"] == "rjct"


def test_crvs_answers_an_unsubscribe_in_its_own_form(server, client, receiver, spec_dir) -> None:
    from contract import load_contract
    from test_subscriptions import unsubscribe_envelope

    (code,), _ = subscribe(client, receiver, "crvs", {"reg_event_type": "Divorce"})
    before = len(receiver.received)
    envelope = unsubscribe_envelope(receiver.url("/registry/on-unsubscribe"), [code])
    assert client.post("crvs", "unsubscribe", envelope).status_code == 202
    receiver.wait_for(before + 1, timeout=30)
    body = txn_status(client, "crvs", "unsubscribe", "subscription_code_list", [code])
    load_contract(spec_dir, "crvs").validate_response("/registry/sync/txn/status", body)
    answer = body["message"]["txnstatus_response"]
    assert answer["txn_type"] == "unsubscribe"
    assert answer["txn_status"]["subscription_status"] == [{"code": code, "status": "unsubscribe"}]


def set_query_fields(server: Any, sender_id: str, fields: list[str]) -> None:
    """Edit the partner file as an operator would (the node re-reads it within seconds)."""
    from dataclasses import replace

    from dcihub.security.partners import PartnerRegistry

    path = server.settings.security.path(server.settings.security.partners_file)
    registry = PartnerRegistry.load(path)
    PartnerRegistry(
        replace(p, query_fields={"crvs": fields}) if p.sender_id == sender_id else p
        for p in registry
    ).save(path)


def test_a_subscription_whose_filter_was_narrowed_away_is_held_back(
    server, receiver, spec_dir
) -> None:
    """The partner subscribed filtering on `sex`; then its query_fields were narrowed so that
    it may no longer filter on it. Its notifications are refused (dead, naming the
    subscription and the field): they would tell it who matched a filter it may not use.
    Widened again, the dead delivery is retried and arrives."""
    from dcihub.store.changes import record_change
    from test_subscribe_api import death_filter, partner_client, some_person

    sender = f"spmis.narrowed-{uuid.uuid4().hex[:6]}"
    partner = support.provision(
        server.settings,
        sender_id=sender,
        client_id=sender.replace(".", "-"),
        query_fields={"crvs": ["identifier", "sex", "death_date"]},
    )
    client = partner_client(server, partner)
    target = receiver.url("/registry/on-subscribe")

    def ask() -> dict[str, Any]:
        envelope = subscribe_envelope(target, death_filter("sex", "eq", "female"))
        envelope["header"] = support.header("subscribe", 1, sender_id=sender, sender_uri=target)
        before = len(receiver.received)
        assert client.post("crvs", "subscribe", envelope).status_code == 202
        body = receiver.wait_for(before + 1, timeout=30)[before].json()
        return body["message"]["subscribe_response"][0]

    first = ask()
    assert first["status"] == "succ", first
    code = first["subscriptions"][0]["code"]

    set_query_fields(server, sender, ["identifier", "death_date"])
    wait_for(
        lambda: ask()["status_reason_code"] == "rjct.notify_details.invalid",
        timeout=30,
        what="the node to read the narrowed partner",
    )
    woman = next(p for p in (some_person(server) for _ in range(50)) if p.get("sex") == "female")
    uin = woman["identifier"][0]["identifier_value"]
    assert record_change(server.store, "crvs", "death", {"id": f"UIN={uin}"}).notifications == 1

    def dead() -> list[dict[str, Any]]:
        with server.store.read() as conn:
            return server.store.outbox.deliveries(conn, ("dead",), sender, "crvs")

    (row,) = wait_for(dead, timeout=30, what="the notification to be refused")
    assert code in row["last_error"] and "held back" in row["last_error"], row
    assert "'sex'" in row["last_error"]
    assert not [r for r in receiver.received if r.path == "/registry/notify"]

    set_query_fields(server, sender, ["identifier", "sex", "death_date"])
    wait_for(
        lambda: ask()["status_reason_code"] == "rjct.event.already_subscribed",
        timeout=30,
        what="the node to read the widened partner",
    )
    with server.store.begin() as conn:
        server.store.outbox.retry_now(conn, [row["pk"]])
    (notice,) = notices(receiver, 1)
    doc = notice.json()
    assert doc["header"]["meta"]["subscription_codes"] == [code]
    person = doc["message"]["notify_event"][0]["data"]["reg_records"]
    assert person["identifier"][0]["identifier_value"] == uin


def test_the_client_names_an_event_outside_the_contract_from_the_header() -> None:
    """dcihub names an event type its registry's contract does not list (ESS
    `employment_status_change`) in header.meta, not in data: the client reads it there."""
    from dcihub.client.results import read_notification

    header = {"message_id": "m-1", "meta": {"reg_event_types": ["employment_status_change"]}}
    data = {"reg_record_type": "Member", "reg_records": {"employment_status": "1"}}
    message = {"transaction_id": "t-1", "notify_event": [{"reference_id": "e", "data": data}]}
    (event,) = read_notification(header, message).events
    assert event.reg_event_type == "employment_status_change"
    data["reg_event_type"] = "enrolment"
    (event,) = read_notification(header, message).events
    assert event.reg_event_type == "enrolment"  # what the data says comes first


def test_narrowing_a_partners_fields_names_the_subscriptions_held_back(server, receiver) -> None:
    """`dcihub partners update --fields ...` (admin.update_partner) says which of the
    partner's subscriptions filter on a field it may no longer query."""
    from dcihub.admin import PartnerChanges, update_partner
    from test_subscribe_api import death_filter, partner_client

    sender = f"spmis.fields-{uuid.uuid4().hex[:6]}"
    partner = support.provision(server.settings, sender_id=sender, client_id=sender[7:])
    client = partner_client(server, partner)
    target = receiver.url("/registry/on-subscribe")
    envelope = subscribe_envelope(target, death_filter("sex", "eq", "male"))
    envelope["header"] = support.header("subscribe", 1, sender_id=sender, sender_uri=target)
    assert client.post("crvs", "subscribe", envelope).status_code == 202
    body = receiver.wait_for(1, timeout=30)[0].json()
    code = body["message"]["subscribe_response"][0]["subscriptions"][0]["code"]

    kept = update_partner(
        server.settings, sender, PartnerChanges(fields=["crvs:identifier,sex,death_date"])
    )
    assert not [n for n in kept.notes if code in n]
    narrowed = update_partner(
        server.settings, sender, PartnerChanges(fields=["crvs:identifier,death_date"])
    )
    (note,) = [n for n in narrowed.notes if code in n]
    assert "held back" in note and "'sex'" in note and "crvs Death" in note
