"""`dcihub.client` end to end against a real dcihub node on loopback (SQLite, and PostgreSQL
when DCIHUB_TEST_POSTGRES_URL is set): every operation, sync and async, with encryption, the
special calls every profile declares, and the error paths a real registry causes."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time

import httpx
import pytest

from client_support import settings_for
from dcihub.client import (
    AsyncRegistryClient,
    AuthenticationError,
    CallbackReceiver,
    ClientSettings,
    DCIClientError,
    ErrAckError,
    Notification,
    Q,
    ReceiverAuth,
    RegistryClient,
    RejectedError,
    SignatureVerificationError,
)
from dcihub.security.keys import KeyManager, generate_key
from dcihub.standard.profiles import PROFILES
from dcihub.store import Store
from expect import beneficiary, remove_ibr_records
from support import free_port, live_server, provision, store_url_for
from support import test_settings as node_settings

CALLBACK_ID = "dcihub-node"
CALLBACK_SECRET = "callback-secret-for-the-registry"


@pytest.fixture(scope="module")
def own_url(backend, country, tmp_path_factory):
    """A store of its own holding the test country: the nodes of other tests share the
    session's store, and their workers would deliver this node's callbacks signed with their
    own keys."""
    from dcihub.population.load import load_country

    with store_url_for(backend, tmp_path_factory.mktemp("client-store")) as url:
        store = Store(url)
        store.upgrade()
        load_country(store, country)
        store.dispose()
        yield url


@pytest.fixture(scope="module")
def node(own_url, tmp_path_factory):
    """A node with the test partner and three more: one signing with Ed25519 HTTP
    signatures, one answered in compact JWS, one whose callbacks carry a bearer token from the
    programme's own token endpoint (at `node.token_port`)."""
    settings = node_settings(own_url, data_dir=tmp_path_factory.mktemp("client-node"))
    token_port = free_port()
    extra = {
        "ed": provision(
            settings,
            "spmis.client.ed",
            "client-ed",
            signing_alg="EdDSA",
            signature_profile="http-sig-ed25519",
        ),
        "compact": provision(
            settings, "spmis.client.compact", "client-compact", signature_profile="jws-compact"
        ),
        "tokens": provision(
            settings,
            "spmis.client.tokens",
            "client-tokens",
            token_url=f"http://127.0.0.1:{token_port}/oauth2/client/token",
            callback_client_id=CALLBACK_ID,
            callback_client_secret=CALLBACK_SECRET,
        ),
    }
    store = Store(own_url)
    running = live_server(settings, store)
    running.extra = extra  # type: ignore[attr-defined]
    running.token_port = token_port  # type: ignore[attr-defined]
    yield running
    running.stop()
    store.dispose()


@pytest.fixture(scope="module")
def receiver(node):
    """One receiver per node (the SQLite and the PostgreSQL node give their registries the
    same ids, with different keys)."""
    running = CallbackReceiver()
    with running.serve():
        yield running


@pytest.fixture()
def crvs(node, receiver):
    with RegistryClient(settings_for(node, node.partner), receiver=receiver) as client:
        yield client


def samples(country, registry, kind="identifiers"):
    return country.samples()[registry][kind]


# ---------------------------------------------------------------------------------------------
# Search


def test_search_by_uin(crvs, country):
    uin = samples(country, "crvs")[0]["value"]
    result = crvs.search(Q.id("UIN", uin))
    assert result.ok and result.total_count == 1
    person = result.first
    assert person is not None and person.uin == uin
    expected = next(
        r for r in country.crvs if any(i["identifier_value"] == uin for i in r["identifier"])
    )
    assert person.raw == expected
    assert person.name is not None and person.name.surname == expected["name"]["surname"]
    assert person.birth_date == expected["birth_date"] and person.record_type == "Person"


def test_deceased_person(crvs, country):
    uin = samples(country, "crvs", "deceased")[0]["value"]
    person = crvs.search(Q.id("UIN", uin)).first
    assert person is not None and person.is_deceased and person.death_date


def test_predicate_query_sort_and_pagination(crvs, country):
    born = "1960-01-01"
    query = (Q.attr("birth_date") >= born) & (Q.attr("sex") == "female")
    expected = sorted(
        (r for r in country.crvs if r["birth_date"] >= born and r["sex"] == "female"),
        key=lambda r: r["birth_date"],
    )
    page = crvs.search(query, page_size=7, page_number=2, sort="birth_date")
    assert page.total_count == len(expected) and page.page == 2 and len(page) == 7
    assert [r.birth_date for r in page] == [r["birth_date"] for r in expected[7:14]]
    newest = crvs.search(query, page_size=1, sort="-birth_date").first
    assert newest is not None and newest.birth_date == expected[-1]["birth_date"]


def test_expression_fallback(crvs, country):
    query = (Q.attr("marital_status") == "W") | ((Q.attr("age") < 18) & (Q.attr("sex") == "male"))
    assert query.criteria()["query_type"] == "expression"
    found = {r.uin for r in crvs.iter_records(query, page_size=200)}
    assert found and all(uin for uin in found)
    widowed = crvs.search(Q.attr("marital_status") == "W", page_size=1).total_count
    assert widowed is not None and len(found) > widowed


def test_iter_records_walks_every_page(crvs, country):
    query = Q.attr("birth_date") < "1950-01-01"
    expected = {
        i["identifier_value"]
        for r in country.crvs
        if r["birth_date"] < "1950-01-01"
        for i in r["identifier"]
        if i["identifier_type"] == "UIN"
    }
    got = [r.uin for r in crvs.iter_records(query, page_size=25)]
    assert len(expected) > 25 and len(got) == len(set(got)) and set(got) == expected


def test_batch(crvs, country):
    uins = [s["value"] for s in samples(country, "crvs", "widowed")[:3]]
    queries = {f"ref-{n}": Q.id("UIN", u) for n, u in enumerate(uins)}
    queries["bad"] = Q.attr("favourite_colour") == "blue"
    batch = crvs.search_batch(queries)
    assert list(batch.results) == [*(f"ref-{n}" for n in range(3)), "bad"]
    for n, uin in enumerate(uins):
        assert batch[f"ref-{n}"].first.uin == uin  # type: ignore[union-attr]
    [bad] = batch.rejected
    assert bad.reference_id == "bad" and bad.reason_code == "rjct.search_criteria.invalid"
    assert "favourite_colour" in (bad.reason_message or "")


def test_rejected_item_raises(crvs):
    with pytest.raises(RejectedError) as caught:
        crvs.search(Q.attr("favourite_colour") == "blue")
    error = caught.value
    assert error.reason_code == "rjct.search_criteria.invalid" and error.reference_id
    assert error.transaction_id and error.message_id and "\n" not in str(error)


def test_consent_is_sent(crvs, country):
    uin = samples(country, "crvs")[0]["value"]
    result = crvs.search(Q.id("UIN", uin), consent="ELIG")
    assert result.first is not None  # this node does not require consent; it reads it


def test_err_ack_from_the_registry(node, country):
    settings = settings_for(node, node.partner, receiver_id="someone.else")
    with RegistryClient(settings) as client:
        with pytest.raises(ErrAckError) as caught:
            client.search(Q.id("UIN", samples(country, "crvs")[0]["value"]))
    assert caught.value.code == "err.receiver_id.invalid" and caught.value.http_status == 400


def test_async_search(crvs, country, receiver):
    brn = samples(country, "crvs")[1]
    assert brn["type"] == "BRN"
    pending = crvs.search_async(Q.id("BRN", brn["value"]))
    assert pending.ack.ack_status == "ACK" and pending.correlation_id
    result = pending.result(30)
    assert result.first is not None and result.first.identifier("BRN") == brn["value"]
    assert result.correlation_id == pending.correlation_id
    assert len(receiver.waiters) == 0


def test_async_search_rejection_arrives_as_the_error(crvs):
    pending = crvs.search_async(Q.attr("favourite_colour") == "blue")
    with pytest.raises(RejectedError) as caught:
        pending.result(30)
    assert caught.value.reason_code == "rjct.search_criteria.invalid"
    assert caught.value.transaction_id == pending.transaction_id


# ---------------------------------------------------------------------------------------------
# Transaction status


def test_txn_status_sync_and_async(crvs, country):
    uin = samples(country, "crvs")[0]["value"]
    batch = crvs.search_batch({"a": Q.id("UIN", uin), "b": Q.attr("nope") == "x"})
    by_transaction = crvs.txn_status(batch.transaction_id)
    assert by_transaction.known and by_transaction.statuses == {"a": "succ", "b": "rjct"}
    assert by_transaction.results[0].first.uin == uin  # type: ignore[union-attr]
    by_references = crvs.txn_status(reference_ids=["a", "b"])
    assert by_references.known
    by_correlation = crvs.txn_status(correlation_id=batch.correlation_id)
    assert by_correlation.statuses == {"a": "succ", "b": "rjct"}
    unknown = crvs.txn_status("no-such-transaction")
    assert not unknown.known
    later = crvs.txn_status_async(batch.transaction_id).result(30)
    assert later.known and later.statuses == {"a": "succ", "b": "rjct"}
    with pytest.raises(DCIClientError, match="exactly one"):
        crvs.txn_status()


def test_async_client(node, country):
    uin = samples(country, "crvs", "widowed")[0]["value"]

    async def main() -> None:
        receiver = CallbackReceiver()
        await receiver.start()
        try:
            settings = settings_for(node, node.partner)
            async with AsyncRegistryClient(settings, receiver=receiver) as client:
                result = await client.search(Q.id("UIN", uin))
                assert result.first is not None and result.first.uin == uin
                later = await (await client.search_async(Q.id("UIN", uin))).wait(30)
                assert later.first is not None and later.first.uin == uin
                records = [r async for r in client.iter_records(Q.attr("age") >= 90, page_size=5)]
                assert len(records) == (await client.search(Q.attr("age") >= 90)).total_count
                status = await client.txn_status(later.transaction_id)
                assert status.known
                status = await (await client.txn_status_async(later.transaction_id)).wait(30)
                assert status.known
                encrypted = AsyncRegistryClient(settings.merged(encrypt=True), receiver=receiver)
                async with encrypted:
                    assert (await encrypted.search(Q.id("UIN", uin))).first is not None
                    far = await (await encrypted.search_async(Q.id("UIN", uin))).wait(30)
                    assert far.first is not None
        finally:
            await receiver.stop()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# Encryption and the other signature profiles


def test_encrypted_requests_and_replies(node, country, receiver):
    uin = samples(country, "crvs")[0]["value"]
    settings = settings_for(node, node.partner, encrypt=True)
    with RegistryClient(settings, receiver=receiver) as client:
        assert client.search(Q.id("UIN", uin)).first.uin == uin  # type: ignore[union-attr]
        assert client.search_async(Q.id("UIN", uin)).result(30).first is not None
        assert client.txn_status_async(correlation_id="unknown").result(30).known is False


def test_encrypted_reply_is_really_encrypted(node, country):
    """What the client decrypted was an EncryptedMessage on the wire."""
    uin = samples(country, "crvs")[0]["value"]
    seen: list[bytes] = []

    def keep(response: httpx.Response) -> None:
        response.read()
        seen.append(response.content)

    http = httpx.Client(timeout=30, event_hooks={"response": [keep]})
    settings = settings_for(node, node.partner, encrypt=True)
    with RegistryClient(settings, http=http) as client:
        client.search(Q.id("UIN", uin))
    reply = json.loads(seen[-1])
    assert reply["header"]["is_msg_encrypted"] is True and "ciphertext" in reply["message"]
    http.close()


@pytest.mark.parametrize("name", ["ed", "compact"])
def test_other_signature_profiles(node, country, name):
    """Requests signed with Ed25519 HTTP signatures; replies in that profile or compact JWS."""
    partner = node.extra[name]
    profile = "http-sig-ed25519" if name == "ed" else "jws-compact"
    uin = samples(country, "crvs")[0]["value"]
    with RegistryClient(settings_for(node, partner, signature_profile=profile)) as client:
        assert client.search(Q.id("UIN", uin)).first.uin == uin  # type: ignore[union-attr]
        assert client.txn_status("unknown").known is False


def test_reply_signed_with_a_key_the_registry_does_not_publish(node, country):
    stranger = generate_key("sig", "ES256").as_dict(private=False)
    settings = settings_for(node, node.partner, jwks_url=None, registry_jwks={"keys": [stranger]})
    with RegistryClient(settings) as client:
        with pytest.raises(SignatureVerificationError) as caught:
            client.search(Q.id("UIN", samples(country, "crvs")[0]["value"]))
    assert "not in the sender's registered JWKS" in str(caught.value)


def test_rotated_registry_keys_are_fetched_again(own_url, tmp_path, country):
    settings = node_settings(own_url, data_dir=tmp_path)
    store = Store(own_url)
    fresh = live_server(settings, store)
    try:
        uin = samples(country, "crvs")[0]["value"]
        with RegistryClient(settings_for(fresh, fresh.partner, jwks_refetch_seconds=0)) as client:
            assert client.search(Q.id("UIN", uin)).first is not None
            options = settings.security
            KeyManager(options.path(options.key_dir)).load_or_create().rotate()
            deadline = time.monotonic() + 20
            while True:  # the node picks up the rotation within seconds
                signed = client.search(Q.id("UIN", uin))
                kids = {k.kid for k in client.registry_keys.keys()}
                if len(kids) > 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert signed.first is not None and len(kids) > 3  # the new keys were fetched
    finally:
        fresh.stop()
        store.dispose()


# ---------------------------------------------------------------------------------------------
# Tokens


def test_401_gets_one_fresh_token(crvs, country):
    uin = samples(country, "crvs")[0]["value"]
    crvs.search(Q.id("UIN", uin))
    fetched = crvs.tokens.fetches
    crvs.tokens.set("a-token-this-registry-never-issued", expires_in=3600)
    assert crvs.search(Q.id("UIN", uin)).first is not None
    assert crvs.tokens.fetches == fetched + 1


def test_wrong_client_secret(node, country):
    settings = settings_for(node, node.partner, client_secret="not-the-secret")
    with RegistryClient(settings) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.search(Q.id("UIN", "1"))
    assert caught.value.http_status == 401 and "refused client" in str(caught.value)
    assert caught.value.transaction_id  # the message it was for


def test_fixed_bearer_token(node, country):
    partner = node.partner
    token = httpx.post(
        f"{node.base_url}/oauth2/client/token",
        data={
            "grant_type": "client_credentials",
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
        },
    ).json()["access_token"]
    settings = settings_for(node, partner, token=token, token_url=None, client_secret=None)
    with RegistryClient(settings) as client:
        assert client.search(Q.id("UIN", samples(country, "crvs")[0]["value"])).first is not None
        assert client.tokens.fetches == 0


def test_fixed_token_refused(node):
    settings = settings_for(node, node.partner, token="not-a-token")
    with RegistryClient(settings) as client:
        with pytest.raises(ErrAckError) as caught:
            client.search(Q.id("UIN", "1"))
    assert caught.value.code == "err.request.unauthorized" and caught.value.http_status == 401


def test_callbacks_with_the_programmes_own_tokens(node, country):
    """The node gets a token from the receiver's token endpoint for each callback; a
    receiver with `auth` refuses callbacks without one."""
    partner = node.extra["tokens"]
    receiver = CallbackReceiver(auth=ReceiverAuth(CALLBACK_ID, CALLBACK_SECRET))
    with receiver.serve("127.0.0.1", node.token_port):
        with RegistryClient(settings_for(node, partner), receiver=receiver) as client:
            uin = samples(country, "crvs")[0]["value"]
            result = client.search_async(Q.id("UIN", uin)).result(30)
            assert result.first is not None and result.first.uin == uin
        refused = httpx.post(f"{receiver.url}/registry/on-search", json={"header": {}})
        assert refused.status_code == 401
        assert refused.json()["message"]["error"]["code"] == "err.request.unauthorized"


# ---------------------------------------------------------------------------------------------
# Registry-specific calls


def test_dr_calls(node, country):
    disabled = samples(country, "dr", "disabled")[0]["value"]
    not_disabled = samples(country, "dr", "not_disabled")[0]["value"]
    with RegistryClient(settings_for(node, node.partner, "dr")) as dr:
        yes = dr.disabled(disabled)
        assert yes.disabled and yes.status == "yes" and yes.reason
        assert not dr.disabled(not_disabled)
        assert dr.disabled(Q.id("UIN", disabled)).disabled
        details = dr.disability_details(disabled)
        assert details.first is not None and details.first["disability_details"]
        support = dr.disability_support(disabled)
        assert support.first is not None and "disability_support" in support.first.raw


def test_ibr_calls(node, country):
    enrolled = samples(country, "ibr", "enrolled")[0]
    programme = enrolled["programme"]  # a programme the IBR knows; the person is new
    uin = f"C{time.time_ns()}"
    with RegistryClient(settings_for(node, node.partner, "ibr")) as ibr:
        assert ibr.enrolled(enrolled["value"]).enrolled
        assert ibr.enrolled(enrolled["value"], enrolled["programme"]).enrolled
        assert not ibr.enrolled(enrolled["value"], "NO-SUCH-PROGRAMME")
        try:
            updated = ibr.enrollment_updates(
                [beneficiary(uin, programme, "1"), {"member": "not a beneficiary"}]
            )
            assert [i.status for i in updated.items] == ["succ", "rjct"]
            assert updated.rejected[0].reason_message
            assert ibr.enrolled(uin, programme).enrolled
            receipt = ibr.txn_status(updated.transaction_id, txn_type="receipt")
            assert [b.uin for b in receipt.beneficiaries] == [uin]
        finally:
            remove_ibr_records(node.store, [f"ibr:{programme}:{uin}"])


@pytest.mark.parametrize(
    "endpoint",
    [(p.name, e) for p in PROFILES.values() for e in p.special_endpoints],
    ids=lambda pe: f"{pe[0]}:{pe[1].path}",
)
def test_every_declared_special_call(node, country, endpoint):
    """`call()` sends any special call a profile declares, with its example body."""
    registry, special = endpoint
    uin = samples(country, registry)[0]["value"]
    example = json.loads(json.dumps(special.example).replace("<UIN>", uin))
    example.pop("transaction_id", None)
    if special.path == "sync/enrollment/updates":
        example["enrolled_updates"]["beneficiaries"][0]["programme_identifier"] = [
            {"programme_identifier": "OAP"}  # a programme the IBR knows
        ]
    with RegistryClient(settings_for(node, node.partner, registry)) as client:
        assert special.path in [e.path for e in client.special_endpoints()]
        try:
            result = client.call(special.path, example)
        finally:
            if special.path == "sync/enrollment/updates":
                programme = example["enrolled_updates"]["beneficiaries"][0]
                key = f"ibr:{programme['programme_identifier'][0]['programme_identifier']}:{uin}"
                remove_ibr_records(node.store, [key])
    assert result.header["action"] == special.response_action
    assert result.items and result.items[0]["status"] == "succ"
    assert result.transaction_id and result.correlation_id


def test_an_undeclared_call_is_refused_before_sending(crvs):
    with pytest.raises(DCIClientError, match="declares no call"):
        crvs.call("sync/disabled", {"disabled_criteria": {}})


# ---------------------------------------------------------------------------------------------
# Subscriptions


def test_subscribe_notify_unsubscribe_against_dcihub(node, country):
    """The client subscribes to one person's death, hears of it through `on_notify` when the
    registry records it, and ends the subscription."""
    import orjson
    from sqlalchemy import select

    notified: list[Notification] = []
    arrived = threading.Event()
    receiver = CallbackReceiver(on_notify=lambda n: (notified.append(n), arrived.set()))
    main = node.store.records.tables("crvs", "Person").main
    with node.store.read() as conn:
        text = conn.execute(
            select(main.c.record).where(main.c.a_death_date.is_(None)).order_by(main.c.pk.desc())
        ).first()[0]
    person = orjson.loads(text)
    uin = next(i["identifier_value"] for i in person["identifier"] if i["identifier_type"] == "UIN")
    settings = settings_for(node, node.partner)
    with receiver.serve(), RegistryClient(settings, receiver=receiver) as crvs:
        subscribed = crvs.subscribe(Q.id("UIN", uin), event_type="Death").result(30)
        [code] = subscribed.codes
        person["death_date"] = "2026-05-05"
        with node.store.begin() as conn:
            node.store.records.upsert(conn, "crvs", person)
        assert arrived.wait(30), "no notification"
        [notification] = notified
        assert notification.subscription_codes == [code]
        [record] = notification.records
        assert record.uin == uin and record.is_deceased
        ended = crvs.unsubscribe([code]).result(30)
        assert ended.ok and ended.subscription_status == {code: "unsubscribe"}


# ---------------------------------------------------------------------------------------------
# From the demo


def test_from_demo(node, tmp_path, country):
    """`from_demo` reads what `dcihub demo` writes (demo.json + the partner's key file)."""
    partner = node.partner
    (tmp_path / "partner.jwk.json").write_text(json.dumps(partner.private_jwks))
    info = {
        "base_url": node.base_url,
        "registries": {r: f"{node.base_url}/{r}" for r in node.settings.registries},
        "registry_ids": {r: node.settings.registry_id(r) for r in node.settings.registries},
        "token_url": f"{node.base_url}/oauth2/client/token",
        "client_id": partner.client_id,
        "client_secret": partner.client_secret,
        "sender_id": partner.sender_id,
        "partner_jwk": "partner.jwk.json",
        "jwks_url": f"{node.base_url}/.well-known/jwks.json",
    }
    (tmp_path / "demo.json").write_text(json.dumps(info))
    with RegistryClient.from_demo("crvs", demo_json_path=tmp_path / "demo.json") as crvs:
        assert crvs.settings.receiver_id == node.settings.registry_id("crvs")
        assert crvs.search(Q.id("UIN", samples(country, "crvs")[0]["value"])).first is not None
    with pytest.raises(DCIClientError, match="no registry 'nope'"):
        ClientSettings.from_demo("nope", tmp_path / "demo.json")


def test_mounted_receiver(node, country):
    """The receiver mounted in a programme's own app, reached through that app's URL."""
    import uvicorn
    from fastapi import FastAPI

    receiver = CallbackReceiver()
    app = FastAPI()
    app.mount("/dci", receiver.app)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        settings = settings_for(node, node.partner, callback_url=f"http://127.0.0.1:{port}/dci")
        with RegistryClient(settings, receiver=receiver) as client:
            uin = samples(country, "crvs")[0]["value"]
            result = client.search_async(Q.id("UIN", uin)).result(30)
            assert result.first is not None
        keys = httpx.get(f"http://127.0.0.1:{port}/dci/.well-known/jwks.json").json()["keys"]
        assert keys and all("d" not in k for k in keys)  # public keys only
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_settings_are_not_changed_by_a_client(node):
    settings = settings_for(node, node.partner)
    before = copy.deepcopy(settings.model_dump())
    RegistryClient(settings, timeout=5).close()
    assert settings.model_dump() == before
