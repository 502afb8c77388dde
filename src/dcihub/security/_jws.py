"""JWS primitives shared by message signatures and access tokens.

The algorithm implementations and keys are joserfc's. Message signatures call the algorithm
models directly (rather than `joserfc.jws.serialize_compact`) because (a) the detached profile
signs bytes we build ourselves (RFC 7515 App. F), (b) joserfc's registry caps payloads at
128 kB, too small for a large on-search reply, and (c) it emits a warning on every EdDSA use
(RFC 9864 deprecates the polymorphic name), while DCI peers still use `EdDSA`.

Access tokens are small, compact and ours, so they use joserfc's JWT functions with `REGISTRY`:
a `JWSRegistry` of the same algorithms whose `EdDSA` does not warn.

Only asymmetric algorithms exist here: `none` and HMAC are refused by construction.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from ._b64 import b64url_decode, b64url_encode
from .keys import AsymmetricKey

# alg -> (kty, curve or None). "Ed25519" is RFC 9864's fully-specified name for EdDSA/Ed25519.
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "RS256": ("RSA", None),
    "EdDSA": ("OKP", "Ed25519"),
    "Ed25519": ("OKP", "Ed25519"),
}
_MODELS = {name: JWSRegistry.algorithms[name] for name in ALGORITHMS}
MAX_HEADER_BYTES = 2048


def _without_warning(model: JWSAlgModel) -> JWSAlgModel:
    quiet = copy.copy(model)
    quiet.security_warning = None
    return quiet


class _Registry(JWSRegistry):
    """Our algorithms only (the allowed list is set too); `EdDSA` without the RFC 9864 warning
    that joserfc gives on every use."""

    algorithms = {name: _without_warning(model) for name, model in _MODELS.items()}


REGISTRY = _Registry(algorithms=list(ALGORITHMS))


class JWSFailure(Exception):
    """Why a JWS does not verify; the caller wraps it in its own error type."""


def alg_for_key(key: AsymmetricKey) -> str:
    """The JWS alg to sign with: the key's own `alg`, else the usual one for its type."""
    if key.alg:
        return str(key.alg)
    if isinstance(key, ECKey):
        return "ES256"
    if isinstance(key, OKPKey):
        return "EdDSA"
    return "RS256"


def check_key(alg: str, key: AsymmetricKey, use: str) -> None:
    """Refuse a key whose type, curve, size, `use` or `alg` does not fit `alg`."""
    if alg not in ALGORITHMS:
        raise JWSFailure(
            f"algorithm {alg!r} is not accepted (only {', '.join(sorted(ALGORITHMS))}; "
            "never 'none' or HMAC)"
        )
    kty, curve = ALGORITHMS[alg]
    if key.key_type != kty:
        raise JWSFailure(f"alg {alg} needs a {kty} key but key {key.kid!r} is {key.key_type}")
    if curve is not None and getattr(key, "curve_name", None) != curve:
        raise JWSFailure(f"alg {alg} needs curve {curve}; key {key.kid!r} is on another curve")
    if isinstance(key, RSAKey) and key.public_key.key_size < 2048:
        raise JWSFailure(f"RSA key {key.kid!r} is shorter than 2048 bits")
    key_use = key.get("use")
    if key_use and key_use != use:
        raise JWSFailure(f"key {key.kid!r} is published for use {key_use!r}, not {use!r}")
    key_alg = key.alg
    if key_alg and key_alg != alg and {key_alg, alg} != {"EdDSA", "Ed25519"}:
        raise JWSFailure(f"key {key.kid!r} is published for alg {key_alg!r}, not {alg!r}")


def encode_header(header: dict[str, Any]) -> str:
    return b64url_encode(orjson.dumps(header))


def decode_header(segment: str) -> dict[str, Any]:
    """Parse a protected header and refuse the features we do not implement."""
    if len(segment) > MAX_HEADER_BYTES:
        raise JWSFailure("protected header is too large")
    try:
        header = orjson.loads(b64url_decode(segment))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise JWSFailure("protected header is not base64url-encoded JSON") from exc
    if not isinstance(header, dict):
        raise JWSFailure("protected header is not a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise JWSFailure("protected header has no 'alg'")
    if alg not in ALGORITHMS:
        raise JWSFailure(
            f"algorithm {alg!r} is not accepted (only {', '.join(sorted(ALGORITHMS))}; "
            "never 'none' or HMAC)"
        )
    if "crit" in header:
        raise JWSFailure(f"protected header lists critical extensions {header['crit']!r}")
    if header.get("b64") is False:
        raise JWSFailure("unencoded payload (b64: false) is not supported")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JWSFailure("protected header 'kid' is not a string")
    return header


def sign(signing_input: bytes, alg: str, key: AsymmetricKey) -> str:
    """Signature over `signing_input` (ASCII `<b64 header>.<b64 payload>`), base64url."""
    check_key(alg, key, "sig")
    if not key.is_private:
        raise JWSFailure(f"key {key.kid!r} is a public key; signing needs the private key")
    try:
        return b64url_encode(_MODELS[alg].sign(signing_input, key))
    except JoseError as exc:  # pragma: no cover - guarded by check_key
        raise JWSFailure(str(exc)) from exc


def verify(signing_input: bytes, signature_b64: str, alg: str, key: AsymmetricKey) -> None:
    """Raise JWSFailure unless `signature_b64` is a valid signature of `signing_input`."""
    check_key(alg, key, "sig")
    try:
        sig = b64url_decode(signature_b64)
    except ValueError as exc:
        raise JWSFailure("signature part is not base64url") from exc
    try:
        ok = _MODELS[alg].verify(signing_input, sig, key)
    except (JoseError, ValueError) as exc:
        raise JWSFailure(f"signature could not be checked: {exc}") from exc
    if not ok:
        raise JWSFailure("signature does not match")
