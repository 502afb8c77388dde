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
