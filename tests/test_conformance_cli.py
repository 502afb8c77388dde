"""`dcihub conform server|client|requirements` from a terminal: flags or the demo file, the
three report files, exit statuses, one-line errors; the simulated registry judging a client;
docs/conformance.md kept equal to what the requirements file generates."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from conform_support import DefectProxy
from dcihub.cli import app
from dcihub.client import CallbackReceiver, Q, RegistryClient
from dcihub.conformance.client_kit import ClientKit
from dcihub.conformance.requirements import load_requirements
from dcihub.security.signatures import sign
from support import free_port

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def server_flags(server, registry: str, root: str | None = None) -> list[str]:
    partner = server.partner
    root = root or server.base_url
    return [
        f"{root}/{registry}",
        "--registry",
        registry,
        "--token-url",
        f"{root}/oauth2/client/token",
        "--client-id",
        partner.client_id,
        "--client-secret",
        partner.client_secret,
        "--sender-id",
        partner.sender_id,
        "--receiver-id",
        server.settings.registry_id(registry),
        "--timeout",
        "6",
    ]


@pytest.fixture
def server(backend, request):
    """The session's node, on SQLite only: these are command-line behaviours."""
    if backend != "sqlite":
        pytest.skip("the command's behaviour does not depend on the store")
    return request.getfixturevalue("server")


@pytest.fixture
def keyfile(server, tmp_path_factory):
    path = tmp_path_factory.mktemp("conform-keys") / "tester.jwk.json"
    path.write_text(json.dumps(server.partner.private_jwks))
    return path


def test_conform_server_with_flags_writes_the_three_reports(server, country, keyfile, tmp_path):
    known = country.samples()["crvs"]["identifiers"][0]
    result = invoke(
        "conform",
        "server",
        *server_flags(server, "crvs"),
        "--key",
        keyfile,
        "--known",
        f"{known['type']}={known['value']}",
        "--html",
        tmp_path / "r.html",
        "--junit",
        tmp_path / "r.xml",
        "--json",
        tmp_path / "r.json",
    )
    assert result.exit_code == 0, result.output
    assert "CONFORMANT" in result.output and "0 failed" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["fail"] == 0 and report["exit_code"] == 0
    assert {r["id"] for r in report["requirements"]} >= {"SEARCH-SYNC-001", "DATA-001"}
    suites = ET.parse(tmp_path / "r.xml").getroot()
    cases = suites.findall(".//testcase")
    assert len(cases) == len(report["requirements"])
    assert not suites.findall(".//failure")
    html = (tmp_path / "r.html").read_text()
    assert "DATA-001" in html and "<script" not in html and "http://" not in html.split("<body>")[0]
    assert server.partner.client_secret not in html


def test_a_core_failure_exits_1_and_names_the_requirement(server, country, keyfile, tmp_path):
    proxy = DefectProxy(server, server.partner, "crvs")
    proxy.defect = "pages_from_zero"
    try:
        result = invoke(
            "conform",
            "server",
            *server_flags(server, "crvs", root=proxy.base_url),
            "--key",
            keyfile,
            "--tier",
            "core",
            "--junit",
            tmp_path / "r.xml",
        )
    finally:
        proxy.stop()
    assert result.exit_code == 1, result.output
    assert "NOT CONFORMANT" in result.output and "PAGE-001" in result.output
    failures = ET.parse(tmp_path / "r.xml").getroot().findall(".//testcase[failure]")
    assert [c.get("name", "").split(":")[0] for c in failures] == ["PAGE-001"]


def test_conform_server_reads_the_demo_file(server, country, keyfile, tmp_path):
    partner = server.partner
    demo = tmp_path / "demo.json"
    demo.write_text(
        json.dumps(
            {
                "registries": {"dr": f"{server.base_url}/dr"},
                "registry_ids": {"dr": server.settings.registry_id("dr")},
                "token_url": f"{server.base_url}/oauth2/client/token",
                "jwks_url": f"{server.base_url}/.well-known/jwks.json",
                "client_id": partner.client_id,
                "client_secret": partner.client_secret,
                "sender_id": partner.sender_id,
                "partner_jwk": str(keyfile),
                "samples": country.samples(),
            }
        )
    )
    result = invoke(
        "conform", "server", "--registry", "dr", "--demo", demo, "--json", tmp_path / "r.json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    statuses = {r["id"]: r["status"] for r in report["requirements"]}
    assert statuses["SEC-SIG-001"] == "skip"  # the demo partner may send unsigned messages
    assert statuses["SPECIAL-001"] == "pass" and statuses["DATA-001"] == "pass"
    # the notify requirements need a --trigger (tests/test_conformance_notify.py)
    notify = {"NOTIFY-001", "NOTIFY-002", "NOTIFY-003", "NOTIFY-004"}
    assert {k for k, v in statuses.items() if v != "pass"} == {"SEC-SIG-001", *notify}
    assert {statuses[k] for k in notify} == {"skip"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--registry", "crvs", "--demo", "/nonexistent/demo.json"],
            "no /nonexistent/demo.json here",
        ),
        (["http://127.0.0.1:9/crvs", "--registry", "xr"], "--registry 'xr': choose one of"),
        (["http://127.0.0.1:9/crvs", "--bearer", "t"], "give --registry: one of social"),
        (["http://127.0.0.1:9/crvs", "-r", "crvs", "--bearer", "t"], "give --sender-id"),
        (["http://127.0.0.1:9/crvs", "-r", "crvs", "--sender-id", "me"], "give --token-url"),
        (
            [
                "http://127.0.0.1:9/x",
                "-r",
                "fr",
                "--sender-id",
                "m",
                "--bearer",
                "t",
                "--known",
                "U",
            ],
            "give TYPE=VALUE",
        ),
        (
            [
                f"http://127.0.0.1:{free_port()}/crvs",
                "-r",
                "crvs",
                "--sender-id",
                "me",
                "--token-url",
                f"http://127.0.0.1:{free_port()}/oauth2/client/token",
                "--client-id",
                "me",
            ],
            "cannot reach the token endpoint",
        ),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(args, message):
    result = invoke("conform", "server", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert (
        result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) <= 2
    )


def test_requirements_and_their_coverage_are_listed():
    requirements = load_requirements()
    result = invoke("conform", "requirements", "--coverage", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [r.id for r in requirements]
    assert all(r["checks"] for r in rows)
    text = invoke("conform", "requirements", "--coverage")
    assert f"{len(requirements)} of {len(requirements)} requirements have a check" in text.output
    client = json.loads(invoke("conform", "requirements", "--actor", "client", "--json").output)
    assert {r["actor"] for r in client} == {"client"}
    assert invoke("conform", "requirements", "--actor", "robot").exit_code == 2


def test_docs_conformance_md_is_generated_from_the_requirements():
    result = subprocess.run(
        [sys.executable, "tools/gen_conformance_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    text = (ROOT / "docs" / "conformance.md").read_text()
    assert text.index("dcihub conform server https://") < text.index("## The requirements")
    for requirement in load_requirements():
        assert f"`{requirement.id}`" in text
    assert "conformance.md" in (ROOT / "README.md").read_text()


# ---------------------------------------------------------------------------------------------
# dcihub conform client


def _client(info: dict, **overrides) -> RegistryClient:
    return RegistryClient(
        base_url=info["base_url"],
        registry=info["registry"],
        sender_id=info["sender_id"],
        receiver_id=info["receiver_id"],
        token_url=info["token_url"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        keys_file=info["keys_file"],
        jwks_url=info["jwks_url"],
        **overrides,
    )


@pytest.fixture(scope="module")
def client_kit_report(spec_dir):
    """dcihub.client doing everything a programme does, against the simulated CRVS (its
    requests also validated against the official contract)."""
    kit = ClientKit("crvs", people=120, spec_dir=Path(spec_dir))
    info = kit.start()
    client = _client(info)
    receiver = CallbackReceiver()
    running = receiver.serve()
    client.attach(receiver)
    try:
        uin = info["known"][0]["value"]
        assert client.search(Q.id("UIN", uin)).first is not None
        assert (
            len(list(client.iter_records(Q.attr("birth_date") >= "2000-01-01", page_size=40))) > 40
        )
        assert client.search_async(Q.id("UIN", uin)).result(timeout=10).total_count == 1
        done = client.search(Q.id("UIN", uin))
        assert client.txn_status(done.transaction_id).known
        assert client.txn_status_async(done.transaction_id).result(timeout=10).known
        subscription = client.subscribe(Q.attr("is_deceased") == True, event_type="death")  # noqa: E712
        codes = subscription.result(timeout=10).codes
        client.unsubscribe(codes).result(timeout=10)
        return kit.finish()
    finally:
        running.stop()
        client.close()


def test_dcihub_client_passes_every_client_requirement(client_kit_report):
    report = client_kit_report
    assert {o.requirement.id: o.status for o in report.requirements} == {
        r.id: "pass" for r in load_requirements() if r.actor == "client"
    }
    assert report.exit_code == 0


def test_the_simulated_registry_catches_a_sloppy_client():
    """A client that sends unsigned, wrongly counted messages, walks pages from 0, reuses a
    message id and gives no callback address: each rule is reported."""
    kit = ClientKit("crvs", people=120)
    info = kit.start()
    try:
        token = httpx.post(
            info["token_url"],
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
            },
        ).json()["access_token"]
        headers = {"authorization": f"Bearer {token}"}
        keys = json.loads(Path(info["keys_file"]).read_text())
        from dcihub.security.keys import load_jwk

        key = load_jwk(next(k for k in keys["keys"] if k["use"] == "sig"))
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        def envelope(page: int, total: int, message_id: str, action: str = "search") -> dict:
            header = {
                "version": "1.0.0",
                "message_id": message_id,
                "message_ts": ts,
                "action": action,
                "sender_id": info["sender_id"],
                "total_count": total,
            }
            item = {
                "reference_id": f"ref-{page}",
                "timestamp": ts,
                "search_criteria": {
                    "query_type": "predicate",
                    "query": [
                        {
                            "seq_num": 1,
                            "expression1": {
                                "attribute_name": "birth_date",
                                "operator": "gte",
                                "attribute_value": "1990-01-01",
                            },
                        }
                    ],
                    "pagination": {"page_size": 5, "page_number": page},
                },
            }
            return {
                "header": header,
                "message": {"transaction_id": f"t-{page}", "search_request": [item]},
            }

        url = f"{info['base_url']}/registry/sync/search"
        signed = envelope(1, 1, "m-1")
        signed["signature"] = sign(signed["header"], signed["message"], key)
        httpx.post(url, json=signed, headers=headers)
        httpx.post(url, json=envelope(0, 2, "m-2"), headers=headers)  # unsigned, page 0, count 2
        httpx.post(url, json=envelope(2, 1, "m-1"), headers=headers)  # a message id again
        untracked = envelope(1, 1, "m-3")  # no token, no sender_uri, no transaction_id
        del untracked["message"]["transaction_id"]
        httpx.post(f"{info['base_url']}/registry/search", json=untracked, headers={})
    finally:
        report = kit.finish(settle=0.5)
    failed = {o.requirement.id: o.reasons for o in report.requirements if o.status == "fail"}
    assert set(failed) == {
        "CLIENT-TOKEN-001",
        "CLIENT-ENV-001",
        "CLIENT-BODY-001",
        "CLIENT-SIG-001",
        "CLIENT-ASYNC-001",
        "CLIENT-PAGE-001",
    }, failed
    assert any("total_count 2 for 1 item" in r for r in failed["CLIENT-ENV-001"])
    assert any("used before" in r for r in failed["CLIENT-ENV-001"])
    assert any("[1, 0, 2]" in r for r in failed["CLIENT-PAGE-001"])
    assert [r for r in failed["CLIENT-BODY-001"] if "no transaction_id" in r]
    assert len(failed["CLIENT-BODY-001"]) == 1  # the other bodies are well formed
    assert report.exit_code == 1


def test_conform_client_command_serves_judges_and_reports(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dcihub.cli",
            "conform",
            "client",
            "--registry",
            "fr",
            "--requests",
            "1",
            "--people",
            "120",
            "--json",
            str(tmp_path / "r.json"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    info: dict[str, str] = {}
    for line in process.stdout:
        if line.startswith("  ") and ": " in line:
            name, _, value = line.strip().partition(": ")
            info[name] = value
        if line.startswith("waiting"):
            break
    info["registry"] = "fr"
    with _client(info) as client:
        client.search(Q.id("UIN", info["known records"].split(",")[0].split("=")[1]))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "CONFORMANT" in out
    report = json.loads((tmp_path / "r.json").read_text())
    statuses = {r["id"]: r["status"] for r in report["requirements"]}
    assert statuses["CLIENT-SIG-001"] == "pass" and statuses["CLIENT-ENV-001"] == "pass"
    assert statuses["CLIENT-ASYNC-001"] == "skip"  # no asynchronous request was made


def test_a_server_that_does_not_answer_is_not_called_conformant(tmp_path):
    """Nothing listens at the URL: every core requirement is left unjudged, and the kit says
    NOT CONFORMANT with exit status 1 (never CONFORMANT on nothing), in every report."""
    url = f"http://127.0.0.1:{free_port()}/crvs"
    out = tmp_path / "report.json"
    result = invoke(
        "conform", "server", url, "--registry", "crvs", "--sender-id", "tester.example",
        "--bearer", "not-a-token", "--timeout", "2", "--json", out,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "NOT CONFORMANT (no core requirement could be judged)" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    report = json.loads(out.read_text())
    assert report["conformant"] is False and report["exit_code"] == 1
    assert report["counts"]["pass"] == 0


def test_conform_server_runs_the_trigger(server, country, keyfile, tmp_path):
    """--trigger reaches the kit: a command that fails is reported under NOTIFY-001 with its
    output (a core requirement: exit 1); --trigger-event names the event subscribed to."""
    partner = server.partner
    demo = tmp_path / "demo.json"
    demo.write_text(
        json.dumps(
            {
                "registries": {"crvs": f"{server.base_url}/crvs"},
                "registry_ids": {"crvs": server.settings.registry_id("crvs")},
                "token_url": f"{server.base_url}/oauth2/client/token",
                "jwks_url": f"{server.base_url}/.well-known/jwks.json",
                "client_id": partner.client_id,
                "client_secret": partner.client_secret,
                "sender_id": partner.sender_id,
                "partner_jwk": str(keyfile),
                "samples": country.samples(),
            }
        )
    )
    seen = tmp_path / "event.txt"
    result = invoke(
        "conform", "server", "--registry", "crvs", "--demo", demo, "--tier", "core",
        "--trigger", f'echo "$DCI_EVENT_TYPE" > {seen}; echo refused >&2; exit 3',
        "--trigger-event", "marriage", "--json", tmp_path / "r.json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    statuses = {r["id"]: r["status"] for r in report["requirements"]}
    assert statuses["NOTIFY-001"] == "fail" and statuses["SUB-001"] == "pass"
    assert seen.read_text().strip() == "Marriage"
    assert "exit 3" in result.output or "exit 3" in json.dumps(report)
