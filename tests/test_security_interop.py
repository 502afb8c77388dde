"""Security happy paths and interoperability, on SQLite and PostgreSQL.

Everything a partner sees of dcihub is checked with an independent JOSE implementation
(jwcrypto; dcihub itself uses joserfc and `cryptography`) and the `rfc8785` package directly:

* requests signed with each profile are accepted, and each reply is signed with the partner's
  profile: detached JWS over the RFC 8785 bytes of {header, message}, compact JWS over the JSON
  of {header, message} (OpenCRVS style), the Ed25519 HTTP-signature string (OpenSPP2 style);
* requests signed and encrypted by jwcrypto (RS256/ES256; RSA-OAEP-256 and ECDH-ES+A256KW with
  A256GCM) are accepted; encrypted replies and callbacks decrypt with jwcrypto and their
  signature covers the encrypted message as sent (encrypt-then-sign);
* callbacks carry a bearer token from the partner's own token endpoint;
* JWKS kids are RFC 7638 thumbprints; key rotation keeps the old keys published and usable;
* the audit chain verifies after a series of exchanges and names every edit, deletion and
  insertion made directly in the database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import rfc8785
from jwcrypto.common import json_encode
from jwcrypto.jwe import JWE
from jwcrypto.jwk import JWK, JWKSet
from jwcrypto.jws import JWS
from sqlalchemy import delete, func, insert, select, update

import support
from dcihub.config import Settings
from dcihub.security.keys import KeyManager
from dcihub.store import Store
from dcihub.store.audit import chain_hash, entry_bytes
from dcihub.store.outbox import DONE
from test_security_e2e import (
    Node,
    PartnerSide,
    asynchronous,
    register_partner,
    second_node,
    start_node,
    stop_node,
    sync,
    wait_audit_out,
)

# ---------------------------------------------------------------------------------------------
# Partners whose keys jwcrypto made


def jwcrypto_key(**params: Any) -> JWK:
    """A new private key with kid = its RFC 7638 thumbprint (jwcrypto's own computation)."""
    key = JWK.generate(**params)
    return JWK(**{**json.loads(key.export_private()), "kid": key.thumbprint()})


def jose_partners(settings: Settings, side: PartnerSide) -> dict[str, support.TestPartner]:
    """`jose-rsa`: RS256 signatures, RSA-OAEP-256 encryption, replies encrypted only to an
    encrypted request. `jose-ec`: ES256, ECDH-ES+A256KW, every reply and callback encrypted,
    callbacks with a bearer token from the partner's token endpoint."""
    rsa = [
        jwcrypto_key(kty="RSA", size=2048, use="sig", alg="RS256"),
        jwcrypto_key(kty="RSA", size=2048, use="enc", alg="RSA-OAEP-256"),
    ]
    ec = [
        jwcrypto_key(kty="EC", crv="P-256", use="sig", alg="ES256"),
        jwcrypto_key(kty="EC", crv="P-256", use="enc", alg="ECDH-ES+A256KW"),
    ]

    def private(keys: list[JWK]) -> dict[str, Any]:
        return {"keys": [json.loads(k.export_private()) for k in keys]}

    sig_only = [jwcrypto_key(kty="EC", crv="P-256", use="sig", alg="ES256")]
    return {
        "no-enc": register_partner(
            settings, "no-enc.test", "no-enc-client", private(sig_only), encrypt_replies=True
        ),
        "jose-rsa": register_partner(settings, "jose-rsa.test", "jose-rsa-client", private(rsa)),
        "jose-ec": register_partner(
            settings,
            "jose-ec.test",
            "jose-ec-client",
            private(ec),
            encrypt_replies=True,
            token_url=side.token_url,
            callback_client_id=PartnerSide.CLIENT_ID,
            callback_client_secret=side.client_secret,
        ),
    }


PARTNERS: dict[str, dict[str, Any]] = {
    "compact": {"signature_profile": "jws-compact"},
    "ed": {"signing_alg": "EdDSA", "signature_profile": "http-sig-ed25519"},
}


@pytest.fixture(scope="module")
def node(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with start_node(
        backend, tmp_path_factory.mktemp("security-interop"), PARTNERS, custom=jose_partners
    ) as running:
        yield running


# ---------------------------------------------------------------------------------------------
# Independent signing, verification, encryption and decryption


def jwk_of(partner: support.TestPartner, use: str) -> JWK:
    return JWK(**next(k for k in partner.private_jwks["keys"] if k["use"] == use))


def document(header: dict[str, Any], message: Any) -> dict[str, Any]:
    return {"header": header} if message is None else {"header": header, "message": message}


def jose_sign(envelope: dict[str, Any], key: JWK, profile: str) -> dict[str, Any]:
    """Sign with jwcrypto: detached over RFC 8785 bytes, or compact over plain JSON."""
    doc = document(envelope["header"], envelope.get("message"))
    payload = rfc8785.dumps(doc) if profile == "jws-detached" else json.dumps(doc).encode()
    token = JWS(payload)
    token.add_signature(key, None, json_encode({"alg": key["alg"], "kid": key["kid"]}))
    compact = token.serialize(compact=True)
    if profile == "jws-detached":
        head, _, signature = compact.split(".")
        compact = f"{head}..{signature}"
    return {"signature": compact, **envelope}


def jose_encrypt(message: Any, recipient: dict[str, Any]) -> dict[str, Any]:
    """The spec's EncryptedMessage (flattened JWE, per-recipient header only), by jwcrypto."""
    token = JWE(json.dumps(message).encode())
    token.add_recipient(
        JWK(**recipient),
        header=json_encode({"alg": recipient["alg"], "enc": "A256GCM", "kid": recipient["kid"]}),
    )
    encrypted = json.loads(token.serialize(compact=False))
    assert set(encrypted) == {"header", "encrypted_key", "iv", "ciphertext", "tag"}
    return encrypted


def jose_decrypt(encrypted: dict[str, Any], key: JWK) -> Any:
    token = JWE()
    token.deserialize(json.dumps(encrypted), key=key)
    return json.loads(token.payload)


def keyset(n: Node) -> JWKSet:
    return JWKSet.from_json(n.http.get(f"{n.base_url}/.well-known/jwks.json").text)


def b64url_json(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def verify_reply(n: Node, body: dict[str, Any], profile: str) -> str:
    """Verify the signature of a reply or callback against the node's JWKS without dcihub's
    code; returns the kid that signed it."""
    signature, header, message = body["signature"], body["header"], body.get("message")
    keys = keyset(n)
    doc = document(header, message)
    if profile == "http-sig-ed25519":
        params = dict(re.findall(r'(\w+)="([^"]*)"', signature))
        sender, kid, algorithm = params["kidId"].split("|")
        assert sender == header["sender_id"] and algorithm == "ed25519"
        assert params["headers"] == "(created) (expires) digest"
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        digest = base64.b64encode(hashlib.sha256(canonical).digest()).decode()
        signed = f"(created): {params['created']}\n(expires): {params['expires']}\ndigest: {digest}"
        public = keys.get_key(kid).get_op_key("verify")
        public.verify(base64.b64decode(params["signature"]), signed.encode())  # raises if bad
        assert int(params["created"]) <= time.time() + 5 < int(params["expires"])
        return kid
    head, payload, _ = signature.split(".")
    protected = b64url_json(head)
    assert set(protected) == {"alg", "kid"}
    token = JWS()
    token.deserialize(signature)
    key = keys.get_key(protected["kid"])
    assert key is not None, f"kid {protected['kid']} is not in the node's JWKS"
    if profile == "jws-detached":
        assert payload == ""
        token.verify(key, detached_payload=rfc8785.dumps(doc))
    else:
        assert payload != ""
        token.verify(key)
        assert json.loads(token.payload) == doc
    return protected["kid"]


def detect(signature: str) -> str:
    if 'signature="' in signature:
        return "http-sig-ed25519"
    return "jws-detached" if signature.split(".")[1] == "" else "jws-compact"


def found_records(message: dict[str, Any]) -> list[dict[str, Any]]:
    [item] = message["search_response"]
    assert item["status"] == "succ", item
    return item["data"]["reg_records"]


# ---------------------------------------------------------------------------------------------
# Signature profiles


@pytest.mark.parametrize(
    ("who", "profile"),
    [("main", "jws-detached"), ("compact", "jws-compact"), ("ed", "http-sig-ed25519")],
)
def test_each_profile_is_accepted_and_the_reply_is_signed_alike(
    node: Node, who: str, profile: str
) -> None:
    before = node.last_seq()
    response = sync(node, node.search(who), who, profile=profile)
    assert response.status_code == 200, response.text
    body = response.json()
    assert detect(body["signature"]) == profile
    kid = verify_reply(node, body, profile)
    assert kid in {k["kid"] for k in node.jwks()["keys"] if k["use"] == "sig"}
    assert found_records(body["message"])
    [row] = node.audit_since(before)
    partner_kid = jwk_of(node.partners[who], "sig")["kid"]
    assert row.entry["signature"] == f"{profile}:{partner_kid}"


@pytest.mark.parametrize("who", ["jose-rsa", "jose-ec"])
@pytest.mark.parametrize("profile", ["jws-detached", "jws-compact"])
def test_requests_signed_by_jwcrypto_are_accepted(node: Node, who: str, profile: str) -> None:
    partner = node.partners[who]
    envelope = jose_sign(node.search(who), jwk_of(partner, "sig"), profile)
    response = node.post_bytes("crvs", "sync/search", orjson.dumps(envelope), who)
    assert response.status_code == 200, response.text
    body = response.json()
    verify_reply(node, body, "jws-detached")  # the partners' configured profile
    message = body["message"]
    if who == "jose-ec":  # encrypt_replies: encrypted, and signed as encrypted
        assert body["header"]["is_msg_encrypted"] is True
        message = jose_decrypt(message, jwk_of(partner, "enc"))
    assert found_records(message)


@pytest.mark.parametrize("spelling", ["kidId", "Signature: keyId"])
def test_http_signature_made_independently_is_accepted(node: Node, spelling: str) -> None:
    """The OpenSPP2 / spec-example string built by hand with `cryptography` (BLAKE2b-512
    digest label for the Beckn spelling)."""
    partner = node.partners["ed"]
    envelope = node.search("ed")
    key = jwk_of(partner, "sig")
    created = int(time.time())
    body = json.dumps(
        document(envelope["header"], envelope["message"]), sort_keys=True, separators=(",", ":")
    ).encode()
    if spelling == "kidId":
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    else:
        digest = "BLAKE-512=" + base64.b64encode(hashlib.blake2b(body).digest()).decode()
    signed = f"(created): {created}\n(expires): {created + 60}\ndigest: {digest}"
    raw = key.get_op_key("sign").sign(signed.encode())
    name, prefix = ("kidId", "") if spelling == "kidId" else ("keyId", "Signature: ")
    envelope["signature"] = (
        f'{prefix}namespace="dci", {name}="{partner.sender_id}|{key["kid"]}|ed25519", '
        f'algorithm="ed25519", created="{created}", expires="{created + 60}", '
        f'headers="(created) (expires) digest", '
        f'signature="{base64.b64encode(raw).decode()}"'
    )
    response = node.post_bytes("crvs", "sync/search", orjson.dumps(envelope), "ed")
    assert response.status_code == 200, response.text
    verify_reply(node, response.json(), "http-sig-ed25519")


# ---------------------------------------------------------------------------------------------
# Encryption


@pytest.mark.parametrize("alg", ["RSA-OAEP-256", "ECDH-ES+A256KW"])
def test_encrypted_request_by_jwcrypto_gets_an_encrypted_signed_reply(node: Node, alg: str) -> None:
    partner = node.partners["jose-rsa"]
    recipient = next(k for k in node.jwks()["keys"] if k["use"] == "enc" and k["alg"] == alg)
    envelope = node.search("jose-rsa", is_msg_encrypted=True)
    plain = envelope["message"]
    envelope["message"] = jose_encrypt(plain, recipient)
    envelope = jose_sign(envelope, jwk_of(partner, "sig"), "jws-detached")  # over the JWE
    before = node.last_seq()
    response = node.post_bytes("crvs", "sync/search", orjson.dumps(envelope), "jose-rsa")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["header"]["is_msg_encrypted"] is True
    reply = body["message"]
    assert set(reply) == {"header", "encrypted_key", "iv", "ciphertext", "tag"}
    enc_key = jwk_of(partner, "enc")
    assert reply["header"]["kid"] == enc_key["kid"] and reply["header"]["alg"] == "RSA-OAEP-256"
    assert reply["header"]["enc"] == "A256GCM"
    verify_reply(node, body, "jws-detached")  # encrypt-then-sign: over the JWE as sent
    decrypted = jose_decrypt(reply, enc_key)
    assert decrypted["transaction_id"] == plain["transaction_id"]
    assert found_records(decrypted)
    [row] = node.audit_since(before)
    assert row.entry["encrypted"] is True and row.entry["outcome"] == "ok"


def test_partner_asking_for_encryption_gets_it_for_a_plain_request(node: Node) -> None:
    partner = node.partners["jose-ec"]
    envelope = jose_sign(node.search("jose-ec"), jwk_of(partner, "sig"), "jws-detached")
    response = node.post_bytes("crvs", "sync/search", orjson.dumps(envelope), "jose-ec")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["header"]["is_msg_encrypted"] is True
    assert body["message"]["header"]["alg"] == "ECDH-ES+A256KW"
    assert "epk" in body["message"]["header"]
    verify_reply(node, body, "jws-detached")
    assert found_records(jose_decrypt(body["message"], jwk_of(partner, "enc")))


# ---------------------------------------------------------------------------------------------
# Callbacks


def test_callback_is_signed(node: Node) -> None:
    path = f"/plain-{uuid.uuid4().hex}/on-search"
    envelope = node.search(sender_uri=node.side.url(path))
    before = node.last_seq()
    assert asynchronous(node, envelope).status_code == 202
    [hit] = node.side.wait_for(path)
    assert "authorization" not in hit.headers  # this partner has no token endpoint
    body = hit.json()
    assert body["header"]["action"] == "on-search" and body["header"]["is_msg_encrypted"] is False
    verify_reply(node, body, "jws-detached")
    assert body["message"]["transaction_id"] == envelope["message"]["transaction_id"]
    [record] = found_records(body["message"])
    # the delivery is in the audit trail too: ids and a count, not the record
    [delivery] = wait_audit_out(node, before, node.side.url(path))
    assert delivery.entry["outcome"] == "delivered" and delivery.entry["records_sent"] == 1
    assert delivery.entry["message_id"] == body["header"]["message_id"]
    text = node.audit_text(delivery.seq)
    assert record["name"]["given_name"] not in text and record["birth_date"] not in text


def test_callback_is_encrypted_signed_and_carries_the_partners_token(node: Node) -> None:
    partner = node.partners["jose-ec"]
    side = node.side
    bodies = []
    for _ in range(2):
        path = f"/sealed-{uuid.uuid4().hex}/on-search"
        envelope = jose_sign(
            node.search("jose-ec", sender_uri=side.url(path)),
            jwk_of(partner, "sig"),
            "jws-detached",
        )
        response = node.post_bytes("crvs", "search", orjson.dumps(envelope), "jose-ec")
        assert response.status_code == 202, response.text
        [hit] = side.wait_for(path)
        assert hit.headers["authorization"] == "Bearer partner-token-1"
        bodies.append((envelope, hit.json()))
    # one token, fetched once with the registry's credentials at the partner, then cached
    assert side.issued == ["partner-token-1"]
    assert side.token_requests == [
        {
            "grant_type": "client_credentials",
            "client_id": PartnerSide.CLIENT_ID,
            "client_secret": side.client_secret,
        }
    ]
    for envelope, body in bodies:
        assert body["header"]["is_msg_encrypted"] is True
        verify_reply(node, body, "jws-detached")
        message = jose_decrypt(body["message"], jwk_of(partner, "enc"))
        assert message["transaction_id"] == envelope["message"]["transaction_id"]
        assert found_records(message)


# ---------------------------------------------------------------------------------------------
# JWKS and key rotation


def test_jwks_kids_are_rfc7638_thumbprints(node: Node) -> None:
    published = node.jwks()["keys"]
    # EdDSA: an additional key, to answer the partner that uses the Ed25519 HTTP signature
    assert {(k["use"], k["alg"]) for k in published} == {
        ("sig", "ES256"),
        ("sig", "EdDSA"),
        ("enc", "RSA-OAEP-256"),
        ("enc", "ECDH-ES+A256KW"),
    }
    for jwk in published:
        assert JWK(**jwk).thumbprint() == jwk["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk), "a private member"
        assert jwk["use"] in ("sig", "enc")


def test_additional_ed25519_key_is_not_the_main_key_and_survives_rotation(tmp_path) -> None:
    """Regression: a node with an ES256 main key answered partners using the Ed25519
    HTTP-signature profile with a 500 (it tried to sign with its ES256 key)."""
    keys = KeyManager(tmp_path / "keys").load_or_create()
    main = keys.signing_key()
    ed = keys.ensure_signing_key("EdDSA")
    assert ed.key_type == "OKP" and main.alg == "ES256"
    assert keys.ensure_signing_key("EdDSA").kid == ed.kid  # made once
    again = KeyManager(tmp_path / "keys").load_or_create()  # roles survive a restart
    assert again.signing_key().kid == main.kid and again.signing_key("EdDSA").kid == ed.kid
    assert len(again.public_jwks()["keys"]) == 4
    again.rotate()
    assert again.signing_key().alg == "ES256" and again.signing_key().kid != main.kid
    new_ed = again.signing_key("EdDSA")
    assert new_ed.kid != ed.kid
    published = {k["kid"] for k in again.public_jwks()["keys"]}
    assert {str(main.kid), str(ed.kid), str(new_ed.kid)} <= published  # overlap


def test_key_rotation_keeps_old_keys_published_and_usable(node: Node, tmp_path) -> None:
    other = second_node(node, tmp_path, with_main=True)
    settings, port = other.settings, other.base_url.rsplit(":", 1)[1]
    try:
        old_token = other.token()
        before = sync(other, other.search())
        assert before.status_code == 200, before.text
        old_sig = verify_reply(other, before.json(), "jws-detached")
        old = {k["kid"]: k for k in other.jwks()["keys"]}
        old_enc = next(k for k in old.values() if k["alg"] == "ECDH-ES+A256KW")
        other.running.stop()

        KeyManager(other.key_dir).rotate()
        store = Store(settings.store_url)
        other.running = support.live_server(settings, store, partner=False, run_worker=False)
        other.store.dispose()
        other.store = store
        assert other.base_url.endswith(f":{port}")

        now = {k["kid"]: k for k in other.jwks()["keys"]}
        assert set(old) < set(now)  # old keys still published (overlap), new ones added
        new_sig = {kid for kid, k in now.items() if k["use"] == "sig"} - set(old)
        assert len(new_sig) == 1
        # a token issued before the rotation still works; the reply is signed with the new key
        envelope = other.search()
        envelope["header"]["is_msg_encrypted"] = True
        envelope["message"] = jose_encrypt(envelope["message"], old_enc)  # to the OLD key
        after = sync(other, envelope, auth=f"Bearer {old_token}")
        assert after.status_code == 200, after.text
        assert verify_reply(other, after.json(), "jws-detached") == new_sig.pop() != old_sig
        # and a new token is signed with the new key
        fresh = other.http.post(
            f"{other.base_url}/oauth2/client/token",
            data={
                "grant_type": "client_credentials",
                "client_id": other.partners["main"].client_id,
                "client_secret": other.partners["main"].client_secret,
            },
        ).json()["access_token"]
        assert (
            b64url_json(fresh.split(".")[0])["kid"] != b64url_json(old_token.split(".")[0])["kid"]
        )
    finally:
        stop_node(other)


# ---------------------------------------------------------------------------------------------
# The audit trail: intact after a series of exchanges, every tampering named


def tamper_edit_entry(conn: Any, t: Any, rows: list[dict]) -> tuple[int, str, int]:
    row = rows[2]
    entry = json.loads(row["entry"])
    entry["outcome"] = "ok" if entry["outcome"] != "ok" else "err.request.forbidden"
    conn.execute(update(t).where(t.c.seq == row["seq"]).values(entry=entry_bytes(entry).decode()))
    return row["seq"], "edited", row["seq"]


def tamper_edit_partner_column(conn: Any, t: Any, rows: list[dict]) -> tuple[int, str, int]:
    row = rows[3]
    conn.execute(update(t).where(t.c.seq == row["seq"]).values(partner="someone.else"))
    return row["seq"], "edited", row["seq"]


def tamper_rehash_edited_row(conn: Any, t: Any, rows: list[dict]) -> tuple[int, str, int]:
    """A careful forger recomputes the edited row's hash: the next row no longer follows."""
    row = rows[2]
    entry = json.loads(row["entry"])
    entry["outcome"] = "forged"
    body = entry_bytes(entry)
    conn.execute(
        update(t)
        .where(t.c.seq == row["seq"])
        .values(entry=body.decode(), hash=chain_hash(row["prev_hash"], body))
    )
    return rows[3]["seq"], "inserted", rows[3]["seq"]


def tamper_delete_middle(conn: Any, t: Any, rows: list[dict]) -> tuple[int, str, int]:
    conn.execute(delete(t).where(t.c.seq == rows[4]["seq"]))
    return rows[5]["seq"], "deleted", rows[4]["seq"]


def tamper_delete_last(conn: Any, t: Any, rows: list[dict]) -> tuple[int, str, int]:
    conn.execute(delete(t).where(t.c.seq == rows[-1]["seq"]))
    return rows[-1]["seq"], "deleted", rows[-1]["seq"]


def tamper_append_forged(conn: Any, t: Any, rows: list[dict]) -> tuple[int, str, int]:
    """A row appended with a valid chain hash, but behind dcihub's back (head not moved)."""
    last = rows[-1]
    entry = {
        "ts": time.time(),
        "direction": "in",
        "partner": "main.test",
        "registry": "crvs",
        "outcome": "ok",
        "records": [],
    }
    body = entry_bytes(entry)
    conn.execute(
        insert(t).values(
            seq=last["seq"] + 1,
            ts=entry["ts"],
            partner="main.test",
            registry="crvs",
            entry=body.decode(),
            prev_hash=last["hash"],
            hash=chain_hash(last["hash"], body),
        )
    )
    return last["seq"] + 1, "inserted", last["seq"]


TAMPERING = [
    tamper_edit_entry,
    tamper_edit_partner_column,
    tamper_rehash_edited_row,
    tamper_delete_middle,
    tamper_delete_last,
    tamper_append_forged,
]


@pytest.mark.parametrize("tamper", TAMPERING, ids=[f.__name__[7:] for f in TAMPERING])
def test_audit_chain_names_every_tampering(node: Node, tamper: Any) -> None:
    # a series of exchanges of every kind first: accepted, refused, replayed, token requests
    envelope = node.signed(node.search())
    for _ in range(2):
        assert node.post_bytes("crvs", "sync/search", orjson.dumps(envelope)).status_code == 200
    assert sync(node, node.search(), auth=None).status_code == 401
    assert sync(node, node.search(), signed=False).status_code == 400
    assert (
        node.http.post(
            f"{node.base_url}/oauth2/client/token",
            data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
        ).status_code
        == 401
    )
    store = node.store
    t = store.audit.t
    with store.engine.connect() as conn:
        transaction = conn.begin()
        try:
            count, problems = store.audit.verify(conn)
            assert problems == [] and count >= 10
            assert count == conn.execute(select(func.count()).select_from(t)).scalar_one()
            rows = [dict(r) for r in conn.execute(select(t).order_by(t.c.seq)).mappings()]
            seq, kind, named = tamper(conn, t, rows)
            _, problems = store.audit.verify(conn)
        finally:
            transaction.rollback()  # the other cases (and the node) keep an intact trail
    assert [(p.seq, p.kind) for p in problems] == [(seq, kind)], problems
    assert str(named) in problems[0].message


def test_callback_deliveries_leave_no_personal_data_in_the_outbox(node: Node) -> None:
    path = f"/outbox-{uuid.uuid4().hex}/on-search"
    assert asynchronous(node, node.search(sender_uri=node.side.url(path))).status_code == 202
    node.side.wait_for(path)
    rows = node.wait_outbox(node.side.url(path))
    assert {r["status"] for r in rows} == {DONE}
    assert all(r["payload"] is None for r in rows if r["kind"] == "deliver")


def test_reply_that_cannot_be_encrypted_is_refused_not_sent_in_clear(node: Node) -> None:
    """`no-enc` asks for encrypted replies but publishes no encryption key."""
    before = node.last_seq()
    response = sync(node, node.search("no-enc"), "no-enc")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"]["error"]["code"] == "err.encryption.invalid"
    assert "reg_records" not in response.text and node.uin not in response.text
    [row] = node.audit_since(before)
    assert row.entry["outcome"] == "err.encryption.invalid" and row.entry["records"] == []
