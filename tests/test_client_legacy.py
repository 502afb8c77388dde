"""The client against a deliberately legacy-shaped registry (tests/client_support.py): older
message shapes and the other signature profiles on replies and callbacks, subscribe /
unsubscribe / notify, the ESS check-enrollment call, and every error path a registry can
cause."""

from __future__ import annotations

import asyncio
import threading

import pytest

from client_support import LegacyRegistry, client_keys, public
from dcihub.client import (
    AsyncRegistryClient,
    CallbackReceiver,
    ErrAckError,
    HTTPStatusError,
    Notification,
    Q,
    RegistryClient,
    RejectedError,
    RequestTimeout,
    SignatureVerificationError,
    TransportError,
)
from dcihub.security.keys import generate_key
from support import free_port

PROFILES = ["jws-detached", "jws-compact", "http-sig-ed25519"]


@pytest.fixture(scope="module")
def keys():
    """The client's keys: ES256 and Ed25519 signing keys, one encryption key."""
    jwks = client_keys()
    jwks["keys"].insert(1, generate_key("sig", "EdDSA").as_dict(private=True))
    return jwks


@pytest.fixture(scope="module")
def legacy(keys):
    running = LegacyRegistry(public(keys)).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def reset(legacy):
    legacy.set_mode("ok")
    legacy.profile = "jws-compact"
    yield
    legacy.set_mode("ok")


@pytest.fixture()
def client(legacy, keys):
    with RegistryClient(legacy.settings(keys)) as running:
        yield running


@pytest.mark.parametrize("reply_profile", PROFILES)
@pytest.mark.parametrize("request_profile", PROFILES)
def test_sync_search_reads_the_older_shapes(legacy, keys, request_profile, reply_profile):
    legacy.profile = reply_profile
    settings = legacy.settings(keys, signature_profile=request_profile)
    with RegistryClient(settings) as client:
        result = client.search(Q.id("UIN", "5550001111"), page_size=10)
    # the registry verified the request signature in `request_profile`
    sent = legacy.received[-1]
    assert sent["path"] == "sync/search"
    assert sent["header"]["action"] == "search" and sent["header"]["total_count"] == 1
    assert sent["header"]["message_ts"].endswith("Z")
    item = sent["message"]["search_request"][0]
    assert item["search_criteria"]["query"] == {"type": "UIN", "value": "5550001111"}
    assert item["search_criteria"]["pagination"] == {"page_size": 10, "page_number": 1}
    # total_count and pagination as strings, reg_records an object, reg_event_type
    assert result.total_count == 1 and result.page_size == 10
    assert result.reg_record_type == "spdci-extensions-dci:Person"
    [person] = result.records
    assert person.uin == "5550001111"  # NID read as UIN
    assert person.name is not None and person.name.full == "Ama Owusu"
    assert person.birth_date == "1950-02-03" and person.death_date == "2025-11-30"
    assert person.is_deceased and person.sex == "F"


def test_a_string_expires_in_is_read_and_the_token_reused(legacy, keys):
    with RegistryClient(legacy.settings(keys)) as client:
        before = len(legacy.tokens)
        client.search(Q.id("UIN", "1"))
        client.search(Q.id("UIN", "2"))
        assert len(legacy.tokens) == before + 1
        assert client.tokens.fetches == 1


def test_401_gets_one_fresh_token_and_the_message_goes_again(legacy, client):
    client.search(Q.id("UIN", "1"))
    legacy.set_mode("revoke-token", 1)
    result = client.search(Q.id("UIN", "2"))
    assert result.first is not None and result.first.uin == "2"
    assert client.tokens.fetches == 2


def test_err_ack(legacy, client):
    legacy.set_mode("err", 1)
    with pytest.raises(ErrAckError) as caught:
        client.search(Q.id("UIN", "1"))
    error = caught.value
    assert error.code == "err.sender_id.invalid" and error.http_status == 400
    assert error.detail == "who are you?" and error.ack_status == "ERR"
    sent = legacy.received[-1]
    assert error.transaction_id == sent["message"]["transaction_id"]
    assert error.message_id == sent["header"]["message_id"]
    text = str(error)
    assert "\n" not in text and "err.sender_id.invalid" in text and error.transaction_id in text


def test_rejected_item(legacy, client):
    legacy.set_mode("rjct-item", 1)
    with pytest.raises(RejectedError) as caught:
        client.search(Q.attr("favourite_colour") == "blue")
    error = caught.value
    assert error.reason_code == "rjct.search_criteria.invalid"
    assert error.reason_message == "unknown attribute"
    sent = legacy.received[-1]["message"]
    assert error.reference_id == sent["search_request"][0]["reference_id"]
    assert error.transaction_id == sent["transaction_id"]


def test_rejected_items_of_a_batch_do_not_raise(legacy, client):
    legacy.set_mode("rjct-item", 1)
    batch = client.search_batch({"one": Q.id("UIN", "1"), "two": Q.id("UIN", "2")})
    assert [r.reference_id for r in batch] == ["one", "two"]
    assert len(batch.rejected) == 2
    with pytest.raises(RejectedError):
        batch["one"].raise_for_status()


def test_rejected_header(legacy, client):
    legacy.set_mode("rjct-header", 1)
    with pytest.raises(RejectedError) as caught:
        client.search(Q.id("UIN", "1"))
    assert caught.value.reason_code == "rjct.message_ts.invalid"
    assert caught.value.reference_id is None
    assert "the clock is off" in str(caught.value)


def test_reply_changed_after_signing(legacy, client):
    for profile in PROFILES:
        legacy.profile = profile
        legacy.set_mode("bad-signature", 1)
        with pytest.raises(SignatureVerificationError) as caught:
            client.search(Q.id("UIN", "1"))
        assert caught.value.code == "err.signature.invalid"
        assert profile in str(caught.value)


def test_unsigned_reply(legacy, keys, client):
    legacy.set_mode("unsigned", 1)
    with pytest.raises(SignatureVerificationError) as caught:
        client.search(Q.id("UIN", "1"))
    assert caught.value.code == "err.signature.missing"
    legacy.set_mode("unsigned", 1)
    with RegistryClient(legacy.settings(keys, verify_replies=False)) as lenient:
        assert lenient.search(Q.id("UIN", "1")).first is not None


def test_timeout(legacy, keys):
    legacy.set_mode("slow", 1)
    with RegistryClient(legacy.settings(keys, timeout=0.5)) as client:
        with pytest.raises(RequestTimeout) as caught:
            client.search(Q.id("UIN", "1"))
    assert caught.value.code == "err.request.timeout"
    assert caught.value.transaction_id and "no answer" in str(caught.value)


def test_gateway_error_page(legacy, client):
    legacy.set_mode("gateway", 1)
    with pytest.raises(HTTPStatusError) as caught:
        client.search(Q.id("UIN", "1"))
    assert caught.value.http_status == 502 and "502 Bad Gateway" in str(caught.value)


def test_registry_down(keys):
    down = f"http://127.0.0.1:{free_port()}"
    settings = {
        "base_url": down,
        "sender_id": "spmis.x",
        "token": "t",
        "keys": keys,
        "jwks_url": f"{down}/.well-known/jwks.json",
    }
    with RegistryClient(**settings) as client:
        with pytest.raises(TransportError) as caught:
            client.search(Q.id("UIN", "1"))
    assert caught.value.url == f"{down}/registry/sync/search"
    assert "cannot reach the registry" in str(caught.value) and caught.value.message_id


def test_txn_status_reads_the_std_txn_type(client):
    status = client.txn_status("t-earlier")
    assert status.txn_type == "search" and status.known
    assert status.statuses == {"r-1": "pdng"}
    assert status.about_transaction_id == "t-earlier"


def test_check_enrollment(legacy, client):
    answer = client.check_enrollment("5550001111")
    assert answer.status == "Active" and answer.enrolled and bool(answer)
    sent = legacy.received[-1]
    assert sent["path"] == "sync/check-enrollment" and sent["header"]["action"] == "search"
    assert sent["message"]["enrolled_criteria"] == {
        "query_type": "expression",
        "query": {"person_identifier": {"eq": "5550001111"}},
    }


def test_a_bare_reply_is_not_taken_unverified(legacy, keys, client):
    legacy.set_mode("bare", 1)
    with pytest.raises(SignatureVerificationError) as caught:
        client.check_enrollment("1")
    assert "bare response" in str(caught.value)
    legacy.set_mode("bare", 1)
    with RegistryClient(legacy.settings(keys, verify_replies=False)) as lenient:
        assert lenient.check_enrollment("1").enrolled


def test_encrypted_request_and_reply(legacy, keys):
    legacy.set_mode("encrypt-reply", 1)
    with RegistryClient(legacy.settings(keys, encrypt=True)) as client:
        result = client.search(Q.id("UIN", "77"))
    assert result.first is not None and result.first.uin == "77"
    sent = legacy.received[-1]
    assert sent["header"]["is_msg_encrypted"] is True  # decrypted by the registry
    assert sent["message"]["search_request"][0]["search_criteria"]["query"]["value"] == "77"


def test_async_search_with_the_receiver(legacy, keys):
    receiver = CallbackReceiver()
    answered = len(legacy.callbacks)
    with receiver.serve(), RegistryClient(legacy.settings(keys), receiver=receiver) as client:
        pending = client.search_async(Q.id("UIN", "4242"))
        assert pending.ack.ack_status == "ACK"
        result = pending.result(20)
        assert result.first is not None and result.first.uin == "4242"
        assert pending.done()
    sent = legacy.received[-1]
    assert sent["header"]["sender_uri"] == f"{receiver.url}/registry/on-search"
    answer = legacy.wait_callbacks(answered + 1)[answered]
    assert answer.status_code == 200 and answer.json()["message"]["ack_status"] == "ACK"


def test_subscribe_notify_unsubscribe(legacy, keys):
    notified: list[Notification] = []
    arrived = threading.Event()

    def on_notify(notification: Notification) -> None:
        notified.append(notification)
        arrived.set()

    receiver = CallbackReceiver(on_notify=on_notify)
    with receiver.serve(), RegistryClient(legacy.settings(keys), receiver=receiver) as client:
        subscribed = client.subscribe(
            Q.attr("is_deceased") == True,  # noqa: E712 - a query, not a comparison
            event_type="death",
            record_type="Person",
            frequency="0 0 0 * * ? *",
        ).result(20)
        [code] = subscribed.codes
        assert subscribed.subscriptions[0].reg_event_type == "death"
        assert arrived.wait(20), "no notification"
        [notification] = notified
        assert notification.subscription_codes == [code]
        assert notification.sender_id == "legacy.registry"
        [record] = notification.records
        assert record.uin == "5550001111" and record.is_deceased
        assert notification.events[0].reg_event_type == "death"

        ended = client.unsubscribe([code]).result(20)
        assert ended.ok and ended.subscription_status == {code: "unsubscribe"}
        assert ended.timestamp  # read from STD's `timesatmp`
    sent = [r for r in legacy.received if r["path"] == "subscribe"][-1]
    criteria = sent["message"]["subscribe_request"][0]["subscribe_criteria"]
    assert criteria["reg_event_type"] == "death" and criteria["notify_record_type"] == "Person"
    assert criteria["filter_type"] == "predicate"
    assert criteria["filter"][0]["expression1"] == {
        "attribute_name": "is_deceased",
        "operator": "eq",
        "attribute_value": True,
    }
    assert criteria["frequency"]["frequency"] == "0 0 0 * * ? *"
    assert sent["header"]["sender_uri"] == f"{receiver.url}/registry/on-subscribe"


def test_encrypted_notification(legacy, keys):
    notified: list[Notification] = []
    arrived = threading.Event()
    receiver = CallbackReceiver(on_notify=lambda n: (notified.append(n), arrived.set()))
    legacy.set_mode("encrypt-reply", 1)
    with receiver.serve(), RegistryClient(legacy.settings(keys), receiver=receiver) as client:
        client.subscribe(Q.id("UIN", "5550001111"), event_type="death", record_type="Person")
        assert arrived.wait(20)
    assert notified[0].records[0].uin == "5550001111"


def test_async_client(legacy, keys):
    async def main() -> None:
        receiver = CallbackReceiver()
        await receiver.start()
        try:
            async with AsyncRegistryClient(legacy.settings(keys), receiver=receiver) as client:
                result = await client.search(Q.id("UIN", "31"))
                assert result.first is not None and result.first.uin == "31"
                pending = await client.search_async(Q.id("UIN", "32"))
                later = await pending.wait(20)
                assert later.first is not None and later.first.uin == "32"
                subscribed = await (
                    await client.subscribe(Q.id("UIN", "1"), event_type="death", record_type="P")
                )
                assert subscribed.codes
                assert (await client.check_enrollment("1")).enrolled
                legacy.set_mode("err", 1)
                with pytest.raises(ErrAckError):
                    await client.search(Q.id("UIN", "1"))
                legacy.set_mode("revoke-token", 1)
                assert (await client.search(Q.id("UIN", "2"))).first is not None
                assert client.tokens.fetches == 2
        finally:
            await receiver.stop()

    asyncio.run(main())
