"""A running node picks up partner and key changes made by the operator (`dcihub partners`,
`dcihub keys rotate`) without a restart."""

import time

import httpx
import pytest

from dcihub.security.keys import KeyManager
from dcihub.store import Store
from support import DCIClient, idtype, live_server, provision
from support import test_settings as node_settings


@pytest.fixture()
def node(populated_url, tmp_path):
    settings = node_settings(populated_url, data_dir=tmp_path)
    store = Store(populated_url)
    running = live_server(settings, store)
    yield running
    running.stop()
    store.dispose()


def eventually(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_new_partner_can_call_without_restart(node, country):
    newcomer = provision(node.settings, sender_id="spmis.newcomer", client_id="newcomer")

    def token_ok():
        response = httpx.post(
            f"{node.base_url}/oauth2/client/token",
            timeout=10,
            data={
                "grant_type": "client_credentials",
                "client_id": "newcomer",
                "client_secret": newcomer.client_secret,
            },
        )
        return response.status_code == 200

    assert eventually(token_ok), "the node did not pick up the new partner"
    sample = country.samples()["crvs"]["identifiers"][0]
    body = DCIClient(node, newcomer).sync_search("crvs", idtype(sample["type"], sample["value"]))
    assert body["message"]["search_response"][0]["status"] == "succ"


def test_rotated_keys_are_published_without_restart(node):
    before = {k["kid"] for k in httpx.get(f"{node.base_url}/.well-known/jwks.json").json()["keys"]}
    options = node.settings.security
    KeyManager(options.path(options.key_dir)).load_or_create().rotate()

    def rotated():
        keys = httpx.get(f"{node.base_url}/.well-known/jwks.json").json()["keys"]
        kids = {k["kid"] for k in keys}
        return kids if kids > before else None

    kids = eventually(rotated)
    assert kids, "the rotated keys were not published"
    assert before < kids  # the old keys stay published during the overlap
