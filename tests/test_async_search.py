"""Async search: immediate ACK with a correlation id, then the on-search callback POSTed to
header.sender_uri through the outbox."""

from support import idtype, search_envelope


def test_async_search_acks_then_calls_back(client, country, receiver):
    sample = country.samples()["crvs"]["identifiers"][0]
    envelope = search_envelope(
        idtype(sample["type"], sample["value"]), sender_uri=receiver.url("/registry/on-search")
    )
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


def test_callback_delivery_is_in_the_audit_trail(client, server, country, receiver):
    import time

    sample = country.samples()["crvs"]["identifiers"][0]
    envelope = search_envelope(
        idtype(sample["type"], sample["value"]), sender_uri=receiver.url("/registry/on-search")
    )
    ack = client.post("crvs", "search", envelope).json()["message"]
    receiver.wait_for(1)
    deadline = time.monotonic() + 10
    found = []
    while not found and time.monotonic() < deadline:
        with server.store.read() as conn:
            found = [
                r.entry
                for r in server.store.audit.rows(conn, partner=client.sender_id)
                if r.entry.get("direction") == "out"
                and r.entry.get("correlation_id") == ack["correlation_id"]
            ]
        time.sleep(0.1)
    assert found, "the delivered callback is not in the audit trail"
    entry = found[-1]
    assert entry["outcome"] == "delivered" and entry["status"] == 200
    assert entry["action"] == "on-search" and entry["records_sent"] == 1
    assert "reg_records" not in str(entry)  # ids and counts only, never record content
    with server.store.read() as conn:
        count, problems = server.store.audit.verify(conn)
    assert count > 0 and problems == []
