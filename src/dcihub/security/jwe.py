"""`EncryptedMessage`: the spec's JWE Flattened JSON form of an encrypted `message`.

Shape (crvs_api components.schemas.EncryptedMessage, DIGEST §4.2):
`{"header": {"alg", "enc", "kid", ["epk"]}, "encrypted_key", "iv", "ciphertext", "tag"}`, all
base64url, a per-recipient unprotected header only, so no `protected`/`aad` member and an empty
AAD. Plaintext = UTF-8 JSON of the inner message object. Key management RSA-OAEP-256 (RSA key)
or ECDH-ES+A256KW (EC P-256 key, Concat KDF per RFC 7518 §4.6); content encryption A256GCM.

Built directly on `cryptography` because joserfc's JSON serialisation always emits and requires
a `protected` member and authenticates it (AAD "e30" for `{}`), which is not the spec's form.
On decryption we are lenient about the envelope: a `protected` member (then authenticated as
RFC 7516 says), a shared `unprotected` header, and OpenCRVS's habit of repeating `alg`/`enc`/
`kid` in both `unprotected` and `header` are accepted; conflicting values are not.

Encrypt-then-sign is the caller's order: encrypt the message, put the EncryptedMessage in the
envelope, then sign the envelope; on receipt verify first, then decrypt.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from joserfc.jwk import ECKey, RSAKey

from ._b64 import b64url_decode, b64url_encode
from .errors import EncryptionError
from .keys import AsymmetricKey, as_key

__all__ = [
    "KEY_ALGS",
    "CONTENT_ENC",
    "encrypt_message",
    "decrypt_message",
    "is_encrypted_message",
    "recipient_kid",
]

RSA_OAEP_256 = "RSA-OAEP-256"
ECDH_ES_A256KW = "ECDH-ES+A256KW"
KEY_ALGS = (RSA_OAEP_256, ECDH_ES_A256KW)
CONTENT_ENC = "A256GCM"
_CEK_BYTES = 32
_IV_BYTES = 12
_TAG_BYTES = 16
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_REQUIRED = ("header", "encrypted_key", "iv", "ciphertext", "tag")

KeyForKid = Callable[[str | None], "AsymmetricKey | Mapping[str, Any] | None"]


def is_encrypted_message(value: Any) -> bool:
    """True if `value` looks like an EncryptedMessage (has the five JWE members)."""
    return isinstance(value, Mapping) and all(k in value for k in ("iv", "ciphertext", "tag"))


def recipient_kid(encrypted: Mapping[str, Any]) -> str | None:
    """The recipient `kid` an EncryptedMessage names (to choose our decryption key)."""
    try:
        return _merged_header(encrypted).get("kid")
    except EncryptionError:
        return None


# -- encryption -----------------------------------------------------------------------------


def encrypt_message(
    message: Any, recipient_jwk: AsymmetricKey | Mapping[str, Any], *, alg: str | None = None
) -> dict[str, Any]:
    """Encrypt `message` (a JSON value) to the recipient's public `enc` key.

    `alg` defaults to the key's own `alg`, else RSA-OAEP-256 for RSA and ECDH-ES+A256KW for EC.
    """
    try:
        key = as_key(recipient_jwk)
    except (TypeError, ValueError) as exc:
        raise EncryptionError(f"the recipient's encryption key is unusable: {exc}") from exc
    alg = alg or key.alg or (RSA_OAEP_256 if isinstance(key, RSAKey) else ECDH_ES_A256KW)
    _check_recipient_key(key, alg)
    try:
        plaintext = orjson.dumps(message)
    except TypeError as exc:
        raise EncryptionError(f"message is not JSON-serialisable: {exc}") from exc

    cek = AESGCM.generate_key(bit_length=256)
    header: dict[str, Any] = {"alg": alg, "enc": CONTENT_ENC, "kid": key.kid}
    if alg == RSA_OAEP_256:
        encrypted_key = key.public_key.encrypt(cek, _OAEP)  # type: ignore[union-attr]
    else:
        assert isinstance(key, ECKey)
        ephemeral = ec.generate_private_key(key.public_key.curve)
        header["epk"] = _epk_jwk(ephemeral.public_key())
        kek = _concat_kdf(ephemeral.exchange(ec.ECDH(), key.public_key), alg, b"", b"")
        encrypted_key = aes_key_wrap(kek, cek)
    iv = os.urandom(_IV_BYTES)
    sealed = AESGCM(cek).encrypt(iv, plaintext, b"")
    return {
        "header": header,
        "encrypted_key": b64url_encode(encrypted_key),
        "iv": b64url_encode(iv),
        "ciphertext": b64url_encode(sealed[:-_TAG_BYTES]),
        "tag": b64url_encode(sealed[-_TAG_BYTES:]),
    }


# -- decryption -----------------------------------------------------------------------------


def decrypt_message(encrypted: Mapping[str, Any], key_for_kid: KeyForKid) -> Any:
    """Decrypt an EncryptedMessage with our private key for its `kid`; return the message.

    `key_for_kid(kid)` returns our private key (e.g. `KeyManager.decryption_key`) or None.
    """
    if not isinstance(encrypted, Mapping):
        raise EncryptionError("the encrypted message is not a JSON object")
    missing = [m for m in _REQUIRED if m not in encrypted]
    if "protected" in encrypted and "header" in missing:
        missing.remove("header")
    if missing:
        raise EncryptionError(f"EncryptedMessage lacks {', '.join(missing)}")
    header = _merged_header(encrypted)
    alg, enc, kid = header.get("alg"), header.get("enc"), header.get("kid")
    if alg not in KEY_ALGS:
        raise EncryptionError(f"JWE alg {alg!r} is not accepted; use one of {', '.join(KEY_ALGS)}")
    if enc != CONTENT_ENC:
        raise EncryptionError(f"JWE enc {enc!r} is not accepted; use {CONTENT_ENC}")
    if "zip" in header or "crit" in header:
        raise EncryptionError("JWE 'zip' and 'crit' header parameters are not supported")

    found = key_for_kid(kid)
    if found is None:
        raise EncryptionError(
            f"message is encrypted to kid={kid!r}, which is not one of our current encryption "
            "keys; fetch our /.well-known/jwks.json and encrypt to a key with use 'enc'"
        )
    try:
        key = as_key(found)
    except (TypeError, ValueError) as exc:  # pragma: no cover - our own keys are valid
        raise EncryptionError(f"decryption key {kid!r} is unusable: {exc}") from exc
    _check_recipient_key(key, alg)
    if not key.is_private:
        raise EncryptionError(f"key {kid!r} is a public key; decryption needs the private key")

    try:
        encrypted_key = b64url_decode(encrypted["encrypted_key"])
        iv = b64url_decode(encrypted["iv"])
        ciphertext = b64url_decode(encrypted["ciphertext"])
        tag = b64url_decode(encrypted["tag"])
    except (ValueError, TypeError) as exc:
        raise EncryptionError("EncryptedMessage members are not base64url strings") from exc
    if len(iv) != _IV_BYTES or len(tag) != _TAG_BYTES:
        raise EncryptionError("A256GCM needs a 96-bit iv and a 128-bit tag")

    cek = _unwrap_cek(key, alg, header, encrypted_key)
    aad = _aad(encrypted)
    try:
        plaintext = AESGCM(cek).decrypt(iv, ciphertext + tag, aad)
    except InvalidTag as exc:
        raise EncryptionError(
            f"message encrypted to kid={kid!r} fails its integrity check (tag): the ciphertext, "
            "iv, tag or header was altered, or it was encrypted to another key"
        ) from exc
    try:
        return orjson.loads(plaintext)
    except orjson.JSONDecodeError as exc:
        raise EncryptionError("decrypted message is not UTF-8 JSON") from exc


def _merged_header(encrypted: Mapping[str, Any]) -> dict[str, Any]:
    parts: list[Mapping[str, Any]] = []
    if "protected" in encrypted:
        try:
            protected = orjson.loads(b64url_decode(encrypted["protected"]))
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            raise EncryptionError("JWE 'protected' member is not base64url JSON") from exc
        parts.append(protected)
    for member in ("unprotected", "header"):
        if member in encrypted:
            parts.append(encrypted[member])
    merged: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, Mapping):
            raise EncryptionError("JWE header members must be JSON objects")
        for name, value in part.items():
            if name in merged and merged[name] != value:
                raise EncryptionError(f"JWE header parameter {name!r} has conflicting values")
            merged[name] = value
    return merged


def _aad(encrypted: Mapping[str, Any]) -> bytes:
    aad = str(encrypted.get("protected", "")).encode("ascii")
    if "aad" in encrypted:
        aad += b"." + str(encrypted["aad"]).encode("ascii")
    return aad


def _check_recipient_key(key: AsymmetricKey, alg: str) -> None:
    if alg not in KEY_ALGS:
        raise EncryptionError(f"JWE alg {alg!r} is not supported; use one of {', '.join(KEY_ALGS)}")
    if alg == RSA_OAEP_256 and not isinstance(key, RSAKey):
        raise EncryptionError(f"{alg} needs an RSA key; key {key.kid!r} is {key.key_type}")
    if alg == ECDH_ES_A256KW and not isinstance(key, ECKey):
        raise EncryptionError(f"{alg} needs an EC key; key {key.kid!r} is {key.key_type}")
    if isinstance(key, RSAKey) and key.public_key.key_size < 2048:
        raise EncryptionError(f"RSA key {key.kid!r} is shorter than 2048 bits")
    if key.get("use") not in (None, "enc"):
        raise EncryptionError(f"key {key.kid!r} is published for use {key.get('use')!r}, not 'enc'")
    if key.alg and key.alg != alg:
        raise EncryptionError(f"key {key.kid!r} is published for alg {key.alg!r}, not {alg!r}")


def _unwrap_cek(key: AsymmetricKey, alg: str, header: Mapping[str, Any], wrapped: bytes) -> bytes:
    failure = EncryptionError(
        f"cannot recover the content key with kid={key.kid!r}: the message was encrypted to "
        "another key, or encrypted_key was altered"
    )
    if alg == RSA_OAEP_256:
        private = key.private_key
        assert isinstance(private, rsa.RSAPrivateKey)
        try:
            cek = private.decrypt(wrapped, _OAEP)
        except ValueError as exc:
            raise failure from exc
    else:
        private_ec = key.private_key
        assert isinstance(private_ec, ec.EllipticCurvePrivateKey)
        epk = _ephemeral_public(header.get("epk"), private_ec.curve)
        try:
            apu = b64url_decode(header.get("apu", ""))
            apv = b64url_decode(header.get("apv", ""))
        except ValueError as exc:
            raise EncryptionError("JWE apu/apv are not base64url") from exc
        kek = _concat_kdf(private_ec.exchange(ec.ECDH(), epk), alg, apu, apv)
        try:
            cek = aes_key_unwrap(kek, wrapped)
        except InvalidUnwrap as exc:
            raise failure from exc
    if len(cek) != _CEK_BYTES:
        raise failure
    return cek


def _ephemeral_public(epk: Any, curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    if not isinstance(epk, Mapping) or epk.get("kty") != "EC":
        raise EncryptionError("ECDH-ES needs an 'epk' EC public key in the JWE header")
    if epk.get("crv") not in _CURVES or _CURVES[epk["crv"]].name != curve.name:
        raise EncryptionError(f"JWE epk curve {epk.get('crv')!r} does not match our key's curve")
    try:
        x = int.from_bytes(b64url_decode(epk["x"]), "big")
        y = int.from_bytes(b64url_decode(epk["y"]), "big")
        # public_key() checks the point is on the curve (invalid-curve attacks).
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except (KeyError, ValueError, TypeError) as exc:
        raise EncryptionError("JWE epk is not a valid point on its curve") from exc


def _epk_jwk(public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public.public_numbers()
    size = (public.curve.key_size + 7) // 8
    crv = next(name for name, c in _CURVES.items() if c.name == public.curve.name)
    return {
        "kty": "EC",
        "crv": crv,
        "x": b64url_encode(numbers.x.to_bytes(size, "big")),
        "y": b64url_encode(numbers.y.to_bytes(size, "big")),
    }


def _concat_kdf(shared: bytes, alg: str, apu: bytes, apv: bytes) -> bytes:
    """RFC 7518 §4.6.2 Concat KDF for ECDH-ES key wrapping (256-bit KEK for A256KW)."""

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    other_info = field(alg.encode("ascii")) + field(apu) + field(apv) + (256).to_bytes(4, "big")
    return ConcatKDFHash(algorithm=hashes.SHA256(), length=32, otherinfo=other_info).derive(shared)
