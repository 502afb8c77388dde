"""Signature profiles: round trips, every refusal path, interop with jwcrypto and OpenSPP2's form."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import rfc8785
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from dcihub.security import signatures as sig
from dcihub.security.errors import SignatureError
from dcihub.security.keys import load_jwk

NOW = 1_750_000_000.0


def resolver_for(*keys: Any):
    public = {k.kid: load_jwk(k.as_dict(private=False)) for k in keys}
    calls: list[tuple[str | None, str | None]] = []

    def resolve(kid: str | None, alg: str | None):
        calls.append((kid, alg))
        return public.get(kid) if kid else None

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jc_key(key: Any, private: bool = False) -> jwcrypto_jwk.JWK:
    return jwcrypto_jwk.JWK(**key.as_dict(private=private))


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
@pytest.mark.parametrize("profile", ["jws-detached", "jws-compact"])
def test_jws_round_trip(keys, header, message, alg: str, profile: str) -> None:
    key = keys[alg]
    value = sig.sign(header, message, key, profile)
    assert sig.detect_profile(value) == profile
    info = sig.inspect_signature(value)
    assert (info.profile, info.kid, info.alg) == (profile, key.kid, alg)
    result = sig.verify(value, header, message, resolver_for(key))
    assert result == sig.Verified(profile, key.kid, alg)


def test_default_profile_is_detached_jws_over_jcs(keys, header, message) -> None:
    value = sig.sign(header, message, keys["ES256"])
    protected, empty, _ = value.split(".")
    assert empty == ""
    assert json.loads(base64.urlsafe_b64decode(protected + "==")) == {
        "alg": "ES256",
        "kid": keys["ES256"].kid,
    }


def test_http_sig_round_trip(keys, header, message) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, "http-sig-ed25519", now=lambda: NOW)
    assert value.startswith(f'namespace="dci", kidId="spmis.example.org|{key.kid}|ed25519"')
    assert 'headers="(created) (expires) digest"' in value
    assert sig.detect_profile(value) == "http-sig-ed25519"
    result = sig.verify(value, header, message, resolver_for(key), now=lambda: NOW + 10)
    assert result == sig.Verified("http-sig-ed25519", key.kid, "EdDSA")


def test_verify_accepts_jwk_dicts_from_resolver(keys, header, message) -> None:
    key = keys["ES256"]
    value = sig.sign(header, message, key.as_dict(private=True))
    assert sig.verify(value, header, message, lambda kid, alg: key.as_dict()).kid == key.kid


def test_signature_over_envelope_without_message(keys, header) -> None:
    for profile in ("jws-detached", "jws-compact"):
        value = sig.sign(header, None, keys["ES256"], profile)
        assert sig.verify(value, header, None, resolver_for(keys["ES256"])).profile == profile
        with pytest.raises(SignatureError):
            sig.verify(value, header, {}, resolver_for(keys["ES256"]))


def test_key_order_and_whitespace_do_not_matter_for_detached(keys, header, message) -> None:
    value = sig.sign(header, message, keys["ES256"])
    reordered_header = dict(reversed(list(header.items())))
    received = json.loads(json.dumps({"h": reordered_header, "m": message}, indent=3))
    assert sig.verify(value, received["h"], received["m"], resolver_for(keys["ES256"]))


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["jws-detached", "jws-compact", "http-sig-ed25519"])
def test_tampered_header_is_refused(keys, header, message, profile: str) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, profile, now=lambda: NOW)
    header["receiver_id"] = "someone-else"
    with pytest.raises(SignatureError) as err:
        sig.verify(value, header, message, resolver_for(key), now=lambda: NOW)
    assert err.value.code == "err.signature.invalid"
    assert profile in err.value.message and key.kid in err.value.message


@pytest.mark.parametrize("profile", ["jws-detached", "jws-compact", "http-sig-ed25519"])
def test_tampered_message_is_refused(keys, header, message, profile: str) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, profile, now=lambda: NOW)
    message["search_request"][3]["search_criteria"]["query"]["value"] = "9999"
    with pytest.raises(SignatureError, match="changed"):
        sig.verify(value, header, message, resolver_for(key), now=lambda: NOW)


def test_compact_payload_must_equal_received_envelope(keys, header, message) -> None:
    key = keys["RS256"]
    value = sig.sign(header, {"transaction_id": "other"}, key, "jws-compact")
    with pytest.raises(SignatureError, match="payload differs"):
        sig.verify(value, header, message, resolver_for(key))


def test_compact_true_is_not_one(keys, header, message) -> None:
    key = keys["ES256"]
    header["is_msg_encrypted"] = True
    value = sig.sign(header, message, key, "jws-compact")
    header["is_msg_encrypted"] = 1
    with pytest.raises(SignatureError, match="payload differs"):
        sig.verify(value, header, message, resolver_for(key))


def test_tampered_compact_payload_segment_is_refused(keys, header, message) -> None:
    key = keys["ES256"]
    h, p, s = sig.sign(header, message, key, "jws-compact").split(".")
    forged = {"header": header, "message": {"transaction_id": "forged"}}
    p2 = b64u(json.dumps(forged).encode())
    with pytest.raises(SignatureError, match="does not match"):
        sig.verify(f"{h}.{p2}.{s}", header, forged["message"], resolver_for(key))


def test_unknown_kid_is_refused_with_the_kid_named(keys, header, message) -> None:
    value = sig.sign(header, message, keys["ES256"])
    with pytest.raises(SignatureError, match=keys["ES256"].kid) as err:
        sig.verify(value, header, message, resolver_for(keys["RS256"]))
    assert "not in the sender's registered JWKS" in err.value.message


def test_wrong_key_under_the_right_kid_is_refused(keys, other_keys, header, message) -> None:
    """A signature by another party that claims our partner's kid."""
    attacker = other_keys["ES256"]
    forged = load_jwk({**attacker.as_dict(private=True), "kid": keys["ES256"].kid})
    value = sig.sign(header, message, forged)
    with pytest.raises(SignatureError, match="does not match"):
        sig.verify(value, header, message, resolver_for(keys["ES256"]))


def test_wrong_kid_in_protected_header_is_refused(keys, header, message) -> None:
    value = sig.sign(header, message, keys["ES256"])
    _, _, s = value.split(".")
    other_kid = keys["EdDSA"].kid
    h2 = b64u(json.dumps({"alg": "ES256", "kid": other_kid}).encode())
    with pytest.raises(SignatureError, match="needs a EC key"):
        sig.verify(f"{h2}..{s}", header, message, resolver_for(keys["ES256"], keys["EdDSA"]))


@pytest.mark.parametrize("profile", ["jws-detached", "jws-compact"])
def test_alg_none_is_refused(keys, header, message, profile: str) -> None:
    payload = "" if profile == "jws-detached" else b64u(rfc8785.dumps({"header": header}))
    h = b64u(json.dumps({"alg": "none", "kid": keys["ES256"].kid}).encode())
    # 'none' has an empty signature; also try a non-empty one
    for value in (f"{h}.{payload}.", f"{h}.{payload}.AAAA"):
        with pytest.raises(SignatureError) as err:
            sig.verify(value, header, message, resolver_for(keys["ES256"]))
        assert err.value.code == "err.signature.invalid"


def test_hmac_signature_is_refused(keys, header, message) -> None:
    h = b64u(json.dumps({"alg": "HS256", "kid": keys["ES256"].kid}).encode())
    p = b64u(rfc8785.dumps({"header": header, "message": message}))
    mac = hmac.new(b"public-key-bytes", f"{h}.{p}".encode(), hashlib.sha256).digest()
    with pytest.raises(SignatureError, match="never 'none' or HMAC"):
        sig.verify(f"{h}..{b64u(mac)}", header, message, resolver_for(keys["ES256"]))


def test_wrong_key_type_for_alg_is_refused(keys, header, message) -> None:
    """Header says RS256 but the partner's key under that kid is EC."""
    rsa_sig = sig.sign(header, message, keys["RS256"])
    _, _, s = rsa_sig.split(".")
    h = b64u(json.dumps({"alg": "RS256", "kid": keys["ES256"].kid}).encode())
    with pytest.raises(SignatureError, match="needs a RSA key"):
        sig.verify(f"{h}..{s}", header, message, resolver_for(keys["ES256"]))


def test_encryption_key_is_not_accepted_for_signatures(keys, header, message) -> None:
    enc_key = keys["ECDH-ES+A256KW"]
    signer = load_jwk({**enc_key.as_dict(private=True), "use": "sig", "alg": "ES256"})
    value = sig.sign(header, message, signer)
    with pytest.raises(SignatureError, match="use 'enc'"):
        sig.verify(value, header, message, lambda kid, alg: enc_key.as_dict())


def test_critical_header_and_unencoded_payload_are_refused(keys, header, message) -> None:
    for extra in ({"crit": ["exp"], "exp": 1}, {"b64": False}):
        h = b64u(json.dumps({"alg": "ES256", "kid": keys["ES256"].kid, **extra}).encode())
        with pytest.raises(SignatureError):
            sig.verify(f"{h}..AAAA", header, message, resolver_for(keys["ES256"]))


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_signature(header, message, value) -> None:
    with pytest.raises(SignatureError) as err:
        sig.verify(value, header, message, lambda kid, alg: None)
    assert err.value.code == "err.signature.missing"


@pytest.mark.parametrize("value", ["hello", "a.b", "a.b.c.d", "!!..!!", '{"alg":"ES256"}'])
def test_unrecognised_format(header, message, value) -> None:
    with pytest.raises(SignatureError, match="no accepted format") as err:
        sig.verify(value, header, message, lambda kid, alg: None)
    assert err.value.code == "err.signature.invalid"


def test_garbage_protected_header(header, message) -> None:
    with pytest.raises(SignatureError, match="protected header"):
        sig.verify("bm90LWpzb24..AAAA", header, message, lambda kid, alg: None)


def test_signing_with_a_public_key_or_unknown_profile_fails(keys, header, message) -> None:
    with pytest.raises(ValueError, match="public key"):
        sig.sign(header, message, keys["ES256"].as_dict())
    with pytest.raises(ValueError, match="unknown signature profile"):
        sig.sign(header, message, keys["ES256"], "x-hmac")
    with pytest.raises(ValueError, match="needs a OKP key"):
        sig.sign(header, message, keys["ES256"], "http-sig-ed25519")


# -- http-sig specifics ---------------------------------------------------------------------


def test_http_sig_expired_is_refused(keys, header, message) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, "http-sig-ed25519", ttl_seconds=300, now=lambda: NOW)
    with pytest.raises(SignatureError, match="expired") as err:
        sig.verify(value, header, message, resolver_for(key), now=lambda: NOW + 300 + 61)
    assert key.kid in err.value.message


def test_http_sig_not_yet_valid_is_refused(keys, header, message) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, "http-sig-ed25519", now=lambda: NOW + 120)
    with pytest.raises(SignatureError, match="not yet valid.*clock"):
        sig.verify(value, header, message, resolver_for(key), now=lambda: NOW)


def test_http_sig_sender_mismatch_is_refused(keys, header, message) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, "http-sig-ed25519", sender_id="mallory", now=time.time)
    with pytest.raises(SignatureError, match="names sender 'mallory'"):
        sig.verify(value, header, message, resolver_for(key))


def test_http_sig_other_algorithm_or_headers_refused(keys, header, message) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, "http-sig-ed25519")
    with pytest.raises(SignatureError, match="only ed25519"):
        sig.verify(
            value.replace('algorithm="ed25519"', 'algorithm="hmac-sha256"'),
            header,
            message,
            resolver_for(key),
        )
    with pytest.raises(SignatureError, match="headers"):
        sig.verify(value.replace("(expires) digest", "digest"), header, message, resolver_for(key))


def test_http_sig_needs_an_ed25519_key(keys, header, message) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, "http-sig-ed25519")
    with pytest.raises(SignatureError, match="needs a OKP key"):
        sig.verify(value, header, message, lambda kid, alg: keys["ES256"].as_dict())


def _beckn_style(header, message, key, *, digest_label: str, spelling: str, now: float) -> str:
    """An independent signer in the spec-example/Beckn shape (not dcihub code)."""
    body = json.dumps({"header": header, "message": message}, sort_keys=True, separators=(",", ":"))
    if digest_label == "BLAKE-512=":
        digest = hashlib.blake2b(body.encode(), digest_size=64).digest()
    else:
        digest = hashlib.sha256(body.encode()).digest()
    created, expires = int(now), int(now) + 60
    signing = f"(created): {created}\n(expires): {expires}\ndigest: {digest_label}{base64.b64encode(digest).decode()}"
    raw = key.private_key.sign(signing.encode())
    return (
        f'Signature: {spelling}="{header["sender_id"]}|{key.kid}|ed25519",algorithm="ed25519",'
        f'created="{created}",expires="{expires}",headers="(created) (expires) digest",'
        f'signature="{base64.b64encode(raw).decode()}"'
    )


@pytest.mark.parametrize("label", ["", "SHA-256=", "BLAKE-512="])
@pytest.mark.parametrize("spelling", ["keyId", "kidId"])
def test_http_sig_accepts_beckn_variants(keys, header, message, label, spelling) -> None:
    key = keys["EdDSA"]
    value = _beckn_style(header, message, key, digest_label=label, spelling=spelling, now=NOW)
    assert sig.inspect_signature(value).kid == key.kid
    result = sig.verify(value, header, message, resolver_for(key), now=lambda: NOW)
    assert result.profile == "http-sig-ed25519"


def _openspp2_style_verify(value: str, header, message, public_key, now: float) -> bool:
    """OpenSPP2's DCIVerifier algorithm, re-stated independently: parse k="v" pairs, require
    created/expires/signature/algorithm, digest = b64 SHA-256 of the key-sorted compact JSON,
    signing string with a bare digest line."""
    import re

    params = dict(re.findall(r'(\w+)="([^"]+)"', value))
    if not {"created", "expires", "signature", "algorithm"} <= params.keys():
        return False
    if params["algorithm"] != "ed25519" or now > int(params["expires"]):
        return False
    body = json.dumps({"header": header, "message": message}, sort_keys=True, separators=(",", ":"))
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    signing = f"(created): {params['created']}\n(expires): {params['expires']}\ndigest: {digest}"
    try:
        public_key.verify(base64.b64decode(params["signature"]), signing.encode())
        return True
    except Exception:
        return False


def test_openspp2_verifies_what_dcihub_signs(keys, header, message) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, "http-sig-ed25519")
    assert _openspp2_style_verify(value, header, message, key.public_key, time.time())
    header["action"] = "on-search"
    assert not _openspp2_style_verify(value, header, message, key.public_key, time.time())


# -- interop with jwcrypto ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_jwcrypto_verifies_dcihub_detached(keys, header, message, alg) -> None:
    key = keys[alg]
    h, _, s = sig.sign(header, message, key).split(".")
    payload = b64u(rfc8785.dumps({"header": header, "message": message}))
    token = jwcrypto_jws.JWS()
    token.deserialize(f"{h}.{payload}.{s}", key=jc_key(key), alg=alg)
    assert token.objects["valid"]
    # and with jwcrypto's own detached-payload API
    token = jwcrypto_jws.JWS()
    token.deserialize(f"{h}..{s}")
    token.verify(
        jc_key(key), alg=alg, detached_payload=rfc8785.dumps({"header": header, "message": message})
    )
    assert token.objects["valid"]


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_dcihub_verifies_jwcrypto_detached(keys, header, message, alg) -> None:
    key = keys[alg]
    token = jwcrypto_jws.JWS(rfc8785.dumps({"header": header, "message": message}))
    token.add_signature(
        jc_key(key, private=True), alg=alg, protected=json.dumps({"alg": alg, "kid": key.kid})
    )
    compact = token.serialize(compact=True)
    h, _, s = compact.split(".")
    assert sig.verify(f"{h}..{s}", header, message, resolver_for(key)).alg == alg
    message["transaction_id"] = "changed"
    with pytest.raises(SignatureError):
        sig.verify(f"{h}..{s}", header, message, resolver_for(key))


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_jwcrypto_verifies_dcihub_compact(keys, header, message, alg) -> None:
    key = keys[alg]
    value = sig.sign(header, message, key, "jws-compact")
    token = jwcrypto_jws.JWS()
    token.deserialize(value, key=jc_key(key), alg=alg)
    assert json.loads(token.payload) == {"header": header, "message": message}


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_dcihub_verifies_jwcrypto_compact_opencrvs_style(keys, header, message, alg) -> None:
    """OpenCRVS: compact JWS, payload = JSON.stringify({header, message}) (insertion order,
    not canonical), kid = thumbprint."""
    key = keys[alg]
    payload = json.dumps({"header": header, "message": message}, ensure_ascii=False).encode()
    token = jwcrypto_jws.JWS(payload)
    token.add_signature(
        jc_key(key, private=True), alg=alg, protected=json.dumps({"alg": alg, "kid": key.kid})
    )
    value = token.serialize(compact=True)
    received = json.loads(json.dumps({"header": header, "message": message}, sort_keys=True))
    result = sig.verify(value, received["header"], received["message"], resolver_for(key))
    assert result == sig.Verified("jws-compact", key.kid, alg)


def test_compact_compares_json_values_not_spelling(keys, header, message) -> None:
    key = keys["ES256"]
    header["total_count"] = 6.0  # a JavaScript signer writes 6; a Python one may write 6.0
    header["meta"] = {"big": 2**60}  # beyond JCS's integer range: compared as parsed values
    value = sig.sign(header, message, key, "jws-compact")
    header["total_count"] = 6
    assert sig.verify(value, header, message, resolver_for(key)).profile == "jws-compact"
    header["meta"] = {"big": 2**60 + 1}
    with pytest.raises(SignatureError, match="payload differs"):
        sig.verify(value, header, message, resolver_for(key))


# -- hostile signature values (hardening) ---------------------------------------------------


def test_oversized_signature_is_refused_before_parsing(header, message) -> None:
    value = 'signature="x", ' + "a" * (sig.MAX_SIGNATURE_CHARS + 1)
    with pytest.raises(SignatureError, match=f"at most {sig.MAX_SIGNATURE_CHARS}") as err:
        sig.verify(value, header, message, lambda kid, alg: None)
    assert err.value.code == "err.signature.invalid"
    with pytest.raises(SignatureError):
        sig.inspect_signature(value)


@pytest.mark.parametrize(
    "value",
    [
        'signature="x", ' + "a" * 4000,  # a long run of letters: quadratic for a findall scan
        'signature="x", ' + "a=" * 1500,
        'signature="x" created="1" expires="2"',  # no commas between parameters
        'signature="' + "x" * 4000,  # unclosed quote
    ],
)
def test_malformed_http_sig_strings_are_refused_by_the_linear_parser(
    value, header, message
) -> None:
    with pytest.raises(SignatureError, match="comma-separated") as err:
        sig.verify(value, header, message, lambda kid, alg: None)
    assert err.value.code == "err.signature.invalid"


def test_duplicate_http_sig_parameter_is_refused(keys, header, message) -> None:
    value = sig.sign(header, message, keys["EdDSA"], "http-sig-ed25519")
    with pytest.raises(SignatureError, match="'created' twice"):
        sig.verify(value + ', created="1"', header, message, resolver_for(keys["EdDSA"]))


def test_http_sig_string_is_parsed_once_when_inspected_first(
    keys, header, message, monkeypatch
) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, "http-sig-ed25519")
    parses: list[str] = []
    real = sig._parse_http_sig
    monkeypatch.setattr(sig, "_parse_http_sig", lambda v: parses.append(v) or real(v))
    info = sig.inspect_signature(value)
    assert sig.verify(value, header, message, resolver_for(key), info=info).kid == key.kid
    assert len(parses) == 1


@pytest.mark.parametrize(
    "created,expires",
    [
        ("nan", "nan"),
        ("1.5e9", "inf"),
        ("-5", "10"),
        ("1750000000", "99999999999"),
        ("0x10", "0x20"),
    ],
)
def test_http_sig_times_must_be_whole_seconds_in_a_bounded_window(
    keys, header, message, created, expires
) -> None:
    key = keys["EdDSA"]
    value = sig.sign(header, message, key, "http-sig-ed25519", now=lambda: NOW)
    import re

    value = re.sub(r'created="\d+"', f'created="{created}"', value)
    value = re.sub(r'expires="\d+"', f'expires="{expires}"', value)
    with pytest.raises(SignatureError, match="unix time|at most 3600 s") as err:
        sig.verify(value, header, message, resolver_for(key), now=lambda: NOW)
    assert err.value.code == "err.signature.invalid"
