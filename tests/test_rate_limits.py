"""Per-partner rate limits (requests per second and per UTC day) on a live server, on SQLite and
PostgreSQL: a request past a limit is answered 429 with an ERR ack carrying
`err.request.too_many_requests` and a `Retry-After` header; other partners are not affected;
the per-day count is shared by every API process on one store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import yaml
from sqlalchemy import text
from typer.testing import CliRunner

from dcihub.cli import app as cli_app
from dcihub.config import LimitSettings
from dcihub.security.errors import PartnerConfigError
from dcihub.security.partners import Partner, PartnerRegistry
from dcihub.server.ratelimit import RateLimited, RateLimiter
from dcihub.store import Store
from support import (
    DCIClient,
    LiveServer,
    idtype,
    live_server,
    provision,
    search_envelope,
    store_url_for,
)
from support import test_settings as node_settings

TOO_MANY = "err.request.too_many_requests"


@pytest.fixture
def store_url(backend, tmp_path):
    with store_url_for(backend, tmp_path) as url:
        store = Store(url)
        store.upgrade()
        store.dispose()
        yield url


def start(
    url: str, data_dir: Path, partners: dict[str, dict[str, Any]], **settings: Any
) -> tuple[LiveServer, dict[str, DCIClient]]:
    """A node whose partner file holds `partners` (sender_id -> its settings), and a client
    of each, with its access token."""
    config = node_settings(url, data_dir=data_dir, **settings)
    made = {
        sender_id: provision(config, sender_id, sender_id.replace(".", "-"), **fields)
        for sender_id, fields in partners.items()
    }
    node = live_server(config, Store(url), partner=False)
    return node, {sender_id: client_for(node, p) for sender_id, p in made.items()}


def stop(*nodes: LiveServer) -> None:
    for node in nodes:
        node.stop()
        node.store.dispose()


def client_for(node: LiveServer, partner: Any) -> DCIClient:
    client = DCIClient(node, partner)
    client.token()  # fetched before the requests counted below
    return client


def bodies(client: DCIClient, n: int) -> list[bytes]:
    """`n` signed sync searches, made before any is sent (so they go out back to back)."""
    return [
        orjson.dumps(
            client.signed(search_envelope(idtype("UIN", "0000"), sender_id=client.sender_id))
        )
        for _ in range(n)
    ]


def send(client: DCIClient, body: bytes) -> Any:
    return client.post_raw("crvs", "sync/search", body)


def assert_too_many(response: Any, limit_words: str) -> int:
    assert response.status_code == 429, response.text
    ack = response.json()["message"]
    assert ack["ack_status"] == "ERR"
    assert ack["error"]["code"] == TOO_MANY
    assert limit_words in ack["error"]["message"]
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    return int(retry_after)


def test_past_the_per_second_limit_is_429_with_retry_after(store_url, tmp_path):
    node, clients = start(
        store_url, tmp_path, {"p.fast": {"requests_per_second": 2}, "p.other": {}}
    )
    limited, other = clients["p.fast"], clients["p.other"]
    try:
        first, second, third = (send(limited, b) for b in bodies(limited, 3))
        assert first.status_code == 200 and second.status_code == 200, second.text
        assert assert_too_many(third, "2 requests per second") == 1
        # another partner is not affected
        assert all(send(other, b).status_code == 200 for b in bodies(other, 4))
    finally:
        stop(node)


def test_past_the_per_day_limit_is_429_until_midnight_utc(store_url, tmp_path):
    node, clients = start(store_url, tmp_path, {"p.daily": {"requests_per_day": 3}, "p.other": {}})
    limited, other = clients["p.daily"], clients["p.other"]
    try:
        answers = [send(limited, b) for b in bodies(limited, 5)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]
        retry_after = assert_too_many(answers[3], "3 requests it may send per day")
        now = datetime.now(UTC)
        to_midnight = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
        assert abs(retry_after - to_midnight) <= 5
        assert_too_many(answers[4], "per day")
        assert all(send(other, b).status_code == 200 for b in bodies(other, 4))
        with node.store.engine.connect() as conn:  # refused requests are not counted
            assert node.store.usage.count(conn, "p.daily", now.strftime("%Y-%m-%d")) == 3
    finally:
        stop(node)


def test_the_node_default_applies_and_a_partner_setting_overrides_it(store_url, tmp_path):
    node, clients = start(
        store_url,
        tmp_path,
        {"p.default": {}, "p.own": {"requests_per_day": 4}},
        limits={"partner_requests_per_day": 2},
    )
    default, own = clients["p.default"], clients["p.own"]
    try:
        assert [send(default, b).status_code for b in bodies(default, 3)] == [200, 200, 429]
        assert [send(own, b).status_code for b in bodies(own, 5)] == [200] * 4 + [429]
    finally:
        stop(node)


def test_the_per_day_count_is_shared_by_two_api_processes_on_one_store(store_url, tmp_path):
    one, clients = start(store_url, tmp_path, {"p.daily": {"requests_per_day": 3}})
    at_one = clients["p.daily"]
    # another app on the same store, partner file and keys (as a second `dcihub serve`)
    two = live_server(node_settings(store_url, data_dir=tmp_path), Store(store_url), partner=False)
    at_two = client_for(two, at_one.partner)
    try:
        assert send(at_one, bodies(at_one, 1)[0]).status_code == 200
        assert send(at_two, bodies(at_two, 1)[0]).status_code == 200
        assert send(at_one, bodies(at_one, 1)[0]).status_code == 200
        assert_too_many(send(at_two, bodies(at_two, 1)[0]), "per day")
        assert_too_many(send(at_one, bodies(at_one, 1)[0]), "per day")
    finally:
        stop(one, two)


def test_a_refusal_is_audited_with_its_code(store_url, tmp_path):
    node, clients = start(store_url, tmp_path, {"p.daily": {"requests_per_day": 1}})
    limited = clients["p.daily"]
    try:
        assert [send(limited, b).status_code for b in bodies(limited, 2)] == [200, 429]
        with node.store.engine.connect() as conn:
            rows = [r[0] for r in conn.execute(text("SELECT entry FROM audit_log"))]
        assert any(TOO_MANY in row and "p.daily" in row for row in rows), rows
    finally:
        stop(node)


# ---------------------------------------------------------------------------------------------
# the limiter and the partner setting, without a server


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_refills_at_the_rate_and_holds_one_second_of_requests(tmp_path):
    anyio.run(bucket_refills, tmp_path)


async def bucket_refills(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.upgrade()
    from dcihub.server.committer import GroupCommitter

    clock = Clock()
    limiter = RateLimiter(LimitSettings(), store, GroupCommitter(store), clock=clock)
    partner = Partner(sender_id="p", requests_per_second=4)
    for _ in range(4):  # a burst of one second's worth
        await limiter.admit(partner)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(partner)
    assert refused.value.http_status == 429 and refused.value.retry_after == 1
    clock.now += 0.5  # half a second: two more
    await limiter.admit(partner)
    await limiter.admit(partner)
    with pytest.raises(RateLimited):
        await limiter.admit(partner)
    clock.now += 60  # a long pause does not bank more than one second's worth
    for _ in range(4):
        await limiter.admit(partner)
    with pytest.raises(RateLimited):
        await limiter.admit(partner)
    slow = Partner(sender_id="slow", requests_per_second=0.1)  # one per ten seconds
    await limiter.admit(slow)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(slow)
    assert refused.value.retry_after == 10
    store.dispose()


@pytest.mark.parametrize(
    "field, value",
    [
        ("requests_per_second", 0),
        ("requests_per_second", -1),
        ("requests_per_second", "10"),
        ("requests_per_second", True),
        ("requests_per_day", 0),
        ("requests_per_day", 2.5),
        ("requests_per_day", "100"),
    ],
)
def test_a_bad_limit_in_the_partner_file_is_refused_with_its_name(field, value):
    with pytest.raises(PartnerConfigError, match=field):
        Partner(sender_id="p", **{field: value})


def test_partners_add_update_show_and_clear_the_limits(tmp_path):
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"store_url": "sqlite:///store.db", "node_id": "n"}))
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(cli_app, [*args, "--config", str(config)], env={"COLUMNS": "200"})
        assert "Traceback" not in result.output, result.output
        return result

    added = run("partners", "add", "p.x", "--client-id", "x", "--requests-per-second", "5")
    assert added.exit_code == 0, added.output
    partner = PartnerRegistry.load(tmp_path / "partners.yaml").get("p.x")
    assert partner is not None and partner.requests_per_second == 5
    assert partner.requests_per_day is None
    updated = run("partners", "update", "p.x", "--requests-per-day", "1000")
    assert updated.exit_code == 0, updated.output
    shown = run("partners", "show", "p.x")
    assert "requests per second" in shown.stdout and "requests per day" in shown.stdout
    assert "1000" in shown.stdout
    bad = run("partners", "update", "p.x", "--requests-per-day", "0")
    assert bad.exit_code != 0 and "--requests-per-day must be a positive" in bad.stderr
    cleared = run("partners", "update", "p.x", "--clear", "rate-limits")
    assert cleared.exit_code == 0, cleared.output
    partner = PartnerRegistry.load(tmp_path / "partners.yaml").get("p.x")
    assert partner is not None
    assert partner.requests_per_second is None and partner.requests_per_day is None
