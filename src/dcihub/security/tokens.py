"""OAuth2 client credentials (DIGEST §4.3): client secrets, access tokens, scopes, token cache.

**Client secrets** are stored as self-describing salted scrypt strings
(`scrypt$<n>$<r>$<p>$<salt>$<hash>`, base64url); `pbkdf2_sha256$<iterations>$<salt>$<hash>` is
also verified. Comparison is constant-time.

**Access tokens** are JWTs (RFC 9068 shape) signed with the registry's signing key:
header `{"alg", "kid", "typ": "at+jwt"}` (the `typ` keeps a message signature from ever being
accepted as a token), claims `iss`, `aud` (default = issuer), `sub` = `client_id` = the OAuth
client, `sender_id` (the partner's DCI sender_id), `scope`, `iat`, `exp`, `jti`. They are made
and read by joserfc's `jwt` functions and checked by its `JWTClaimsRegistry` (`iss`, `aud`,
`exp`, `nbf`, `iat`, with leeway); joserfc has no setting for an expected `typ`, so the key
lookup it calls checks `typ` (and refuses `crit`/`b64`) before choosing our key by `kid`.
What is ours is that, and turning joserfc's errors into our refusals.

**Scopes** follow the spec's `registry.<action>` (§6 #6) qualified by the registry they apply to:
`<registry>:registry.<action>`, e.g. `crvs:registry.search`, `social:registry.subscribe`;
either part may be `*` (`*:registry.*` = every action on every registry). A token request may
ask for qualified scopes, for unqualified ones (`registry.search` = that action on every
registry the partner may use; the spec's `registry/search` spelling is accepted) or for nothing
(= everything the partner is allowed). The token carries the qualified scopes granted, which is
the intersection with the partner's configuration; `TokenClaims.allows(registry, action)` is
the check an endpoint makes.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    DecodeError,
    ExceededSizeError,
    ExpiredTokenError,
    InvalidHeaderValueError,
    InvalidPayloadError,
    JoseError,
    MissingAlgorithmError,
    MissingClaimError,
    MissingCritHeaderError,
    MissingHeaderError,
    UnsupportedAlgorithmError,
    UnsupportedHeaderError,
)
from joserfc.jwk import GuestProtocol
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from . import _jws
from ._b64 import b64url_decode, b64url_encode
from .errors import TokenError, TokenFetchError
from .keys import AsymmetricKey

__all__ = [
    "hash_secret",
    "verify_secret",
    "generate_secret",
    "grant_scopes",
    "scope_allows",
    "bearer_token",
    "TokenClaims",
    "TokenIssuer",
    "ClientTokenCache",
]

TOKEN_TYPE = "at+jwt"

# -- client secrets -------------------------------------------------------------------------

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_DUMMY_HASH: str | None = None


def generate_secret() -> str:
    """A new random client secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """Salted scrypt hash of a client secret, as a self-describing string."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return (
        f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64url_encode(salt)}${b64url_encode(digest)}"
    )


def verify_secret(secret: str, hashed: str | None) -> bool:
    """Constant-time check of `secret` against `hash_secret` output; False on any malformation.

    With `hashed=None` (unknown client) a dummy hash is still computed, so response time does
    not reveal which client ids exist.
    """
    global _DUMMY_HASH
    if hashed is None:
        _DUMMY_HASH = _DUMMY_HASH or hash_secret(generate_secret())
        verify_secret(secret, _DUMMY_HASH)
        return False
    try:
        scheme, *params = hashed.split("$")
        if scheme == "scrypt" and len(params) == 5:
            n, r, p = (int(x) for x in params[:3])
            if n > 2**20 or r > 16 or p > 4:
                return False
            salt, expected = b64url_decode(params[3]), b64url_decode(params[4])
            actual = hashlib.scrypt(
                secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(expected)
            )
        elif scheme == "pbkdf2_sha256" and len(params) == 3:
            iterations = int(params[0])
            salt, expected = b64url_decode(params[1]), b64url_decode(params[2])
            actual = hashlib.pbkdf2_hmac(
                "sha256", secret.encode("utf-8"), salt, iterations, len(expected)
            )
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# -- scopes ---------------------------------------------------------------------------------

ScopeConfig = Mapping[str, Sequence[str] | str]  # registry -> actions, or "*"


def _split_scope(token: str) -> tuple[str | None, str] | None:
    """`crvs:registry.search` -> ("crvs", "search"); `registry/search` -> (None, "search")."""
    registry, _, rest = token.rpartition(":")
    rest = rest.replace("/", ".")
    if not rest.startswith("registry.") or len(rest) == len("registry."):
        return None
    return (registry or None), rest[len("registry.") :]


def _actions_for(config: ScopeConfig, registry: str) -> set[str]:
    """Actions allowed on `registry` ({"*"} = all); a `"*"` registry entry applies to every
    registry, but asking for registry `"*"` only matches that entry."""
    allowed: set[str] = set()
    for reg in {registry, "*"}:
        actions = config.get(reg)
        if actions is not None:
            allowed.update(["*"] if actions == "*" else actions)
    return {"*"} if "*" in allowed else allowed


def grant_scopes(config: ScopeConfig, requested: str | Iterable[str] | None = None) -> list[str]:
    """The qualified scopes to put in a token: what was asked for, within what is allowed.

    `config` maps registry (or `"*"`) to allowed actions (or `"*"`). Scopes that are not
    `registry.*` scopes (e.g. `openid`) are ignored; a request with none grants everything
    allowed. An empty result means nothing asked for is allowed (answer `invalid_scope`).
    """
    if isinstance(requested, str):
        requested = requested.split()
    wanted = [parsed for t in (requested or []) if (parsed := _split_scope(t))]
    if not wanted:
        wanted = [(None, "*")]
    granted: set[str] = set()
    for registry, action in wanted:
        for reg in [registry] if registry else list(config):
            allowed = _actions_for(config, reg)
            if "*" in allowed:
                granted.add(f"{reg}:registry.{action}")
            elif action == "*":
                granted.update(f"{reg}:registry.{a}" for a in allowed)
            elif action in allowed:
                granted.add(f"{reg}:registry.{action}")
    return sorted(granted)


def scope_allows(scopes: Iterable[str], registry: str, action: str) -> bool:
    """True if any qualified scope covers `action` on `registry`."""
    for token in scopes:
        parsed = _split_scope(token)
        if parsed is None or parsed[0] is None:
            continue
        reg, act = parsed
        if reg in ("*", registry) and act in ("*", action):
            return True
    return False


# -- access tokens ---------------------------------------------------------------------------


def bearer_token(authorization: str | None) -> str:
    """The token from an `Authorization: Bearer …` header, or TokenError("missing")."""
    if not authorization or not authorization.strip():
        raise TokenError("missing", "no access token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("malformed", "the Authorization header must be 'Bearer <access_token>'")
    return token.strip()


@dataclass(frozen=True)
class TokenClaims:
    """A verified access token."""

    issuer: str
    audience: str
    client_id: str
    sender_id: str
    scopes: frozenset[str]
    issued_at: int
    expires_at: int
    jti: str
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def allows(self, registry: str, action: str) -> bool:
        return scope_allows(self.scopes, registry, action)


class TokenIssuer:
    """Issues and verifies the registry's access tokens.

    `signing_key` may be a callable returning the current key (e.g. `KeyManager.signing_key`)
    so a rotation needs no rebuild; `verification_key(kid)` finds the key for a token's kid
    (e.g. `KeyManager.verification_key`, so tokens signed just before a rotation stay valid).
    """

    def __init__(
        self,
        signing_key: AsymmetricKey | Callable[[], AsymmetricKey],
        issuer: str,
        ttl_seconds: int = 300,
        *,
        audience: str | None = None,
        verification_key: Callable[[str | None], AsymmetricKey | None] | None = None,
        leeway_seconds: int = 30,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._signing_key = signing_key
        self.issuer = issuer
        self.audience = audience or issuer
        self.ttl_seconds = ttl_seconds
        self.leeway = leeway_seconds
        self.now = now
        self._verification_key = verification_key

    def _current_key(self) -> AsymmetricKey:
        key = self._signing_key
        return key() if callable(key) else key

    def issue(self, client_id: str, sender_id: str, scopes: Iterable[str]) -> dict[str, Any]:
        """Token endpoint response body: access_token, token_type, expires_in (int), scope."""
        key = self._current_key()
        alg = _jws.alg_for_key(key)
        _jws.check_key(alg, key, "sig")
        iat = int(self.now())
        scope = " ".join(sorted(set(scopes)))
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,
            "sender_id": sender_id,
            "scope": scope,
            "iat": iat,
            "exp": iat + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": alg, "kid": key.kid, "typ": TOKEN_TYPE}
        return {
            "access_token": jwt.encode(header, claims, key, registry=_REGISTRY, default_type=None),
            "token_type": "bearer",
            "expires_in": self.ttl_seconds,
            "scope": scope,
        }

    def verify(self, token: str | None) -> TokenClaims:
        """Check signature, `typ`, issuer, audience and lifetime (`exp`, `nbf`, `iat`, with the
        leeway); raise TokenError(kind) otherwise."""
        if not token or not token.strip():
            raise TokenError("missing", "no access token: send 'Authorization: Bearer <token>'")
        token = token.strip()
        parts = token.split(".")
        if len(parts) != 3 or not all(parts):
            raise TokenError("malformed", "the access token is not a signed JWT (3 parts)")
        try:
            decoded = jwt.decode(token, self._key_for_token, registry=_REGISTRY)
        except TokenError:
            raise
        except UnsupportedAlgorithmError as exc:
            raise TokenError(
                "invalid_signature",
                f"access token refused: {exc.description} (only "
                f"{', '.join(sorted(_jws.ALGORITHMS))}; never 'none' or HMAC)",
            ) from exc
        except BadSignatureError as exc:
            raise TokenError("invalid_signature", "access token signature does not match") from exc
        except InvalidPayloadError as exc:
            raise TokenError("malformed", "access token claims are not a JSON object") from exc
        except _MALFORMED as exc:
            raise TokenError("malformed", f"access token refused: {_why(exc)}") from exc
        except JoseError as exc:  # the key does not fit the header's alg
            raise TokenError("invalid_signature", f"access token refused: {_why(exc)}") from exc
        return self._check_claims(decoded.claims)

    def _key_for_token(self, token: GuestProtocol) -> AsymmetricKey:
        """joserfc's key lookup, called once the header is read and its `alg` allowed, before
        the signature is checked: `typ`, extensions, then our key for its `kid`."""
        header = token.headers()
        if header.get("typ") != TOKEN_TYPE:
            raise TokenError("malformed", f"access token typ must be {TOKEN_TYPE!r}")
        if "crit" in header or header.get("b64") is False:
            raise TokenError("malformed", "access token header has 'crit' or 'b64' extensions")
        kid = header.get("kid")
        key = self._key_for(kid)
        if key is None:
            raise TokenError(
                "invalid_signature",
                f"access token is signed with key {kid!r}, which is not ours: get a new token "
                "from this registry's token endpoint",
            )
        try:
            _jws.check_key(header["alg"], key, "sig")
        except _jws.JWSFailure as exc:
            raise TokenError("invalid_signature", f"access token signature: {exc}") from exc
        return key

    def _key_for(self, kid: str | None) -> AsymmetricKey | None:
        if self._verification_key is not None:
            return self._verification_key(kid)
        current = self._current_key()
        return current if kid == current.kid else None

    def _check_claims(self, claims: dict[str, Any]) -> TokenClaims:
        now = int(self.now())
        rules = JWTClaimsRegistry(
            now=now,
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            **{name: _ESSENTIAL for name in _REQUIRED_CLAIMS},
        )
        try:
            rules.validate(claims)
        except ClaimError as exc:
            raise _claim_refusal(exc, claims, self.issuer, now) from exc
        return TokenClaims(
            issuer=claims["iss"],
            audience=self.audience,
            client_id=str(claims["client_id"]),
            sender_id=str(claims["sender_id"]),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
            jti=str(claims["jti"]),
            raw=claims,
        )


_REGISTRY = _jws.REGISTRY
_REQUIRED_CLAIMS = ("exp", "iat", "client_id", "sender_id", "jti")
_ESSENTIAL: ClaimsOption = {"essential": True}
# joserfc errors that mean the token cannot be read (as opposed to: the key does not fit)
_MALFORMED = (
    DecodeError,
    ExceededSizeError,
    InvalidHeaderValueError,
    MissingAlgorithmError,
    MissingCritHeaderError,
    MissingHeaderError,
    UnsupportedHeaderError,
    ValueError,
    TypeError,
    AttributeError,
)


def _why(exc: Exception) -> str:
    return exc.description if isinstance(exc, JoseError) else "it cannot be read"


def _claim_refusal(exc: ClaimError, claims: dict[str, Any], issuer: str, now: int) -> TokenError:
    """joserfc's verdict on a claim, as our refusal (the kind and a message to act on)."""
    names = exc.claim.split(",")  # a MissingClaimError names every missing claim
    if "iss" in names:
        return TokenError(
            "wrong_issuer", f"access token was issued by {claims.get('iss')!r}, not by {issuer!r}"
        )
    if "aud" in names:
        return TokenError(
            "wrong_issuer", f"access token is for audience {claims.get('aud')!r}, not us"
        )
    if isinstance(exc, ExpiredTokenError):
        return TokenError(
            "expired", f"access token expired {int(now - claims['exp'])} s ago: request a new one"
        )
    if isinstance(exc, MissingClaimError):
        if "exp" in names or "iat" in names:
            return TokenError("malformed", "access token lacks numeric exp/iat claims")
        return TokenError("malformed", f"access token lacks claim {names[0]!r}")
    value = claims.get(exc.claim)
    if exc.claim in ("exp", "iat", "nbf") and not (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ):
        return TokenError("malformed", f"access token claim {exc.claim!r} is not a NumericDate")
    if exc.claim == "nbf" and isinstance(value, int | float):
        return TokenError(
            "not_yet_valid",
            f"access token is not valid before {int(value)}, {int(value - now)} s from now: "
            "check the clocks, or request a new one",
        )
    if exc.claim == "iat":
        return TokenError("malformed", "access token is issued in the future")
    return TokenError("malformed", f"access token claim {exc.claim!r} is invalid")


# -- dcihub as a client ----------------------------------------------------------------------


@dataclass
class _Cached:
    token: str
    refresh_at: float


class ClientTokenCache:
    """Tokens dcihub obtains from partners' token endpoints (to call them back), cached.

    One instance serves every partner: entries are keyed by (token_url, client_id, scope) and
    renewed `leeway_seconds` before expiry (or half-way for very short lifetimes). `expires_in`
    may be an integer or a string (the spec's example is the string "36000").
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        leeway_seconds: int = 30,
        default_ttl_seconds: int = 60,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.leeway = leeway_seconds
        self.default_ttl = default_ttl_seconds
        self.now = now
        self._cache: dict[tuple[str, str, str], _Cached] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def get(
        self, token_url: str, client_id: str, client_secret: str, scope: str | None = None
    ) -> str:
        """A valid access token for that partner, fetched only when needed."""
        cache_key = (token_url, client_id, scope or "")
        cached = self._cache.get(cache_key)
        if cached and self.now() < cached.refresh_at:
            return cached.token
        lock = self._locks.setdefault(cache_key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(cache_key)
            if cached and self.now() < cached.refresh_at:
                return cached.token
            token, ttl = await self._fetch(token_url, client_id, client_secret, scope)
            margin = self.leeway if ttl > 2 * self.leeway else ttl / 2
            self._cache[cache_key] = _Cached(token, self.now() + ttl - margin)
            return token

    def invalidate(self, token_url: str, client_id: str, scope: str | None = None) -> None:
        """Forget a token (e.g. after the partner answered 401 with it)."""
        self._cache.pop((token_url, client_id, scope or ""), None)

    async def _fetch(
        self, token_url: str, client_id: str, client_secret: str, scope: str | None
    ) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
        if scope:
            form["scope"] = scope
        headers = {
            "Accept": "application/json",
            "timestamp": email.utils.formatdate(usegmt=True),
            "message_id": uuid.uuid4().hex,
        }
        try:
            response = await self.http.post(token_url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise TokenFetchError(f"token endpoint {token_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise TokenFetchError(
                f"token endpoint {token_url} answered HTTP {response.status_code} for client "
                f"{client_id!r}: {response.text[:200]}"
            )
        try:
            body = response.json()
            token = body["access_token"]
            if not isinstance(token, str) or not token:
                raise ValueError("empty access_token")
            expires_in = body.get("expires_in")
            ttl = float(expires_in) if expires_in not in (None, "") else self.default_ttl
            if ttl <= 0:
                raise ValueError(f"expires_in {expires_in!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenFetchError(
                f"token endpoint {token_url} gave an unusable response: {exc}"
            ) from exc
        return token, ttl
