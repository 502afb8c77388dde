"""The envelope's `signature` field: three profiles, chosen by the sender, detected on receipt.

* `jws-detached` (default, DIGEST §4.1 Choice): `<b64url protected header>..<b64url sig>`,
  protected header `{"alg", "kid"}` with alg ES256 | RS256 | EdDSA; signing input
  `<b64 header>.<b64url(JCS bytes of {"header", "message"})>` (RFC 7515 App. F: the payload is
  base64url-encoded, not "unencoded payload").
* `jws-compact` (OpenCRVS DCI API): compact JWS whose payload is the JSON of
  `{"header", "message"}`. It verifies when the signature is valid AND the decoded payload equals
  the received header and message as parsed JSON (bytes may differ; booleans never equal numbers).
* `http-sig-ed25519` (spec example, as OpenSPP2 emits it):
  `namespace="dci", kidId="<sender_id>|<kid>|ed25519", algorithm="ed25519", created="<unix>",
  expires="<unix>", headers="(created) (expires) digest", signature="<base64>"`, an Ed25519
  signature of `(created): <c>\\n(expires): <e>\\ndigest: <base64 SHA-256 of the compact,
  key-sorted JSON of {"header", "message"}>`. On receipt we also accept a `Signature:` prefix,
  the `keyId=` spelling, and the `SHA-256=` / `BLAKE-512=` digest labels of the Beckn heritage.

`verify` never trusts the signature to pick the key: `resolve_key(kid, alg)` comes from the caller
and looks in the sending partner's JWKS. Encrypt-then-sign: with an encrypted message, the
`message` signed and verified here is the EncryptedMessage as sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dcihub.standard.codes import ErrorCode

from . import _jws
from ._b64 import b64url_decode, b64url_encode
from .canonical import CanonicalizationError, canonicalize, envelope_bytes, envelope_document
from .errors import SignatureError
from .keys import AsymmetricKey, as_key

__all__ = [
    "PROFILES",
    "DEFAULT_PROFILE",
    "Verified",
    "SignatureInfo",
    "KeyResolver",
    "sign",
    "verify",
    "detect_profile",
    "inspect_signature",
]

JWS_DETACHED = "jws-detached"
JWS_COMPACT = "jws-compact"
HTTP_SIG = "http-sig-ed25519"
PROFILES = (JWS_DETACHED, JWS_COMPACT, HTTP_SIG)
DEFAULT_PROFILE = JWS_DETACHED

HTTP_SIG_HEADERS = "(created) (expires) digest"
DEFAULT_HTTP_SIG_TTL = 300
DEFAULT_CLOCK_SKEW = 60
MAX_HTTP_SIG_VALIDITY = 3600  # the most seconds between an HTTP signature's created and expires
# The longest detached-JWS or HTTP-signature `signature` accepted. A real one is under 1 KB (an
# RS256 detached JWS with a 4096-bit key is about 800 characters); anything longer is refused
# before it is parsed. A compact JWS embeds the envelope, so only the body size limit bounds it.
MAX_SIGNATURE_CHARS = 4096

KeyResolver = Callable[[str | None, str | None], "AsymmetricKey | Mapping[str, Any] | None"]

_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]+)")
# One `name="value"` parameter of an HTTP-signature string, anchored where the previous one
# ended: every character is read at most a bounded number of times (linear in the length).
_PARAM_AT = re.compile(r'[ \t]*([A-Za-z][A-Za-z0-9_-]{0,63})[ \t]*=[ \t]*"([^"]*)"[ \t]*(,|$)')


@dataclass(frozen=True)
class Verified:
    """A signature that verified: which profile, key and algorithm."""

    profile: str
    kid: str | None
    alg: str


@dataclass(frozen=True)
class SignatureInfo:
    """What a signature claims before any check (to pre-fetch the partner's JWKS).

    `params` holds the parsed parameters of an HTTP-signature string, so that `verify` given
    this info does not parse the string a second time."""

    profile: str
    kid: str | None
    alg: str | None
    params: Mapping[str, str] | None = None


# -- signing --------------------------------------------------------------------------------


def sign(
    header: Mapping[str, Any],
    message: Any,
    key: AsymmetricKey | Mapping[str, Any],
    profile: str = DEFAULT_PROFILE,
    *,
    sender_id: str | None = None,
    ttl_seconds: int = DEFAULT_HTTP_SIG_TTL,
    now: Callable[[], float] = time.time,
) -> str:
    """Sign `{"header", "message"}` with our private `key` and return the `signature` value.

    `sender_id` (default `header["sender_id"]`) and `ttl_seconds` only matter for
    `http-sig-ed25519`. The key's own `alg` is used (ES256 for P-256 keys if it has none).
    """
    key = as_key(key)
    try:
        if profile == JWS_DETACHED:
            return _sign_jws(key, envelope_bytes(header, message), detached=True)
        if profile == JWS_COMPACT:
            payload = orjson.dumps(envelope_document(header, message))
            return _sign_jws(key, payload, detached=False)
        if profile == HTTP_SIG:
            sid = sender_id if sender_id is not None else header.get("sender_id")
            if not sid:
                raise ValueError("http-sig-ed25519 needs a sender_id for its kidId")
            return _sign_http_sig(header, message, key, str(sid), ttl_seconds, now)
    except _jws.JWSFailure as exc:
        raise ValueError(f"cannot sign with {profile}: {exc}") from exc
    except (CanonicalizationError, TypeError) as exc:
        raise ValueError(f"cannot sign: the envelope is not JSON-serialisable: {exc}") from exc
    raise ValueError(f"unknown signature profile {profile!r}; expected one of {PROFILES}")


def _sign_jws(key: AsymmetricKey, payload: bytes, *, detached: bool) -> str:
    alg = _jws.alg_for_key(key)
    protected = _jws.encode_header({"alg": alg, "kid": key.kid})
    payload_b64 = b64url_encode(payload)
    signature = _jws.sign(f"{protected}.{payload_b64}".encode("ascii"), alg, key)
    return f"{protected}..{signature}" if detached else f"{protected}.{payload_b64}.{signature}"


def _sign_http_sig(
    header: Mapping[str, Any],
    message: Any,
    key: AsymmetricKey,
    sender_id: str,
    ttl: int,
    now: Callable[[], float],
) -> str:
    _jws.check_key("EdDSA", key, "sig")
    if not key.is_private:
        raise _jws.JWSFailure(f"key {key.kid!r} is a public key; signing needs the private key")
    created = int(now())
    expires = created + ttl
    body = _compact_sorted_json({"header": header, "message": message}, ascii_only=True)
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    signing_string = f"(created): {created}\n(expires): {expires}\ndigest: {digest}"
    private = key.private_key
    assert isinstance(private, Ed25519PrivateKey)  # check_key: an Ed25519 key, and private
    raw = private.sign(signing_string.encode("utf-8"))
    return (
        f'namespace="dci", kidId="{sender_id}|{key.kid}|ed25519", algorithm="ed25519", '
        f'created="{created}", expires="{expires}", headers="{HTTP_SIG_HEADERS}", '
        f'signature="{base64.b64encode(raw).decode("ascii")}"'
    )


def _compact_sorted_json(doc: Any, *, ascii_only: bool) -> bytes:
    """`json.dumps(doc, sort_keys=True, separators=(",", ":"))`, as OpenSPP2 digests it."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only)
    return text.encode("utf-8")


# -- detection ------------------------------------------------------------------------------


def detect_profile(signature: str) -> str:
    """Which profile a `signature` value uses (no verification). Raises SignatureError."""
    if not signature or not signature.strip():
        raise SignatureError(
            "the message has no signature; sign {header, message} (see /.well-known/jwks.json "
            "for our keys and the documentation for the accepted profiles)",
            code=ErrorCode.SIGNATURE_MISSING,
        )
    value = signature.strip()
    match = _COMPACT.fullmatch(value)  # linear: no segment can contain a '.'
    if match and match.group(2) != "":
        return JWS_COMPACT  # carries the envelope itself: bounded by the body size limit
    if len(value) > MAX_SIGNATURE_CHARS:
        raise SignatureError(
            f"the signature is {len(value)} characters long; this registry accepts at most "
            f"{MAX_SIGNATURE_CHARS} for a detached JWS or an HTTP-signature string (a real one "
            "is well under 1,000)"
        )
    if match:
        return JWS_DETACHED
    if re.search(r'signature\s*=\s*"', value, re.IGNORECASE):
        return HTTP_SIG
    raise SignatureError(
        "the signature is in no accepted format: expected a detached JWS "
        "'<header>..<signature>', a compact JWS '<header>.<payload>.<signature>', or an "
        'HTTP-signature string with keyId="…", created, expires and signature="…"'
    )


def inspect_signature(signature: str) -> SignatureInfo:
    """Profile, kid and alg a signature claims, unverified (for pre-fetching keys)."""
    profile = detect_profile(signature)
    value = signature.strip()
    if profile == HTTP_SIG:
        params = _parse_http_sig(value)
        _, kid, _ = _split_key_id(params)
        return SignatureInfo(profile, kid, "EdDSA", params)
    try:
        protected = _jws.decode_header(value.split(".", 1)[0])
    except _jws.JWSFailure as exc:
        raise SignatureError(f"{profile} signature: {exc}") from exc
    return SignatureInfo(profile, protected.get("kid"), protected["alg"])


# -- verification ---------------------------------------------------------------------------


def verify(
    signature: str | None,
    header: Mapping[str, Any],
    message: Any,
    resolve_key: KeyResolver,
    *,
    now: Callable[[], float] = time.time,
    max_clock_skew: int = DEFAULT_CLOCK_SKEW,
    info: SignatureInfo | None = None,
) -> Verified:
    """Verify `signature` over the received `header` and `message`, or raise SignatureError.

    `resolve_key(kid, alg)` returns the sending partner's public key (joserfc key or JWK dict)
    for that kid, or None if the partner has no such key. `info`, the result of
    `inspect_signature` on the same signature, spares a second parse.
    """
    profile = info.profile if info is not None else detect_profile(signature or "")
    value = (signature or "").strip()
    if profile == HTTP_SIG:
        params = info.params if info is not None and info.params is not None else None
        if params is None:
            params = _parse_http_sig(value)
        return _verify_http_sig(params, header, message, resolve_key, now(), max_clock_skew)
    return _verify_jws(profile, value, header, message, resolve_key)


def _resolve(resolve_key: KeyResolver, profile: str, kid: str | None, alg: str) -> AsymmetricKey:
    found = resolve_key(kid, alg)
    if found is None:
        raise SignatureError(
            f"{profile} signature names key kid={kid!r} (alg {alg}), which is not in the "
            "sender's registered JWKS; publish the key or sign with a registered one"
        )
    try:
        return as_key(found)
    except (TypeError, ValueError) as exc:
        raise SignatureError(
            f"{profile} signature: the sender's key {kid!r} is unusable: {exc}"
        ) from exc


def _verify_jws(
    profile: str,
    value: str,
    header: Mapping[str, Any],
    message: Any,
    resolve_key: KeyResolver,
) -> Verified:
    header_b64, payload_b64, sig_b64 = value.split(".")
    try:
        protected = _jws.decode_header(header_b64)
    except _jws.JWSFailure as exc:
        raise SignatureError(f"{profile} signature: {exc}") from exc
    alg, kid = protected["alg"], protected.get("kid")
    key = _resolve(resolve_key, profile, kid, alg)

    if profile == JWS_DETACHED:
        try:
            payload_b64 = b64url_encode(envelope_bytes(header, message))
        except CanonicalizationError as exc:
            raise SignatureError(
                f"{profile} signature: cannot canonicalise the body: {exc}"
            ) from exc
    try:
        _jws.verify(f"{header_b64}.{payload_b64}".encode("ascii"), sig_b64, alg, key)
    except _jws.JWSFailure as exc:
        hint = (
            "the header or message was changed after signing, or the sender signed other "
            "bytes than the RFC 8785 (JCS) form of {header, message}"
            if profile == JWS_DETACHED
            else "the payload was changed or signed with another key"
        )
        raise SignatureError(
            f"{profile} signature with kid={kid!r} ({alg}) fails: {exc}; {hint}"
        ) from exc

    if profile == JWS_COMPACT:
        try:
            signed = orjson.loads(b64url_decode(payload_b64))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise SignatureError(f"{profile} signature: payload is not JSON") from exc
        if not _same_envelope(signed, header, message):
            raise SignatureError(
                f"{profile} signature with kid={kid!r} is valid, but its payload differs from "
                "the received header and message: they were changed after signing"
            )
    return Verified(profile, kid, alg)


def _same_envelope(signed: Any, header: Mapping[str, Any], message: Any) -> bool:
    """Is the signed payload the received envelope, as JSON values? Comparing JCS bytes gives
    JSON equality (key order and number spelling ignored, `true` never `1`) at C speed."""
    expected = envelope_document(header, message)
    try:
        return canonicalize(signed) == canonicalize(expected)
    except CanonicalizationError:  # e.g. integers beyond 2^53: compare the parsed values
        return _same_json(signed, expected)


def _same_json(a: Any, b: Any) -> bool:
    """Equality of parsed JSON where `true` never equals `1` (Python's `True == 1`)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same_json, a, b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _parse_http_sig(value: str) -> dict[str, str]:
    """The `name="value"` parameters of an HTTP-signature string, separated by commas.

    Linear in the length of `value` (each parameter is matched where the previous one ended);
    anything that is not such a list is refused, naming where it stops making sense."""
    if value[:9].lower() == "signature":
        value = value[9:].lstrip(" :")
    params: dict[str, str] = {}
    pos, end = 0, len(value)
    while pos < end:
        match = _PARAM_AT.match(value, pos)
        if match is None:
            raise SignatureError(
                f'{HTTP_SIG} signature is not a comma-separated list of name="value" '
                f"parameters (it stops making sense at character {pos + 1})"
            )
        name, val, _ = match.groups()
        if name in params:
            raise SignatureError(f"{HTTP_SIG} signature has the parameter {name!r} twice")
        params[name] = val
        pos = match.end()
    return params


def _split_key_id(params: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """`keyId`/`kidId` = `<sender_id>|<kid>|<algorithm>` (a bare value is taken as the kid)."""
    raw = params.get("keyId", params.get("kidId"))
    if raw is None:
        return None, None, None
    parts = raw.split("|")
    if len(parts) == 3:
        return parts[0], parts[1] or None, parts[2]
    return None, raw or None, None


def _verify_http_sig(
    params: Mapping[str, str],
    header: Mapping[str, Any],
    message: Any,
    resolve_key: KeyResolver,
    now: float,
    skew: int,
) -> Verified:
    profile = HTTP_SIG
    missing = [p for p in ("created", "expires", "signature") if p not in params]
    if missing:
        raise SignatureError(f"{profile} signature lacks {', '.join(missing)}")
    algorithm = params.get("algorithm", "ed25519").lower()
    key_sender, kid, key_alg = _split_key_id(params)
    if algorithm != "ed25519" or (key_alg and key_alg.lower() != "ed25519"):
        raise SignatureError(f"{profile} signature uses algorithm {algorithm!r}; only ed25519")
    if params.get("headers", HTTP_SIG_HEADERS).split() != HTTP_SIG_HEADERS.split():
        raise SignatureError(
            f"{profile} signature covers headers={params.get('headers')!r}; only "
            f"'{HTTP_SIG_HEADERS}' is supported"
        )
    sender = header.get("sender_id")
    if key_sender and sender and key_sender != sender:
        raise SignatureError(
            f"{profile} signature keyId names sender {key_sender!r} but header.sender_id "
            f"is {sender!r}"
        )
    created_at, expires_at = _unix_time(params, "created"), _unix_time(params, "expires")
    if expires_at - created_at > MAX_HTTP_SIG_VALIDITY:
        raise SignatureError(
            f"{profile} signature (kid={kid!r}) is valid for {int(expires_at - created_at)} s; "
            f"this registry accepts at most {MAX_HTTP_SIG_VALIDITY} s between created and "
            "expires: sign each message when sending it"
        )
    if created_at > now + skew:
        raise SignatureError(
            f"{profile} signature (kid={kid!r}) is not yet valid: created={params['created']} is "
            f"{int(created_at - now)} s in the future; check the sender's clock"
        )
    if expires_at < now - skew:
        raise SignatureError(
            f"{profile} signature (kid={kid!r}) expired at {params['expires']} "
            f"({int(now - expires_at)} s ago); sign each message when sending it"
        )
    if expires_at < created_at:
        raise SignatureError(f"{profile} signature expires before it was created")
    try:
        raw_sig = base64.b64decode(params["signature"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{profile} signature value is not base64") from exc

    key = _resolve(resolve_key, profile, kid, "EdDSA")
    try:
        _jws.check_key("EdDSA", key, "sig")
    except _jws.JWSFailure as exc:
        raise SignatureError(f"{profile} signature: {exc}") from exc
    public = key.public_key
    assert isinstance(public, Ed25519PublicKey)  # check_key: an Ed25519 key
    for signing_string in _http_sig_candidates(params, header, message):
        try:
            public.verify(raw_sig, signing_string)
            return Verified(profile, kid, "EdDSA")
        except Exception:  # noqa: BLE001 - cryptography raises InvalidSignature
            continue
    raise SignatureError(
        f"{profile} signature with kid={kid!r} does not verify: the header or message was "
        "changed after signing, or the digest was not SHA-256 (or BLAKE2b-512) of the compact, "
        "key-sorted JSON of {header, message}"
    )


def _unix_time(params: Mapping[str, str], name: str) -> int:
    """A `created` / `expires` value: whole seconds since 1970 (no NaN, infinity or sign)."""
    text = params[name].strip()
    if not text.isdigit() or not text.isascii() or len(text) > 12:
        raise SignatureError(
            f"{HTTP_SIG} signature: {name}={params[name][:40]!r} is not a unix time in whole "
            "seconds"
        )
    return int(text)


def _http_sig_candidates(
    params: Mapping[str, str], header: Mapping[str, Any], message: Any
) -> list[bytes]:
    """Signing strings the sender may have used (the signature does not say which)."""
    docs = [{"header": header, "message": message}]
    if message is None:
        docs.append({"header": header})
    bodies: list[bytes] = []
    for doc in docs:
        for ascii_only in (True, False):
            body = _compact_sorted_json(doc, ascii_only=ascii_only)
            if body not in bodies:
                bodies.append(body)
    prefix = f"(created): {params['created']}\n(expires): {params['expires']}\ndigest: "
    out: list[bytes] = []
    for body in bodies:
        sha = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        blake = base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode("ascii")
        for digest in (sha, f"SHA-256={sha}", f"BLAKE-512={blake}"):
            out.append((prefix + digest).encode("utf-8"))
    return out
