"""Client secrets, access tokens (issue/verify/refusals), scopes, and the client token cache."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import warnings
from typing import Any

import httpx
import pytest
from joserfc import jws as joserfc_jws
from joserfc import jwt as joserfc_jwt
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt

from dcihub.security import tokens
from dcihub.security.errors import TokenError, TokenFetchError
from dcihub.security.keys import load_jwk
from dcihub.security.tokens import ClientTokenCache, TokenIssuer

ISSUER = "https://registry.example.org"
NOW = 1_750_000_000


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- secrets ---------------------------------------------------------------------------------


def test_hash_and_verify_secret() -> None:
    secret = tokens.generate_secret()
    hashed = tokens.hash_secret(secret)
    assert hashed.startswith("scrypt$16384$8$1$") and secret not in hashed
    assert tokens.hash_secret(secret) != hashed  # salted
    assert tokens.verify_secret(secret, hashed)
    assert not tokens.verify_secret(secret + "x", hashed)
    assert not tokens.verify_secret("", hashed)


def test_pbkdf2_hashes_are_verified() -> None:
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, 1000, 32)
    hashed = f"pbkdf2_sha256$1000${b64u(salt)}${b64u(digest)}"
    assert tokens.verify_secret("s3cret", hashed)
    assert not tokens.verify_secret("s3cre", hashed)


@pytest.mark.parametrize(
    "hashed",
    ["", "plain", "scrypt$1$2", "md5$x$y", "scrypt$x$8$1$AA$AA", "scrypt$1048577$8$1$AA$AA"],
)
def test_malformed_hashes_never_verify(hashed: str) -> None:
    assert not tokens.verify_secret("anything", hashed)


def test_unknown_client_still_costs_a_hash() -> None:
    assert not tokens.verify_secret("anything", None)


# -- scopes ---------------------------------------------------------------------------------


CONFIG = {"crvs": ["search", "subscribe"], "social": "*"}


def test_grant_all_when_nothing_requested() -> None:
    assert tokens.grant_scopes(CONFIG) == [
        "crvs:registry.search",
        "crvs:registry.subscribe",
        "social:registry.*",
    ]
    assert tokens.grant_scopes(CONFIG, "openid") == tokens.grant_scopes(CONFIG)


def test_grant_is_the_intersection() -> None:
    assert tokens.grant_scopes(CONFIG, "registry.search") == [
        "crvs:registry.search",
        "social:registry.search",
    ]
    assert tokens.grant_scopes(
        CONFIG, "registry/notify crvs:registry.notify dr:registry.search"
    ) == ["social:registry.notify"]
    assert tokens.grant_scopes(CONFIG, ["crvs:registry.*"]) == [
        "crvs:registry.search",
        "crvs:registry.subscribe",
    ]
    assert tokens.grant_scopes(CONFIG, "crvs:registry.notify") == []


def test_wildcard_registry_cannot_be_claimed_without_config() -> None:
    assert tokens.grant_scopes(CONFIG, "*:registry.search") == []
    assert tokens.grant_scopes({"*": "*"}, "*:registry.search crvs:registry.notify") == [
        "*:registry.search",
        "crvs:registry.notify",
    ]


def test_scope_allows() -> None:
    granted = tokens.grant_scopes(CONFIG)
    assert tokens.scope_allows(granted, "crvs", "search")
    assert not tokens.scope_allows(granted, "crvs", "notify")
    assert tokens.scope_allows(granted, "social", "txn-status")
    assert not tokens.scope_allows(granted, "dr", "search")
    assert tokens.scope_allows(["*:registry.*"], "ibr", "search")
    assert not tokens.scope_allows(["registry.search"], "crvs", "search")  # unqualified


# -- access tokens ---------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(keys, clock) -> TokenIssuer:
    return TokenIssuer(keys["ES256"], ISSUER, ttl_seconds=300, now=clock)


def test_issue_and_verify(issuer: TokenIssuer, clock: Clock) -> None:
    body = issuer.issue("client-1", "spmis.example.org", ["crvs:registry.search"])
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "crvs:registry.search"
    claims = issuer.verify(body["access_token"])
    assert claims.client_id == "client-1" and claims.sender_id == "spmis.example.org"
    assert claims.issuer == ISSUER and claims.audience == ISSUER
    assert claims.expires_at - claims.issued_at == 300
    assert claims.allows("crvs", "search") and not claims.allows("crvs", "subscribe")
    other = issuer.issue("client-1", "spmis.example.org", [])
    assert (
        json.loads(base64.urlsafe_b64decode(other["access_token"].split(".")[1] + "=="))["jti"]
        != claims.jti
    )


def test_jwcrypto_verifies_our_tokens(issuer: TokenIssuer, keys) -> None:
    body = issuer.issue("client-1", "spmis", ["crvs:registry.search"])
    token = jwcrypto_jwt.JWT(
        jwt=body["access_token"],
        key=jwcrypto_jwk.JWK(**keys["ES256"].as_dict()),
        check_claims={"iss": ISSUER, "aud": ISSUER},
    )
    assert json.loads(token.claims)["sub"] == "client-1"


def test_expired_token(issuer: TokenIssuer, clock: Clock) -> None:
    token = issuer.issue("c", "s", [])["access_token"]
    clock.t += 300 + 29
    issuer.verify(token)  # within leeway
    clock.t += 2
    with pytest.raises(TokenError, match="expired") as err:
        issuer.verify(token)
    assert err.value.kind == "expired" and err.value.http_status == 401


def test_forged_token_signed_by_another_key(issuer: TokenIssuer, keys, other_keys, clock) -> None:
    forged_key = load_jwk({**other_keys["ES256"].as_dict(private=True), "kid": keys["ES256"].kid})
    forger = TokenIssuer(forged_key, ISSUER, now=clock)
    token = forger.issue("c", "s", ["*:registry.*"])["access_token"]
    with pytest.raises(TokenError) as err:
        issuer.verify(token)
    assert err.value.kind == "invalid_signature"
    # the same with the forger's own kid: unknown key
    token = TokenIssuer(other_keys["ES256"], ISSUER, now=clock).issue("c", "s", [])["access_token"]
    with pytest.raises(TokenError, match="not ours") as err:
        issuer.verify(token)
    assert err.value.kind == "invalid_signature"


def test_wrong_issuer_and_audience(keys, issuer: TokenIssuer, clock: Clock) -> None:
    token = TokenIssuer(keys["ES256"], "https://evil.example", now=clock).issue("c", "s", [])
    with pytest.raises(TokenError, match="issued by") as err:
        issuer.verify(token["access_token"])
    assert err.value.kind == "wrong_issuer"
    token = TokenIssuer(keys["ES256"], ISSUER, audience="other-api", now=clock).issue("c", "s", [])
    with pytest.raises(TokenError, match="audience") as err:
        issuer.verify(token["access_token"])
    assert err.value.kind == "wrong_issuer"


def _raw_token(header: dict[str, Any], claims: dict[str, Any], sig: str = "AAAA") -> str:
    return f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}.{sig}"


def test_alg_none_and_hmac_tokens_are_refused(issuer: TokenIssuer, keys) -> None:
    claims = {"iss": ISSUER, "aud": ISSUER, "exp": NOW + 100, "iat": NOW}
    for alg in ("none", "HS256"):
        token = _raw_token({"alg": alg, "kid": keys["ES256"].kid, "typ": "at+jwt"}, claims)
        with pytest.raises(TokenError) as err:
            issuer.verify(token)
        assert err.value.kind == "invalid_signature"
    with pytest.raises(TokenError) as err:
        issuer.verify(_raw_token({"alg": "none"}, claims, sig="").rstrip("."))
    assert err.value.kind == "malformed"


def test_message_signature_is_not_a_token(issuer: TokenIssuer, keys, header, message) -> None:
    from dcihub.security.signatures import sign

    compact = sign(header, message, keys["ES256"], "jws-compact")
    with pytest.raises(TokenError, match="typ") as err:
        issuer.verify(compact)
    assert err.value.kind == "malformed"


@pytest.mark.parametrize("token", ["abc", "a.b", "a..c", "x.y.z.w", "!!.!!.!!"])
def test_malformed_tokens(issuer: TokenIssuer, token: str) -> None:
    with pytest.raises(TokenError) as err:
        issuer.verify(token)
    assert err.value.kind == "malformed"


@pytest.mark.parametrize("token", [None, "", "  "])
def test_missing_token(issuer: TokenIssuer, token) -> None:
    with pytest.raises(TokenError) as err:
        issuer.verify(token)
    assert err.value.kind == "missing"


def test_bearer_header_parsing() -> None:
    assert tokens.bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert tokens.bearer_token("bearer  tok ") == "tok"
    with pytest.raises(TokenError) as err:
        tokens.bearer_token(None)
    assert err.value.kind == "missing"
    with pytest.raises(TokenError) as err:
        tokens.bearer_token("Basic dXNlcjpwYXNz")
    assert err.value.kind == "malformed"


def test_tokens_survive_key_rotation(tmp_path, clock) -> None:
    from dcihub.security.keys import KeyManager

    km = KeyManager(tmp_path / "keys").load_or_create()
    issuer = TokenIssuer(km.signing_key, ISSUER, verification_key=km.verification_key, now=clock)
    before = issuer.issue("c", "s", [])["access_token"]
    km.rotate()
    after = issuer.issue("c", "s", [])["access_token"]
    assert before.split(".")[0] != after.split(".")[0]  # new kid
    assert issuer.verify(before).client_id == "c"
    assert issuer.verify(after).client_id == "c"


def test_eddsa_and_rs256_tokens(keys, clock) -> None:
    for alg in ("EdDSA", "RS256"):
        issuer = TokenIssuer(keys[alg], ISSUER, now=clock)
        assert issuer.verify(issuer.issue("c", "s", [])["access_token"]).sender_id == "s"


def test_eddsa_tokens_give_no_deprecation_warning(keys, clock) -> None:
    """joserfc warns on every use of the polymorphic `EdDSA` name (RFC 9864); our registry
    does not, since DCI peers and our Ed25519 keys still use it."""
    issuer = TokenIssuer(keys["EdDSA"], ISSUER, now=clock)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token = issuer.issue("c", "s", [])["access_token"]
        assert issuer.verify(token).client_id == "c"


def _signed(key: Any, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with our own key, with any header and claims (joserfc, no checks)."""
    header = {"alg": "ES256", "kid": key.kid, "typ": "at+jwt", **header}
    return joserfc_jwt.encode(header, claims, key, algorithms=["ES256"], default_type=None)


def _claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": "c",
        "client_id": "c",
        "sender_id": "s",
        "scope": "crvs:registry.search",
        "iat": NOW,
        "exp": NOW + 300,
        "jti": "j-1",
        **changes,
    }
    return {name: value for name, value in claims.items() if value is not None}


def test_token_not_yet_valid_is_refused(issuer: TokenIssuer, keys, clock: Clock) -> None:
    token = _signed(keys["ES256"], _claims(nbf=NOW + 60))
    with pytest.raises(TokenError, match="not valid before") as err:
        issuer.verify(token)
    assert err.value.kind == "not_yet_valid" and err.value.http_status == 401
    clock.t += 31  # nbf now 29 s ahead: within the 30 s leeway
    assert issuer.verify(token).client_id == "c"
    assert issuer.verify(_signed(keys["ES256"], _claims(nbf=NOW))).client_id == "c"


@pytest.mark.parametrize(
    "changes,kind,match",
    [
        ({"exp": None}, "malformed", "lacks numeric exp/iat"),
        ({"iat": None}, "malformed", "lacks numeric exp/iat"),
        ({"exp": "soon"}, "malformed", "'exp' is not a NumericDate"),
        ({"exp": True}, "malformed", "'exp' is not a NumericDate"),
        ({"exp": float("nan")}, "malformed", "'exp' is not a NumericDate"),
        ({"iat": float("inf")}, "malformed", "'iat' is not a NumericDate"),
        ({"nbf": "later"}, "malformed", "'nbf' is not a NumericDate"),
        ({"iat": NOW + 31}, "malformed", "issued in the future"),
        ({"client_id": None}, "malformed", "lacks claim 'client_id'"),
        ({"sender_id": None}, "malformed", "lacks claim 'sender_id'"),
        ({"jti": None}, "malformed", "lacks claim 'jti'"),
        ({"iss": None}, "wrong_issuer", "issued by None"),
        ({"aud": None}, "wrong_issuer", "audience None"),
        ({"aud": ["other", ISSUER]}, None, None),
        ({"aud": ["other"]}, "wrong_issuer", "audience"),
        ({"exp": NOW + 300.5}, None, None),
    ],
)
def test_claims_are_checked(issuer: TokenIssuer, keys, changes, kind, match) -> None:
    token = _signed(keys["ES256"], _claims(**changes))
    if kind is None:
        assert issuer.verify(token).sender_id == "s"
        return
    with pytest.raises(TokenError, match=match) as err:
        issuer.verify(token)
    assert err.value.kind == kind


@pytest.mark.parametrize(
    "header,kind",
    [
        ({"typ": "JWT"}, "malformed"),
        ({"typ": None}, "malformed"),
        ({"crit": ["kid"]}, "malformed"),
        ({"b64": False, "crit": ["b64"]}, "malformed"),
        ({"x-extra": 1}, "malformed"),
        ({"kid": 7}, "malformed"),
        ({"alg": "RS256"}, "invalid_signature"),  # the key behind our kid is an EC key
        ({"alg": "HS256"}, "invalid_signature"),
    ],
)
def test_hostile_token_headers_are_refused(issuer: TokenIssuer, keys, header, kind) -> None:
    good = _signed(keys["ES256"], _claims())
    head = json.loads(base64.urlsafe_b64decode(good.split(".")[0] + "=="))
    head.update(header)
    head = {name: value for name, value in head.items() if value is not None}
    token = ".".join([b64u(json.dumps(head).encode()), *good.split(".")[1:]])
    with pytest.raises(TokenError) as err:
        issuer.verify(token)
    assert err.value.kind == kind


@pytest.mark.parametrize(
    "segment", ['"alg"', "[1]", "null", "1", "{", '{"alg": "ES256"' + " " * 600]
)
def test_unreadable_token_headers_are_malformed(issuer: TokenIssuer, segment: str) -> None:
    token = f"{b64u(segment.encode())}.{b64u(b'{}')}.AAAA"
    with pytest.raises(TokenError) as err:
        issuer.verify(token)
    assert err.value.kind == "malformed"


def test_claims_that_are_not_an_object_are_malformed(issuer: TokenIssuer, keys) -> None:
    header = {"alg": "ES256", "kid": keys["ES256"].kid, "typ": "at+jwt"}
    for payload in (b"[1, 2]", b"not json"):
        token = joserfc_jws.serialize_compact(header, payload, keys["ES256"], algorithms=["ES256"])
        with pytest.raises(TokenError, match="not a JSON object") as err:
            issuer.verify(token)
        assert err.value.kind == "malformed"


# -- client token cache ----------------------------------------------------------------------


def _token_server(expires_in: Any, calls: list[dict[str, str]], status: int = 200):
    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        calls.append({**form, "timestamp": request.headers.get("timestamp", "")})
        if status != 200:
            return httpx.Response(status, json={"error": "invalid_client"})
        body = {"access_token": f"tok-{len(calls)}", "token_type": "bearer"}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("expires_in", [300, "300"])
def test_client_token_cache_reuses_until_shortly_before_expiry(expires_in) -> None:
    calls: list[dict[str, str]] = []
    clock = Clock(1000.0)

    async def run() -> list[str]:
        async with httpx.AsyncClient(transport=_token_server(expires_in, calls)) as http:
            cache = ClientTokenCache(http, leeway_seconds=30, now=clock)
            got = [await cache.get("https://p/token", "me", "secret", "registry.on-search")]
            clock.t += 200
            got.append(await cache.get("https://p/token", "me", "secret", "registry.on-search"))
            clock.t += 71  # 271 s: inside the 30 s renewal margin
            got.append(await cache.get("https://p/token", "me", "secret", "registry.on-search"))
            cache.invalidate("https://p/token", "me", "registry.on-search")
            got.append(await cache.get("https://p/token", "me", "secret", "registry.on-search"))
            return got

    assert asyncio.run(run()) == ["tok-1", "tok-1", "tok-2", "tok-3"]
    assert calls[0]["grant_type"] == "client_credentials"
    assert calls[0]["client_id"] == "me" and calls[0]["client_secret"] == "secret"
    assert calls[0]["scope"] == "registry.on-search"
    assert calls[0]["timestamp"].endswith("GMT")


def test_client_token_cache_concurrent_callers_fetch_once() -> None:
    calls: list[dict[str, str]] = []

    async def run() -> set[str]:
        async with httpx.AsyncClient(transport=_token_server(60, calls)) as http:
            cache = ClientTokenCache(http)
            results = await asyncio.gather(
                *(cache.get("https://p/token", "me", "s") for _ in range(10))
            )
            return set(results)

    assert asyncio.run(run()) == {"tok-1"} and len(calls) == 1


def test_client_token_cache_short_and_missing_lifetimes() -> None:
    calls: list[dict[str, str]] = []
    clock = Clock(0.0)

    async def run() -> None:
        async with httpx.AsyncClient(transport=_token_server(None, calls)) as http:
            cache = ClientTokenCache(http, default_ttl_seconds=60, now=clock)
            await cache.get("https://p/token", "me", "s")
            clock.t = 29
            await cache.get("https://p/token", "me", "s")
            assert len(calls) == 1
            clock.t = 31  # 60 s default, half-way renewal for short lifetimes
            await cache.get("https://p/token", "me", "s")
            assert len(calls) == 2

    asyncio.run(run())


def test_client_token_cache_errors() -> None:
    async def run(transport: httpx.MockTransport) -> None:
        async with httpx.AsyncClient(transport=transport) as http:
            await ClientTokenCache(http).get("https://p/token", "me", "bad")

    with pytest.raises(TokenFetchError, match="HTTP 401"):
        asyncio.run(run(_token_server(60, [], status=401)))
    with pytest.raises(TokenFetchError, match="unusable"):
        asyncio.run(run(_token_server("soon", [])))
    with pytest.raises(TokenFetchError, match="unusable"):
        asyncio.run(run(httpx.MockTransport(lambda r: httpx.Response(200, text="<html>"))))


def test_client_token_cache_against_our_issuer(keys) -> None:
    """dcihub as client of a dcihub token endpoint (the shape our server will return)."""
    issuer = TokenIssuer(keys["ES256"], ISSUER)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=issuer.issue("me", "spmis", ["crvs:registry.search"]))

    async def run() -> str:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await ClientTokenCache(http).get("https://r/token", "me", "s")

    assert issuer.verify(asyncio.run(run())).client_id == "me"
