"""Test support: stores on SQLite and PostgreSQL, a real dcihub server on loopback, and a small
DCI client that builds envelopes in the newest spec shape.

PostgreSQL tests use `DCIHUB_TEST_POSTGRES_URL`; each test session works in a schema of its own
(`search_path`), so concurrent sessions on one database never see each other's tables.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text

from dcihub.config import Settings
from dcihub.store import Store

POSTGRES_ENV = "DCIHUB_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def require_postgres() -> str:
    url = postgres_url()
    if url is None:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV} "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    return url


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema for this test session; yields a store URL that uses it."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def store_url_for(backend: str, tmp_dir: Any) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir}/dcihub-test-{uuid.uuid4().hex[:8]}.db"
    else:
        with postgres_schema(require_postgres()) as url:
            yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    base_url: str
    settings: Settings
    store: Store
    app: Any
    server: uvicorn.Server
    thread: threading.Thread
    partner: Any = None

    def url(self, registry: str, path: str) -> str:
        return f"{self.base_url}/{registry}/registry/{path}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return server, thread


def live_server(
    settings: Settings, store: Store, partner: bool = True, **kwargs: Any
) -> LiveServer:
    """Start a node; unless `partner=False`, register the test partner first
    (`running.partner`), so that `DCIClient(running)` can call it."""
    from dcihub.server.factory import build_app

    registered = provision(settings) if partner and settings.security.enabled else None
    app, _ = build_app(settings, store, **kwargs)
    port = int(settings.base_url.rsplit(":", 1)[1])
    server, thread = start_server(app, port)
    return LiveServer(settings.base_url, settings, store, app, server, thread, registered)


TEST_SENDER = "spmis.test"
TEST_CLIENT = "spmis-test"


@dataclass
class TestPartner:
    """A registered partner with its secrets (client secret, private keys)."""

    sender_id: str
    client_id: str
    client_secret: str
    private_jwks: dict[str, Any]

    def signing_key(self) -> Any:
        from dcihub.security.keys import load_jwk

        return load_jwk(next(k for k in self.private_jwks["keys"] if k.get("use") == "sig"))

    def decryption_key(self, kid: str | None) -> Any:
        from dcihub.security.keys import load_jwk

        for jwk in self.private_jwks["keys"]:
            if jwk.get("use") == "enc" and (kid is None or jwk.get("kid") == kid):
                return load_jwk(jwk)
        return None


def provision(
    settings: Settings, sender_id: str = TEST_SENDER, client_id: str = TEST_CLIENT, **fields: Any
) -> TestPartner:
    """Register a partner in the node's partner file (allowed everything by default)."""
    from dcihub.security.partners import PartnerRegistry
    from dcihub.security.provision import provision_partner

    path = settings.security.path(settings.security.partners_file)
    registry = PartnerRegistry.load(path) if path.exists() else PartnerRegistry()
    registry.remove(sender_id)
    fields.setdefault("scopes", {name: "*" for name in settings.registries})
    fields.setdefault("callback_prefixes", ["http://127.0.0.1:*/"])
    fields.setdefault("allow_private_callbacks", True)
    made = provision_partner(sender_id, client_id, **fields)
    registry.add(made.partner, client_secret=made.client_secret)
    registry.save(path)
    return TestPartner(sender_id, client_id, made.client_secret, made.private_jwks)


def test_settings(
    store_url: str, port: int | None = None, data_dir: Any = None, **overrides: Any
) -> Settings:
    """Settings of a secured test node; keys and partners live in `data_dir` (a fresh
    temporary directory when not given)."""
    import tempfile

    port = port or free_port()
    base_dir = str(data_dir) if data_dir is not None else tempfile.mkdtemp(prefix="dcihub-")
    data: dict[str, Any] = {
        "store_url": store_url,
        "node_id": "dcihub.test",
        "base_url": f"http://127.0.0.1:{port}",
        "security": {"base_dir": base_dir},
    }
    for key, value in overrides.items():
        if key == "security":
            data["security"].update(value)
        else:
            data[key] = value
    return Settings.model_validate(data)


# ---------------------------------------------------------------------------------------------
# Building DCI messages (newest spec shapes)


def now_ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def header(
    action: str, total_count: int = 1, sender_id: str = TEST_SENDER, **extra: Any
) -> dict[str, Any]:
    h = {
        "version": "1.0.0",
        "message_id": f"m-{uuid.uuid4().hex}",
        "message_ts": now_ts(),
        "action": action,
        "sender_id": sender_id,
        "total_count": total_count,
        "is_msg_encrypted": False,
    }
    h.update(extra)
    return h


def search_item(
    query_type: str, query: Any, reference_id: str | None = None, **criteria: Any
) -> dict[str, Any]:
    return {
        "reference_id": reference_id or f"r-{uuid.uuid4().hex[:12]}",
        "timestamp": now_ts(),
        "search_criteria": {
            "version": "1.0.0",
            "query_type": query_type,
            "query": query,
            **criteria,
        },
        "locale": "eng",
    }


def idtype(id_type: str, value: str, **criteria: Any) -> dict[str, Any]:
    return search_item("idtype-value", {"type": id_type, "value": value}, **criteria)


def predicate(*items: dict[str, Any], **criteria: Any) -> dict[str, Any]:
    return search_item("predicate", list(items), **criteria)


def expr(name: str, op: str, value: Any) -> dict[str, Any]:
    return {"attribute_name": name, "operator": op, "attribute_value": value}


def pred(
    seq: int, e1: dict[str, Any], condition: str | None = None, e2: dict[str, Any] | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {"seq_num": seq, "expression1": e1}
    if condition:
        item["condition"] = condition
        item["expression2"] = e2
    return item


def mongo(document: dict[str, Any], collection: str | None = None, **criteria: Any) -> dict:
    expression: dict[str, Any] = {"query": document}
    if collection:
        expression["collection"] = collection
    return search_item(
        "expression",
        {"type": "ns:org:QueryType:NoSql", "value": {"expression": expression}},
        **criteria,
    )


def search_envelope(
    *items: dict[str, Any],
    sender_id: str = TEST_SENDER,
    transaction_id: str | None = None,
    **header_extra: Any,
) -> dict[str, Any]:
    return {
        "header": header("search", len(items), sender_id, **header_extra),
        "message": {
            "transaction_id": transaction_id or f"t-{uuid.uuid4().hex[:12]}",
            "search_request": list(items),
        },
    }


@dataclass
class DCIClient:
    """Posts envelopes to a live server as a registered partner: gets (and caches) an access
    token from the node's token endpoint and signs every envelope (default profile)."""

    server: LiveServer
    partner: TestPartner | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    sign: bool = True
    profile: str = "jws-detached"
    _token: str | None = None
    _token_until: float = 0.0

    def __post_init__(self) -> None:
        if self.partner is None:
            self.partner = self.server.partner

    @property
    def sender_id(self) -> str:
        return self.partner.sender_id if self.partner else TEST_SENDER

    def token(self, refresh: bool = False) -> str:
        assert self.partner is not None
        # a long test session outlives a token: take a new one before it runs out
        if self._token is None or refresh or time.monotonic() >= self._token_until:
            asked = time.monotonic()
            response = self.http.post(
                f"{self.server.base_url}/oauth2/client/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.partner.client_id,
                    "client_secret": self.partner.client_secret,
                },
            )
            assert response.status_code == 200, response.text
            granted = response.json()
            self._token = granted["access_token"]
            self._token_until = asked + max(float(granted.get("expires_in", 300)) - 30, 0)
        return self._token

    def auth_headers(self) -> dict[str, str]:
        if self.partner is None:
            return {}
        return {"authorization": f"Bearer {self.token()}"}

    def signed(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """The envelope with a fresh signature (unless signing is off or it has one)."""
        if not self.sign or self.partner is None or "signature" in envelope:
            return envelope
        from dcihub.security.signatures import sign

        signature = sign(
            envelope["header"], envelope.get("message"), self.partner.signing_key(), self.profile
        )
        return {"signature": signature, **envelope}

    def post(self, registry: str, path: str, envelope: dict[str, Any]) -> httpx.Response:
        import orjson

        body = orjson.dumps(self.signed(envelope))
        headers = {"content-type": "application/json", **self.auth_headers()}
        return self.http.post(self.server.url(registry, path), content=body, headers=headers)

    def post_raw(
        self, registry: str, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST a bad body (bad-input tests). The access token is added, and an envelope that
        parses (a JSON object with a header, no signature) is signed as it is, so that only
        the body's own defect is what the server answers about."""
        body = self._sign_raw(body)
        sent = dict(self.auth_headers())
        sent.update(headers if headers is not None else {"content-type": "application/json"})
        return self.http.post(self.server.url(registry, path), content=body, headers=sent)

    def _sign_raw(self, body: bytes) -> bytes:
        import orjson

        if not self.sign or self.partner is None:
            return body
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("header"), dict)
            or "signature" in doc
        ):
            return body
        try:
            return orjson.dumps(self.signed(doc))
        except Exception:  # not signable as it is (e.g. odd types): send it unsigned
            return body

    def sync_search(self, registry: str, *items: dict[str, Any], **kw: Any) -> dict[str, Any]:
        response = self.post(
            registry, "sync/search", search_envelope(*items, sender_id=self.sender_id, **kw)
        )
        assert response.status_code == 200, response.text
        return response.json()

    def records(self, registry: str, item: dict[str, Any]) -> list[dict[str, Any]]:
        """All records of one search item, following pages."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            item = {
                **item,
                "search_criteria": {
                    **item["search_criteria"],
                    "pagination": {"page_size": 1000, "page_number": page},
                },
            }
            body = self.sync_search(registry, item)
            result = body["message"]["search_response"][0]
            assert result["status"] == "succ", result
            out.extend(result["data"]["reg_records"])
            if len(out) >= result["pagination"]["total_count"]:
                return out
            page += 1
