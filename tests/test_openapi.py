"""The OpenAPI document describes every DCI endpoint with dcihub's request schemas, the bearer
security scheme and a worked example; every example, sent as documented, succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dcihub.server.node import endpoints_for
from support import DCIClient, live_server, store_url_for
from support import test_settings as node_settings


@pytest.fixture(scope="module")
def docs_node(backend: str, country: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A node of its own (the examples write, e.g. an IBR enrolment update), with the
    country's samples as the demo has them."""
    from dcihub.population.load import load_country
    from dcihub.store import Store

    with store_url_for(backend, tmp_path_factory.mktemp("docs")) as url:
        store = Store(url)
        store.create_all()
        load_country(store, country)
        settings = node_settings(url, data_dir=tmp_path_factory.mktemp("docsnode"))
        running = live_server(settings, store)
        running.app.state.samples = country.samples()
        running.app.state.example_sender_id = running.partner.sender_id
        yield running
        running.stop()
        store.dispose()


def test_every_dci_endpoint_is_documented_with_schemas_and_security(docs_node: Any) -> None:
    document = httpx.get(f"{docs_node.base_url}/openapi.json", timeout=30).json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    schemas = document["components"]["schemas"]
    for name in docs_node.settings.registries:
        from dcihub.standard.profiles import PROFILES

        for spec in endpoints_for(PROFILES[name]):
            operation = document["paths"][spec.url_path]["post"]
            assert operation["security"] == [{"bearerAuth": []}]
            body = operation["requestBody"]["content"]["application/json"]
            header_ref = body["schema"]["properties"]["header"]["$ref"]
            message_ref = body["schema"]["properties"]["message"]["$ref"]
            assert header_ref.rsplit("/", 1)[1] in schemas
            assert message_ref.rsplit("/", 1)[1] in schemas
            assert body["example"]["header"]["action"] == spec.action


def test_every_documented_example_succeeds(docs_node: Any) -> None:
    document = httpx.get(f"{docs_node.base_url}/openapi.json", timeout=30).json()
    client = DCIClient(docs_node)
    tried = 0
    for path, item in document["paths"].items():
        operation = item.get("post")
        if not operation or "/registry/" not in path:
            continue
        example = operation["requestBody"]["content"]["application/json"]["example"]
        registry, endpoint = path.strip("/").split("/registry/")
        response = client.post(registry, endpoint, example)
        tried += 1
        if "202" in operation["responses"]:
            assert response.status_code == 202, (path, response.text)
            assert response.json()["message"]["ack_status"] == "ACK"
        else:
            assert response.status_code == 200, (path, response.text)
            assert response.json()["header"]["status"] == "succ", (path, response.text)
    assert tried >= 20


def test_every_request_shown_in_the_api_docs_succeeds(docs_node: Any) -> None:
    """docs/api.md shows one working body per endpoint of every registry; each is sent as
    written, with a fresh message_id and the current time."""
    import json
    import re
    import uuid

    from specdir import PROJECT_ROOT
    from support import now_ts

    text = (PROJECT_ROOT / "docs" / "api.md").read_text("utf-8")
    section = text.split("<!-- examples:start -->", 1)[1].split("<!-- examples:end -->", 1)[0]
    shown = re.findall(
        r"`POST /(\w+)/registry/([\w/-]+)` \(([^)]*)\)\n\n```json\n(.*?)\n```", section, re.S
    )
    assert len(shown) >= 20
    client = DCIClient(docs_node)
    for registry, path, kind, raw in shown:
        if registry not in docs_node.settings.registries:
            continue
        body = json.loads(raw.replace("2026-01-01T00:00:00.000Z", now_ts()))
        body["header"]["message_id"] = f"m-{uuid.uuid4().hex}"
        body["header"]["sender_id"] = client.sender_id
        response = client.post(registry, path, body)
        if kind.startswith("202"):
            assert response.status_code == 202, (registry, path, response.text)
        else:
            assert response.status_code == 200, (registry, path, response.text)
            assert response.json()["header"]["status"] == "succ", (registry, path)


def test_the_api_docs_examples_are_current() -> None:
    import subprocess
    import sys

    from specdir import PROJECT_ROOT

    result = subprocess.run(
        [sys.executable, "tools/gen_api_examples.py", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
