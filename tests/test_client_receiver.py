"""The callback receiver's answers to what a registry (or anyone) may post to it: the ACK,
the ERR ack with the right `err.*` code for each refusal, deduplication by message id, the
application's callbacks (plain and async), its failures (503, so that the registry retries)
and the optional token check. The test plays the registry with LegacyRegistry's keys."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import orjson
import pytest

from client_support import LegacyRegistry, client_keys, new_id, now_ts, public
from dcihub.client import (
    BatchResult,
    CallbackReceiver,
    CallbackTimeout,
    ConfigurationError,
    DCIClientError,
    ErrAckError,
    Notification,
    Q,
    ReceiverAuth,
    RegistryClient,
    TxnStatusResult,
)
from dcihub.security.jwe import encrypt_message
from dcihub.security.keys import generate_key
from dcihub.security.signatures import sign


@pytest.fixture(scope="module")
def keys():
    return client_keys()


@pytest.fixture(scope="module")
def legacy(keys):
    running = LegacyRegistry(public(keys)).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def reset(legacy):
    legacy.set_mode("ok")
    yield
    legacy.set_mode("ok")


class Recorder:
    """Application callbacks that record what they were given."""

    def __init__(self, fail: int = 0) -> None:
        self.got: list[Any] = []
        self.fail = fail
        self.event = threading.Event()

    def __call__(self, value: Any) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("the programme's database is down")
        self.got.append(value)
        self.event.set()


def served(legacy: LegacyRegistry, keys: dict[str, Any], **callbacks: Any) -> Any:
    """A receiver trusting the legacy registry (through a client attached to it)."""
    receiver = CallbackReceiver(**callbacks)
    RegistryClient(legacy.settings(keys), receiver=receiver).close()
    return receiver


def notify_envelope(legacy: LegacyRegistry, **header: Any) -> dict[str, Any]:
    message = {
        "transaction_id": new_id("t"),
        "notify_event": [
            {
                "reference_id": new_id("e"),
                "timestamp": now_ts(),
                "data": {"reg_record_type": "Person", "reg_records": [{"name": "x"}]},
            }
        ],
    }
    return legacy.signed(legacy.callback_header("notify", **header), message)


def post(url: str, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(url, content=content, headers={"content-type": "application/json", **headers})


def error_code(response: httpx.Response) -> str:
    message = response.json()["message"]
    assert message["ack_status"] == "ERR"
    return str(message["error"]["code"])


def test_notify_is_acked_and_handed_over_once(legacy, keys):
    recorder = Recorder()
    receiver = served(legacy, keys, on_notify=recorder)
    with receiver.serve():
        envelope = notify_envelope(legacy)
        first = post(receiver.callback_url("notify"), envelope)
        again = post(receiver.callback_url("notify"), envelope)  # the registry retries
    assert first.status_code == 200 and first.json()["message"]["ack_status"] == "ACK"
    assert again.status_code == 200 and again.content == first.content
    [notification] = recorder.got
    assert isinstance(notification, Notification)
    assert notification.message_id == envelope["header"]["message_id"]
    assert notification.records[0]["name"] == "x"


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("not json", 400, "err.request.bad"),
        ("no header", 400, "err.request.bad"),
        ("unsigned", 400, "err.signature.missing"),
        ("changed after signing", 400, "err.signature.invalid"),
        ("unknown key", 400, "err.signature.invalid"),
        ("junk signature", 400, "err.signature.invalid"),
        ("unknown sender", 400, "err.sender_id.invalid"),
        ("wrong action", 400, "err.request.bad"),
        ("no timezone", 400, "err.request.bad"),
        ("encrypted to someone else", 400, "err.encryption.invalid"),
        ("nobody waits", 404, "err.request.not_found"),
    ],
)
def test_refusals(legacy, keys, case, status, code):
    recorder = Recorder()
    receiver = served(legacy, keys, on_notify=recorder)
    path = "notify"
    body: Any = notify_envelope(legacy)
    if case == "not json":
        body = b"{not json"
    elif case == "no header":
        body = {"message": {}}
    elif case == "unsigned":
        body = {k: v for k, v in body.items() if k != "signature"}
    elif case == "changed after signing":
        body["message"]["transaction_id"] = "changed"
    elif case == "unknown key":
        stranger = generate_key("sig", "ES256")
        body["signature"] = sign(body["header"], body["message"], stranger)
    elif case == "junk signature":
        body["signature"] = "not a signature"
    elif case == "unknown sender":
        body = legacy.signed({**body["header"], "sender_id": "someone.else"}, body["message"])
    elif case == "wrong action":
        path = "on-search"
    elif case == "no timezone":
        body = legacy.signed(
            {**body["header"], "message_ts": "2026-01-01T10:00:00"}, body["message"]
        )
    elif case == "encrypted to someone else":
        other = generate_key("enc", "ECDH-ES+A256KW")
        sealed = encrypt_message(body["message"], other)
        body = legacy.signed({**body["header"], "is_msg_encrypted": True}, sealed)
    elif case == "nobody waits":
        path = "on-search"
        message = {"transaction_id": "t-nobody", "correlation_id": "c", "search_response": []}
        body = legacy.signed(legacy.callback_header("on-search"), message)
    with receiver.serve():
        response = post(receiver.callback_url(path), body)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert "\n" not in response.json()["message"]["error"]["message"]
    assert recorder.got == []


def test_a_failing_handler_gets_the_callback_again(legacy, keys):
    recorder = Recorder(fail=1)
    receiver = served(legacy, keys, on_notify=recorder)
    with receiver.serve():
        envelope = notify_envelope(legacy)
        failed = post(receiver.callback_url("notify"), envelope)
        retried = post(receiver.callback_url("notify"), envelope)
    assert failed.status_code == 503 and error_code(failed) == "err.service.unavailable"
    assert retried.status_code == 200 and len(recorder.got) == 1


def test_async_handlers_and_unsolicited_results(legacy, keys):
    got: list[Any] = []

    async def on_search(batch: BatchResult) -> None:
        await asyncio.sleep(0)
        got.append(batch)

    def on_status(status: TxnStatusResult) -> None:
        got.append(status)

    receiver = served(legacy, keys, on_search=on_search, on_status=on_status)
    search = {
        "transaction_id": "t-earlier",
        "correlation_id": "c-1",
        "search_response": [{"reference_id": "r", "timestamp": now_ts(), "status": "succ"}],
    }
    status = {
        "transaction_id": "t-status",
        "correlation_id": "c-2",
        "txnstatus_response": {
            "txn_type": "search",
            "txn_status": {"transaction_id": "t-earlier", "search_response": []},
        },
    }
    with receiver.serve():
        one = post(
            receiver.callback_url("on-search"),
            legacy.signed(legacy.callback_header("on-search"), search),
        )
        two = post(
            receiver.callback_url("txn/on-status"),
            legacy.signed(legacy.callback_header("txn-on-status"), status),
        )
    assert one.status_code == 200 and two.status_code == 200
    assert isinstance(got[0], BatchResult) and got[0].transaction_id == "t-earlier"
    assert isinstance(got[1], TxnStatusResult) and got[1].about_transaction_id == "t-earlier"


def test_token_endpoint_and_token_check(legacy, keys):
    receiver = served(legacy, keys, on_notify=Recorder(), auth=ReceiverAuth("registry", "s3cret"))
    with receiver.serve():
        token_url = f"{receiver.url}/oauth2/client/token"
        wrong = httpx.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": "registry",
                "client_secret": "no",
            },
        )
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        grant = httpx.post(token_url, data={"grant_type": "password"})
        assert grant.status_code == 400
        basic = httpx.post(
            token_url, data={"grant_type": "client_credentials"}, auth=("registry", "s3cret")
        )
        assert basic.status_code == 200
        token = httpx.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": "registry",
                "client_secret": "s3cret",
            },
        ).json()["access_token"]
        url = receiver.callback_url("notify")
        assert error_code(post(url, notify_envelope(legacy))) == "err.request.unauthorized"
        bad = post(url, notify_envelope(legacy), authorization="Bearer nope")
        assert bad.status_code == 401
        good = post(url, notify_envelope(legacy), authorization=f"Bearer {token}")
        assert good.status_code == 200, good.text


def test_pending_times_out_readably(legacy, keys):
    legacy.set_mode("no-callback", 1)
    receiver = CallbackReceiver()
    with receiver.serve(), RegistryClient(legacy.settings(keys), receiver=receiver) as client:
        pending = client.search_async(Q.id("UIN", "1"))
        with pytest.raises(CallbackTimeout) as caught:
            pending.result(0.2)
        assert pending.transaction_id in str(caught.value) and "txn_status" in str(caught.value)
        pending.cancel()
        assert len(receiver.waiters) == 0


def test_nack(legacy, keys):
    legacy.set_mode("nack", 1)
    receiver = CallbackReceiver()
    with receiver.serve(), RegistryClient(legacy.settings(keys), receiver=receiver) as client:
        with pytest.raises(ErrAckError) as caught:
            client.search_async(Q.id("UIN", "1"))
    assert caught.value.ack_status == "NACK" and len(receiver.waiters) == 0


def test_async_calls_need_somewhere_to_answer(legacy, keys):
    with RegistryClient(legacy.settings(keys)) as client:
        with pytest.raises(ConfigurationError, match="callback receiver"):
            client.search_async(Q.id("UIN", "1"))
    with RegistryClient(legacy.settings(keys, callback_url="http://127.0.0.1:9/cb")) as client:
        legacy.set_mode("no-callback", 1)
        pending = client.search_async(Q.id("UIN", "1"))  # acknowledged; answered elsewhere
        assert (
            legacy.received[-1]["header"]["sender_uri"]
            == "http://127.0.0.1:9/cb/registry/on-search"
        )
        with pytest.raises(DCIClientError, match="no callback receiver in this process"):
            pending.result(1)
    with pytest.raises(DCIClientError, match="no URL yet"):
        CallbackReceiver().callback_url("on-search")


def test_served_again_on_another_port(legacy, keys):
    receiver = served(legacy, keys, on_notify=Recorder())
    with receiver.serve():
        pass
    with receiver.serve() as running:  # the receiver's URL is its new address
        assert receiver.url == running.url == f"http://127.0.0.1:{running.sock.getsockname()[1]}"
        assert post(receiver.callback_url("notify"), notify_envelope(legacy)).status_code == 200
    assert CallbackReceiver(public_url="https://spmis.example.org/dci/").callback_url("notify") == (
        "https://spmis.example.org/dci/registry/notify"
    )


def test_a_callback_is_verified_with_the_keys_of_the_registry_asked(legacy, keys):
    """Two registries answering under the same id, with different keys: each callback is
    verified with the keys of the registry its request went to."""
    twin = LegacyRegistry(public(keys)).start()
    try:
        receiver = CallbackReceiver()
        with receiver.serve():
            one = RegistryClient(legacy.settings(keys), receiver=receiver)
            two = RegistryClient(twin.settings(keys), receiver=receiver)
            with one, two:
                first, second = (
                    one.search_async(Q.id("UIN", "1")),
                    two.search_async(Q.id("UIN", "2")),
                )
                assert first.result(20).first.uin == "1"  # type: ignore[union-attr]
                assert second.result(20).first.uin == "2"  # type: ignore[union-attr]
    finally:
        twin.stop()
