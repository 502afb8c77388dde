"""The scale benchmark of dcihub (benchmarks/README.md, "The scale benchmark").

For each store (SQLite, PostgreSQL): `dcihub population generate --people N --replace` as a
user runs it, timed, with the peak resident memory of the command and its worker processes
(summed over the process tree, sampled every 0.1 s from /proc; the PostgreSQL server's own
memory is not counted), and the store's size per person (SQLite: the file and its WAL;
PostgreSQL: pg_total_relation_size of every table). Then, in the same run, the baseline: the
10,000-person demo store (`--small`), and `dcihub serve` over each store, measuring sync
`idtype-value` UIN searches per second (wrk, closed loop) on the large store against the small
one (target >= 0.80), and the p50 latency of a predicate search with two indexed conditions
and page_size 50 on the large store (target < 50 ms). Targets for the build: under 3 minutes,
peak under 1 GB, at most 2.5 KB per person.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from harness.closed_loop import ClosedLoopSettings, max_throughput, wrk_binary
from harness.machine import in_workdir, run_main, say, warn_if_busy
from harness.measure import check_answers, search_problem
from harness.processes import BenchmarkError, ChildProcesses
from harness.requests import UNIQUE, materialise, search_envelope, uin_lookups, write_request_set
from harness.servers import DcihubOptions, dcihub_command, registry_uins, start_dcihub

SERVER_CONFIG = {"security": {"enabled": False}}
BUILD_SECONDS, PEAK_BYTES, BYTES_PER_PERSON = 180.0, 1 << 30, 2560
SEARCH_RATIO, PREDICATE_P50_MS = 0.80, 50.0


@dataclass
class Build:
    store: str
    people: int
    seconds: float
    peak_rss: int
    size: int

    @property
    def per_person(self) -> float:
        return self.size / self.people


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1_000_000, help="large store (1,000,000)")
    parser.add_argument("--small", type=int, default=10_000, help="baseline store (10,000)")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument(
        "--stores", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "DCIHUB_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="database for the PostgreSQL store (a schema dcihub_scale_<people> is made in it)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="wrk seconds per store")
    parser.add_argument("--predicates", type=int, default=200, help="predicate searches timed")
    parser.add_argument("--no-search", action="store_true", help="builds only")
    parser.add_argument(
        "--search-only",
        action="store_true",
        help="no builds: search the stores an earlier run left (--data-dir; PostgreSQL schemas)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the stores here")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    return parser.parse_args(argv)


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def generate(url: str, people: int, seed: int, name: str) -> tuple[float, int]:
    """Run `dcihub population generate`; (wall seconds, peak RSS of its process tree)."""
    argv = [*dcihub_command(), "population", "generate", "--store", url]
    argv += ["--people", str(people), "--seed", str(seed), "--replace"]
    say(f"{name}: dcihub population generate --people {people:,}")
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        raise BenchmarkError(f"{' '.join(argv)} failed:\n{out.decode(errors='replace')[-2000:]}")
    return seconds, peak[0]


def store_size(url: str) -> int:
    from dcihub.store import Store

    store = Store(url)
    try:
        if store.dialect == "sqlite":
            path = Path(url.removeprefix("sqlite:///"))
            wal = path.with_name(path.name + "-wal")
            return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        from sqlalchemy import text

        with store.read() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                        "WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace"
                    )
                ).scalar_one()
            )
    finally:
        store.dispose()


def postgres_url(base: str, people: int, fresh: bool = True) -> str:
    from sqlalchemy import create_engine, text

    schema = f"dcihub_scale_{people}"
    if fresh:
        engine = create_engine(base)
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def predicate_body(page_size: int = 50) -> bytes:
    # about 3 % of the people: under the default limits.max_total_records (100,000) at 1M
    conditions = [("sex", "eq", "female"), ("birth_date", "ge", "2020-01-01")]
    query = [
        {
            "seq_num": i + 1,
            "expression1": {"attribute_name": n, "operator": o, "attribute_value": v},
        }
        for i, (n, o, v) in enumerate(conditions)
    ]
    item = {
        "reference_id": "r-1",
        "timestamp": "2026-01-01T00:00:00Z",
        "search_criteria": {
            "version": "1.0.0",
            "query_type": "predicate",
            "query": query,
            "pagination": {"page_size": page_size, "page_number": 1},
        },
        "locale": "eng",
    }
    return orjson.dumps(search_envelope([item], f"m-{UNIQUE}", f"t-{UNIQUE}"))


def predicate_p50(url: str, count: int) -> float:
    body = predicate_body()
    path = f"{url}/crvs/registry/sync/search"
    times = []
    with httpx.Client(timeout=60) as client:
        for i in range(count + 5):
            started = time.perf_counter()
            response = client.post(
                path, content=materialise(body), headers={"Content-Type": "application/json"}
            )
            took = time.perf_counter() - started
            problem = search_problem(response)
            if problem:
                raise BenchmarkError(f"the predicate search failed: {problem}")
            if i >= 5:  # the first few warm the caches
                times.append(took * 1000)
    return statistics.median(times)


def search(
    procs: ChildProcesses, url: str, work: Path, name: str, duration: float
) -> tuple[float, float | None]:
    """(idtype-value requests/s, predicate p50 ms) of `dcihub serve` over the store at `url`."""
    from dcihub.store import Store

    store = Store(url)
    try:
        uins = registry_uins(store, "crvs", 100_000)
    finally:
        store.dispose()
    step = max(1, len(uins) // 2000)
    lookups = uin_lookups("crvs", uins[::step], 2000)
    files = write_request_set(lookups, work, f"lookups-{name}-{uuid.uuid4().hex[:6]}")
    options = DcihubOptions(store_url=url, config=SERVER_CONFIG)
    server = start_dcihub(procs, options, url, work, name=name)
    check_answers(server.url, lookups)
    say(f"{name}: idtype-value searches, {duration:.0f} s")
    rate = max_throughput(server.url, files, ClosedLoopSettings(duration=duration)).requests_per_s
    return rate, server.url


def run_in(work: Path, args: argparse.Namespace) -> int:
    busy = warn_if_busy()
    builds: list[Build] = []
    rows: list[tuple[str, str, str, str]] = []
    urls: dict[str, tuple[str, str]] = {}
    for kind in [s.strip() for s in args.stores.split(",") if s.strip()]:
        if kind == "sqlite":
            big = f"sqlite:///{(work / f'scale-{args.people}.db').resolve()}"
            small = f"sqlite:///{(work / f'scale-{args.small}.db').resolve()}"
        elif kind == "postgres":
            big = postgres_url(args.postgres_url, args.people, not args.search_only)
            small = postgres_url(args.postgres_url, args.small, not args.search_only)
        else:
            raise BenchmarkError(f"unknown store {kind!r}: sqlite or postgres")
        urls[kind] = (big, small)
        if args.search_only:
            continue
        seconds, peak = generate(big, args.people, args.seed, kind)
        builds.append(Build(kind, args.people, seconds, peak, store_size(big)))
        b = builds[-1]
        say(f"  {seconds:.1f} s, peak {peak / 2**20:,.0f} MiB, {b.per_person:,.0f} B/person")
        rows += [
            (f"{kind}: build {args.people:,}", f"{seconds:.1f} s", "< 180 s", _ok(seconds < 180)),
            (f"{kind}: peak memory", f"{peak / 2**20:,.0f} MiB", "< 1024 MiB", _ok(peak < 1 << 30)),
            (
                f"{kind}: store size",
                f"{b.per_person:,.0f} B/person ({b.size / 2**30:.2f} GiB)",
                "<= 2560 B/person",
                _ok(b.per_person <= BYTES_PER_PERSON),
            ),
        ]
        if not args.no_search:
            generate(small, args.small, args.seed, f"{kind} (baseline)")
    if not args.no_search:
        wrk_binary()
        for kind, (big, small) in urls.items():
            with ChildProcesses(work) as procs:
                base_rate, _ = search(procs, small, work, f"{kind}-small", args.duration)
            with ChildProcesses(work) as procs:
                big_rate, server_url = search(procs, big, work, f"{kind}-large", args.duration)
                say(f"{kind}: predicate search, two indexed conditions, page_size 50")
                try:
                    p50 = predicate_p50(server_url, args.predicates)
                except BenchmarkError as exc:
                    say(f"  {exc}")
                    p50 = float("inf")
            say(f"  {base_rate:,.0f} req/s small, {big_rate:,.0f} req/s large, p50 {p50:.1f} ms")
            ratio = big_rate / base_rate
            rows += [
                (f"{kind}: idtype-value, {args.small:,} people", f"{base_rate:,.0f} req/s", "", ""),
                (f"{kind}: idtype-value, {args.people:,} people", f"{big_rate:,.0f} req/s", "", ""),
                (f"{kind}: large / small", f"{ratio:.2f}", ">= 0.80", _ok(ratio >= SEARCH_RATIO)),
                (
                    f"{kind}: predicate p50, page_size 50",
                    f"{p50:.1f} ms",
                    "< 50 ms",
                    _ok(p50 < PREDICATE_P50_MS),
                ),
            ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print()
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    if busy is not None:
        print(f"\nCPU busy before the run: {busy:.0%} (other work on the machine skews figures)")
    return 1 if any(r[3] == "FAIL" for r in rows) else 0


def _ok(good: bool) -> str:
    return "PASS" if good else "FAIL"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> int:
        return in_workdir(args.data_dir, args.keep, "dcihub-scale-", lambda w: run_in(w, args))

    return run_main(work, "the servers were")


if __name__ == "__main__":
    sys.exit(main())
