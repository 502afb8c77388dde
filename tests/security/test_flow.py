"""The security steps in the order the pipeline uses them, between an SP-MIS and a registry.

Outbound: build -> encrypt (to the recipient's enc key) -> sign (over the wire form).
Inbound: token -> verify signature (sender's JWKS) -> decrypt (our key) -> authorise.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from dcihub.security import jwe, signatures
from dcihub.security.callbacks import check_sender_uri
from dcihub.security.errors import EncryptionError, SignatureError
from dcihub.security.keys import KeyManager
from dcihub.security.minimise import minimise
from dcihub.security.partners import JwksResolver, Partner, PartnerRegistry
from dcihub.security.tokens import TokenIssuer, bearer_token


@pytest.mark.parametrize("profile", ["jws-detached", "jws-compact", "http-sig-ed25519"])
def test_encrypt_then_sign_then_verify_then_decrypt(tmp_path: Path, header, message, profile):
    registry_keys = KeyManager(tmp_path / "registry").load_or_create()
    spmis_keys = KeyManager(tmp_path / "spmis", signing_alg="EdDSA").load_or_create()

    partners = PartnerRegistry()
    partners.add(
        Partner(
            sender_id="spmis.example.org",
            client_id="spmis",
            jwks=spmis_keys.public_jwks(),
            scopes={"crvs": ["search"]},
            callback_prefixes=["https://spmis.example.org/dci/"],
            fields={"crvs": ["name.given_name"]},
            signature_profile=profile,
        ),
        client_secret="secret",
    )
    issuer = TokenIssuer(
        registry_keys.signing_key,
        "https://registry.example.org",
        verification_key=registry_keys.verification_key,
    )

    # --- SP-MIS side: token, encrypt to the registry's published enc key, sign ------------
    partner = partners.authenticate("spmis", "secret")
    assert partner is not None
    token = issuer.issue(partner.client_id, partner.sender_id, partner.grant_scopes())
    registry_enc = next(
        k for k in registry_keys.public_jwks()["keys"] if k["alg"] == "ECDH-ES+A256KW"
    )
    header["is_msg_encrypted"] = True
    wire_message = jwe.encrypt_message(message, registry_enc)
    signature = signatures.sign(header, wire_message, spmis_keys.signing_key(), profile)
    body = {"signature": signature, "header": header, "message": wire_message}

    # --- registry side ----------------------------------------------------------------------
    claims = issuer.verify(bearer_token(f"Bearer {token['access_token']}"))
    sender = partners.get(body["header"]["sender_id"])
    assert sender is not None and sender.sender_id == claims.sender_id
    check_sender_uri(body["header"]["sender_uri"], sender)
    resolver = JwksResolver(sender)
    verified = signatures.verify(
        body["signature"], body["header"], body["message"], resolver.resolve
    )
    assert verified.profile == profile and verified.kid == spmis_keys.signing_key().kid
    plain = jwe.decrypt_message(body["message"], registry_keys.decryption_key)
    assert plain == message
    assert claims.allows("crvs", "search") and sender.allows("crvs", "search")

    # --- reply: minimise, encrypt to the partner, sign with the registry key -----------------
    record = {"name": {"given_name": "Amina", "surname": "Okafor"}, "birth_date": "1990-01-01"}
    reply = {"reg_records": [minimise(record, sender.allowed_fields("crvs"))]}
    reply_enc = jwe.encrypt_message(reply, resolver.encryption_key())
    reply_header = {"action": "on-search", "sender_id": "registry.example.org"}
    reply_sig = signatures.sign(reply_header, reply_enc, registry_keys.signing_key())
    mine = JwksResolver(Partner(sender_id="registry.example.org", jwks=registry_keys.public_jwks()))
    assert signatures.verify(reply_sig, reply_header, reply_enc, mine.resolve)
    assert jwe.decrypt_message(reply_enc, spmis_keys.decryption_key) == {
        "reg_records": [{"name": {"given_name": "Amina"}}]
    }


def test_signature_covers_the_ciphertext(tmp_path: Path, header, message) -> None:
    registry_keys = KeyManager(tmp_path / "r").load_or_create()
    spmis_keys = KeyManager(tmp_path / "s").load_or_create()
    resolver = JwksResolver(Partner(sender_id="spmis.example.org", jwks=spmis_keys.public_jwks()))
    wire = jwe.encrypt_message(message, registry_keys.encryption_key())
    signature = signatures.sign(header, wire, spmis_keys.signing_key())
    swapped = copy.deepcopy(wire)
    swapped["ciphertext"] = jwe.encrypt_message(
        {"transaction_id": "evil"}, registry_keys.encryption_key()
    )["ciphertext"]
    with pytest.raises(SignatureError):
        signatures.verify(signature, header, swapped, resolver.resolve)
    with pytest.raises(EncryptionError):  # and the swapped ciphertext does not decrypt either
        jwe.decrypt_message(swapped, registry_keys.decryption_key)
