"""A registry is one profile: a toy registry defined only in this test is served by a real
node — sync and async search, txn/status, its own special call — appears in the OpenAPI
document and in the generated registry documentation, and is searchable, with no change
anywhere else in dcihub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dcihub.standard.calls import CallContext, CallReply, ItemResult, SpecialEndpoint
from dcihub.standard.codes import RequestStatus
from dcihub.standard.messages import TransactionMessage
from dcihub.standard.profiles import PROFILES, register, unregister
from dcihub.standard.profiles.base import Attribute, Entity, RegistryProfile
from expect import txn_status_envelope
from support import (
    DCIClient,
    expr,
    header,
    idtype,
    live_server,
    pred,
    predicate,
    search_envelope,
    store_url_for,
)
from support import test_settings as node_settings

WELL = Entity(
    name="WaterPoint",
    aliases=("Well",),
    identifier_paths=("identifier",),
    identifier_types=("WPID",),
    attributes=(
        Attribute("district", "text", "location.district"),
        Attribute("depth_m", "float", "depth_m"),
        Attribute("working", "bool", "working"),
        Attribute("built", "date", "built"),
    ),
    description="a water point",
)


class WorkingRequest(TransactionMessage):
    """`sync/working`: is this water point working?"""

    wpid: str


def working(ctx: CallContext, request: WorkingRequest) -> CallReply:
    found = ctx.match("idtype-value", {"type": "WPID", "value": request.wpid}, "message.wpid")
    answer = "yes" if found.records and found.records[0].get("working") else "no"
    ctx.touched(found.refs)
    ctx.record(request.transaction_id, "search", [ItemResult(request.transaction_id)])
    return CallReply(
        "on-search",
        {
            "transaction_id": request.transaction_id,
            "correlation_id": ctx.correlation_id,
            "working_response": [
                {
                    "reference_id": request.transaction_id,
                    "timestamp": ctx.now(),
                    "status": RequestStatus.SUCCESS.value,
                    "working": answer,
                }
            ],
        },
    )


TOY = RegistryProfile(
    name="toy",
    title="Water Point Registry",
    reg_type="ns:org:RegistryType:WaterPoint",
    entities=(WELL,),
    default_entity="WaterPoint",
    special_endpoints=(
        SpecialEndpoint(
            "sync/working",
            working,
            WorkingRequest,
            "search",
            "on-search",
            summary="is this water point working? (yes/no)",
        ),
    ),
)


def wells() -> list[dict[str, Any]]:
    out = []
    for n in range(1, 31):
        out.append(
            {
                "@id": f"toy:wp:{n}",
                "@type": "WaterPoint",
                "identifier": [{"identifier_type": "WPID", "identifier_value": f"WP-{n:03d}"}],
                "location": {"district": "North" if n % 3 else "South"},
                "depth_m": float(n * 2),
                "working": n % 4 != 0,
                "built": f"20{n:02d}-01-01",
            }
        )
    return out


@pytest.fixture(scope="module")
def toy_node(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from dcihub.store import Store

    register(TOY)
    try:
        with store_url_for(backend, tmp_path_factory.mktemp("toy")) as url:
            store = Store(url)
            store.create_all()
            with store.begin() as conn:
                store.records.bulk_load(conn, "toy", wells())
            settings = node_settings(url, data_dir=tmp_path_factory.mktemp("toynode"))
            assert "toy" in settings.registries  # served by default, like every registry
            running = live_server(settings, store)
            yield running
            running.stop()
            store.dispose()
    finally:
        unregister("toy")


@pytest.fixture(scope="module")
def toy_client(toy_node: Any) -> DCIClient:
    return DCIClient(toy_node)


def test_toy_registry_answers_sync_search(toy_client: DCIClient) -> None:
    body = toy_client.sync_search("toy", idtype("WPID", "WP-007"))
    item = body["message"]["search_response"][0]
    assert item["status"] == "succ"
    assert [r["@id"] for r in item["data"]["reg_records"]] == ["toy:wp:7"]
    assert item["data"]["reg_type"] == TOY.reg_type

    query = predicate(
        pred(1, expr("district", "eq", "south"), "and", expr("depth_m", "ge", "30")),
        pred(2, expr("working", "eq", True)),
        pagination={"page_size": 50, "page_number": 1},
    )
    body = toy_client.sync_search("toy", query)
    item = body["message"]["search_response"][0]
    expected = {
        w["@id"]
        for w in wells()
        if w["location"]["district"] == "South" and w["depth_m"] >= 30 and w["working"]
    }
    assert expected and {r["@id"] for r in item["data"]["reg_records"]} == expected


def test_toy_registry_answers_async_search_and_txn_status(
    toy_client: DCIClient, receiver: Any
) -> None:
    envelope = search_envelope(
        idtype("WPID", "WP-012"),
        sender_id=toy_client.sender_id,
        sender_uri=receiver.url("/registry/on-search"),
    )
    response = toy_client.post("toy", "search", envelope)
    assert response.status_code == 202, response.text
    callback = receiver.wait_for(1)[0].json()
    assert callback["header"]["action"] == "on-search"
    records = callback["message"]["search_response"][0]["data"]["reg_records"]
    assert [r["@id"] for r in records] == ["toy:wp:12"]

    status = toy_client.post(
        "toy",
        "sync/txn/status",
        txn_status_envelope(
            "transaction_id",
            envelope["message"]["transaction_id"],
            sender_id=toy_client.sender_id,
        ),
    )
    assert status.status_code == 200, status.text
    txn = status.json()["message"]["txnstatus_response"]["txn_status"]
    assert [r["@id"] for r in txn["search_response"][0]["data"]["reg_records"]] == ["toy:wp:12"]


def test_toy_registry_serves_its_own_special_call(toy_client: DCIClient) -> None:
    for wpid, answer in (("WP-004", "no"), ("WP-005", "yes"), ("WP-999", "no")):
        envelope = {
            "header": header("search", 1, toy_client.sender_id),
            "message": {"transaction_id": f"t-{wpid}", "wpid": wpid},
        }
        response = toy_client.post("toy", "sync/working", envelope)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["header"]["action"] == "on-search"
        assert body["message"]["working_response"][0]["working"] == answer


def test_toy_registry_is_in_the_openapi_document(toy_node: Any) -> None:
    document = httpx.get(f"{toy_node.base_url}/openapi.json", timeout=10).json()
    for path in ("search", "sync/search", "txn/status", "sync/txn/status", "sync/working"):
        assert f"/toy/registry/{path}" in document["paths"], path


def test_toy_registry_is_in_the_generated_registry_docs() -> None:
    from dcihub.registry_docs import render

    text = render([*PROFILES.values(), TOY])
    assert "## `toy` — Water Point Registry" in text
    assert "`/registry/sync/working`: is this water point working? (yes/no)" in text
    assert "| `depth_m` | float | `depth_m` |" in text
