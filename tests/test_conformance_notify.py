"""The kit judges `notify` callbacks when given a --trigger: against dcihub's own node (a
store of its own: the trigger records real changes), the trigger runs `dcihub record` (a CRVS
death, a DR disability status change) and the NOTIFY requirements pass; a notify with a wrong
action, or without its subscription code, planted by the DefectProxy, fails exactly its
requirement; a failing trigger fails NOTIFY-001; without --trigger they are skipped, saying so."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import support
from conform_support import NOTIFY_DEFECTS, DefectProxy
from dcihub.conformance.checks import CHECKS
from dcihub.conformance.runner import Report, run_server
from dcihub.store import Store
from support import LiveServer
from test_conformance_kit import NOTIFY, failures, target_for

SUBSCRIBE = [c for c in CHECKS if c.name == "subscribe"]
DCIHUB = str(Path(sys.executable).with_name("dcihub"))


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Any:
    """A node of its own on SQLite over a small country, and a config `dcihub record` reads."""
    from dcihub.population.generator import generate_country
    from dcihub.population.load import load_country

    tmp = tmp_path_factory.mktemp("notify")
    url = f"sqlite:///{tmp / 'store.db'}"
    store = Store(url)
    store.upgrade()
    country = generate_country(people=200, seed=41)
    load_country(store, country)
    settings = support.test_settings(
        url,
        data_dir=tmp_path_factory.mktemp("node"),
        delivery={"poll_interval": 0.2, "backoff_base": 0.2},
    )
    config = tmp / "dcihub.yaml"
    config.write_text(yaml.safe_dump({"store_url": url, "node_id": "dcihub.test"}))
    server = support.live_server(settings, store)
    living = [r for r in country.records("crvs") if not r.get("death_date")]
    uins = [
        next(i["identifier_value"] for i in r["identifier"] if i["identifier_type"] == "UIN")
        for r in living
    ]
    yield server, config, uins
    server.stop()
    store.dispose()


def death_trigger(config: Path) -> str:
    return (
        f'{shlex.quote(DCIHUB)} record death crvs --id "$DCI_ID_TYPE=$DCI_ID_VALUE" '
        f"--config {shlex.quote(str(config))}"
    )


def run(server: LiveServer, uin: str, trigger: str | None, base: str | None = None) -> Report:
    target = target_for(server, "crvs", [("UIN", uin)], base=base, trigger=trigger)
    return run_server(target, ("core",), checks=SUBSCRIBE)


def outcome(report: Report, rid: str) -> Any:
    return next(o for o in report.requirements if o.requirement.id == rid)


def test_the_notify_of_a_recorded_death_passes(node, spec_dir, tmp_path):
    server, config, uins = node
    seen = tmp_path / "env.txt"
    trigger = f"env | grep ^DCI_ > {shlex.quote(str(seen))} && {death_trigger(config)}"
    target = target_for(
        server, "crvs", [("UIN", uins[0])], trigger=trigger, spec_dir=Path(spec_dir)
    )
    report = run_server(target, ("core",), checks=SUBSCRIBE)
    assert failures(report) == {}
    assert {rid for rid in NOTIFY if outcome(report, rid).status == "pass"} == NOTIFY
    assert all(outcome(report, rid).checks for rid in NOTIFY)
    labels = [e.label for c in report.checks for e in c.exchanges]
    assert "callback notify" in labels
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines())
    assert env["DCI_REGISTRY"] == "crvs" and env["DCI_EVENT_TYPE"] == "Death"
    assert (env["DCI_ID_TYPE"], env["DCI_ID_VALUE"]) == ("UIN", uins[0])
    assert env["DCI_SUBSCRIPTION_CODE"] in env["DCI_SUBSCRIPTION_CODES"].split()
    sent = [e.request_json() for c in report.checks for e in c.exchanges]
    subscribe_txn = next(
        d["message"]["transaction_id"]
        for d in sent
        if isinstance(d, dict) and d.get("header", {}).get("action") == "subscribe"
    )
    assert env["DCI_TRANSACTION_ID"] == subscribe_txn


def test_without_trigger_the_notify_requirements_are_skipped(node):
    server, _, uins = node
    report = run(server, uins[1], None)
    for rid in NOTIFY:
        got = outcome(report, rid)
        assert got.status == "skip"
        assert any("give --trigger" in r for r in got.reasons)
    assert failures(report) == {}


def test_a_failing_trigger_fails_notify_001(node):
    server, _, uins = node
    report = run(server, uins[2], "echo no such change >&2; exit 3")
    assert set(failures(report)) == {"NOTIFY-001"}
    assert "exit 3" in failures(report)["NOTIFY-001"][0]


@pytest.mark.parametrize("defect", list(NOTIFY_DEFECTS))
def test_a_planted_notify_defect_is_caught_under_its_requirement(node, defect):
    server, config, uins = node
    proxy = DefectProxy(server, server.partner, "crvs")
    proxy.defect = defect
    try:
        uin = uins[3 + list(NOTIFY_DEFECTS).index(defect)]
        report = run(server, uin, death_trigger(config), base=proxy.base_url)
    finally:
        proxy.stop()
    assert set(failures(report)) == NOTIFY_DEFECTS[defect], failures(report)


def test_the_notify_of_a_disability_status_change_passes(node, country_dr):
    server, config, _ = node
    trigger = (
        f'{shlex.quote(DCIHUB)} record disability-status dr --id "$DCI_ID_TYPE=$DCI_ID_VALUE" '
        f"--status 2 --config {shlex.quote(str(config))}"
    )
    target = target_for(server, "dr", [("UIN", country_dr)], trigger=trigger)
    report = run_server(target, ("core",), checks=SUBSCRIBE)
    assert failures(report) == {}
    assert {rid for rid in NOTIFY if outcome(report, rid).status == "pass"} == NOTIFY


@pytest.fixture(scope="module")
def country_dr(node) -> str:
    """A UIN the node's disability registry holds."""
    from dcihub.population.generator import generate_country

    record = next(iter(generate_country(people=200, seed=41).records("dr")))
    found: list[str] = []

    def walk(doc: Any) -> None:
        if isinstance(doc, dict):
            if doc.get("identifier_type") == "UIN":
                found.append(doc["identifier_value"])
            for v in doc.values():
                walk(v)
        elif isinstance(doc, list):
            for v in doc:
                walk(v)

    walk(record)
    return found[0]
