"""Durability end to end: `dcihub serve --config FILE` runs as a separate process, is killed
with SIGKILL right after it acknowledged an asynchronous search, and a new process delivers the
on-search callback exactly once. Also: a receiver answering 503 a few times still gets its
callback (retry with back-off), one answering 400 is given up (outbox row `dead`).

Every case runs on SQLite (a file) and on PostgreSQL (a fresh schema).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import support
from dcihub.config import Settings, load_settings
from dcihub.population.generator import generate_country
from dcihub.population.load import load_country
from dcihub.store import Store
from dcihub.store.outbox import DEAD, DONE
from receiver import CallbackReceiver
from support import DCIClient, header, idtype, search_envelope

PEOPLE = 200
DCIHUB = Path(sys.executable).with_name("dcihub")


@dataclass
class Node:
    """A `dcihub serve` process (restartable) over one store."""

    config: Path
    settings: Settings
    port: int
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> Node:
        assert self.process is None or self.process.poll() is not None
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                str(DCIHUB),
                "serve",
                "--config",
                str(self.config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        out.close()
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"dcihub serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.settings.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"dcihub serve did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextmanager
def serve(
    backend: str, tmp: Path, country: Any, registries: list[str] | None = None
) -> Iterator[tuple[Node, DCIClient, Store]]:
    """A populated store, a config file for it and a `dcihub serve` process."""
    with support.store_url_for(backend, tmp) as url:
        store = Store(url)
        store.upgrade()
        load_country(store, country)
        port = support.free_port()
        config = tmp / "dcihub.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "store_url": url,
                    "node_id": "dcihub.restart-test",
                    "base_url": f"http://127.0.0.1:{port}",
                    "registries": registries or ["crvs", "social"],
                    "delivery": {
                        "in_process_worker": True,
                        "backoff_base": 0.2,
                        "backoff_max": 1.0,
                        "poll_interval": 0.2,
                        "lease_seconds": 2.0,  # a killed worker's claimed rows come back quickly
                        "max_attempts": 30,
                        "timeout": 5.0,
                    },
                }
            )
        )
        settings = load_settings(config)  # security files live next to the config file
        partner = support.provision(settings)
        node = Node(config, settings, port, tmp / "serve.log")
        running = support.LiveServer(settings.base_url, settings, store, None, None, None, partner)
        try:
            yield node, DCIClient(running, partner), store
        finally:
            node.stop()
            store.dispose()


@pytest.fixture(scope="module")
def country():
    return generate_country(people=PEOPLE, seed=99)


def outbox_rows(store: Store, target: str) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [r for r in store.outbox.rows(conn) if r["target_url"] == target]


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def async_search(client: DCIClient, country: Any, target: str) -> tuple[dict, str, str]:
    """Send an async UIN search; return (envelope, correlation id, UIN searched)."""
    uin = country.samples()["crvs"]["identifiers"][0]["value"]
    envelope = search_envelope(idtype("UIN", uin), sender_uri=target)
    response = client.post("crvs", "search", envelope)
    assert response.status_code == 202, response.text
    ack = response.json()["message"]
    assert ack["ack_status"] == "ACK", ack
    return envelope, ack["correlation_id"], uin


def check_callback(received: Any, envelope: dict, correlation_id: str, uin: str) -> None:
    body = received.json()
    assert received.path == "/registry/on-search"
    assert body["header"]["action"] == "on-search"
    assert body["header"]["status"] == "succ"
    assert body["message"]["correlation_id"] == correlation_id
    assert body["message"]["transaction_id"] == envelope["message"]["transaction_id"]
    (item,) = body["message"]["search_response"]
    assert item["reference_id"] == envelope["message"]["search_request"][0]["reference_id"]
    assert item["status"] == "succ"
    values = {i["identifier_value"] for r in item["data"]["reg_records"] for i in r["identifier"]}
    assert uin in values


def txn_status(client: DCIClient, transaction_id: str) -> dict[str, Any]:
    envelope = {
        "header": header("txn-status"),
        "message": {
            "transaction_id": f"{transaction_id}-status",
            "txnstatus_request": {
                "reference_id": "r-status",
                "txn_type": "search",
                "attribute_type": "transaction_id",
                "attribute_value": transaction_id,
            },
        },
    }
    response = client.post("crvs", "sync/txn/status", envelope)
    assert response.status_code == 200, response.text
    return response.json()


def test_callback_survives_sigkill_right_after_the_ack(backend, country, tmp_path):
    receiver = CallbackReceiver()  # its port is reserved but nobody listens yet: it is down
    target = receiver.url("/registry/on-search")
    with serve(backend, tmp_path, country) as (node, client, store):
        node.start()
        envelope, correlation_id, uin = async_search(client, country, target)
        node.kill()
        # What the killed process left: the transaction and work that is not delivered.
        rows = outbox_rows(store, target)
        assert rows and all(r["status"] != DONE for r in rows), rows
        receiver.start()
        try:
            node.start()
            (received,) = receiver.wait_for(1, timeout=30)
            check_callback(received, envelope, correlation_id, uin)
            wait_for(
                lambda: any(
                    r["status"] == DONE and r["kind"] == "deliver"
                    for r in outbox_rows(store, target)
                ),
                what="delivered row",
            )
            time.sleep(1.0)  # a duplicate would arrive within a few poll intervals
            assert len(receiver.received) == 1, "the callback was delivered more than once"
            deliveries = [r for r in outbox_rows(store, target) if r["kind"] == "deliver"]
            assert [r["status"] for r in deliveries] == [DONE]
            # txn/status answers for the transaction after the restart, from the store.
            body = txn_status(client, envelope["message"]["transaction_id"])
            status = body["message"]["txnstatus_response"]
            assert status["txn_type"] == "search"
            assert status["txn_status"]["correlation_id"] == correlation_id
            (item,) = status["txn_status"]["search_response"]
            assert item["status"] == "succ"
            assert uin in {
                i["identifier_value"] for r in item["data"]["reg_records"] for i in r["identifier"]
            }
        finally:
            receiver.stop()


def test_callback_is_retried_while_the_receiver_answers_503(backend, country, tmp_path):
    receiver = CallbackReceiver(fail_next=3).start()
    target = receiver.url("/registry/on-search")
    try:
        with serve(backend, tmp_path, country) as (node, client, store):
            node.start()
            envelope, correlation_id, uin = async_search(client, country, target)
            (received,) = receiver.wait_for(1, timeout=30)
            check_callback(received, envelope, correlation_id, uin)
            assert receiver.fail_next == 0  # the three 503s were answered first
            (row,) = wait_for(
                lambda: [
                    r
                    for r in outbox_rows(store, target)
                    if r["kind"] == "deliver" and r["status"] == DONE
                ],
                what="delivered row",
            )
            assert row["attempts"] == 4
            assert row["payload"] is None  # delivered: no personal data kept in the queue
            time.sleep(0.6)
            assert len(receiver.received) == 1
    finally:
        receiver.stop()


def test_callback_refused_with_400_is_given_up(backend, country, tmp_path):
    receiver = CallbackReceiver(status_code=400).start()
    target = receiver.url("/registry/on-search")
    try:
        with serve(backend, tmp_path, country) as (node, client, store):
            node.start()
            async_search(client, country, target)
            (row,) = wait_for(
                lambda: [
                    r
                    for r in outbox_rows(store, target)
                    if r["kind"] == "deliver" and r["status"] == DEAD
                ],
                what="dead row",
            )
            assert row["attempts"] == 1
            assert "HTTP 400" in row["last_error"]
            time.sleep(0.6)  # no further attempt follows
            assert len(receiver.received) == 1
            with store.read() as conn:
                assert [r["pk"] for r in store.outbox.rows(conn, DEAD)] == [row["pk"]]
    finally:
        receiver.stop()


def test_standalone_worker_process_delivers(backend, country, tmp_path):
    """`dcihub serve` with `delivery.in_process_worker: false` only accepts and ACKs; a separate
    `dcihub worker --config FILE` process (the same configuration) runs the search and delivers
    the signed callback."""
    receiver = CallbackReceiver().start()
    target = receiver.url("/registry/on-search")
    with serve(backend, tmp_path, country) as (node, client, store):
        config = yaml.safe_load(node.config.read_text())
        config["delivery"]["in_process_worker"] = False
        node.config.write_text(yaml.safe_dump(config))
        node.start()
        envelope, correlation_id, uin = async_search(client, country, target)
        time.sleep(1.0)
        assert receiver.received == []  # the API process does not deliver by itself
        log = (tmp_path / "worker.log").open("ab")
        worker = subprocess.Popen(
            [str(DCIHUB), "worker", "--config", str(node.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            (received,) = receiver.wait_for(1, timeout=30)
            check_callback(received, envelope, correlation_id, uin)
            assert received.json()["signature"].count(".") == 2  # sealed by the worker
            wait_for(
                lambda: any(
                    r["status"] == DONE and r["kind"] == "deliver"
                    for r in outbox_rows(store, target)
                ),
                what="delivered row",
            )
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
            receiver.stop()
