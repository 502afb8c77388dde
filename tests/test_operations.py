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
    by_id = {}
    for place in body["locations"]:
        (identifier,) = place["identifier"]
        assert identifier["name"] == "dcihub-location"
        assert identifier["identifier"] not in by_id, place  # ids are unique
        by_id[identifier["identifier"]] = place
    levels = {"dcihub:COUNTRY": None, "dcihub:REGION": "dcihub:COUNTRY"}
    levels["dcihub:DISTRICT"] = "dcihub:REGION"
    (root,) = [p for p in by_id.values() if p["contained_in_place"] is None]
    assert root["additional_type"] == "dcihub:COUNTRY"
    for place in by_id.values():
        parent = place["contained_in_place"]
        if parent is not None:  # every parent exists, one level up
            assert by_id[parent]["additional_type"] == levels[place["additional_type"]], place
    districts = [
        (by_id[p["contained_in_place"]], p["name"])
        for p in by_id.values()
        if p["additional_type"] == "dcihub:DISTRICT"
    ]
    by_region_code = {(region["identifier"][0]["identifier"], name) for region, name in districts}
    by_region_name = {(region["name"], name) for region, name in districts}
    people = country.crvs[:: max(1, len(country.crvs) // 300)]
    for person in people:  # every address and place in the records is a district of the tree
        for address in person.get("address", []):
            assert root["identifier"][0]["identifier"] == address["country_code"]
            assert (address["region_code"], address["locality"]) in by_region_code, address
        for key in ("birth_place", "death_place"):
            if key in person:
                found = (person[key]["contained_in_place"]["name"], person[key]["name"])
                assert found in by_region_name, person[key]
    for group in country.records("social")[:300]:
        where = group["geographical_location"]
        assert (where["contained_in_place"]["name"], where["name"]) in by_region_name
    for farmer in country.records("fr")[:300]:
        for farm in farmer["farm_details"]:
            where = farm["location"]
            assert (where["contained_in_place"]["name"], where["name"]) in by_region_name
    # the places the registries know, no more
    known = {
        (p["birth_place"]["contained_in_place"]["name"], p["birth_place"]["name"])
        for p in country.crvs
    }
    assert known <= by_region_name


def test_locations_of_a_store_written_before_codes_keep_their_tree():
    from dcihub.server.operations import location_hierarchy

    legacy = [
        {"name": "Aldmere", "parent": None, "type": "region"},
        {"name": "Port Aldis", "parent": "Aldmere", "type": "district"},
    ]
    region, district = location_hierarchy(legacy, 0.0)["locations"]
    assert region["contained_in_place"] is None
    assert district["contained_in_place"] == region["identifier"][0]["identifier"] == "aldmere"
    assert district["identifier"][0]["identifier"] == "aldmere/port-aldis"
    assert location_hierarchy([], None)["locations"] == []  # a store of imported data only


def test_district_codes_are_stable_and_distinct():
    from dcihub.population.world import DISTRICTS, district_code, locations

    codes = [district_code(d) for d in range(len(DISTRICTS))]
    assert codes[0] == "XX-AL-01" and codes[-1] == "XX-ES-04"
    assert len(set(codes)) == len(codes)
    tree = locations([5, 0, 5])
    assert [p["code"] for p in tree] == ["XX", "XX-AL", "XX-AL-01", "XX-BR", "XX-BR-02"]
    assert tree[-1] == {
        "code": "XX-BR-02",
        "name": "Marisen",
        "type": "district",
        "parent": "XX-BR",
    }


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
