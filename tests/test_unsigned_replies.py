"""`sign_replies: false` (only with `allow_unsigned`): a partner that sends an unsigned request
may get its sync reply unsigned; a signed request always gets a signed reply, and a partner
that must sign cannot be configured this way."""

import pytest

from dcihub.security.errors import PartnerConfigError
from dcihub.security.partners import Partner
from dcihub.store import Store
from support import DCIClient, idtype, live_server, provision
from support import test_settings as node_settings


@pytest.fixture()
def node(populated_url, tmp_path):
    settings = node_settings(populated_url, data_dir=tmp_path)
    store = Store(populated_url)
    running = live_server(settings, store)
    running.lean = provision(
        settings, sender_id="spmis.lean", client_id="lean", allow_unsigned=True, sign_replies=False
    )
    yield running
    running.stop()
    store.dispose()


def test_unsigned_request_may_get_an_unsigned_reply(node, country):
    import time

    sample = country.samples()["crvs"]["identifiers"][0]
    item = idtype(sample["type"], sample["value"])
    unsigned = DCIClient(node, node.lean, sign=False)
    deadline = time.monotonic() + 15
    while True:  # the node picks the new partner up within seconds
        try:
            body = unsigned.sync_search("crvs", item)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    assert "signature" not in body
    assert body["message"]["search_response"][0]["status"] == "succ"
    signed = DCIClient(node, node.lean).sync_search("crvs", item)
    assert signed["signature"].count(".") == 2  # a signed request: a signed reply


def test_only_unsigned_partners_may_skip_reply_signatures():
    with pytest.raises(PartnerConfigError, match="allow_unsigned"):
        Partner(sender_id="strict", sign_replies=False)
