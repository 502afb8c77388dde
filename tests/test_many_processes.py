"""Many processes, one PostgreSQL (docs/reliability.md): two `dcihub serve` processes and two
`dcihub worker` processes share one schema. Three partners send async searches to both API
processes; one worker is killed midway. Each transaction is processed exactly once (one
callback row, `succ`), every acknowledged search's callback arrives, and all copies of a
callback carry one `message_id` (a deduplicating receiver sees it once).

Replay protection holds across API processes: the same signed message sent at the same moment
to both processes is processed once — one transaction — and both answers are that one
acknowledgement (the loser of the race gets the winner's reply) or a 409 refusal.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from sqlalchemy import func, select

import support
from dcihub.population.generator import generate_country
from processes import Driver, check_delivered, check_status, cluster, wait_for
from receiver import CallbackReceiver
from support import idtype, search_envelope

SEARCHES = 24


@pytest.fixture(scope="module")
def country():
    return generate_country(people=120, seed=13)


def test_two_api_and_two_worker_processes_on_one_postgres(country, tmp_path):
    base = support.require_postgres()
    uins = [i["value"] for i in country.samples()["crvs"]["identifiers"] if i["type"] == "UIN"]
    receiver = CallbackReceiver(delay=0.15).start()  # slow enough for workers to hold rows
    try:
        with (
            support.postgres_schema(base) as url,
            cluster(url, tmp_path, country, partners=3) as nodes,
        ):
            apis = [nodes.api(), nodes.api()]
            workers = [nodes.worker(), nodes.worker()]
            clients = [nodes.client(api, partner) for api in apis for partner in nodes.partners]
            driver = Driver(uins, receiver.url("/registry/on-search"))

            def send(n: int) -> None:
                driver.send(clients[n % len(clients)], n)

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(send, range(SEARCHES // 2)))
                dead = workers[0].process.pid
                wait_for(lambda: held_by(nodes.store, dead), what="rows held by worker 0")
                workers[0].kill()  # midway: its claimed rows go to the other worker
                killed_at = time.monotonic()
                held = held_by(nodes.store, dead)  # what it held when it died
                list(pool.map(send, range(SEARCHES // 2, SEARCHES)))
            # the rows the dead worker held are taken over by the other one, after the lease
            alive = workers[1].process.pid
            wait_for(lambda: taken_over(nodes.store, held, alive), what="the dead worker's rows")
            takeover = time.monotonic() - killed_at
            assert len(driver.acked) == SEARCHES and driver.unacked == 0
            seen = check_delivered(receiver, driver.acked, nodes.store)
            assert seen.distinct == SEARCHES
            for done in driver.acked[:: max(1, SEARCHES // 6)]:
                partner = next(p for p in nodes.partners if p.sender_id == done.sender_id)
                check_status(nodes.client(apis[1], partner), done)
            print(
                f"\nmany processes: 2 API + 2 workers (one killed), {SEARCHES} searches of 3 "
                f"partners, callbacks on the wire={seen.on_the_wire}, duplicates="
                f"{seen.duplicates}, lost=0; {len(held)} rows of the killed worker done by the "
                f"other {takeover:.1f} s after the kill (lease 2 s)"
            )

            # Replay protection across the two API processes
            outcomes = race_the_same_message(nodes, apis, rounds=8)
            print(f"replay races: {outcomes}")
    finally:
        receiver.stop()


def held_by(store, pid: int) -> list[int]:
    """The outbox rows a worker process holds now (its id is host:pid:random)."""
    t = store.schema.ops.outbox
    with store.read() as conn:
        return list(
            conn.execute(
                select(t.c.pk).where(t.c.status == "inflight", t.c.claimed_by.like(f"%:{pid}:%"))
            ).scalars()
        )


def taken_over(store, pks: list[int], pid: int) -> bool:
    t = store.schema.ops.outbox
    with store.read() as conn:
        rows = conn.execute(select(t.c.status, t.c.claimed_by).where(t.c.pk.in_(pks))).all()
    return all(status == "done" and f":{pid}:" in (by or "") for status, by in rows)


def race_the_same_message(nodes, apis, rounds: int) -> dict[str, int]:
    partner = nodes.partners[0]
    clients = [nodes.client(api, partner) for api in apis]
    outcomes = {"both the one ACK": 0, "one ACK, one 409": 0}
    ops = nodes.store.schema.ops
    for _ in range(rounds):
        envelope = clients[0].signed(
            search_envelope(
                idtype("UIN", "0"), sender_id=partner.sender_id, sender_uri="http://127.0.0.1:9/cb"
            )
        )
        body = orjson.dumps(envelope)
        barrier = threading.Barrier(2)
        answers: list = [None, None]

        def post(i: int, body=body, barrier=barrier, answers=answers) -> None:
            client = clients[i]
            headers = {"content-type": "application/json", **client.auth_headers()}
            barrier.wait()
            answers[i] = client.http.post(
                client.server.url("crvs", "search"), content=body, headers=headers
            )

        threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        statuses = sorted(a.status_code for a in answers)
        with nodes.store.read() as conn:
            recorded = conn.execute(
                select(func.count())
                .select_from(ops.transactions)
                .where(ops.transactions.c.message_id == envelope["header"]["message_id"])
            ).scalar_one()
        assert recorded == 1, f"the message was processed {recorded} times: {statuses}"
        if statuses == [202, 202]:
            acks = {a.json()["message"]["correlation_id"] for a in answers}
            assert len(acks) == 1, "two acknowledgements for one message"
            outcomes["both the one ACK"] += 1
        else:
            assert statuses == [202, 409], [a.text for a in answers]
            refused = next(a for a in answers if a.status_code == 409).json()
            assert "rjct.message_id.duplicate" in refused["message"]["error"]["message"]
            outcomes["one ACK, one 409"] += 1
        time.sleep(0.05)
    return outcomes
