"""The programme-side commands (`dcihub search | subscribe | listen | txn-status | login`)
against a real dcihub node on loopback, the legacy-shaped registry of the client tests (it
serves subscribe), and a real `dcihub demo` process used with no flags at all."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from client_support import LegacyRegistry, client_keys, public
from dcihub.cli import app
from dcihub.client_cli import parse_where
from dcihub.store import Store
from support import free_port, live_server, store_url_for
from support import test_settings as node_settings

ENV = {"COLUMNS": "250", "DCIHUB_DEBUG": ""}
DCIHUB = [sys.executable, "-m", "dcihub.cli"]


@pytest.fixture(scope="module")
def node(country, tmp_path_factory):
    """A node over a store of its own (other nodes' workers on the session store would
    deliver this node's callbacks signed with their keys)."""
    from dcihub.population.load import load_country

    with store_url_for("sqlite", tmp_path_factory.mktemp("cli-store")) as url:
        store = Store(url)
        store.upgrade()
        load_country(store, country)
        settings = node_settings(url, data_dir=tmp_path_factory.mktemp("cli-node"))
        running = live_server(settings, store)
        yield running
        running.stop()
        store.dispose()


@pytest.fixture(scope="module")
def keys_file(node, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-keys") / "partner.jwks.json"
    path.write_text(json.dumps(node.partner.private_jwks))
    path.chmod(0o600)
    return path


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch) -> Path:
    """Run where there is no demo, with a profile file of the test's own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DCIHUB_PROFILES", str(tmp_path / "profiles.toml"))
    for name in list(os.environ):
        if (
            name.startswith("DCIHUB_")
            and name not in ("DCIHUB_PROFILES",)
            and "POSTGRES" not in name
        ):
            monkeypatch.delenv(name)
    return tmp_path


def flags(node, keys_file: Path, registry: str = "crvs") -> list[str]:
    partner = node.partner
    return [
        "--url",
        f"{node.base_url}/{registry}",
        "--token-url",
        f"{node.base_url}/oauth2/client/token",
        "--client-id",
        partner.client_id,
        "--client-secret",
        partner.client_secret,
        "--sender-id",
        partner.sender_id,
        "--keys",
        str(keys_file),
        "--receiver-id",
        node.settings.registry_id(registry),
        "--jwks-url",
        f"{node.base_url}/.well-known/jwks.json",
    ]


def run(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], env={**ENV, **(env or {})})
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result


def ok(*args: str | Path, **kw: Any) -> Any:
    result = run(*args, **kw)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def as_json(result: Any) -> Any:
    return json.loads(result.stdout)


def error_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


def uin_of(country, kind: str = "identifiers") -> str:
    return country.samples()["crvs"][kind][0]["value"]


# ---------------------------------------------------------------------------------------------
# search


def test_search_by_id(node, keys_file, country):
    uin = uin_of(country)
    data = as_json(ok("search", "crvs", "--id", f"UIN={uin}", "--json", *flags(node, keys_file)))
    assert data["status"] == "succ" and data["total_count"] == 1 and data["count"] == 1
    person = data["records"][0]
    assert any(i["identifier_value"] == uin for i in person["identifier"])
    assert data["transaction_id"] and data["registry"] == "crvs"
    table = ok("search", "crvs", "--id", f"UIN={uin}", *flags(node, keys_file)).stdout
    assert uin in table and person["name"]["surname"] in table and "1 of 1 records" in table


def test_search_where_and_page_size(node, keys_file, country):
    expected = [
        g for g in country.social if float(g["poverty_score"]) < 2.5 and int(g["group_size"]) >= 5
    ]
    assert expected
    result = ok(
        "search",
        "social",
        "--where",
        "poverty_score < 2.5",
        "--where",
        "group_size >= 5",
        "--page-size",
        "50",
        "--json",
        *flags(node, keys_file, "social"),
    )
    data = as_json(result)
    assert data["total_count"] == len(expected)
    assert data["count"] == min(50, len(expected)) and data["page_size"] == 50
    for group in data["records"]:
        assert float(group["poverty_score"]) < 2.5 and int(group["group_size"]) >= 5


def test_search_in_and_all_pages(node, keys_file, country):
    expected = [p for p in country.crvs if p["sex"] in ("female", "other")]
    result = ok(
        "search",
        "crvs",
        "--where",
        "sex in female,other",
        "--page-size",
        "400",
        "--all-pages",
        "--json",
        *flags(node, keys_file),
    )
    data = as_json(result)
    assert data["count"] == data["total_count"] == len(expected) > 400
    assert data["pages"] == -(-len(expected) // 400)
    assert len({json.dumps(r["identifier"]) for r in data["records"]}) == len(expected)


def test_show_envelope_prints_the_exchange(node, keys_file, country):
    result = ok(
        "search",
        "crvs",
        "--id",
        f"UIN={uin_of(country)}",
        "--json",
        "--show-envelope",
        *flags(node, keys_file),
    )
    assert as_json(result)["count"] == 1  # standard output stays JSON
    shown = result.stderr
    assert f"→ POST {node.base_url}/crvs/registry/sync/search" in shown
    assert '"action": "search"' in shown and '"action": "on-search"' in shown
    assert "← HTTP 200" in shown and '"signature":' in shown
    assert node.partner.client_secret not in shown


def test_async_search(node, keys_file, country):
    uin = uin_of(country, "deceased")
    result = ok(
        "search",
        "crvs",
        "--id",
        f"UIN={uin}",
        "--async",
        "--json",
        "--show-envelope",
        *flags(node, keys_file),
    )
    data = as_json(result)
    assert data["count"] == 1 and data["records"][0]["death_date"]
    assert "⇠ callback POST /registry/on-search" in result.stderr
    assert '"ack_status": "ACK"' in result.stderr


def test_txn_status_of_a_search_just_made(node, keys_file, country):
    found = as_json(
        ok("search", "crvs", "--id", f"UIN={uin_of(country)}", "--json", *flags(node, keys_file))
    )
    status = as_json(
        ok("txn-status", "crvs", found["transaction_id"], "--json", *flags(node, keys_file))
    )
    assert status["known"] and status["statuses"] == {found["reference_id"]: "succ"}
    by_reference = ok(
        "txn-status",
        "crvs",
        found["reference_id"],
        "--by",
        "reference_ids",
        *flags(node, keys_file),
    )
    assert "is known" in by_reference.stdout and "succ" in by_reference.stdout
    unknown = ok("txn-status", "crvs", "no-such-transaction", *flags(node, keys_file))
    assert "no transaction no-such-transaction known" in unknown.stdout


# ---------------------------------------------------------------------------------------------
# login and profiles


def test_login_writes_a_private_profile_that_later_commands_use(
    node, keys_file, country, elsewhere
):
    profiles = elsewhere / "profiles.toml"
    result = ok("login", "crvs", *flags(node, keys_file))
    assert "saved profile crvs" in result.stdout and "credentials checked" in result.stdout
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    text = profiles.read_text()
    assert node.partner.client_secret in text and str(keys_file) in text
    uin = uin_of(country)
    data = as_json(ok("search", "crvs", "--id", f"UIN={uin}", "--json"))
    assert data["count"] == 1
    # flags win over the profile, the environment over the profile too
    wrong = run("search", "crvs", "--id", f"UIN={uin}", "--client-secret", "wrong")
    assert wrong.exit_code == 1 and "refused client" in error_line(wrong)
    wrong = run("search", "crvs", "--id", f"UIN={uin}", env={"DCIHUB_CLIENT_SECRET": "nope"})
    assert wrong.exit_code == 1 and "refused client" in error_line(wrong)
    # a profile of another name, in another file
    other = elsewhere / "other.toml"
    ok("login", "crvs", "--profile", "civil", "--profiles", other, *flags(node, keys_file))
    assert stat.S_IMODE(other.stat().st_mode) == 0o600
    data = as_json(
        ok(
            "txn-status",
            "crvs",
            data["transaction_id"],
            "--profile",
            "civil",
            "--profiles",
            other,
            "--json",
        )
    )
    assert data["known"]


def test_login_refuses_wrong_credentials_and_writes_nothing(node, keys_file, elsewhere):
    result = run("login", "crvs", *flags(node, keys_file), "--client-secret", "wrong")
    assert result.exit_code == 1 and "refused client" in error_line(result)
    assert not (elsewhere / "profiles.toml").exists()


# ---------------------------------------------------------------------------------------------
# errors: one line, never a traceback


def test_no_settings_at_all(elsewhere):
    result = run("search", "crvs", "--id", "UIN=1")
    assert result.exit_code == 2
    assert "no settings for registry 'crvs'" in error_line(result)


def test_unreachable_registry(keys_file, node):
    port = free_port()
    args = flags(node, keys_file)
    args[1] = f"http://127.0.0.1:{port}/crvs"
    args[3] = f"http://127.0.0.1:{port}/oauth2/client/token"
    result = run("search", "crvs", "--id", "UIN=1", *args)
    assert result.exit_code == 1
    assert "cannot reach the token endpoint" in error_line(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "age about 3"], "expected 'attribute op value'"),
        (["--id", "8462951730"], "expected TYPE=VALUE"),
        ([], "give --id TYPE=VALUE or --where"),
        (["--id", "UIN=1", "--where", "age < 3"], "not both"),
    ],
)
def test_usage_errors(node, keys_file, args, message):
    result = run("search", "crvs", *args, *flags(node, keys_file))
    assert result.exit_code == 2 and message in error_line(result)


def test_a_rejected_query_is_one_line(node, keys_file):
    result = run("search", "crvs", "--where", "favourite_colour = blue", *flags(node, keys_file))
    assert result.exit_code == 1
    line = error_line(result)
    assert "rjct.search_criteria.invalid" in line and "favourite_colour" in line


def test_subscribe_to_dcihub(node, keys_file):
    result = run(
        "subscribe",
        "crvs",
        "--event",
        "death",
        "--where",
        "is_deceased = true",
        *flags(node, keys_file),
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def test_unsubscribe_from_dcihub(node, keys_file):
    subscribed = ok(
        "subscribe", "crvs", "--event", "birth", "--where", "age < 1", "--json",
        *flags(node, keys_file),
    )  # fmt: skip
    (code,) = as_json(subscribed)["codes"]
    ended = ok("unsubscribe", "crvs", code, "--json", *flags(node, keys_file))
    answer = as_json(ended)
    assert answer["callback"] == "on-unsubscribe" and answer["status"] == "succ"
    assert answer["subscription_status"] == {code: "unsubscribe"}
    again = run("unsubscribe", "crvs", code, *flags(node, keys_file))
    assert again.exit_code == 1
    assert "rjct.event.already_unsubscribed" in error_line(again)
    unknown = run("unsubscribe", "crvs", "sub-nope", *flags(node, keys_file))
    assert unknown.exit_code == 1
    assert "rjct.subscription_code.invalid" in error_line(unknown)
    # text output; two codes at once
    two = [
        as_json(
            ok(
                "subscribe",
                "crvs",
                "--event",
                event,
                "--where",
                "age < 1",
                "--json",
                *flags(node, keys_file),
            )  # fmt: skip
        )["codes"][0]
        for event in ("marriage", "divorce")
    ]
    both = ok("unsubscribe", "crvs", *two, *flags(node, keys_file))
    assert "on-unsubscribe succ" in both.stdout
    assert all(f"{c}: unsubscribe" in both.stdout for c in two)
    # the callback to a receiver elsewhere (a `dcihub listen`): the ACK is printed
    elsewhere = ok(
        "unsubscribe", "crvs", "sub-x", "--callback-url", f"http://127.0.0.1:{free_port()}",
        *flags(node, keys_file),
    )  # fmt: skip
    assert "ACK: transaction" in elsewhere.stdout and "on-unsubscribe" in elsewhere.stdout
    missing = run("unsubscribe", "crvs", *flags(node, keys_file))
    assert missing.exit_code == 2


# ---------------------------------------------------------------------------------------------
# subscribe against a registry that serves it


@pytest.fixture(scope="module")
def legacy(tmp_path_factory) -> Iterator[tuple[LegacyRegistry, list[str]]]:
    keys = client_keys()
    registry = LegacyRegistry(public(keys)).start()
    path = tmp_path_factory.mktemp("legacy") / "client.jwks.json"
    path.write_text(json.dumps(keys))
    args = [
        "--url", registry.base_url,
        "--token-url", f"{registry.base_url}/oauth2/client/token",
        "--client-id", registry.client_id,
        "--client-secret", registry.client_secret,
        "--sender-id", "spmis.legacy-client",
        "--receiver-id", registry.sender_id,
        "--keys", str(path),
        "--jwks-url", f"{registry.base_url}/.well-known/jwks.json",
        "--timeout", "5",
    ]  # fmt: skip
    yield registry, args
    registry.stop()


def test_subscribe_and_follow_notifications(legacy):
    registry, args = legacy
    result = ok(
        "subscribe",
        "crvs",
        "--event",
        "death",
        "--where",
        "is_deceased = true",
        "--frequency",
        "0 * * * *",
        "--follow",
        "--count",
        "1",
        "--json",
        *args,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["callback"] == "on-subscribe" and lines[0]["codes"]
    assert lines[1]["callback"] == "notify"
    assert lines[1]["subscription_codes"] == lines[0]["codes"]
    assert lines[1]["events"][0]["reg_event_type"] == "death"
    sent = registry.received[-1]
    assert sent["path"] == "subscribe"
    criteria = sent["message"]["subscribe_request"][0]["subscribe_criteria"]
    assert criteria["reg_event_type"] == "death" and criteria["frequency"]
    table = ok(
        "subscribe",
        "crvs",
        "--event",
        "death",
        "--where",
        "is_deceased = true",
        "--follow",
        "--count",
        "1",
        *args,
    ).stdout
    assert "subscribed: sub-" in table and "notify from legacy.registry" in table
    assert "5550001111" in table


def test_an_err_ack_is_one_line(legacy):
    registry, args = legacy
    registry.set_mode("err", 1)
    result = run("search", "crvs", "--id", "UIN=1", *args)
    assert result.exit_code == 1
    line = error_line(result)
    assert "err.sender_id.invalid" in line and "who are you?" in line


def test_where_parsing():
    query = parse_where(["sex in female,male", "age >= 60", "is_deceased = false"])
    criteria = query.criteria()
    assert criteria["query_type"] == "predicate"
    assert [i["expression1"] for i in criteria["query"]] == [
        {"attribute_name": "sex", "operator": "in", "attribute_value": ["female", "male"]},
        {"attribute_name": "age", "operator": "ge", "attribute_value": "60"},
        {"attribute_name": "is_deceased", "operator": "eq", "attribute_value": False},
    ]
    assert (
        parse_where(["name.surname == 'Owusu Mensah'"]).criteria()["query"][0]["expression1"][
            "attribute_value"
        ]
        == "Owusu Mensah"
    )


# ---------------------------------------------------------------------------------------------
# against a real `dcihub demo`, with no settings at all


def dcihub(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCIHUB_")}
    env.update(COLUMNS="200", DCIHUB_PROFILES=str(cwd / "no-profiles.toml"))
    return subprocess.run(
        [*DCIHUB, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[tuple[Path, dict[str, Any]]]:
    cwd = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCIHUB_")}
    process = subprocess.Popen(
        [*DCIHUB, "demo", "--port", str(port), "--people", "300", "--log-level", "warning"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the demo did not start: {process.stdout.read()}")  # type: ignore[union-attr]
        time.sleep(0.2)
    info = json.loads((cwd / "dcihub-demo" / "demo.json").read_text())
    yield cwd, info
    process.terminate()
    process.wait(timeout=30)


def test_the_demo_with_no_flags(demo):
    cwd, info = demo
    uin = info["samples"]["crvs"]["identifiers"][0]["value"]
    found = dcihub(cwd, "search", "crvs", "--id", f"UIN={uin}")
    assert found.returncode == 0, found.stdout + found.stderr
    assert uin in found.stdout and "1 of 1 records" in found.stdout
    where = dcihub(
        cwd,
        "search",
        "social",
        "--where",
        "poverty_score < 2.5",
        "--where",
        "group_size >= 2",
        "--page-size",
        "5",
        "--json",
    )
    assert where.returncode == 0, where.stderr
    assert json.loads(where.stdout)["count"] <= 5
    later = dcihub(cwd, "search", "crvs", "--id", f"UIN={uin}", "--async", "--json")
    assert later.returncode == 0, later.stderr
    data = json.loads(later.stdout)
    assert data["count"] == 1
    status = dcihub(cwd, "txn-status", "crvs", data["transaction_id"])
    assert status.returncode == 0 and "is known" in status.stdout, status.stderr
    subscribed = dcihub(
        cwd, "subscribe", "crvs", "--event", "death", "--where", "is_deceased = true"
    )
    assert subscribed.returncode == 0, subscribed.stderr
    assert "subscribed: sub-" in subscribed.stdout and "Traceback" not in subscribed.stderr


def test_listen_prints_callbacks_as_they_arrive(demo):
    cwd, info = demo
    uin = info["samples"]["crvs"]["identifiers"][0]["value"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCIHUB_")}
    listener = subprocess.Popen(
        [*DCIHUB, "listen", "--port", str(port), "--count", "2", "--json"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "DCIHUB_PROFILES": str(cwd / "none.toml")},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/.well-known/jwks.json", timeout=1)
                break
            except httpx.HTTPError:
                assert listener.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        sent = dcihub(cwd, "search", "crvs", "--id", f"UIN={uin}", "--async", "--callback-url", url)
        assert sent.returncode == 0 and "ACK: transaction" in sent.stdout, sent.stderr
        asked = dcihub(
            cwd,
            "search",
            "social",
            "--where",
            "group_size >= 1",
            "--async",
            "--callback-url",
            url,
            "--json",
        )
        assert asked.returncode == 0, asked.stderr
        out, err = listener.communicate(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
    assert listener.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["callback"] for line in lines] == ["on-search", "on-search"]
    by_transaction = {line["transaction_id"]: line for line in lines}
    social = by_transaction[json.loads(asked.stdout)["transaction_id"]]
    assert social["results"][0]["status"] == "succ"
    assert "Traceback" not in err
