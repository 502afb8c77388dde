"""Smoke test of the live server fixture: a UIN lookup on every person registry."""

from support import idtype


def test_uin_lookup_every_registry(client, country):
    samples = country.samples()
    for registry in ("crvs", "social", "dr", "fr", "ibr"):
        sample = samples[registry]["identifiers"][0]
        body = client.sync_search(registry, idtype(sample["type"], sample["value"]))
        item = body["message"]["search_response"][0]
        assert item["status"] == "succ", item
        assert item["pagination"]["total_count"] >= 1
        assert body["header"]["action"] == "on-search"
