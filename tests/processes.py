"""Real dcihub processes for the fault and scale tests: `dcihub serve` and `dcihub worker`
started from one configuration file, killed with SIGKILL and started again; a private
PostgreSQL cluster that a test may stop and start; an async-search driver that keeps what was
acknowledged, and the checks of what a deduplicating receiver saw."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

import support
from dcihub.config import Settings, load_settings
from dcihub.store import Store
from dcihub.store.outbox import DONE
from support import DCIClient, TestPartner, header, idtype, search_envelope

DCIHUB = Path(sys.executable).with_name("dcihub")

# Fast recovery for tests: a killed worker's rows come back after 2 s (10 s by default).
DELIVERY = {
    "in_process_worker": False,
    "backoff_base": 0.2,
    "backoff_max": 1.0,
    "poll_interval": 0.1,
    "lease_seconds": 2.0,
    "max_attempts": 60,
    "timeout": 5.0,
}


@dataclass
class Proc:
    """A dcihub process (restartable): `serve` on a port, or `worker`."""

    args: list[str]
    log: Path
    health: str | None = None  # the URL to poll until it answers 200
    process: subprocess.Popen | None = None
    starts: int = 0

    def start(self, wait: bool = True) -> Proc:
        assert self.process is None or self.process.poll() is not None
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [str(DCIHUB), *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        out.close()
        self.starts += 1
        if wait and self.health:
            deadline = time.monotonic() + 60
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"dcihub exited:\n{self.log.read_text()[-3000:]}")
                try:
                    if httpx.get(self.health, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"dcihub did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.05)
        return self

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


@dataclass
class Cluster:
    """A store, its configuration file, and dcihub processes over it."""

    tmp: Path
    config: Path
    settings: Settings
    store: Store
    partners: list[TestPartner]
    apis: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)

    def api(self, delivery: dict[str, Any] | None = None) -> Proc:
        port = support.free_port()
        n = len(self.apis)
        proc = Proc(
            ["serve", "--config", str(self.config), "--host", "127.0.0.1", "--port", str(port)]
            + ["--log-level", "warning"],
            self.tmp / f"serve-{n}.log",
            health=f"http://127.0.0.1:{port}/healthz",
        )
        proc.port = port  # type: ignore[attr-defined]
        self.apis.append(proc)
        return proc.start()

    def worker(self) -> Proc:
        proc = Proc(
            ["worker", "--config", str(self.config)], self.tmp / f"worker-{len(self.workers)}.log"
        )
        self.workers.append(proc)
        return proc.start()

    def client(self, api: Proc, partner: TestPartner | None = None) -> DCIClient:
        base = f"http://127.0.0.1:{api.port}"  # type: ignore[attr-defined]
        running = support.LiveServer(base, self.settings, self.store, None, None, None, None)
        return DCIClient(running, partner or self.partners[0], http=httpx.Client(timeout=15))

    def stop(self) -> None:
        for proc in self.apis + self.workers:
            proc.stop()


@contextmanager
def cluster(
    url: str,
    tmp: Path,
    country: Any,
    partners: int = 1,
    delivery: dict[str, Any] | None = None,
    registries: list[str] | None = None,
) -> Iterator[Cluster]:
    """A populated store at `url` and a configuration for it (no process started yet)."""
    from dcihub.population.load import load_country

    store = Store(url)
    store.upgrade()
    load_country(store, country)
    config = tmp / "dcihub.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store_url": url,
                "node_id": "dcihub.fault-test",
                "base_url": "http://127.0.0.1:8000",
                "registries": registries or ["crvs"],
                "delivery": {**DELIVERY, **(delivery or {})},
            }
        )
    )
    settings = load_settings(config)
    made = [
        support.provision(settings, sender_id=f"spmis-{i}.test", client_id=f"spmis-{i}")
        for i in range(partners)
    ]
    found = Cluster(tmp, config, settings, store, made)
    try:
        yield found
    finally:
        found.stop()
        store.dispose()


# ---------------------------------------------------------------------------------------------
# Driving async searches and checking what the receiver saw


@dataclass
class Acked:
    transaction_id: str
    correlation_id: str
    uin: str
    sender_id: str


@dataclass
class Driver:
    """Sends async UIN searches and keeps the ones acknowledged (202 ACK); a request cut off
    by a killed process or refused 503 is not acknowledged, and so promised nothing."""

    uins: list[str]
    target: str
    acked: list[Acked] = field(default_factory=list)
    unacked: int = 0
    unavailable: list[dict[str, Any]] = field(default_factory=list)  # 503 bodies
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, client: DCIClient, n: int = 0) -> Acked | None:
        uin = self.uins[n % len(self.uins)]
        envelope = search_envelope(
            idtype("UIN", uin),
            sender_id=client.sender_id,
            sender_uri=self.target,
            transaction_id=f"t-{uuid.uuid4().hex[:16]}",
        )
        try:
            response = client.post("crvs", "search", envelope)
        except httpx.HTTPError:  # the process is down: try again a moment later
            with self._lock:
                self.unacked += 1
            time.sleep(0.05)
            return None
        body = response.json()
        if response.status_code == 503:
            with self._lock:
                self.unacked += 1
                self.unavailable.append(body)
            return None
        assert response.status_code == 202, response.text
        ack = body["message"]
        assert ack["ack_status"] == "ACK", ack
        done = Acked(
            envelope["message"]["transaction_id"], ack["correlation_id"], uin, client.sender_id
        )
        with self._lock:
            self.acked.append(done)
        return done


def by_transaction(received: list[Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in received:
        body = item.json()
        out.setdefault(body["message"]["transaction_id"], []).append(body)
    return out


def wait_for(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Seen:
    """What a receiver that deduplicates by `message_id` made of the callbacks."""

    on_the_wire: int
    distinct: int
    duplicates: int


def check_delivered(receiver: Any, acked: list[Acked], store: Store) -> Seen:
    """Every acknowledged search got its callback, with the right content, and all copies of
    it carry one `message_id` (so a receiver deduplicating by it sees it once); the store
    processed each transaction once (one callback row, delivered)."""
    wanted = {a.transaction_id: a for a in acked}
    wait_for(
        lambda: set(wanted) <= set(by_transaction(list(receiver.received))),
        what=f"the callbacks of {len(wanted)} acknowledged searches",
    )
    deliver_rows = wait_for(  # delivered rows are marked done (the receiver may see it first)
        lambda: _delivered_rows(store, wanted) or None, timeout=30, what="rows marked delivered"
    )
    time.sleep(0.5)  # a late duplicate would arrive within a few poll intervals
    seen = by_transaction(list(receiver.received))
    distinct = 0
    for transaction_id, copies in seen.items():
        ids = {c["header"]["message_id"] for c in copies}
        assert len(ids) == 1, f"{transaction_id}: the callback was made {len(ids)} times"
        distinct += 1
        done = wanted.get(transaction_id)
        body = copies[0]
        assert body["header"]["action"] == "on-search"
        if done is None:
            continue  # a search cut off before its ACK, yet committed: delivered all the same
        assert body["message"]["correlation_id"] == done.correlation_id
        (item,) = body["message"]["search_response"]
        assert item["status"] == "succ", item
        values = {
            i["identifier_value"] for r in item["data"]["reg_records"] for i in r["identifier"]
        }
        assert done.uin in values
    assert set(deliver_rows) >= {a.correlation_id for a in acked}
    total = sum(len(c) for c in seen.values())
    return Seen(total, distinct, total - distinct)


def _delivered_rows(store: Store, wanted: dict[str, Acked]) -> dict[str, str] | None:
    """correlation id -> status of the one callback row of each acknowledged transaction,
    once all are done (None before); more than one callback row is a second processing."""
    from sqlalchemy import select

    ops = store.schema.ops
    with store.read() as conn:
        rows = conn.execute(
            select(
                ops.transactions.c.correlation_id, ops.transactions.c.status, ops.outbox.c.status
            )
            .select_from(
                ops.transactions.join(ops.outbox, ops.outbox.c.txn_pk == ops.transactions.c.pk)
            )
            .where(ops.outbox.c.kind == "deliver")
        ).all()
    found: dict[str, str] = {}
    for correlation_id, txn_status, row_status in rows:
        assert correlation_id not in found, f"transaction {correlation_id} processed twice"
        assert txn_status == "succ", (correlation_id, txn_status)
        found[correlation_id] = row_status
    acked = {a.correlation_id for a in wanted.values()}
    if not acked <= set(found) or any(found[c] != DONE for c in acked):
        return None
    return found


def txn_status(client: DCIClient, transaction_id: str) -> dict[str, Any]:
    envelope = {
        "header": header("txn-status", sender_id=client.sender_id),
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
    return response.json()["message"]["txnstatus_response"]


def check_status(client: DCIClient, done: Acked) -> None:
    """txn/status says what the callback said: succ, the same correlation id and record."""
    status = txn_status(client, done.transaction_id)
    assert status["txn_status"]["correlation_id"] == done.correlation_id
    (item,) = status["txn_status"]["search_response"]
    assert item["status"] == "succ"
    values = {i["identifier_value"] for r in item["data"]["reg_records"] for i in r["identifier"]}
    assert done.uin in values


# ---------------------------------------------------------------------------------------------
# A private PostgreSQL cluster (never the shared server)


def _pg_bin(name: str) -> str | None:
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


@dataclass
class PrivatePostgres:
    """initdb in a temporary directory, on a free port, run as the `postgres` OS user."""

    root: Path
    port: int
    pg_ctl: str

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run(
            [*as_postgres, *args], capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> None:
        done = self._run(
            self.pg_ctl,
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "pg.log"),
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "start",
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr or done.stdout}")

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres | str]:
    """A private cluster, or the reason one cannot be made here (the caller skips)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        yield "no initdb / pg_ctl on this machine"
        return
    if os.geteuid() == 0 and not shutil.which("runuser"):
        yield "running as root without runuser: cannot run PostgreSQL as another user"
        return
    root = Path(tempfile.mkdtemp(prefix="dcihub-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        server = PrivatePostgres(root, support.free_port(), pg_ctl)
        made = server._run(initdb, "-D", str(root / "data"), "-U", "postgres", "-A", "trust")
        if made.returncode != 0:
            yield f"initdb failed: {(made.stderr or made.stdout).strip()[:300]}"
            return
        try:
            server.start()
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            yield f"a private PostgreSQL cluster does not start here: {exc}"
            return
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
