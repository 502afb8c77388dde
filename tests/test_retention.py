"""Retention and the cost of the operational queries at scale.

* `store.retention.purge` deletes delivered and given-up outbox rows and finished transactions
  older than their retention, in bounded batches, and never a row still to do (nor a finished
  transaction whose callback is still to be delivered); `dcihub store purge` runs it by hand.
* Worker liveness in the store: only the holder of a claimed row renews its lease and writes its
  outcome; a row of a holder that stopped renewing is claimed by another after the lease.
* On PostgreSQL, over a bulk-inserted outbox (mostly delivered rows, as a busy node's queue is),
  every statement of `/status`, the console's queue line, the worker's claim, heartbeat and
  retention purge is planned without a sequential scan of `outbox` (EXPLAIN).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import event, insert, select, text
from typer.testing import CliRunner

import support
from dcihub.cli import app
from dcihub.config import RetentionSettings
from dcihub.store import Store
from dcihub.store.outbox import DEAD, DONE, DONE_COUNT_CAP, INFLIGHT, PENDING
from dcihub.store.retention import DAY, purge

NOW = time.time()


@pytest.fixture()
def scratch(backend, tmp_path):
    with support.store_url_for(backend, tmp_path) as url:
        store = Store(url)
        store.upgrade()
        try:
            yield store
        finally:
            store.dispose()


def outbox_row(status: str, age_days: float, txn_pk: int | None = None, kind: str = "deliver"):
    at = NOW - age_days * DAY
    return {
        "kind": kind,
        "registry": "crvs",
        "txn_pk": txn_pk,
        "sender_id": "p1",
        "target_url": "http://127.0.0.1:9/cb",
        "action": "on-search",
        "payload": None if status == DONE else "{}",
        "status": status,
        "attempts": 1,
        "next_attempt_at": at,
        "locked_until": at + 10 if status == INFLIGHT else None,
        "created_at": at,
        "updated_at": at,
    }


def add_txn(conn: Any, store: Store, n: int, status: str, age_days: float) -> int:
    t = store.schema.ops.transactions
    at = NOW - age_days * DAY
    pk = conn.execute(
        insert(t).returning(t.c.pk),
        {
            "registry": "crvs",
            "sender_id": "p1",
            "transaction_id": f"t{n}",
            "correlation_id": f"c{n}",
            "message_id": f"m{n}",
            "action": "search",
            "txn_type": "search",
            "mode": "async",
            "status": status,
            "total_count": 1,
            "completed_count": 1,
            "created_at": at,
            "updated_at": at,
        },
    ).scalar_one()
    conn.execute(
        insert(store.schema.ops.txn_items),
        {"txn_pk": pk, "seq": 0, "reference_id": f"r{n}", "status": status},
    )
    return pk


def statuses(store: Store) -> dict[int, str]:
    with store.read() as conn:
        return {r["pk"]: r["status"] for r in store.outbox.rows(conn)}


def txn_pks(store: Store) -> set[int]:
    with store.read() as conn:
        t = store.schema.ops.transactions
        return set(conn.execute(select(t.c.pk)).scalars())


def item_txns(store: Store) -> set[int]:
    with store.read() as conn:
        i = store.schema.ops.txn_items
        return set(conn.execute(select(i.c.txn_pk)).scalars())


def test_purge_keeps_what_is_promised_and_deletes_the_rest(scratch):
    policy = RetentionSettings(delivered_days=7, dead_days=30, transactions_days=30, batch=1000)
    with scratch.begin() as conn:
        old_done_txn = add_txn(conn, scratch, 1, "succ", 40)
        young_txn = add_txn(conn, scratch, 2, "succ", 10)
        waiting_txn = add_txn(conn, scratch, 3, "succ", 40)  # its callback is not delivered
        received_txn = add_txn(conn, scratch, 4, "rcvd", 40)  # work still to do
        rejected_txn = add_txn(conn, scratch, 5, "rjct", 31)
        rows = {
            "old done": outbox_row(DONE, 8, old_done_txn),
            "young done": outbox_row(DONE, 6),
            "old dead": outbox_row(DEAD, 31),
            "young dead": outbox_row(DEAD, 29),
            "old pending": outbox_row(PENDING, 90, waiting_txn),
            "old inflight": outbox_row(INFLIGHT, 90),
            "batch of a subscription": outbox_row(PENDING, 90, rejected_txn, kind="batch"),
        }
        pks = {
            name: conn.execute(
                insert(scratch.schema.ops.outbox).returning(scratch.schema.ops.outbox.c.pk), row
            ).scalar_one()
            for name, row in rows.items()
        }
    with scratch.begin() as conn:
        done = purge(scratch, conn, policy, now=NOW)
    assert (done.delivered, done.dead, done.transactions, done.full) == (1, 1, 2, False)
    left = statuses(scratch)
    assert set(left) == {pks[n] for n in rows if n not in ("old done", "old dead")}
    # a batch row's txn_pk is a subscription's: it does not hold transaction 5
    assert txn_pks(scratch) == {young_txn, waiting_txn, received_txn}
    assert item_txns(scratch) == {young_txn, waiting_txn, received_txn}
    with scratch.begin() as conn:  # nothing more is due
        assert purge(scratch, conn, policy, now=NOW).total == 0


def test_purge_works_in_bounded_batches(scratch):
    with scratch.begin() as conn:
        conn.execute(insert(scratch.schema.ops.outbox), [outbox_row(DONE, 10)] * 25)
    policy = RetentionSettings(batch=10)
    runs = []
    while True:
        with scratch.begin() as conn:
            done = purge(scratch, conn, policy, now=NOW)
        runs.append(done.delivered)
        if not done.full:
            break
    assert runs == [10, 10, 5]
    assert statuses(scratch) == {}


def test_store_purge_command(tmp_path):
    url = f"sqlite:///{tmp_path}/purge.db"
    store = Store(url)
    store.upgrade()
    with store.begin() as conn:
        conn.execute(
            insert(store.schema.ops.outbox),
            [outbox_row(DONE, 10)] * 3 + [outbox_row(DEAD, 1)] + [outbox_row(DEAD, 40)],
        )
        add_txn(conn, store, 1, "succ", 100)
    config = tmp_path / "dcihub.yaml"
    config.write_text(yaml.safe_dump({"store_url": url, "retention": {"dead_days": 30}}))
    runner = CliRunner()
    dry = runner.invoke(app, ["store", "purge", "--config", str(config), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would purge 3 delivered and 1 given-up outbox rows, 1 transactions" in dry.output
    assert len(statuses(store)) == 5  # a dry run deletes nothing
    real = runner.invoke(app, ["store", "purge", "--config", str(config)])
    assert real.exit_code == 0, real.output
    assert "purged 3 delivered and 1 given-up outbox rows, 1 transactions" in real.output
    assert list(statuses(store).values()) == [DEAD]
    again = runner.invoke(app, ["store", "purge", "--config", str(config)])
    assert "purged 0 delivered and 0 given-up outbox rows, 0 transactions" in again.output
    store.dispose()
    down = tmp_path / "down.yaml"
    down.write_text(yaml.safe_dump({"store_url": "postgresql+psycopg://nobody@127.0.0.1:9/none"}))
    failed = runner.invoke(app, ["store", "purge", "--config", str(down)])
    assert failed.exit_code != 0
    assert "Traceback" not in failed.output
    assert "cannot purge the store" in failed.output


def test_only_the_holder_renews_and_writes_the_outcome(scratch):
    with scratch.begin() as conn:
        a = scratch.outbox.enqueue(conn, "deliver", target_url="http://x/cb", payload="{}")
        b = scratch.outbox.enqueue(conn, "deliver", target_url="http://x/cb", payload="{}")
    claimed = scratch.outbox.claim(scratch.engine, limit=1, lease=1.0, owner="w1")
    assert [r.pk for r in claimed] == [a]
    with scratch.begin() as conn:
        assert scratch.outbox.renew(conn, "w1", 30.0) == 1  # w1's heartbeat
        assert scratch.outbox.renew(conn, "w2", 30.0) == 0
        assert not scratch.outbox.complete(conn, a, owner="w2")  # w2 does not hold it
        assert not scratch.outbox.retry(conn, a, "x", 1.0, owner="w2")
        assert not scratch.outbox.give_up(conn, a, "x", owner="w2")
    time.sleep(1.1)  # past the first lease: renewed, so not claimable
    assert [r.pk for r in scratch.outbox.claim(scratch.engine, lease=1.0, owner="w2")] == [b]
    # w2 stops renewing (it died): b is claimed again by w3 after its lease, a still is w1's
    time.sleep(1.1)
    (again,) = scratch.outbox.claim(scratch.engine, lease=30.0, owner="w3")
    assert (again.pk, again.attempts) == (b, 2)
    with scratch.begin() as conn:
        assert not scratch.outbox.complete(conn, b, owner="w2")  # lost its lease
        assert scratch.outbox.complete(conn, b, owner="w3")
        assert scratch.outbox.complete(conn, a, owner="w1")
    assert statuses(scratch) == {a: DONE, b: DONE}


def test_counts_bound_the_delivered_rows(scratch):
    with scratch.begin() as conn:
        conn.execute(
            insert(scratch.schema.ops.outbox),
            [outbox_row(DONE, 1)] * (DONE_COUNT_CAP + 5)
            + [outbox_row(PENDING, 0)] * 2
            + [outbox_row(DEAD, 0)],
        )
        counts = scratch.outbox.counts(conn)
    assert counts == {DONE: DONE_COUNT_CAP, PENDING: 2, DEAD: 1}


def test_operational_queries_do_not_scan_a_large_outbox(tmp_path):
    """EXPLAIN of every statement the status page, the console's queue line, the worker's
    claim and heartbeat and the retention purge run, over 300,000 outbox rows."""
    base = support.require_postgres()
    with support.postgres_schema(base) as url:
        store = Store(url)
        store.upgrade()
        try:
            with store.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO outbox (kind, registry, txn_pk, sender_id, target_url, "
                        "action, payload, status, attempts, next_attempt_at, created_at, "
                        "updated_at) SELECT 'deliver', 'crvs', g, 'p' || (g % 50), "
                        "'http://127.0.0.1:9/cb', 'on-search', NULL, "
                        "CASE WHEN g % 1000 = 0 THEN 'pending' WHEN g % 997 = 0 THEN 'dead' "
                        "ELSE 'done' END, 1, :now - g, :now - g, :now - g "
                        "FROM generate_series(1, 300000) AS g"
                    ),
                    {"now": NOW},
                )
                conn.execute(text("ANALYZE outbox"))
            statements: list[tuple[str, Any]] = []

            def capture(conn, cursor, statement, parameters, context, executemany):
                if "outbox" in statement and not statement.startswith("EXPLAIN"):
                    statements.append((statement, parameters))

            event.listen(store.engine, "before_cursor_execute", capture)
            with store.engine.connect() as conn:
                transaction = conn.begin()
                store.outbox.counts(conn)
                store.outbox.next_due(conn)
                store.outbox.claim_on(conn, 32, 10.0, per_key=4, busy={}, owner="w")
                store.outbox.renew(conn, "w", 10.0)
                purge(store, conn, RetentionSettings(), now=NOW)
                transaction.rollback()
            event.remove(store.engine, "before_cursor_execute", capture)
            assert len(statements) >= 8
            with store.engine.connect() as conn:
                for statement, parameters in statements:
                    plan = "\n".join(
                        row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                    )
                    assert "Seq Scan on outbox" not in plan, f"{statement}\n{plan}"
        finally:
            store.dispose()


def test_retention_settings_are_documented():
    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    for name in RetentionSettings.model_fields:
        assert f"| `{name}` |" in doc, name
