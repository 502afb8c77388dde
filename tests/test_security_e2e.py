"""Security end to end: every refusal, one table row per error code, on SQLite and PostgreSQL.

A real, secured node runs on loopback over a small country of its own (its own store, so that
no other test's worker claims its outbox rows), with partners registered for each situation:

    main      allowed everything (the test partner of `support.live_server`)
    scoped    may only search the CRVS
    minimal   may receive only `identifier` and `birth_date` of CRVS records
    sealed    must encrypt its messages
    public    may NOT receive callbacks on private addresses (loopback here)
    pinned    callbacks only under https://spmis.partner.example:8443/dci/
    ed        signs with Ed25519 in the OpenSPP2 HTTP-signature style
    lenient   may send unsigned messages (as the demo partner)

Every refusal is checked three ways: HTTP status, body shape and code, and one new row in the
audit trail with that outcome and no record content. docs/security.md lists the same refusals.

The helpers (`start_node`, `Node`, `PartnerSide`) are also used by test_security_interop.py.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
from joserfc import jwt
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import support
from dcihub.config import Settings
from dcihub.population.generator import generate_country
from dcihub.population.load import load_country
from dcihub.security._b64 import b64url_encode
from dcihub.security.jwe import encrypt_message
from dcihub.security.keys import KeyManager, generate_key, load_jwk
from dcihub.security.signatures import sign
from dcihub.security.tokens import TokenIssuer
from dcihub.store import Store
from dcihub.store.audit import AuditRow
from dcihub.store.outbox import DEAD, DONE
from expect import beneficiary, enrollment_updates_envelope, txn_status_envelope
from expect import disabled_envelope as dr_envelope
from support import LiveServer, free_port, idtype, now_ts, search_envelope

UNAUTHORIZED = "err.request.unauthorized"
FORBIDDEN = "err.request.forbidden"
BAD = "err.request.bad"

# ---------------------------------------------------------------------------------------------
# A partner's own server: callbacks, a token endpoint, a redirecting path


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class PartnerSide:
    """An SP-MIS stand-in on loopback. It records every request; serves an OAuth2 token endpoint
    (`/oauth2/client/token`) so that the registry can obtain a token before calling it back;
    and answers POSTs under `/redirect/...` with a 302 to `/landing/...` (never to be followed).
    """

    CLIENT_ID = "registry-at-partner"

    def __init__(self) -> None:
        self.port = free_port()
        self.client_secret = uuid.uuid4().hex
        self.hits: list[Hit] = []
        self.token_requests: list[dict[str, str]] = []
        self.issued: list[str] = []
        self._cond = threading.Condition()
        self._server: Any = None
        self._thread: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth2/client/token"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def start(self) -> PartnerSide:
        async def token(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            with self._cond:
                self.token_requests.append(form)
                ok = (
                    form.get("grant_type") == "client_credentials"
                    and form.get("client_id") == self.CLIENT_ID
                    and form.get("client_secret") == self.client_secret
                )
                if ok:
                    self.issued.append(f"partner-token-{len(self.issued) + 1}")
            if not ok:
                return Response(b'{"error": "invalid_client"}', 401, media_type="application/json")
            # expires_in as a string, as in the spec's example
            body = {"access_token": self.issued[-1], "token_type": "bearer", "expires_in": "300"}
            return Response(orjson.dumps(body), media_type="application/json")

        async def record(request: Request) -> Response:
            hit = Hit(request.method, request.url.path, dict(request.headers), await request.body())
            with self._cond:
                self.hits.append(hit)
                self._cond.notify_all()
            if hit.path.startswith("/redirect/"):
                landing = hit.path.replace("/redirect/", "/landing/", 1)
                return Response(status_code=302, headers={"location": self.url(landing)})
            ack = {
                "message": {
                    "ack_status": "ACK",
                    "timestamp": now_ts(),
                    "correlation_id": "partner-side",
                }
            }
            return Response(orjson.dumps(ack), media_type="application/json")

        app = Starlette(
            routes=[
                Route("/oauth2/client/token", token, methods=["POST"]),
                Route("/{path:path}", record, methods=["GET", "POST", "PUT"]),
            ]
        )
        self._server, self._thread = support.start_server(app, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def under(self, prefix: str) -> list[Hit]:
        with self._cond:
            return [h for h in self.hits if h.path.startswith(prefix)]

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 20.0) -> list[Hit]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [h for h in self.hits if h.path.startswith(prefix)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} request(s) under {prefix}, "
                        f"got {len(found)} in {timeout}s"
                    )
                self._cond.wait(left)


# ---------------------------------------------------------------------------------------------
# A secured node with the partners a test module needs


@lru_cache(maxsize=1)
def small_country() -> Any:
    return generate_country(people=300, seed=977)


FAST_DELIVERY = {
    "backoff_base": 0.2,
    "backoff_max": 0.5,
    "poll_interval": 0.1,
    "max_attempts": 3,
    "timeout": 5.0,
    "lease_seconds": 10.0,
}
TOKEN = object()  # "the partner's own access token"


@dataclass
class Node:
    """A running secured node and everything a test needs to talk to it."""

    running: LiveServer
    store: Store
    partners: dict[str, support.TestPartner]
    side: PartnerSide
    country: Any
    tokens: dict[str, str] = field(default_factory=dict)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def settings(self) -> Settings:
        return self.running.settings

    @property
    def base_url(self) -> str:
        return self.running.base_url

    @property
    def key_dir(self) -> Path:
        return self.settings.security.path(self.settings.security.key_dir)

    @property
    def uin(self) -> str:
        """A UIN the CRVS knows."""
        sample = self.country.samples()["crvs"]["identifiers"][0]
        assert sample["type"] == "UIN"
        return sample["value"]

    def sender(self, who: str) -> str:
        return self.partners[who].sender_id

    def token(self, who: str = "main") -> str:
        if who not in self.tokens:
            partner = self.partners[who]
            response = self.http.post(
                f"{self.base_url}/oauth2/client/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": partner.client_id,
                    "client_secret": partner.client_secret,
                },
            )
            assert response.status_code == 200, response.text
            self.tokens[who] = response.json()["access_token"]
        return self.tokens[who]

    def search(self, who: str = "main", uin: str | None = None, **header: Any) -> dict:
        return search_envelope(idtype("UIN", uin or self.uin), sender_id=self.sender(who), **header)

    def signed(
        self,
        envelope: dict[str, Any],
        who: str = "main",
        profile: str = "jws-detached",
        key: Any = None,
    ) -> dict[str, Any]:
        signature = sign(
            envelope["header"],
            envelope.get("message"),
            key or self.partners[who].signing_key(),
            profile,
        )
        return {"signature": signature, **envelope}

    def post(
        self,
        registry: str,
        path: str,
        envelope: dict[str, Any],
        who: str = "main",
        *,
        auth: Any = TOKEN,
        profile: str = "jws-detached",
        signed: bool = True,
        base_url: str | None = None,
    ) -> httpx.Response:
        """POST `envelope` as partner `who`: signed (unless it has a signature or `signed` is
        false), with that partner's token (or `auth` as the Authorization header; None: none).
        """
        if signed and "signature" not in envelope:
            envelope = self.signed(envelope, who, profile)
        return self.post_bytes(
            registry, path, orjson.dumps(envelope), who, auth=auth, base_url=base_url
        )

    def post_bytes(
        self,
        registry: str,
        path: str,
        body: bytes,
        who: str = "main",
        *,
        auth: Any = TOKEN,
        base_url: str | None = None,
    ) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if auth is TOKEN:
            headers["authorization"] = f"Bearer {self.token(who)}"
        elif auth is not None:
            headers["authorization"] = auth
        base = base_url or self.base_url
        return self.http.post(f"{base}/{registry}/registry/{path}", content=body, headers=headers)

    def jwks(self) -> dict[str, Any]:
        response = self.http.get(f"{self.base_url}/.well-known/jwks.json")
        assert response.status_code == 200
        return response.json()

    def node_keys(self) -> KeyManager:
        """The node's own key pairs, read from its key directory (to forge or expire tokens)."""
        return KeyManager(self.key_dir).load_or_create()

    # -- the store ------------------------------------------------------------------------

    def last_seq(self) -> int:
        t = self.store.audit.t
        with self.store.read() as conn:
            return conn.execute(select(func.coalesce(func.max(t.c.seq), 0))).scalar_one()

    def audit_since(self, seq: int, direction: str | None = "in") -> list[AuditRow]:
        """Audit rows after `seq`: inbound exchanges (the default), outbound callback
        deliveries (`direction="out"`), or all (None)."""
        with self.store.read() as conn:
            return [
                r
                for r in self.store.audit.rows(conn)
                if r.seq > seq and (direction is None or r.entry.get("direction") == direction)
            ]

    def audit_text(self, seq: int) -> str:
        t = self.store.audit.t
        with self.store.read() as conn:
            return conn.execute(select(t.c.entry).where(t.c.seq == seq)).scalar_one()

    def outbox_for(self, target_url: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return [r for r in self.store.outbox.rows(conn) if r["target_url"] == target_url]

    def wait_outbox(
        self, target_url: str, kinds: int = 2, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """The outbox rows for `target_url` once `kinds` rows exist and all are done or dead."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.outbox_for(target_url)
            if len(rows) >= kinds and all(r["status"] in (DONE, DEAD) for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"outbox rows for {target_url} did not settle: {rows}")
            time.sleep(0.05)

    def transactions(self, registry: str, who: str, transaction_id: str) -> list[Any]:
        with self.store.read() as conn:
            return self.store.txns.find(
                conn, registry, self.sender(who), "transaction_id", transaction_id
            )


def register_partner(
    settings: Settings, sender_id: str, client_id: str, private_jwks: dict[str, Any], **fields: Any
) -> support.TestPartner:
    """Register a partner whose keys were made elsewhere (e.g. by jwcrypto)."""
    from dcihub.security.partners import Partner, PartnerRegistry
    from dcihub.security.tokens import generate_secret

    path = settings.security.path(settings.security.partners_file)
    registry = PartnerRegistry.load(path) if path.exists() else PartnerRegistry()
    registry.remove(sender_id)
    fields.setdefault("scopes", {name: "*" for name in settings.registries})
    fields.setdefault("callback_prefixes", ["http://127.0.0.1:*/"])
    fields.setdefault("allow_private_callbacks", True)
    public = {
        "keys": [
            {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
            for jwk in private_jwks["keys"]
        ]
    }
    secret = generate_secret()
    registry.add(
        Partner(sender_id=sender_id, client_id=client_id, jwks=public, **fields),
        client_secret=secret,
    )
    registry.save(path)
    return support.TestPartner(sender_id, client_id, secret, private_jwks)


@contextmanager
def start_node(
    backend: str,
    tmp: Path,
    partners: dict[str, dict[str, Any]],
    custom: Callable[[Settings, PartnerSide], dict[str, support.TestPartner]] | None = None,
    **security: Any,
) -> Iterator[Node]:
    """A populated store of its own on `backend`, a partner-side server, and a secured node
    with `partners` (name -> Partner fields; `token_endpoint: True` points the partner's
    token_url and callback credentials at the partner-side server). Partner `main` is the
    default test partner."""
    side = PartnerSide().start()
    try:
        with support.store_url_for(backend, tmp) as url:
            store = Store(url)
            store.upgrade()
            load_country(store, small_country())
            data_dir = tmp / "node"
            data_dir.mkdir(mode=0o700)
            settings = support.test_settings(
                url, data_dir=data_dir, delivery=FAST_DELIVERY, security=security
            )
            made: dict[str, support.TestPartner] = {}
            for name, wanted in partners.items():
                fields = dict(wanted)
                if fields.pop("token_endpoint", False):
                    fields.update(
                        token_url=side.token_url,
                        callback_client_id=PartnerSide.CLIENT_ID,
                        callback_client_secret=side.client_secret,
                    )
                made[name] = support.provision(
                    settings, sender_id=f"{name}.test", client_id=f"{name}-client", **fields
                )
            if custom is not None:
                made.update(custom(settings, side))
            running = support.live_server(settings, store)
            made["main"] = running.partner
            node = Node(running, store, made, side, small_country())
            try:
                for name in made:  # tokens first: the tests then count audit rows exactly
                    node.token(name)
                yield node
            finally:
                running.stop()
                node.http.close()
                store.dispose()
    finally:
        side.stop()


def second_node(
    node: Node,
    data_dir: Path | str,
    partners: dict[str, dict[str, Any]] = {},  # noqa: B006
    with_main: bool = False,
    **security: Any,
) -> Node:
    """Another node over the same store (no delivery worker, so that it never claims the first
    node's outbox rows)."""
    settings = support.test_settings(
        node.settings.store_url,
        data_dir=data_dir,
        delivery={**FAST_DELIVERY, "in_process_worker": False},
        security=security,
    )
    made = {
        name: support.provision(
            settings, sender_id=f"{name}.test", client_id=f"{name}-client", **fields
        )
        for name, fields in partners.items()
    }
    store = Store(node.settings.store_url)
    running = support.live_server(settings, store, partner=with_main)
    if with_main:
        made["main"] = running.partner
    other = Node(running, store, made, node.side, node.country)
    for name in made:
        other.token(name)
    return other


def stop_node(node: Node) -> None:
    node.running.stop()
    node.http.close()
    node.store.dispose()


PARTNERS: dict[str, dict[str, Any]] = {
    "scoped": {"scopes": {"crvs": ["search"]}},
    "minimal": {"scopes": {"crvs": "*"}, "fields": {"crvs": ["identifier", "birth_date"]}},
    "sealed": {"require_encryption": True},
    "public": {"allow_private_callbacks": False},
    "pinned": {"callback_prefixes": ["https://spmis.partner.example:8443/dci/"]},
    "ed": {"signing_alg": "EdDSA", "signature_profile": "http-sig-ed25519"},
    "lenient": {"allow_unsigned": True},  # as the demo partner
}


@pytest.fixture(scope="module")
def node(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with start_node(backend, tmp_path_factory.mktemp("security-e2e"), PARTNERS) as running:
        yield running


@pytest.fixture(scope="module")
def stranger(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node that shares the first node's keys and token issuer but whose partner file does
    not hold the partners (as if they had been removed after their tokens were issued)."""
    other = second_node(
        node,
        node.settings.security.base_dir,
        partners_file="partners-of-another-node.yaml",
        issuer=node.base_url,
    )
    yield other
    stop_node(other)


# ---------------------------------------------------------------------------------------------
# Building refused messages


def ts(offset: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def mint(
    n: Node,
    *,
    key: Any = None,
    issuer: str | None = None,
    audience: str | None = None,
    clock: float = 0.0,
    who: str = "main",
) -> str:
    """An access token made outside the token endpoint (expired, forged, foreign ...)."""
    issuer_ = TokenIssuer(
        key or n.node_keys().signing_key(),
        issuer or n.base_url,
        ttl_seconds=60,
        audience=audience,
        now=lambda: time.time() + clock,
    )
    partner = n.partners[who]
    return issuer_.issue(partner.client_id, partner.sender_id, ["crvs:registry.search"])[
        "access_token"
    ]


def imposter(kid: str, alg: str = "ES256") -> Any:
    """A fresh private key that claims someone else's `kid`."""
    jwk = generate_key("sig", alg).as_dict(private=True)
    jwk["kid"] = kid
    return load_jwk(jwk)


def alg_none_token(n: Node) -> str:
    def part(doc: dict[str, Any]) -> str:
        return b64url_encode(orjson.dumps(doc))

    now = int(time.time())
    claims = {
        "iss": n.base_url,
        "aud": n.base_url,
        "sub": "main-client",
        "client_id": "main-client",
        "sender_id": n.sender("main"),
        "scope": "*:registry.*",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    return f"{part({'alg': 'none', 'typ': 'at+jwt'})}.{part(claims)}.AAAA"


def premature_token(n: Node) -> str:
    """A token signed with the node's own key, valid only from ten minutes from now (`nbf`)."""
    key = n.node_keys().signing_key()
    now = int(time.time())
    partner = n.partners["main"]
    claims = {
        "iss": n.base_url,
        "aud": n.base_url,
        "sub": partner.client_id,
        "client_id": partner.client_id,
        "sender_id": partner.sender_id,
        "scope": "crvs:registry.search",
        "iat": now,
        "nbf": now + 600,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
    }
    header = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    return jwt.encode(header, claims, key, algorithms=[key.alg], default_type=None)


def node_enc_jwk(n: Node, alg: str = "ECDH-ES+A256KW") -> dict[str, Any]:
    return next(k for k in n.jwks()["keys"] if k["use"] == "enc" and k["alg"] == alg)


def sync(n: Node, env: dict[str, Any], who: str = "main", **kw: Any) -> httpx.Response:
    return n.post("crvs", "sync/search", env, who, **kw)


def asynchronous(n: Node, env: dict[str, Any], who: str = "main", **kw: Any) -> httpx.Response:
    return n.post("crvs", "search", env, who, **kw)


def tampered_header(n: Node) -> httpx.Response:
    env = n.signed(n.search())
    env["header"]["message_id"] = f"m-{uuid.uuid4().hex}"
    return sync(n, env)


def tampered_message(n: Node) -> httpx.Response:
    env = n.signed(n.search())
    env["message"]["search_request"][0]["search_criteria"]["query"]["value"] = "0000000000"
    return sync(n, env)


def wrong_key(n: Node) -> httpx.Response:
    key = imposter(str(n.partners["main"].signing_key().kid))
    return sync(n, n.signed(n.search(), key=key))


def unknown_kid(n: Node) -> httpx.Response:
    return sync(n, n.signed(n.search(), key=generate_key("sig", "ES256")))


def compact_over_other_envelope(n: Node) -> httpx.Response:
    other = n.search()
    env = n.search()
    env["signature"] = n.signed(other, profile="jws-compact")["signature"]
    return sync(n, env)


def http_sig_expired(n: Node) -> httpx.Response:
    env = n.search("ed")
    signature = sign(
        env["header"],
        env["message"],
        n.partners["ed"].signing_key(),
        "http-sig-ed25519",
        now=lambda: time.time() - 3600,
    )
    return sync(n, {"signature": signature, **env}, "ed")


def http_sig_tampered(n: Node) -> httpx.Response:
    env = n.signed(n.search("ed"), "ed", "http-sig-ed25519")
    env["message"]["transaction_id"] = "t-changed"
    return sync(n, env, "ed")


def encrypted(
    n: Node, recipient: dict[str, Any], spoil: bool = False, who: str = "main"
) -> dict[str, Any]:
    env = n.search(who, is_msg_encrypted=True)
    env["message"] = encrypt_message(env["message"], recipient)
    if spoil:
        env["message"]["ciphertext"] = b64url_encode(b"\x00" * 32)
    return env


def pinned(n: Node, uri: str) -> httpx.Response:
    return asynchronous(n, n.search("pinned", sender_uri=uri), "pinned")


@dataclass(frozen=True)
class Refusal:
    id: str
    send: Callable[[Node, Node], httpx.Response]  # (node, stranger)
    status: int
    shape: str  # http: HttpErrorResponse | ack: ERR ack | rjct: sync envelope, header rjct
    code: str
    partner: str | None  # whom the audit row names (a key of node.partners)
    outcome: str | None = None  # the audit outcome, when it is not `code`


REFUSALS = [
    # -- bearer token -----------------------------------------------------------------------
    Refusal(
        "token-missing",
        lambda n, s: sync(n, n.search(), auth=None),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-basic-scheme",
        lambda n, s: sync(n, n.search(), auth="Basic c3A6c2VjcmV0"),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-bearer-empty",
        lambda n, s: sync(n, n.search(), auth="Bearer"),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-not-a-jwt",
        lambda n, s: sync(n, n.search(), auth="Bearer not-a-token"),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-expired",
        lambda n, s: sync(n, n.search(), auth=f"Bearer {mint(n, clock=-3600)}"),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-not-yet-valid",
        lambda n, s: sync(n, n.search(), auth=f"Bearer {premature_token(n)}"),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-forged-unknown-key",
        lambda n, s: sync(
            n, n.search(), auth=f"Bearer {mint(n, key=generate_key('sig', 'ES256'))}"
        ),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-forged-with-our-kid",
        lambda n, s: sync(
            n,
            n.search(),
            auth="Bearer " + mint(n, key=imposter(str(n.node_keys().signing_key().kid))),
        ),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-alg-none",
        lambda n, s: sync(n, n.search(), auth=f"Bearer {alg_none_token(n)}"),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-other-issuer",
        lambda n, s: sync(
            n, n.search(), auth=f"Bearer {mint(n, issuer='https://idp.elsewhere.example')}"
        ),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-other-audience",
        lambda n, s: sync(
            n, n.search(), auth="Bearer " + mint(n, audience="https://other-registry.example")
        ),
        401,
        "http",
        UNAUTHORIZED,
        None,
    ),
    Refusal(
        "token-partner-not-registered",
        lambda n, s: sync(n, n.search(), base_url=s.base_url),
        401,
        "http",
        UNAUTHORIZED,
        "main",
    ),
    # -- scope --------------------------------------------------------------------------------
    Refusal(
        "scope-dr-sync-search",
        lambda n, s: n.post("dr", "sync/search", n.search("scoped"), "scoped"),
        403,
        "http",
        FORBIDDEN,
        "scoped",
    ),
    Refusal(
        "scope-crvs-sync-txn-status",
        lambda n, s: n.post(
            "crvs",
            "sync/txn/status",
            txn_status_envelope("transaction_id", "t-1", sender_id=n.sender("scoped")),
            "scoped",
        ),
        403,
        "http",
        FORBIDDEN,
        "scoped",
    ),
    Refusal(
        "scope-crvs-txn-status",
        lambda n, s: n.post(
            "crvs",
            "txn/status",
            txn_status_envelope(
                "transaction_id",
                "t-1",
                sender_id=n.sender("scoped"),
                sender_uri=n.side.url("/scoped/txn/on-status"),
            ),
            "scoped",
        ),
        403,
        "http",
        FORBIDDEN,
        "scoped",
    ),
    Refusal(
        "scope-dr-sync-disabled",
        lambda n, s: n.post(
            "dr",
            "sync/disabled",
            {
                **dr_envelope({"personal_details.member_identifier": {"eq": n.uin}}),
                "header": {**dr_envelope({})["header"], "sender_id": n.sender("scoped")},
            },
            "scoped",
        ),
        403,
        "http",
        FORBIDDEN,
        "scoped",
    ),
    # -- signature ----------------------------------------------------------------------------
    Refusal(
        "signature-missing",
        lambda n, s: sync(n, n.search(), signed=False),
        400,
        "ack",
        "err.signature.missing",
        "main",
    ),
    Refusal(
        "signature-tampered-header",
        lambda n, s: tampered_header(n),
        400,
        "ack",
        "err.signature.invalid",
        "main",
    ),
    Refusal(
        "signature-tampered-message",
        lambda n, s: tampered_message(n),
        400,
        "ack",
        "err.signature.invalid",
        "main",
    ),
    Refusal(
        "signature-wrong-key-same-kid",
        lambda n, s: wrong_key(n),
        400,
        "ack",
        "err.signature.invalid",
        "main",
    ),
    Refusal(
        "signature-unknown-kid",
        lambda n, s: unknown_kid(n),
        400,
        "ack",
        "err.signature.invalid",
        "main",
    ),
    Refusal(
        "signature-garbage",
        lambda n, s: sync(n, {"signature": "garbage!", **n.search()}),
        400,
        "ack",
        "err.signature.invalid",
        "main",
    ),
    Refusal(
        "signature-compact-other-payload",
        lambda n, s: compact_over_other_envelope(n),
        400,
        "ack",
        "err.signature.invalid",
        "main",
    ),
    Refusal(
        "signature-http-sig-expired",
        lambda n, s: http_sig_expired(n),
        400,
        "ack",
        "err.signature.invalid",
        "ed",
    ),
    Refusal(
        "signature-http-sig-tampered",
        lambda n, s: http_sig_tampered(n),
        400,
        "ack",
        "err.signature.invalid",
        "ed",
    ),
    # -- encryption ---------------------------------------------------------------------------
    Refusal(
        "encryption-bad-ciphertext",
        lambda n, s: sync(n, encrypted(n, node_enc_jwk(n), spoil=True)),
        400,
        "ack",
        "err.encryption.invalid",
        "main",
    ),
    Refusal(
        "encryption-to-unknown-key",
        lambda n, s: sync(
            n, encrypted(n, generate_key("enc", "ECDH-ES+A256KW").as_dict(private=False))
        ),
        400,
        "ack",
        "err.encryption.invalid",
        "main",
    ),
    Refusal(
        "encryption-flag-on-plain-message",
        lambda n, s: sync(n, n.search(is_msg_encrypted=True)),
        400,
        "ack",
        "err.encryption.invalid",
        "main",
    ),
    Refusal(
        "encryption-required-but-plain",
        lambda n, s: sync(n, n.search("sealed"), "sealed"),
        400,
        "ack",
        "err.encryption.invalid",
        "sealed",
    ),
    # -- freshness, ids, callback URL ---------------------------------------------------------
    Refusal(
        "message-ts-old-sync",
        lambda n, s: sync(n, n.search(message_ts=ts(-3600))),
        400,
        "rjct",
        "rjct.message_ts.invalid",
        "main",
    ),
    Refusal(
        "message-ts-future-sync",
        lambda n, s: sync(n, n.search(message_ts=ts(3600))),
        400,
        "rjct",
        "rjct.message_ts.invalid",
        "main",
    ),
    Refusal(
        "message-ts-old-async",
        lambda n, s: asynchronous(
            n, n.search(message_ts=ts(-3600), sender_uri=n.side.url("/ts/on-search"))
        ),
        400,
        "ack",
        BAD,
        "main",
        outcome="rjct.message_ts.invalid",
    ),
    Refusal(
        "receiver-id-other",
        lambda n, s: sync(n, n.search(receiver_id="crvs.another-registry.example")),
        400,
        "ack",
        "err.receiver_id.invalid",
        "main",
    ),
    Refusal(
        "sender-id-another-partner",
        lambda n, s: sync(n, search_envelope(idtype("UIN", n.uin), sender_id=n.sender("scoped"))),
        400,
        "ack",
        "err.sender_id.invalid",
        "main",
    ),
    Refusal(
        "sender-id-unknown",
        lambda n, s: sync(n, search_envelope(idtype("UIN", n.uin), sender_id="nobody.example")),
        400,
        "ack",
        "err.sender_id.invalid",
        "main",
    ),
    Refusal(
        "sender-uri-outside-prefixes",
        lambda n, s: asynchronous(
            n, n.search(sender_uri="https://attacker.example/registry/on-search")
        ),
        400,
        "ack",
        "err.sender_uri.invalid",
        "main",
    ),
    Refusal(
        "sender-uri-userinfo",
        lambda n, s: asynchronous(
            n, n.search(sender_uri=f"http://user:pw@127.0.0.1:{n.side.port}/registry/on-search")
        ),
        400,
        "ack",
        "err.sender_uri.invalid",
        "main",
    ),
    Refusal(
        "sender-uri-other-port",
        lambda n, s: pinned(n, "https://spmis.partner.example:9443/dci/on-search"),
        400,
        "ack",
        "err.sender_uri.invalid",
        "pinned",
    ),
    Refusal(
        "sender-uri-other-scheme",
        lambda n, s: pinned(n, "http://spmis.partner.example:8443/dci/on-search"),
        400,
        "ack",
        "err.sender_uri.invalid",
        "pinned",
    ),
    Refusal(
        "sender-uri-other-path",
        lambda n, s: pinned(n, "https://spmis.partner.example:8443/admin/on-search"),
        400,
        "ack",
        "err.sender_uri.invalid",
        "pinned",
    ),
    Refusal(
        "sender-uri-dot-segments",
        lambda n, s: pinned(n, "https://spmis.partner.example:8443/dci/../admin/x"),
        400,
        "ack",
        "err.sender_uri.invalid",
        "pinned",
    ),
    Refusal(
        "sender-uri-missing",
        lambda n, s: asynchronous(n, n.search()),
        400,
        "ack",
        "err.sender_uri.invalid",
        "main",
    ),
]


def check_shape(response: httpx.Response, refusal: Refusal, n: Node) -> None:
    body = response.json()
    if refusal.shape == "http":  # HttpErrorResponse, plus the ERR ack of every DCI error
        assert list(body) == ["errors", "message"], body
        [error] = body["errors"]
        assert error["code"] == refusal.code, body
        assert isinstance(error["message"], str) and error["message"], body
        ack = body["message"]
        assert ack["ack_status"] == "ERR" and ack["correlation_id"] and ack["timestamp"], body
        assert ack["error"] == error, body
    elif refusal.shape == "ack":  # ERR ack
        assert list(body) == ["message"], body
        ack = body["message"]
        assert ack["ack_status"] == "ERR", body
        assert ack["error"]["code"] == refusal.code, body
        assert ack["error"]["message"] and ack["correlation_id"] and ack["timestamp"], body
        if refusal.outcome and refusal.outcome.startswith("rjct."):
            assert refusal.outcome in ack["error"]["message"], body
    else:  # the sync response envelope, whole message rejected
        header = body["header"]
        assert header["status"] == "rjct", body
        assert header["status_reason_code"] == refusal.code, body
        assert header["status_reason_message"], body
        assert header["action"] == "on-search"
        assert header["sender_id"] == n.settings.registry_id("crvs")
        assert header["completed_count"] == 0
        assert "message" not in body


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.id for r in REFUSALS])
def test_refusal(node: Node, stranger: Node, refusal: Refusal) -> None:
    before = node.last_seq()
    response = refusal.send(node, stranger)
    assert response.status_code == refusal.status, response.text
    check_shape(response, refusal, node)

    [row] = node.audit_since(before)
    entry = row.entry
    assert entry["outcome"] == (refusal.outcome or refusal.code), entry
    assert entry["status"] == refusal.status
    assert entry["direction"] == "in"
    expected_partner = node.sender(refusal.partner) if refusal.partner else None
    assert row.partner == entry["partner"] == expected_partner, entry
    assert entry["records"] == []
    if refusal.code == "err.signature.invalid":
        assert entry["signature"] == "invalid"
    text = node.audit_text(row.seq)
    assert node.uin not in text, "the audit trail holds the query (personal data)"
    assert "Bearer" not in text and node.token() not in text


def test_the_refusal_table_covers_every_security_code() -> None:
    codes = {r.code for r in REFUSALS} | {r.outcome for r in REFUSALS if r.outcome}
    assert codes >= {
        UNAUTHORIZED,
        FORBIDDEN,
        "err.signature.missing",
        "err.signature.invalid",
        "err.encryption.invalid",
        "rjct.message_ts.invalid",
        "err.receiver_id.invalid",
        "err.sender_id.invalid",
        "err.sender_uri.invalid",
    }


def test_accepted_request_is_audited_with_record_ids_only(node: Node) -> None:
    """The other side of the table: the same request, well formed, is answered, and the audit
    row names partner, ids and signature verdict, and the record returned by id only."""
    before = node.last_seq()
    env = node.search()
    response = sync(node, env)
    assert response.status_code == 200, response.text
    [item] = response.json()["message"]["search_response"]
    assert item["status"] == "succ"
    [record] = item["data"]["reg_records"]
    [row] = node.audit_since(before)
    entry = row.entry
    assert entry["outcome"] == "ok" and entry["status"] == 200
    assert entry["partner"] == node.sender("main")
    assert entry["message_id"] == env["header"]["message_id"]
    assert entry["transaction_id"] == env["message"]["transaction_id"]
    assert entry["signature"].startswith("jws-detached:")
    assert len(entry["records"]) == 1 and re.fullmatch(r"\w+:\d+", entry["records"][0])
    text = node.audit_text(row.seq)
    for value in (node.uin, record["name"]["given_name"], record["birth_date"]):
        assert value not in text


def test_partner_allowed_unsigned_messages_still_has_its_signatures_checked(node: Node) -> None:
    before = node.last_seq()
    unsigned = sync(node, node.search("lenient"), "lenient", signed=False)
    assert unsigned.status_code == 200, unsigned.text
    [row] = node.audit_since(before)
    assert row.entry["signature"] == "unsigned" and row.entry["outcome"] == "ok"
    forged = sync(
        node, node.signed(node.search("lenient"), key=generate_key("sig", "ES256")), "lenient"
    )
    assert forged.status_code == 400
    assert forged.json()["message"]["error"]["code"] == "err.signature.invalid"


# ---------------------------------------------------------------------------------------------
# The token endpoint


def form_post(
    n: Node,
    data: dict[str, str] | str,
    content_type: str = "application/x-www-form-urlencoded",
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    body = data if isinstance(data, str) else httpx.QueryParams(data).__str__()
    headers = {"content-type": content_type}
    if auth is not None:
        raw = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["authorization"] = f"Basic {raw}"
    return n.http.post(f"{n.base_url}/oauth2/client/token", content=body.encode(), headers=headers)


def credentials(n: Node, who: str = "main", **override: str) -> dict[str, str]:
    partner = n.partners[who]
    data = {
        "grant_type": "client_credentials",
        "client_id": partner.client_id,
        "client_secret": partner.client_secret,
    }
    data.update(override)
    return {k: v for k, v in data.items() if v is not None}


TOKEN_REFUSALS = [
    (
        "wrong-secret",
        lambda n: form_post(n, credentials(n, client_secret="wrong")),
        401,
        "invalid_client",
        UNAUTHORIZED,
    ),
    (
        "unknown-client",
        lambda n: form_post(n, credentials(n, client_id="nobody")),
        401,
        "invalid_client",
        UNAUTHORIZED,
    ),
    (
        "no-secret",
        lambda n: form_post(
            n, {"grant_type": "client_credentials", "client_id": n.partners["main"].client_id}
        ),
        401,
        "invalid_client",
        UNAUTHORIZED,
    ),
    (
        "basic-wrong-secret",
        lambda n: form_post(
            n, {"grant_type": "client_credentials"}, auth=(n.partners["main"].client_id, "wrong")
        ),
        401,
        "invalid_client",
        UNAUTHORIZED,
    ),
    (
        "grant-type-password",
        lambda n: form_post(n, credentials(n, grant_type="password")),
        400,
        "unsupported_grant_type",
        BAD,
    ),
    (
        "grant-type-missing",
        lambda n: form_post(n, {k: v for k, v in credentials(n).items() if k != "grant_type"}),
        400,
        "invalid_request",
        BAD,
    ),
    (
        "json-body",
        lambda n: form_post(n, json.dumps(credentials(n)), "application/json"),
        400,
        "invalid_request",
        BAD,
    ),
    (
        "scope-not-granted",
        lambda n: form_post(n, credentials(n, "scoped", scope="dr:registry.search")),
        400,
        "invalid_scope",
        FORBIDDEN,
    ),
]


@pytest.mark.parametrize("case", TOKEN_REFUSALS, ids=[c[0] for c in TOKEN_REFUSALS])
def test_token_endpoint_refusal(node: Node, case: tuple) -> None:
    _, send, status, error, code = case
    before = node.last_seq()
    response = send(node)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["error_description"]
    assert body["errors"] == [{"code": code, "message": body["error_description"]}]
    assert "access_token" not in body
    assert response.headers["cache-control"] == "no-store"
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")
    [row] = node.audit_since(before)
    assert row.entry["endpoint"] == "/oauth2/client/token"
    assert row.entry["outcome"] == code and row.entry["status"] == status
    text = node.audit_text(row.seq)
    for partner in node.partners.values():
        assert partner.client_secret not in text


def test_token_endpoint_client_secret_post(node: Node) -> None:
    before = node.last_seq()
    response = form_post(node, credentials(node, "scoped"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert type(body["expires_in"]) is int and body["expires_in"] == 300
    assert body["scope"] == "crvs:registry.search"
    assert response.headers["cache-control"] == "no-store"
    [row] = node.audit_since(before)
    assert row.entry["outcome"] == "ok" and row.partner == node.sender("scoped")
    assert body["access_token"] not in node.audit_text(row.seq)


def test_token_endpoint_http_basic_and_the_token_works(node: Node) -> None:
    partner = node.partners["main"]
    response = form_post(
        node,
        {"grant_type": "client_credentials", "scope": "crvs:registry.search"},
        auth=(partner.client_id, partner.client_secret),
    )
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["scope"] == "crvs:registry.search" and type(token["expires_in"]) is int
    ok = sync(node, node.search(), auth=f"Bearer {token['access_token']}")
    assert ok.status_code == 200, ok.text
    # the token carries only the scope asked for
    refused = node.post("dr", "sync/search", node.search(), auth=f"Bearer {token['access_token']}")
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["code"] == FORBIDDEN


# ---------------------------------------------------------------------------------------------
# Replay


def test_replayed_async_search_gets_the_original_ack_and_one_callback(node: Node) -> None:
    url = node.side.url(f"/replay-{uuid.uuid4().hex}/on-search")
    env = node.signed(node.search(sender_uri=url))
    body = orjson.dumps(env)
    before = node.last_seq()
    first = node.post_bytes("crvs", "search", body)
    second = node.post_bytes("crvs", "search", body)
    assert first.status_code == second.status_code == 202, first.text
    assert second.content == first.content  # the same ack: same correlation id, same time
    # same message_id, other content: refused (409), nothing processed
    other = node.search(sender_uri=url)
    other["header"]["message_id"] = env["header"]["message_id"]
    third = asynchronous(node, other)
    assert third.status_code == 409, third.text
    assert "rjct.message_id.duplicate" in third.json()["message"]["error"]["message"]

    rows = node.wait_outbox(url)
    assert sorted(r["kind"] for r in rows) == ["deliver", "process"]
    assert {r["status"] for r in rows} == {DONE}
    assert len(node.side.under(url.split(str(node.side.port))[1])) == 1
    assert len(node.transactions("crvs", "main", env["message"]["transaction_id"])) == 1
    assert node.transactions("crvs", "main", other["message"]["transaction_id"]) == []
    audit = node.audit_since(before)
    assert [r.entry["outcome"] for r in audit] == ["ok", "replay", BAD]
    assert {r.entry["message_id"] for r in audit} == {env["header"]["message_id"]}
    [delivery] = wait_audit_out(node, before, url)
    assert delivery.entry["outcome"] == "delivered"
    assert delivery.entry["transaction_id"] == env["message"]["transaction_id"]


def test_replayed_enrollment_update_is_not_written_twice(node: Node) -> None:
    uin = f"9{uuid.uuid4().int % 10**9:09d}"
    env = enrollment_updates_envelope([beneficiary(uin, "OAP", "1")])
    body = orjson.dumps(node.signed(env))
    first = node.post_bytes("ibr", "sync/enrollment/updates", body)
    assert first.status_code == 200, first.text
    [item] = first.json()["message"]["enrolled_response"]
    assert item["status"] == "succ" and item["status_reason_message"].startswith("enrolled")
    replay = node.post_bytes("ibr", "sync/enrollment/updates", body)
    assert replay.status_code == 200 and replay.content == first.content
    assert len(node.transactions("ibr", "main", env["message"]["transaction_id"])) == 1
    # the same update under a new message id is processed: the record exists once already
    again = enrollment_updates_envelope(
        [beneficiary(uin, "OAP", "1")], transaction_id=f"eu-{uuid.uuid4().hex}"
    )
    second = node.post("ibr", "sync/enrollment/updates", again)
    [item] = second.json()["message"]["enrolled_response"]
    assert item["status_reason_message"].startswith("updated"), item


def test_a_refused_duplicate_does_not_free_the_message_id_of_the_one_in_flight(
    backend: str, tmp_path: Path
) -> None:
    """Regression: the 409 answer to a duplicate released the in-flight marker of the first
    copy, so a third copy arriving before the first committed was processed again."""
    import anyio

    from dcihub.server.guard import SecurityGuard
    from dcihub.standard.errors import DCIError

    def copy() -> Any:
        return SimpleNamespace(
            sender_id="spmis.test",
            header=SimpleNamespace(message_id="m-in-flight"),
            raw_header={"message_id": "m-in-flight"},
            wire_message={},
            endpoint=SimpleNamespace(url_path="/crvs/registry/sync/search"),
        )

    async def scenario(guard: SecurityGuard) -> None:
        first, second, third = copy(), copy(), copy()
        assert await guard.replayed(first) is None  # claims the id
        with pytest.raises(DCIError) as refused:
            await guard.replayed(second)
        assert refused.value.http_status == 409
        guard.release(second)  # the pipeline releases every exchange when it is over
        with pytest.raises(DCIError):
            await guard.replayed(third)  # the first copy is still being processed
        guard.release(first)
        assert await guard.replayed(third) is None

    with support.store_url_for(backend, tmp_path) as url:
        store = Store(url)
        store.upgrade()
        try:
            security = SimpleNamespace(options=SimpleNamespace(replay_window=60.0))
            anyio.run(scenario, SecurityGuard(security, store))  # type: ignore[arg-type]
        finally:
            store.dispose()


# ---------------------------------------------------------------------------------------------
# Delivery: private addresses and redirects


def wait_audit_out(n: Node, before: int, url: str, timeout: float = 10.0) -> list[AuditRow]:
    """The audit rows of callback deliveries to `url` (written just after the outbox row)."""
    path = url.split(f":{n.side.port}", 1)[1]
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in n.audit_since(before, "out") if r.entry.get("endpoint") == path]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_callback_to_loopback_is_refused_unless_allowed(node: Node) -> None:
    path = f"/public-{uuid.uuid4().hex}/on-search"
    url = node.side.url(path)
    before = node.last_seq()
    response = asynchronous(node, node.search("public", sender_uri=url), "public")
    assert response.status_code == 202, response.text  # under its registered prefix
    rows = node.wait_outbox(url)
    deliver = next(r for r in rows if r["kind"] == "deliver")
    assert deliver["status"] == DEAD
    assert "loopback" in deliver["last_error"], deliver["last_error"]
    assert "allow_private_callbacks" in deliver["last_error"]
    assert deliver["attempts"] == 1  # refused for good, not retried
    assert node.side.under(path) == []
    [audit] = wait_audit_out(node, before, url)
    assert audit.entry["outcome"].startswith("gave up: callback target refused")
    assert audit.partner == node.sender("public") and audit.entry["records_sent"] == 1


def test_redirects_are_not_followed(node: Node) -> None:
    token = uuid.uuid4().hex
    url = node.side.url(f"/redirect/{token}/on-search")
    before = node.last_seq()
    response = asynchronous(node, node.search(sender_uri=url))
    assert response.status_code == 202, response.text
    rows = node.wait_outbox(url)
    deliver = next(r for r in rows if r["kind"] == "deliver")
    assert deliver["status"] == DEAD
    assert deliver["last_error"].startswith("HTTP 302"), deliver["last_error"]
    assert len(node.side.under(f"/redirect/{token}/")) == 1
    assert node.side.under(f"/landing/{token}/") == []
    [audit] = wait_audit_out(node, before, url)
    assert audit.entry["outcome"].startswith("gave up: HTTP 302")


# ---------------------------------------------------------------------------------------------
# Consent


@pytest.fixture(scope="module")
def consent_node(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node whose CRVS and DR require consent with purpose ELIG; partner `consent` may claim
    ELIG and MKTG, partner `main` no purpose at all."""
    other = second_node(
        node,
        tmp_path_factory.mktemp("consent-node"),
        {"consent": {"consent_purposes": ["ELIG", "MKTG"]}},
        with_main=True,
        require_consent={"crvs": ["ELIG"], "dr": ["ELIG"]},
    )
    yield other
    stop_node(other)


def purpose(code: str) -> dict[str, Any]:
    return {"ts": now_ts(), "purpose": {"text": "eligibility check", "code": code}}


def test_consent_is_required_with_an_allowed_purpose(consent_node: Node) -> None:
    n = consent_node
    items = [
        idtype("UIN", n.uin),  # no consent at all
        idtype("UIN", n.uin, consent=purpose("MKTG")),  # the partner's, not the registry's
        idtype("UIN", n.uin, consent=purpose("FRAUD")),  # the partner may not claim it
        idtype("UIN", n.uin, consent=purpose("ELIG")),
        idtype("UIN", n.uin, authorize=purpose("ELIG")),
    ]
    env = search_envelope(*items, sender_id=n.sender("consent"))
    before = n.last_seq()
    response = sync(n, env, "consent")
    assert response.status_code == 200, response.text
    results = response.json()["message"]["search_response"]
    assert [r["status"] for r in results] == ["rjct", "rjct", "rjct", "succ", "succ"]
    for rejected in results[:3]:
        assert rejected["status_reason_code"] == "rjct.search_criteria.invalid"
        assert "data" not in rejected or not rejected["data"]
    assert "requires consent" in results[0]["status_reason_message"]
    assert "ELIG" in results[0]["status_reason_message"]
    assert "'MKTG'" in results[1]["status_reason_message"]
    assert "'FRAUD'" in results[2]["status_reason_message"]
    assert len(results[3]["data"]["reg_records"]) == 1
    [row] = n.audit_since(before)
    assert row.entry["outcome"] == "ok" and len(row.entry["records"]) == 2


def test_consent_purpose_the_partner_may_not_claim(consent_node: Node) -> None:
    n = consent_node
    env = search_envelope(idtype("UIN", n.uin, consent=purpose("ELIG")), sender_id=n.sender("main"))
    [result] = sync(n, env).json()["message"]["search_response"]
    assert result["status"] == "rjct"
    assert "none (ask the registry operator)" in result["status_reason_message"]


def test_special_call_refused_when_consent_is_required(consent_node: Node) -> None:
    n = consent_node
    env = dr_envelope({"personal_details.member_identifier": {"eq": n.uin}})
    env["header"]["sender_id"] = n.sender("consent")
    before = n.last_seq()
    response = n.post("dr", "sync/disabled", env, "consent")
    assert response.status_code == 403, response.text
    [error] = response.json()["errors"]
    assert error["code"] == FORBIDDEN and "consent" in error["message"]
    [row] = n.audit_since(before)
    assert row.entry["outcome"] == FORBIDDEN and row.partner == n.sender("consent")
    assert row.entry["records"] == []


def test_registry_without_consent_rule_answers_without_consent(consent_node: Node) -> None:
    n = consent_node
    env = search_envelope(idtype("UIN", n.uin), sender_id=n.sender("consent"))
    assert n.post("fr", "sync/search", env, "consent").status_code == 200


# ---------------------------------------------------------------------------------------------
# Data minimisation


MINIMAL = {"identifier", "birth_date"}


def records_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for item in message["search_response"] for r in item["data"]["reg_records"]]


def test_minimised_partner_gets_only_its_fields_everywhere(node: Node) -> None:
    full = records_of(sync(node, node.search()).json()["message"])
    assert full and set(full[0]) > MINIMAL | {"name"}

    # sync search
    response = sync(node, node.search("minimal"), "minimal")
    assert response.status_code == 200, response.text
    records = records_of(response.json()["message"])
    assert records and all(set(r) == MINIMAL for r in records)
    assert records[0]["birth_date"] == full[0]["birth_date"]

    # async search: the on-search callback
    path = f"/minimal-{uuid.uuid4().hex}/on-search"
    env = node.search("minimal", sender_uri=node.side.url(path))
    assert asynchronous(node, env, "minimal").status_code == 202
    [callback] = node.side.wait_for(path)
    records = records_of(callback.json()["message"])
    assert records and all(set(r) == MINIMAL for r in records)

    # txn/status of that search
    status = node.post(
        "crvs",
        "sync/txn/status",
        txn_status_envelope(
            "transaction_id", env["message"]["transaction_id"], sender_id=node.sender("minimal")
        ),
        "minimal",
    )
    assert status.status_code == 200, status.text
    records = records_of(status.json()["message"]["txnstatus_response"]["txn_status"])
    assert records and all(set(r) == MINIMAL for r in records)
