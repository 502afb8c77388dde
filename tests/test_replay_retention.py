"""Replies that carry records are not kept for the whole replay window: after
`security.replay_reply_seconds` a replay of a sync search gets 409 (its id is still
remembered), while the ack of an async request (no personal data) is replayed as it was."""

import time

import orjson
import pytest

from dcihub.store import Store
from support import DCIClient, idtype, live_server, search_envelope
from support import test_settings as node_settings


@pytest.fixture()
def node(populated_url, tmp_path):
    settings = node_settings(
        populated_url, data_dir=tmp_path, security={"replay_reply_seconds": 0.5}
    )
    store = Store(populated_url)
    running = live_server(settings, store)
    yield running
    running.stop()
    store.dispose()


def test_sync_reply_copy_expires_but_the_id_is_remembered(node, country, receiver):
    client = DCIClient(node)
    sample = country.samples()["crvs"]["identifiers"][0]
    sync = client.signed(search_envelope(idtype(sample["type"], sample["value"])))
    asynchronous = client.signed(
        search_envelope(idtype(sample["type"], sample["value"]), sender_uri=receiver.url())
    )
    first = client.post_raw("crvs", "sync/search", orjson.dumps(sync))
    ack = client.post_raw("crvs", "search", orjson.dumps(asynchronous))
    assert first.status_code == 200 and ack.status_code == 202
    again = client.post_raw("crvs", "sync/search", orjson.dumps(sync))
    assert again.content == first.content  # within the retention: the original reply
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        late = client.post_raw("crvs", "sync/search", orjson.dumps(sync))
        if late.status_code == 409:
            break
        time.sleep(0.3)
    assert late.status_code == 409, late.text
    assert late.json()["message"]["error"]["code"] == "err.request.bad"
    assert "rjct.message_id.duplicate" in late.json()["message"]["error"]["message"]
    assert "identifier" not in late.text  # no record content in the refusal
    replayed_ack = client.post_raw("crvs", "search", orjson.dumps(asynchronous))
    assert replayed_ack.status_code == 202 and replayed_ack.content == ack.content
