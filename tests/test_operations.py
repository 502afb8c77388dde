"""The node's well-known and operational endpoints: locations, JWKS, token response shapes,
console, health and metrics — each checked against its contract where one exists."""

import httpx
import pytest

from contract import load_core_contract
from dcihub.standard.profiles import PROFILES


def get(server, path, headers=None):
    return httpx.get(f"{server.base_url}{path}", timeout=10, headers=headers)


def test_locations_follow_the_contract_and_the_population(server, country, spec_dir):
    response = get(server, "/.well-known/locations.json")
    assert response.status_code == 200
    body = response.json()
    load_core_contract(spec_dir, "locations").validate_response("/.well-known/locations.json", body)
    names = {place["name"] for place in body["locations"]}
    regions = {p["birth_place"]["contained_in_place"]["name"] for p in country.crvs}
    districts = {p["birth_place"]["name"] for p in country.crvs}
    assert regions | districts == names
    ids = {p["identifier"][0]["identifier"] for p in body["locations"]}
    for place in body["locations"]:
        parent = place["contained_in_place"]
        assert parent is None or parent in ids, place


def test_jwks_and_token_follow_their_contracts(server, client, spec_dir):
    jwks = get(server, "/.well-known/jwks.json")
    assert jwks.status_code == 200
    load_core_contract(spec_dir, "jwks").validate_response("/.well-known/jwks.json", jwks.json())
    assert {k["use"] for k in jwks.json()["keys"]} == {"sig", "enc"}
    assert all("d" not in k for k in jwks.json()["keys"])
    partner = server.partner
    token = httpx.post(
        f"{server.base_url}/oauth2/client/token",
        timeout=10,
        data={
            "grant_type": "client_credentials",
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
        },
    )
    assert token.status_code == 200, token.text
    load_core_contract(spec_dir, "authz").validate_response("/oauth2/client/token", token.json())
    assert isinstance(token.json()["expires_in"], int)
    assert token.headers["cache-control"] == "no-store"


def operator_headers(server) -> dict[str, str]:
    from dcihub.server.operator import ensure_operator_token

    return {"authorization": f"Bearer {ensure_operator_token(server.settings)}"}


def test_console_health_and_metrics(server, client, country):
    headers = operator_headers(server)
    console = get(server, "/console/", headers=headers)
    assert console.status_code == 200
    assert "crvs" in console.text and f"{len(country.crvs):,} Person" in console.text
    assert "identifier_value" not in console.text  # no records on the console
    assert get(server, "/healthz").json() == {"status": "ok"}  # liveness only, for anyone
    status = get(server, "/status", headers=headers).json()
    assert status["status"] == "ok" and set(status["registries"]) == set(server.settings.registries)
    assert "outbox" in status
    sample = country.samples()["crvs"]["identifiers"][0]
    from support import idtype

    client.sync_search("crvs", idtype(sample["type"], sample["value"]))
    metrics = get(server, "/metrics", headers=headers).text
    assert 'dcihub_requests_total{endpoint="sync/search",registry="crvs",status="200"}' in metrics


@pytest.mark.parametrize("path", ["/console/", "/metrics", "/status"])
def test_operator_pages_need_the_operator_token(server, path):
    import base64

    assert get(server, path).status_code == 401
    wrong = get(server, path, headers={"authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    body = wrong.json()
    assert body["errors"][0]["code"] == "err.request.unauthorized"
    assert body["message"]["ack_status"] == "ERR"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    token = operator_headers(server)["authorization"].split()[1]
    basic = base64.b64encode(f"operator:{token}".encode()).decode()
    assert get(server, path, headers={"authorization": f"Basic {basic}"}).status_code == 200
    # never anything about the node on the liveness answer
    assert get(server, "/healthz").json() == {"status": "ok"}


def test_openapi_lists_every_dci_endpoint(server):
    paths = get(server, "/openapi.json").json()["paths"]
    for registry in PROFILES:
        assert f"/{registry}/registry/sync/search" in paths
        assert f"/{registry}/registry/search" in paths
    assert "/dr/registry/sync/disabled" in paths
    assert "/ibr/registry/sync/enrollment/updates" in paths
    assert "/dr/registry/sync/txn/status" not in paths  # the DR contract has none


def test_other_methods_on_dci_endpoints_get_a_dci_error(server):
    response = httpx.get(f"{server.base_url}/crvs/registry/sync/search", timeout=10)
    assert response.status_code == 405
    error = response.json()["message"]["error"]
    assert error["code"] == "err.request.bad" and "POST" in error["message"]


def test_docs_work_offline(server):
    """/docs loads nothing from the internet: every script and style sheet it names is served
    by the node itself."""
    import re

    page = get(server, "/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, page.text
    for asset in assets:
        assert asset.startswith("/"), f"/docs loads {asset} from elsewhere"
        assert get(server, asset).status_code == 200, asset
    assert "cdn" not in page.text.lower()
    assert get(server, "/openapi.json").status_code == 200
