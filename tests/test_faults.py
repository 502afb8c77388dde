"""Faults, with real processes (docs/reliability.md):

* SIGKILL of the API process and of a `dcihub worker`, at seeded random moments while async
  searches are accepted and their callbacks delivered, for `DCIHUB_FAULT_ROUNDS` rounds (2 in
  CI; `DCIHUB_FAULT_ROUNDS=50` by hand): every acknowledged search gets its callback, every copy
  of a callback carries one `message_id` (a receiver deduplicating by it sees each once), each
  transaction is processed once, and txn/status says what the callback said. A killed worker's
  claimed rows are taken over by its successor after the short lease (2 s here).
* A worker's heartbeat keeps a delivery that outlasts the lease to itself: no second copy.
* PostgreSQL stopped under load (a private cluster, never the shared server): requests during
  the outage are answered `err.service.unavailable` (503, ERR ack) at once; when it is back,
  dcihub serves again without a restart, and nothing acknowledged is lost.
* The disk under a SQLite store full (a small tmpfs): writes answered 503
  `err.service.unavailable`, the store intact (`PRAGMA integrity_check`), service back when
  space returns.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

import support
from dcihub.population.generator import generate_country
from processes import (
    Driver,
    check_delivered,
    check_status,
    cluster,
    private_postgres,
    wait_for,
)
from receiver import CallbackReceiver

ROUNDS = int(os.environ.get("DCIHUB_FAULT_ROUNDS", "2"))
SEED = int(os.environ.get("DCIHUB_FAULT_SEED", "20261206"))


@pytest.fixture(scope="module")
def country():
    return generate_country(people=120, seed=12)


def uins(country) -> list[str]:
    return [i["value"] for i in country.samples()["crvs"]["identifiers"] if i["type"] == "UIN"]


def test_sigkill_of_api_and_worker_loses_nothing(backend, country, tmp_path):
    rng = random.Random(SEED)
    receiver = CallbackReceiver(delay=0.05).start()  # a little slow: kills hit deliveries
    try:
        with (
            support.store_url_for(backend, tmp_path) as url,
            cluster(url, tmp_path, country) as nodes,
        ):
            api, worker = nodes.api(), nodes.worker()
            driver = Driver(uins(country), receiver.url("/registry/on-search"))
            kills = {"api": 0, "worker": 0}
            for round_no in range(ROUNDS):
                stop = threading.Event()

                def send(client, stop=stop, start=round_no * 1000) -> None:
                    n = start
                    while not stop.is_set():  # searches go on while a process dies
                        driver.send(client, n)
                        n += 1

                senders = [
                    threading.Thread(target=send, args=(nodes.client(api),)) for _ in range(2)
                ]
                for sender in senders:
                    sender.start()
                time.sleep(rng.uniform(0.1, 0.7))
                victim = worker if round_no % 2 == 0 else api  # each in turn, at a random moment
                kills["api" if victim is api else "worker"] += 1
                victim.kill()
                time.sleep(rng.uniform(0.0, 0.3))
                victim.start()
                stop.set()
                for sender in senders:
                    sender.join(timeout=60)
            seen = check_delivered(receiver, driver.acked, nodes.store)
            client = nodes.client(api)
            for done in driver.acked:
                check_status(client, done)
            print(
                f"\nfault rounds={ROUNDS} seed={SEED} kills={kills} acked={len(driver.acked)} "
                f"unacked={driver.unacked} callbacks on the wire={seen.on_the_wire} "
                f"duplicates={seen.duplicates} lost=0"
            )
            assert driver.acked, "no search was acknowledged"
    finally:
        receiver.stop()


def test_a_delivery_longer_than_the_lease_is_not_claimed_twice(country, tmp_path):
    """The receiver takes 2.5 s to answer, the lease is 1 s: the worker's heartbeat renews it,
    so the row is not claimed again meanwhile (a claim takes any row whose lease ran out, the
    claiming worker's own included)."""
    receiver = CallbackReceiver(delay=2.5).start()
    try:
        with cluster(
            f"sqlite:///{tmp_path}/lease.db", tmp_path, country, delivery={"lease_seconds": 1.0}
        ) as nodes:
            api = nodes.api()
            nodes.worker()
            driver = Driver(uins(country), receiver.url("/registry/on-search"))
            assert driver.send(nodes.client(api))
            seen = check_delivered(receiver, driver.acked, nodes.store)
            time.sleep(1.5)  # past another lease
            assert len(receiver.received) == 1 and seen.duplicates == 0
    finally:
        receiver.stop()


def test_postgres_restart_under_load(country, tmp_path):
    with private_postgres() as server:
        if isinstance(server, str):
            pytest.skip(server)
        receiver = CallbackReceiver().start()
        try:
            with cluster(
                server.url, tmp_path, country, delivery={"in_process_worker": True}
            ) as nodes:
                api = nodes.api()
                client = nodes.client(api)
                driver = Driver(uins(country), receiver.url("/registry/on-search"))
                for n in range(4):
                    assert driver.send(client, n)
                client.token()  # tokens need no store: the partner file and keys are read
                server.stop()
                answers = []
                for n in range(4):
                    started = time.monotonic()
                    assert driver.send(client, n) is None  # not acknowledged
                    answers.append(time.monotonic() - started)
                # a hang would end in the client's timeout (15 s), not in a 503
                assert len(driver.unavailable) == 4, driver.unavailable
                print(f"\nPostgreSQL down: 503 answered within {max(answers):.2f} s")
                for body in driver.unavailable:
                    assert body["message"]["ack_status"] == "ERR"
                    assert body["message"]["error"]["code"] == "err.service.unavailable"
                health = httpx.get(f"http://127.0.0.1:{api.port}/healthz", timeout=10)
                assert health.status_code == 503
                server.start()
                wait_for(
                    lambda: (
                        httpx.get(f"http://127.0.0.1:{api.port}/healthz", timeout=10).status_code
                        == 200
                    ),
                    what="service back",
                )
                for n in range(4, 8):
                    assert driver.send(client, n)
                assert api.process is not None and api.process.poll() is None  # not restarted
                check_delivered(receiver, driver.acked, nodes.store)
                for done in driver.acked:
                    check_status(client, done)
                assert "Traceback" not in api.log.read_text()
        finally:
            receiver.stop()


@pytest.fixture()
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem up to the last byte."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


def test_disk_full_under_sqlite(country, tmp_path, small_disk):
    database = small_disk / "dcihub.db"
    receiver = CallbackReceiver().start()
    try:
        with cluster(
            f"sqlite:///{database}", tmp_path, country, delivery={"in_process_worker": True}
        ) as nodes:
            api = nodes.api()
            client = nodes.client(api)
            driver = Driver(uins(country), receiver.url("/registry/on-search"))
            for n in range(3):
                assert driver.send(client, n)
            check_delivered(receiver, driver.acked, nodes.store)
            filler = fill(small_disk)
            for n in range(6):  # the write-ahead log grows until it cannot
                driver.send(client, n)
            assert driver.unavailable, "no write was refused on a full disk"
            for body in driver.unavailable:
                assert body["message"]["ack_status"] == "ERR"
                assert body["message"]["error"]["code"] == "err.service.unavailable"
            filler.unlink()  # space returns
            for n in range(6, 9):
                assert driver.send(client, n)
            check_delivered(receiver, driver.acked, nodes.store)
            for done in driver.acked:
                check_status(client, done)
            log = api.log.read_text()
            assert "Traceback" not in log
        check = sqlite3.connect(database)
        try:
            assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            check.close()
    finally:
        receiver.stop()


def test_which_store_errors_mean_unavailable(tmp_path):
    """A database that is away is `err.service.unavailable`; a missing table is a defect."""
    from sqlalchemy import create_engine, text

    from dcihub.store.access import unavailable
    from dcihub.store.database import make_engine

    away = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{support.free_port()}/none")
    with pytest.raises(Exception) as refused:
        with away.connect():
            pass
    assert unavailable(refused.value)
    away.dispose()
    engine = create_engine(f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(Exception) as missing:
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
    assert not unavailable(missing.value)
    engine.dispose()


def test_raw_driver_and_pending_rollback_errors_mean_unavailable(tmp_path):
    """The hot path runs prepared statements on the driver's own connection: its errors for a
    lost database are outages too, as is a connection left pending a rollback by one; a
    missing table seen by the raw sqlite3 driver stays a defect."""
    import sqlite3

    import psycopg
    from sqlalchemy import exc as sa_exc

    from dcihub.store.access import unavailable

    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"postgresql://nobody@127.0.0.1:{support.free_port()}/none")
    assert unavailable(refused.value)
    assert unavailable(sa_exc.PendingRollbackError("rolled back after a lost connection"))
    raw = sqlite3.connect(tmp_path / "raw.db")
    with pytest.raises(sqlite3.OperationalError) as missing:
        raw.execute("SELECT * FROM no_such_table")
    raw.close()
    assert not unavailable(missing.value)
    assert unavailable(sqlite3.OperationalError("database or disk is full"))
