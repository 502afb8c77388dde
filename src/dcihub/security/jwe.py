"""`EncryptedMessage`: the spec's JWE Flattened JSON form of an encrypted `message`.

Shape (crvs_api components.schemas.EncryptedMessage, DIGEST §4.2):
`{"header": {"alg", "enc", "kid", ["epk"]}, "encrypted_key", "iv", "ciphertext", "tag"}`, all
base64url, a per-recipient unprotected header only, so no `protected`/`aad` member and an empty
AAD. Plaintext = UTF-8 JSON of the inner message object. Key management RSA-OAEP-256 (RSA key)
or ECDH-ES+A256KW (EC P-256 key, Concat KDF per RFC 7518 §4.6); content encryption A256GCM.

The cryptography is joserfc's JWE algorithms (`joserfc.jwa`, through a `JWERegistry` that
knows only RSA-OAEP-256, ECDH-ES+A256KW and A256GCM): CEK and iv generation, RSA-OAEP, the
ephemeral key, ECDH and Concat KDF, AES key wrap, AES-GCM. What is ours is the JWE's form
around them, because neither library's JWE serialisation fits:

- joserfc's JSON serialisation always emits and requires a `protected` member and
  authenticates it (AAD "e30" for `{}`), which is not the spec's form; its default size limits
  (64 kB of ciphertext) are also below a large message;
- jwcrypto's does produce exactly the spec's form, but costs 2 to 3 times as much per
  message (it deep-copies its header registry for every JWE object and builds jwcrypto JWK
  objects for the ephemeral and wrapping keys): that is on the path of every encrypted request
  and reply. jwcrypto stays the independent implementation the tests check us against.

So: the per-recipient header is the whole JOSE header; the AAD is empty (RFC 7516 §5.1 step 14
with no protected header); `epk` goes into, and is read from, that header. Before any key is
used we check the envelope's members, `alg`/`enc` (only the two key-management algorithms and
A256GCM; the registry refuses any other too), no `zip`/`crit`, the recipient key's type, size,
`use` and `alg`, strict base64url, the GCM iv and tag sizes, and the ephemeral key (an EC key
on our key's curve; joserfc's import of it refuses a point off the curve, against invalid-curve
attacks). A message whose content key cannot be recovered goes on with a random one and fails
at the tag like any altered message: one refusal for both (RFC 7516 §11.5).

On decryption we are lenient about the envelope: a `protected` member (then authenticated as
RFC 7516 says), a shared `unprotected` header, and OpenCRVS's habit of repeating `alg`/`enc`/
`kid` in both `unprotected` and `header` are accepted; conflicting values are not.

Encrypt-then-sign is the caller's order: encrypt the message, put the EncryptedMessage in the
envelope, then sign the envelope; on receipt verify first, then decrypt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from joserfc.errors import JoseError
from joserfc.jwa import JWEKeyAgreement, JWEKeyEncryption
from joserfc.jwe import FlattenedJSONEncryption, JWERegistry, Recipient
from joserfc.jwk import ECKey, RSAKey

from ._b64 import b64url_decode, b64url_encode
from .errors import EncryptionError
from .keys import AsymmetricKey, as_key

__all__ = [
    "KEY_ALGS",
    "CONTENT_ENC",
    "encrypt_message",
    "decrypt_message",
    "decrypt_plaintext",
    "parse_plaintext",
    "is_encrypted_message",
    "recipient_kid",
]

RSA_OAEP_256 = "RSA-OAEP-256"
ECDH_ES_A256KW = "ECDH-ES+A256KW"
KEY_ALGS = (RSA_OAEP_256, ECDH_ES_A256KW)
CONTENT_ENC = "A256GCM"
_REGISTRY = JWERegistry(algorithms=[*KEY_ALGS, CONTENT_ENC])
_IV_BYTES = 12
_TAG_BYTES = 16
_REQUIRED = ("header", "encrypted_key", "iv", "ciphertext", "tag")

KeyForKid = Callable[[str | None], "AsymmetricKey | Mapping[str, Any] | None"]


def is_encrypted_message(value: Any) -> bool:
    """True if `value` looks like an EncryptedMessage (has the five JWE members)."""
    return isinstance(value, Mapping) and all(k in value for k in ("iv", "ciphertext", "tag"))


def recipient_kid(encrypted: Mapping[str, Any]) -> str | None:
    """The recipient `kid` an EncryptedMessage names (to choose our decryption key)."""
    try:
        kid = _merged_header(encrypted).get("kid")
    except EncryptionError:
        return None
    return kid if isinstance(kid, str) else None


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

    enc = _REGISTRY.get_enc(CONTENT_ENC)
    management = _REGISTRY.get_alg(alg)
    recipient = _recipient({"alg": alg, "enc": CONTENT_ENC, "kid": key.kid}, key)
    cek = enc.generate_cek()
    if isinstance(management, JWEKeyAgreement):
        management.prepare_ephemeral_key(recipient)  # a new key; its public part -> "epk"
        agreed = management.encrypt_agreed_upon_key(enc, recipient)
        recipient.ephemeral_key = None
        encrypted_key = management.wrap_cek_with_auk(cek, agreed)
    else:
        assert isinstance(management, JWEKeyEncryption)
        encrypted_key = management.encrypt_cek(cek, recipient)
    iv = enc.generate_iv()
    ciphertext, tag = enc.encrypt(plaintext, cek, iv, b"")  # no protected header: empty AAD
    return {
        "header": recipient.header,
        "encrypted_key": b64url_encode(encrypted_key),
        "iv": b64url_encode(iv),
        "ciphertext": b64url_encode(ciphertext),
        "tag": b64url_encode(tag),
    }


# -- decryption -----------------------------------------------------------------------------


def decrypt_message(encrypted: Mapping[str, Any], key_for_kid: KeyForKid) -> Any:
    """Decrypt an EncryptedMessage with our private key for its `kid`; return the message.

    `key_for_kid(kid)` returns our private key (e.g. `KeyManager.decryption_key`) or None.
    """
    return parse_plaintext(decrypt_plaintext(encrypted, key_for_kid))


def parse_plaintext(plaintext: bytes) -> Any:
    """The message a decrypted plaintext holds (UTF-8 JSON)."""
    try:
        return orjson.loads(plaintext)
    except orjson.JSONDecodeError as exc:
        raise EncryptionError("decrypted message is not UTF-8 JSON") from exc


def decrypt_plaintext(encrypted: Mapping[str, Any], key_for_kid: KeyForKid) -> bytes:
    """Decrypt an EncryptedMessage as `decrypt_message` does; return the plaintext bytes (for
    a receiver that checks them before parsing, e.g. their nesting)."""
    if not isinstance(encrypted, Mapping):
        raise EncryptionError("the encrypted message is not a JSON object")
    missing = [m for m in _REQUIRED if m not in encrypted]
    if "protected" in encrypted and "header" in missing:
        missing.remove("header")
    if missing:
        raise EncryptionError(f"EncryptedMessage lacks {', '.join(missing)}")
    header = _merged_header(encrypted)
    alg, enc_name, kid = header.get("alg"), header.get("enc"), header.get("kid")
    if alg not in KEY_ALGS:
        raise EncryptionError(f"JWE alg {alg!r} is not accepted; use one of {', '.join(KEY_ALGS)}")
    if enc_name != CONTENT_ENC:
        raise EncryptionError(f"JWE enc {enc_name!r} is not accepted; use {CONTENT_ENC}")
    if "zip" in header or "crit" in header:
        raise EncryptionError("JWE 'zip' and 'crit' header parameters are not supported")

    found = key_for_kid(kid if isinstance(kid, str) else None)
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
    if alg == ECDH_ES_A256KW:
        assert isinstance(key, ECKey)
        _check_epk(header.get("epk"), key)
        _check_party_info(header)

    enc = _REGISTRY.get_enc(enc_name)
    management = _REGISTRY.get_alg(alg)
    recipient = _recipient(header, key)
    recipient.encrypted_key = encrypted_key
    if isinstance(management, JWEKeyAgreement):
        try:  # imports epk (refused unless a point on the curve), then ECDH and Concat KDF
            agreed = management.decrypt_agreed_upon_key(enc, recipient)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise EncryptionError("JWE epk is not a valid point on its curve") from exc
    try:
        if isinstance(management, JWEKeyAgreement):
            cek = management.unwrap_cek_with_auk(encrypted_key, agreed)
        else:
            assert isinstance(management, JWEKeyEncryption)
            cek = management.decrypt_cek(recipient)
    except (JoseError, ValueError):
        cek = b""
    if len(cek) * 8 != enc.cek_size:
        cek = enc.generate_cek()  # RFC 7516 §11.5: fail at the tag, as any alteration does
    try:
        plaintext = enc.decrypt(ciphertext, tag, cek, iv, _aad(encrypted))
    except JoseError as exc:
        raise EncryptionError(
            f"message encrypted to kid={kid!r} cannot be decrypted with that key: it was "
            "encrypted to another key, or its encrypted_key, iv, ciphertext, tag or header was "
            "altered (integrity check failed)"
        ) from exc
    return plaintext


def _recipient(header: dict[str, Any], key: AsymmetricKey) -> Recipient[Any]:
    """joserfc's recipient of a JWE without a protected header: `header` is all of it."""
    return Recipient(FlattenedJSONEncryption({}), header, key)


def _merged_header(encrypted: Mapping[str, Any]) -> dict[str, Any]:
    parts: list[Any] = []
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
    """RFC 7516 §5.1 step 14: ASCII(protected [ "." aad ]); empty for the spec's form."""
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


def _check_epk(epk: Any, key: ECKey) -> None:
    """The ephemeral key must be an EC key on our key's curve; that it is a point on that curve
    (invalid-curve attacks) is checked when joserfc imports it (`cryptography` refuses it)."""
    if not isinstance(epk, Mapping) or epk.get("kty") != "EC":
        raise EncryptionError("ECDH-ES needs an 'epk' EC public key in the JWE header")
    if epk.get("crv") != key.curve_name:
        raise EncryptionError(f"JWE epk curve {epk.get('crv')!r} does not match our key's curve")


def _check_party_info(header: Mapping[str, Any]) -> None:
    """ECDH-ES `apu` / `apv`, when present, are base64url (they enter the Concat KDF)."""
    try:
        for name in ("apu", "apv"):
            if name in header:
                b64url_decode(header[name])
    except (ValueError, TypeError) as exc:
        raise EncryptionError("JWE apu/apv are not base64url") from exc
