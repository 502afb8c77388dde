"""The import benchmark of dcihub (benchmarks/README.md, "The import benchmark").

Writes a CSV of `--rows` people (default 1,000,000) with a country's own column names
(`NIN;Nom;Prenom;Sexe;DateNaiss;Region`, codes and dates to translate), then, for each store
(SQLite in a temporary directory; PostgreSQL when `--postgres-url` or
`DCIHUB_TEST_POSTGRES_URL` is set), in the same run:

    baseline  the same file read with the csv module and inserted with executemany, in
              batches of the same size, into a plain table (key, record JSON) of the same
              database: what parsing and writing the rows costs with nothing else
    import    `dcihub import crvs` as the command runs it (`run_import`): mapping, validation,
              comparison with the stored records, the record tables and their indexes

Prints rows/s of each, the ratio import/baseline, and the import's wall time against the
target (under 2 minutes for 1,000,000 rows, issue 9), with PASS/FAIL.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from harness.machine import run_main, say, warn_if_busy
from harness.report import FAIL, INFO, PASS, Row, table
from sqlalchemy import create_engine, text

from dcihub.population.importer import Options, load_mapping, open_source, run_import
from dcihub.standard.profiles import PROFILES
from dcihub.store import Store

TARGET_SECONDS_PER_MILLION = 120.0

MAPPING = """\
registry = "crvs"
[source]
delimiter = ";"
[record]
date_formats = ["%d/%m/%Y"]
[[identifiers]]
column = "NIN"
type = "UIN"
[[fields]]
column = "Nom"
to = "surname"
required = true
[[fields]]
column = "Prenom"
to = "given_name"
[[fields]]
column = "Sexe"
to = "sex"
codes = { M = "male", F = "female" }
required = true
[[fields]]
column = "DateNaiss"
to = "birth_date"
[[fields]]
column = "Region"
to = "address[].region_code"
"""

SURNAMES = ["Diallo", "Ndiaye", "Fall", "Sow", "Ba", "Diop", "Sarr", "Kane", "Gaye", "Faye"]
GIVEN = ["Aminata", "Moussa", "Awa", "Ibou", "Fatou", "Cheikh", "Mariama", "Ousmane"]
REGIONS = ["DK", "TH", "SL", "KL", "ZG", "SD", "MT", "FK"]


def write_csv(path: Path, rows: int, seed: int = 9) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["NIN", "Nom", "Prenom", "Sexe", "DateNaiss", "Region"])
        for i in range(rows):
            writer.writerow(
                [
                    str(1_000_000_000 + i),
                    rng.choice(SURNAMES),
                    rng.choice(GIVEN),
                    "MF"[i % 2],
                    f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1930, 2025)}",
                    rng.choice(REGIONS),
                ]
            )


def baseline(url: str, path: Path, batch: int) -> float:
    """Seconds to parse the file and insert every row (key + JSON) with executemany."""
    engine = create_engine(url)
    table_name = f"bench_import_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"CREATE TABLE {table_name} (pk INTEGER PRIMARY KEY, k TEXT, rec TEXT)")
            )
        started = time.perf_counter()
        insert = text(f"INSERT INTO {table_name} (pk, k, rec) VALUES (:pk, :k, :rec)")
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter=";")
            header = next(reader)
            pending: list[dict[str, object]] = []
            for pk, values in enumerate(reader, 1):
                row = dict(zip(header, values, strict=True))
                pending.append({"pk": pk, "k": row["NIN"], "rec": orjson.dumps(row).decode()})
                if len(pending) >= batch:
                    with engine.begin() as conn:
                        conn.execute(insert, pending)
                    pending = []
            if pending:
                with engine.begin() as conn:
                    conn.execute(insert, pending)
        return time.perf_counter() - started
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table_name}"))
        engine.dispose()


def measure_import(url: str, mapping: Path, path: Path, batch: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, records created)."""
    store = Store(url)
    try:
        store.upgrade()
        plan = load_mapping(mapping, "crvs", PROFILES["crvs"])
        started, cpu = time.perf_counter(), time.process_time()
        summary = run_import(
            store,
            plan,
            open_source(plan, str(path), None),
            Options(batch_size=batch, rejects=path.with_suffix(".rejects.csv")),
        )
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if summary.created != summary.rows_read or summary.rows_rejected:
            raise SystemExit(f"error: the import did not create every row: {summary}")
        return elapsed, cpu, summary.created
    finally:
        store.dispose()


def pg_schema_url(base: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def drop_schema(base: str, schema: str) -> None:
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV")
    parser.add_argument("--batch-size", type=int, default=5000, help="records per transaction")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("DCIHUB_TEST_POSTGRES_URL"),
        help="PostgreSQL to measure too (a schema of its own is made and dropped)",
    )
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="one store only")
    args = parser.parse_args()

    def work() -> int:
        warn_if_busy()
        rows: list[Row] = []
        failed = False
        with tempfile.TemporaryDirectory(prefix="dcihub-bench-import-") as tmp:
            work_dir = Path(tmp)
            data = work_dir / "people.csv"
            mapping = work_dir / "crvs.toml"
            mapping.write_text(MAPPING, encoding="utf-8")
            say(f"writing {args.rows:,} rows to {data}")
            write_csv(data, args.rows)
            stores: list[tuple[str, str, str | None]] = []
            if args.only in (None, "sqlite"):
                stores.append(("sqlite", f"sqlite:///{work_dir}/store.db", None))
            if args.only in (None, "postgres"):
                if args.postgres_url:
                    url, schema = pg_schema_url(args.postgres_url)
                    stores.append(("postgres", url, schema))
                else:
                    say("no --postgres-url (or DCIHUB_TEST_POSTGRES_URL): PostgreSQL skipped")
            target = TARGET_SECONDS_PER_MILLION * args.rows / 1_000_000
            for name, url, schema in stores:
                try:
                    base_url = url if name == "postgres" else f"sqlite:///{work_dir}/baseline.db"
                    say(f"{name}: baseline (csv + executemany)")
                    base = baseline(base_url, data, args.batch_size)
                    say(f"{name}: dcihub import")
                    took, cpu, created = measure_import(url, mapping, data, args.batch_size)
                finally:
                    if schema is not None and args.postgres_url:
                        drop_schema(args.postgres_url, schema)
                ok = took < target
                failed |= not ok
                rows.append(Row(f"{name} baseline rows/s", f"{args.rows / base:,.0f}", "", INFO))
                rows.append(Row(f"{name} import rows/s", f"{created / took:,.0f}", "", INFO))
                rows.append(Row(f"{name} import / baseline", f"{base / took:.2f}", "", INFO))
                rows.append(
                    Row(
                        f"{name} import CPU (this process)",
                        f"{cpu:.1f} s",
                        "",
                        INFO,
                        "with the machine busy, CPU time shows what a quiet machine would take",
                    )
                )
                rows.append(
                    Row(
                        f"{name} import wall time",
                        f"{took:.1f} s",
                        f"< {target:.0f} s",
                        PASS if ok else FAIL,
                    )
                )
        print(table(rows))
        return 1 if failed else 0

    return run_main(work, "nothing")


if __name__ == "__main__":
    sys.exit(main())
