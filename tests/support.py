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
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} "
                    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
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

    def url(self, registry: str, path: str) -> str:
        return f"{self.base_url}/{registry}/registry/{path}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return server, thread


def live_server(settings: Settings, store: Store, **kwargs: Any) -> LiveServer:
    from dcihub.server.factory import build_app

    app, _ = build_app(settings, store, **kwargs)
    port = int(settings.base_url.rsplit(":", 1)[1])
    server, thread = start_server(app, port)
    return LiveServer(settings.base_url, settings, store, app, server, thread)


def test_settings(store_url: str, port: int | None = None, **overrides: Any) -> Settings:
    port = port or free_port()
    data: dict[str, Any] = {
        "store_url": store_url,
        "node_id": "dcihub.test",
        "base_url": f"http://127.0.0.1:{port}",
    }
    data.update(overrides)
    return Settings.model_validate(data)


# ---------------------------------------------------------------------------------------------
# Building DCI messages (newest spec shapes)


def now_ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def header(action: str, total_count: int = 1, sender_id: str = "spmis.test",
           **extra: Any) -> dict[str, Any]:
    h = {"version": "1.0.0", "message_id": f"m-{uuid.uuid4().hex}", "message_ts": now_ts(),
         "action": action, "sender_id": sender_id, "total_count": total_count,
         "is_msg_encrypted": False}
    h.update(extra)
    return h


def search_item(query_type: str, query: Any, reference_id: str | None = None,
                **criteria: Any) -> dict[str, Any]:
    return {
        "reference_id": reference_id or f"r-{uuid.uuid4().hex[:12]}",
        "timestamp": now_ts(),
        "search_criteria": {"version": "1.0.0", "query_type": query_type, "query": query,
                            **criteria},
        "locale": "eng",
    }


def idtype(id_type: str, value: str, **criteria: Any) -> dict[str, Any]:
    return search_item("idtype-value", {"type": id_type, "value": value}, **criteria)


def predicate(*items: dict[str, Any], **criteria: Any) -> dict[str, Any]:
    return search_item("predicate", list(items), **criteria)


def expr(name: str, op: str, value: Any) -> dict[str, Any]:
    return {"attribute_name": name, "operator": op, "attribute_value": value}


def pred(seq: int, e1: dict[str, Any], condition: str | None = None,
         e2: dict[str, Any] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"seq_num": seq, "expression1": e1}
    if condition:
        item["condition"] = condition
        item["expression2"] = e2
    return item


def mongo(document: dict[str, Any], collection: str | None = None, **criteria: Any) -> dict:
    expression: dict[str, Any] = {"query": document}
    if collection:
        expression["collection"] = collection
    return search_item("expression", {"type": "ns:org:QueryType:NoSql",
                                      "value": {"expression": expression}}, **criteria)


def search_envelope(*items: dict[str, Any], sender_id: str = "spmis.test",
                    transaction_id: str | None = None, **header_extra: Any) -> dict[str, Any]:
    return {
        "header": header("search", len(items), sender_id, **header_extra),
        "message": {"transaction_id": transaction_id or f"t-{uuid.uuid4().hex[:12]}",
                    "search_request": list(items)},
    }


@dataclass
class DCIClient:
    """Posts envelopes to a live server (the security layer's token and signature are added
    by `prepare` once configured)."""

    server: LiveServer
    sender_id: str = "spmis.test"
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    prepare: Any = None  # callable(envelope) -> (body bytes, headers)

    def post(self, registry: str, path: str, envelope: dict[str, Any]) -> httpx.Response:
        if self.prepare is not None:
            body, headers = self.prepare(envelope)
        else:
            import orjson

            body, headers = orjson.dumps(envelope), {"content-type": "application/json"}
        return self.http.post(self.server.url(registry, path), content=body, headers=headers)

    def post_raw(self, registry: str, path: str, body: bytes,
                 headers: dict[str, str] | None = None) -> httpx.Response:
        """POST bytes as they are (bad-input tests). Authentication headers the security layer
        needs are added here, so only the body and the given headers are "bad"."""
        sent = dict(self.auth_headers())
        sent.update(headers if headers is not None else {"content-type": "application/json"})
        return self.http.post(self.server.url(registry, path), content=body, headers=sent)

    def auth_headers(self) -> dict[str, str]:
        return {}

    def sync_search(self, registry: str, *items: dict[str, Any], **kw: Any) -> dict[str, Any]:
        response = self.post(registry, "sync/search",
                             search_envelope(*items, sender_id=self.sender_id, **kw))
        assert response.status_code == 200, response.text
        return response.json()

    def records(self, registry: str, item: dict[str, Any]) -> list[dict[str, Any]]:
        """All records of one search item, following pages."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            item = {**item, "search_criteria": {**item["search_criteria"],
                                                "pagination": {"page_size": 1000,
                                                               "page_number": page}}}
            body = self.sync_search(registry, item)
            result = body["message"]["search_response"][0]
            assert result["status"] == "succ", result
            out.extend(result["data"]["reg_records"])
            if len(out) >= result["pagination"]["total_count"]:
                return out
            page += 1
