"""The operational queries over a large outbox (docs/reliability.md, "Retention").

Bulk-inserts `--rows` outbox rows (mostly delivered, 0.1 % pending, 0.1 % dead — a busy node's
queue before retention) into a fresh PostgreSQL schema, then times, median of `--repeat` runs:

* baseline: the whole-table count per status (`SELECT status, count(*) … GROUP BY status`, what
  `/status` and the console ran before);
* `/status` counts (`Outbox.counts`), the worker's claim (`claim_on`, 32 rows), its heartbeat
  (`renew`) and one retention batch (`purge`), each in a transaction rolled back.

Prints each in milliseconds and as a ratio to the baseline. Target: every ratio ≤ 0.10 at
1,000,000 rows (and falling as the table grows: none of them reads the whole table).

    .venv/bin/python benchmarks/outbox_scale.py --rows 10000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, create_engine, text

from dcihub.config import RetentionSettings
from dcihub.store import Store
from dcihub.store.retention import purge


def timed(engine: Any, work: Callable[[Connection], Any], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        with engine.connect() as conn:
            transaction = conn.begin()
            started = time.perf_counter()
            work(conn)
            runs.append(time.perf_counter() - started)
            transaction.rollback()
    return statistics.median(runs) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--url",
        default=os.environ.get("DCIHUB_TEST_POSTGRES_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database; the benchmark works in a schema of its own and drops it",
    )
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - one clear line
        print(f"error: cannot use {args.url}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    sep = "&" if "?" in args.url else "?"
    store = Store(f"{args.url}{sep}options=-csearch_path%3D{schema}")
    try:
        store.upgrade()
        now = time.time()
        started = time.perf_counter()
        with store.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO outbox (kind, registry, txn_pk, sender_id, target_url, action, "
                    "payload, status, attempts, next_attempt_at, created_at, updated_at) "
                    "SELECT 'deliver', 'crvs', g, 'p' || (g % 50), 'http://127.0.0.1:9/cb', "
                    "'on-search', NULL, CASE WHEN g % 1000 = 0 THEN 'pending' "
                    "WHEN g % 997 = 0 THEN 'dead' ELSE 'done' END, 1, :now - g / 100.0, "
                    ":now - g / 100.0, :now - g / 100.0 FROM generate_series(1, :rows) AS g"
                ),
                {"now": now, "rows": args.rows},
            )
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE outbox")
            )  # as autovacuum keeps it
        print(f"{args.rows:,} outbox rows inserted in {time.perf_counter() - started:.1f} s")
        engine = store.engine
        baseline = timed(
            engine,
            lambda c: c.execute(text("SELECT status, count(*) FROM outbox GROUP BY status")).all(),
            args.repeat,
        )
        cases = {
            "/status counts (Outbox.counts)": lambda c: store.outbox.counts(c),
            "claim 32 rows (claim_on)": lambda c: store.outbox.claim_on(
                c, 32, 10.0, per_key=4, busy={}, owner="bench"
            ),
            "heartbeat (renew)": lambda c: store.outbox.renew(c, "bench", 10.0),
            "retention batch (purge)": lambda c: purge(store, c, RetentionSettings(), now=now),
        }
        print(f"{'baseline: count per status over the whole table':<50} {baseline:9.2f} ms")
        worst = 0.0
        for name, work in cases.items():
            ms = timed(engine, work, args.repeat)
            worst = max(worst, ms / baseline)
            print(f"{name:<50} {ms:9.2f} ms   ratio {ms / baseline:.4f}")
        verdict = "met" if worst <= 0.10 else "NOT met"
        print(f"target every ratio <= 0.10: {verdict} (worst {worst:.4f})")
        return 0
    finally:
        store.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
