"""EncryptedMessage (flattened JWE): round trips, refusals, interop with jwcrypto both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk as jwcrypto_jwk

from dcihub.security import jwe
from dcihub.security.errors import EncryptionError
from dcihub.security.keys import load_jwk

ALGS = ["RSA-OAEP-256", "ECDH-ES+A256KW"]


def flip(b64: str, index: int = 0) -> str:
    """Change one base64url character, keeping the alphabet valid."""
    ch = b64[index]
    return b64[:index] + ("A" if ch != "A" else "B") + b64[index + 1 :]


@pytest.mark.parametrize("alg", ALGS)
def test_round_trip_and_shape(keys, message, alg) -> None:
    key = keys[alg]
    encrypted = jwe.encrypt_message(message, key.as_dict())  # public JWK only
    assert set(encrypted) == {"header", "encrypted_key", "iv", "ciphertext", "tag"}
    assert encrypted["header"]["alg"] == alg
    assert encrypted["header"]["enc"] == "A256GCM"
    assert encrypted["header"]["kid"] == key.kid
    assert ("epk" in encrypted["header"]) == (alg == "ECDH-ES+A256KW")
    assert "search_request" not in json.dumps(encrypted)
    assert jwe.is_encrypted_message(encrypted) and not jwe.is_encrypted_message(message)
    assert jwe.recipient_kid(encrypted) == key.kid
    assert jwe.decrypt_message(encrypted, {key.kid: key}.get) == message


def test_matches_the_spec_schema(spec_dir: Path, keys, message) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    spec = yaml.safe_load((spec_dir / "spec" / "crvs_api_v1.0.0.yaml").read_text())
    schema = spec["components"]["schemas"]["EncryptedMessage"]
    for alg in ALGS:
        jsonschema.validate(jwe.encrypt_message(message, keys[alg]), schema)


@pytest.mark.parametrize("alg", ALGS)
def test_corrupted_tag_is_refused(keys, message, alg) -> None:
    key = keys[alg]
    encrypted = jwe.encrypt_message(message, key)
    encrypted["tag"] = flip(encrypted["tag"])
    with pytest.raises(EncryptionError, match="integrity check") as err:
        jwe.decrypt_message(encrypted, lambda kid: key)
    assert err.value.code == "err.encryption.invalid"


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("member", ["ciphertext", "iv"])
def test_corrupted_ciphertext_or_iv_is_refused(keys, message, alg, member) -> None:
    key = keys[alg]
    encrypted = jwe.encrypt_message(message, key)
    encrypted[member] = flip(encrypted[member], 3)
    with pytest.raises(EncryptionError):
        jwe.decrypt_message(encrypted, lambda kid: key)


@pytest.mark.parametrize("alg", ALGS)
def test_wrong_recipient_key_is_refused(keys, other_keys, message, alg) -> None:
    encrypted = jwe.encrypt_message(message, keys[alg])
    with pytest.raises(EncryptionError, match="another key"):
        jwe.decrypt_message(encrypted, lambda kid: other_keys[alg])


def test_unknown_kid_is_refused(keys, message) -> None:
    encrypted = jwe.encrypt_message(message, keys["ECDH-ES+A256KW"])
    with pytest.raises(EncryptionError, match="not one of our current encryption keys"):
        jwe.decrypt_message(encrypted, lambda kid: None)


def test_key_type_must_match_alg(keys, message) -> None:
    encrypted = jwe.encrypt_message(message, keys["RSA-OAEP-256"])
    with pytest.raises(EncryptionError, match="needs an RSA key"):
        jwe.decrypt_message(encrypted, lambda kid: keys["ECDH-ES+A256KW"])
    with pytest.raises(EncryptionError, match="needs an EC key"):
        jwe.encrypt_message(message, keys["RSA-OAEP-256"], alg="ECDH-ES+A256KW")


def test_signing_key_is_not_an_encryption_key(keys, message) -> None:
    with pytest.raises(EncryptionError, match="use 'sig'"):
        jwe.encrypt_message(message, keys["ES256"].as_dict(), alg="ECDH-ES+A256KW")


@pytest.mark.parametrize(
    "change,match",
    [
        ({"alg": "RSA1_5"}, "not accepted"),
        ({"alg": "dir"}, "not accepted"),
        ({"enc": "A128CBC-HS256"}, "not accepted"),
        ({"zip": "DEF"}, "zip"),
    ],
)
def test_unsupported_header_values(keys, message, change, match) -> None:
    key = keys["RSA-OAEP-256"]
    encrypted = jwe.encrypt_message(message, key)
    encrypted["header"].update(change)
    with pytest.raises(EncryptionError, match=match):
        jwe.decrypt_message(encrypted, lambda kid: key)


def test_missing_members_and_bad_base64(keys, message) -> None:
    key = keys["RSA-OAEP-256"]
    encrypted = jwe.encrypt_message(message, key)
    with pytest.raises(EncryptionError, match="lacks tag"):
        jwe.decrypt_message({k: v for k, v in encrypted.items() if k != "tag"}, lambda kid: key)
    with pytest.raises(EncryptionError, match="base64url"):
        jwe.decrypt_message({**encrypted, "iv": "***"}, lambda kid: key)
    with pytest.raises(EncryptionError, match="not a JSON object"):
        jwe.decrypt_message("nope", lambda kid: key)  # type: ignore[arg-type]


def test_ecdh_epk_off_curve_is_refused(keys, message) -> None:
    key = keys["ECDH-ES+A256KW"]
    encrypted = jwe.encrypt_message(message, key)
    encrypted["header"]["epk"]["y"] = flip(encrypted["header"]["epk"]["y"], 5)
    with pytest.raises(EncryptionError, match="not a valid point"):
        jwe.decrypt_message(encrypted, lambda kid: key)


def test_conflicting_duplicate_header_values_are_refused(keys, message) -> None:
    key = keys["RSA-OAEP-256"]
    encrypted = jwe.encrypt_message(message, key)
    # OpenCRVS repeats alg/enc/kid in `unprotected` and `header`: same values are fine ...
    same = {**encrypted, "unprotected": dict(encrypted["header"])}
    assert jwe.decrypt_message(same, lambda kid: key) == message
    # ... conflicting ones are not
    conflict = {**encrypted, "unprotected": {**encrypted["header"], "enc": "A128GCM"}}
    with pytest.raises(EncryptionError, match="conflicting"):
        jwe.decrypt_message(conflict, lambda kid: key)


def test_decrypted_plaintext_must_be_json(keys) -> None:
    key = keys["RSA-OAEP-256"]
    token = jwcrypto_jwe.JWE(b"\xff not json")
    token.add_recipient(
        jwcrypto_jwk.JWK(**key.as_dict()),
        header={"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": key.kid},
    )
    with pytest.raises(EncryptionError, match="not UTF-8 JSON"):
        jwe.decrypt_message(json.loads(token.serialize()), lambda kid: key)


# -- interop with jwcrypto ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_jwcrypto_decrypts_dcihub(keys, message, alg) -> None:
    key = keys[alg]
    encrypted = jwe.encrypt_message(message, load_jwk(key.as_dict()))
    token = jwcrypto_jwe.JWE()
    token.deserialize(json.dumps(encrypted), key=jwcrypto_jwk.JWK(**key.as_dict(private=True)))
    assert json.loads(token.payload) == message


@pytest.mark.parametrize("alg", ALGS)
def test_dcihub_decrypts_jwcrypto(keys, message, alg) -> None:
    key = keys[alg]
    token = jwcrypto_jwe.JWE(json.dumps(message).encode())
    token.add_recipient(
        jwcrypto_jwk.JWK(**key.as_dict()), header={"alg": alg, "enc": "A256GCM", "kid": key.kid}
    )
    encrypted: dict[str, Any] = json.loads(token.serialize(compact=False))
    assert set(encrypted) == {"header", "encrypted_key", "iv", "ciphertext", "tag"}
    assert jwe.decrypt_message(encrypted, {key.kid: key}.get) == message


def test_dcihub_decrypts_jwcrypto_with_protected_header(keys, message) -> None:
    """Implementations that put enc in a protected header (AAD = that header) also work."""
    key = keys["ECDH-ES+A256KW"]
    token = jwcrypto_jwe.JWE(json.dumps(message).encode(), protected=json.dumps({"enc": "A256GCM"}))
    token.add_recipient(
        jwcrypto_jwk.JWK(**key.as_dict()), header={"alg": "ECDH-ES+A256KW", "kid": key.kid}
    )
    encrypted = json.loads(token.serialize(compact=False))
    assert "protected" in encrypted
    assert jwe.decrypt_message(encrypted, lambda kid: key) == message
    encrypted["protected"] = jwcrypto_jwk.base64url_encode(json.dumps({"enc": "A256GCM", "x": 1}))
    with pytest.raises(EncryptionError, match="integrity"):
        jwe.decrypt_message(encrypted, lambda kid: key)


# -- what the library is trusted with, checked from outside ---------------------------------


@pytest.mark.parametrize(
    "change",
    [{"alg": "RSA1_5"}, {"alg": "dir"}, {"alg": "A256KW"}, {"enc": "A128GCM"}, {"alg": "A256GCM"}],
)
def test_alg_and_enc_are_refused_before_any_key_is_looked_up(keys, message, change) -> None:
    key = keys["RSA-OAEP-256"]
    encrypted = jwe.encrypt_message(message, key)
    encrypted["header"].update(change)
    asked: list[str | None] = []

    def key_for_kid(kid: str | None) -> Any:
        asked.append(kid)
        return key

    with pytest.raises(EncryptionError, match="not accepted"):
        jwe.decrypt_message(encrypted, key_for_kid)
    assert asked == []


def test_the_spec_form_has_an_empty_aad(keys, message) -> None:
    """No `protected` member: the tag covers no header (DIGEST §4.2). A JWE whose tag was made
    over joserfc's `{}` protected header ("e30") is another form, and does not decrypt as ours."""
    key = keys["ECDH-ES+A256KW"]
    encrypted = jwe.encrypt_message(message, key)
    assert "protected" not in encrypted and "aad" not in encrypted
    with pytest.raises(EncryptionError, match="integrity check"):
        jwe.decrypt_message({**encrypted, "protected": "e30"}, lambda kid: key)
    # nor is the per-recipient header authenticated: a changed kid still decrypts (the
    # envelope's signature is what protects it, encrypt-then-sign)
    moved = {**encrypted, "header": {**encrypted["header"], "kid": "renamed"}}
    assert jwe.decrypt_message(moved, lambda kid: key) == message


def test_epk_in_the_per_recipient_header_is_fresh_for_every_message(keys, message) -> None:
    key = keys["ECDH-ES+A256KW"]
    first, second = (jwe.encrypt_message(message, key) for _ in range(2))
    assert set(first["header"]["epk"]) == {"kty", "crv", "x", "y"}  # public part only
    assert first["header"]["epk"] != second["header"]["epk"]


@pytest.mark.parametrize(
    "epk,match",
    [
        (None, "needs an 'epk'"),
        ({"kty": "OKP", "crv": "X25519", "x": "AAAA"}, "needs an 'epk'"),
        ({"kty": "EC", "crv": "P-384", "x": "AAAA", "y": "AAAA"}, "does not match our key's curve"),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA"}, "not a valid point"),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}, "not a valid point"),
    ],
)
def test_hostile_ephemeral_keys_are_refused(keys, message, epk, match) -> None:
    key = keys["ECDH-ES+A256KW"]
    encrypted = jwe.encrypt_message(message, key)
    if epk is None:
        del encrypted["header"]["epk"]
    else:
        encrypted["header"]["epk"] = epk
    with pytest.raises(EncryptionError, match=match):
        jwe.decrypt_message(encrypted, lambda kid: key)


def test_party_info_must_be_base64url(keys, message) -> None:
    key = keys["ECDH-ES+A256KW"]
    encrypted = jwe.encrypt_message(message, key)
    encrypted["header"]["apu"] = "not base64!"
    with pytest.raises(EncryptionError, match="apu/apv are not base64url"):
        jwe.decrypt_message(encrypted, lambda kid: key)
    encrypted["header"]["apu"] = "QWxpY2U"  # valid, but not what the key was agreed with
    with pytest.raises(EncryptionError, match="integrity check"):
        jwe.decrypt_message(encrypted, lambda kid: key)


def test_a_content_key_of_another_size_is_refused(keys) -> None:
    """Anyone can encrypt to our public key: a 128-bit CEK under an `A256GCM` label (made with
    A128GCM by jwcrypto) must not decrypt."""
    key = keys["RSA-OAEP-256"]
    token = jwcrypto_jwe.JWE(b'{"a": 1}')
    token.add_recipient(
        jwcrypto_jwk.JWK(**key.as_dict()),
        header={"alg": "RSA-OAEP-256", "enc": "A128GCM", "kid": key.kid},
    )
    encrypted = json.loads(token.serialize())
    with pytest.raises(EncryptionError, match="not accepted"):  # refused by its label ...
        jwe.decrypt_message(encrypted, lambda kid: key)
    encrypted["header"]["enc"] = "A256GCM"  # ... and relabelled, by its key size
    with pytest.raises(EncryptionError, match="integrity check"):
        jwe.decrypt_message(encrypted, lambda kid: key)


@pytest.mark.parametrize("alg", ALGS)
def test_unwrap_failure_and_tag_failure_are_one_refusal(keys, other_keys, message, alg) -> None:
    """RFC 7516 §11.5: a receiver must not tell a bad encrypted key from a bad tag."""
    key = keys[alg]
    encrypted = jwe.encrypt_message(message, key)
    refusals = set()
    for variant, ours in [
        ({**encrypted, "tag": flip(encrypted["tag"])}, key),
        ({**encrypted, "encrypted_key": flip(encrypted["encrypted_key"], 7)}, key),
        (encrypted, other_keys[alg]),
    ]:
        with pytest.raises(EncryptionError) as err:
            jwe.decrypt_message(variant, lambda kid, ours=ours: ours)
        refusals.add(err.value.message)
    assert len(refusals) == 1, refusals
