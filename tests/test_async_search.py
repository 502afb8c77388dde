"""Async search: immediate ACK with a correlation id, then the on-search callback POSTed to
header.sender_uri through the outbox."""

from support import idtype, search_envelope


def test_async_search_acks_then_calls_back(client, country, receiver):
    sample = country.samples()["crvs"]["identifiers"][0]
    envelope = search_envelope(idtype(sample["type"], sample["value"]),
                               sender_uri=receiver.url("/registry/on-search"))
    response = client.post("crvs", "search", envelope)
    assert response.status_code == 202, response.text
    ack = response.json()["message"]
    assert ack["ack_status"] == "ACK"
    callback = receiver.wait_for(1)[0].json()
    assert callback["header"]["action"] == "on-search"
    assert callback["message"]["correlation_id"] == ack["correlation_id"]
    assert callback["message"]["transaction_id"] == envelope["message"]["transaction_id"]
    item = callback["message"]["search_response"][0]
    assert item["status"] == "succ"
    values = [i["identifier_value"] for i in item["data"]["reg_records"][0]["identifier"]]
    assert sample["value"] in values
