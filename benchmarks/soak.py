"""The soak benchmark of dcihub (benchmarks/README.md, "The soak benchmark").

One secured `dcihub serve` process (security on, as a deployment runs it) over the demo
population, one partner sending **signed** sync searches (one `idtype-value` UIN lookup of the
CRVS, every body unique and signed before the load starts):

1. **Capacity**: the most requests/s the node answers, closed loop, several concurrent clients
   (`wrk -c16`, `--connections`), 3 s warm-up + 10 s.
2. **Soak**: an open-loop load at 70 % of that capacity (`--share`), first `--warmup` seconds
   (default 60, not measured), then for `--minutes` (default 3) in intervals of `--interval`
   seconds (default 30): per interval the rate answered, errors, p50 / p99 latency (from each
   request's due time), and the server's resident memory, sampled every second (the interval's
   last sample is shown), split into its own memory (RSS anon: heap, SQLite's page cache) and
   mapped files (SQLite maps the store, whose audit trail, replay memory and transactions grow
   with every request).

The baseline is the first interval: the last interval's memory and p99 are printed as ratios to
the first one's. Memory counts as flat when the server's own memory in the last interval is
within 10 % of the first's (`--max-rss-growth`), p99 as stable when the last interval's is at
most 1.5 times the first's (`--max-p99-growth`); exit status 0 both hold, 1 one does not (or
there were errors), 2 the benchmark could not run, 130 interrupted. Results go to
benchmarks/results/soak-*.json.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness.closed_loop import ClosedLoopSettings, wrk_binary
from harness.machine import cpu_busy_share, in_workdir, run_main, say, warn_if_busy
from harness.open_loop import LatencyAtRate, OpenLoopSettings, latency_at_rate
from harness.processes import ChildProcesses
from harness.report import FAIL, INFO, PASS, Row, environment, table, write_results
from harness.servers import DcihubOptions, Server, prepare_population, start_dcihub

from security import (
    BODY_SLACK,
    CHECKS,
    REGISTRY,
    SENDER,
    SERVER_CONFIG,
    SIGNED,
    BodyFactory,
    access_token,
    check_scenario,
    max_throughput,
    provision_partners,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIRST_GUESS_RATE = 1000.0  # req/s, for the capacity run's warm-up bodies


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Soak benchmark of dcihub: signed sync searches at a share of the measured "
        "capacity for minutes; memory and p99 per interval."
    )
    p.add_argument("--people", type=int, default=10_000, help="population size (default 10000)")
    p.add_argument(
        "--minutes", type=float, default=3.0, help="length of the soak in minutes (default 3)"
    )
    p.add_argument(
        "--interval", type=float, default=30.0, help="seconds per measured interval (default 30)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="seconds at the soak rate before the first interval, not measured (default 60: "
        "SQLite's page cache, 64 MiB per connection, fills with the pages the requests write)",
    )
    p.add_argument(
        "--share",
        type=float,
        default=0.7,
        help="soak rate as a share of the measured capacity (default 0.7)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=16,
        help="concurrent connections of the capacity run (default 16)",
    )
    p.add_argument(
        "--max-rss-growth",
        type=float,
        default=1.10,
        help="largest last/first interval RSS ratio that counts as flat (default 1.10)",
    )
    p.add_argument(
        "--max-p99-growth",
        type=float,
        default=1.5,
        help="largest last/first interval p99 ratio that counts as stable (default 1.5)",
    )
    p.add_argument("--store-url", help="SQLAlchemy URL of the store (default: SQLite)")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="keep the store, keys, request files and logs here (default: a temporary "
        "directory); a store already built is reused",
    )
    p.add_argument(
        "--pool",
        type=int,
        default=os.cpu_count() or 1,
        help="processes that sign the request bodies (default: cores)",
    )
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.interval > args.minutes * 60:
        p.error("--minutes and --interval must be positive, the interval at most the soak")
    if not 0 < args.share <= 1:
        p.error("--share must be in (0, 1]")
    return args


# ---------------------------------------------------------------------------------------------
# Memory of the server


@dataclass(frozen=True)
class Memory:
    """Resident memory of the server's processes: `anon` is their own (heap, SQLite's page
    cache), `file` the pages of mapped files (SQLite maps the store: it grows with the store)."""

    anon: int
    file: int

    @property
    def total(self) -> int:
        return self.anon + self.file


def group_memory(pgid: int) -> Memory | None:
    """Resident memory of the live processes of process group `pgid`, or None without /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    anon = file = 0
    found = False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) != pgid:
            continue
        found = True
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                kib = int(value.split()[0]) * 1024
                if name == "RssAnon":
                    anon += kib
                else:
                    file += kib
    return Memory(anon, file) if found else None


class RssSampler:
    """Samples the server's RSS every second in a thread; `take()` returns the samples since
    the last call."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self._samples: list[Memory] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            rss = group_memory(self.pgid)
            if rss is not None:
                with self._lock:
                    self._samples.append(rss)

    def take(self) -> list[Memory]:
        with self._lock:
            samples, self._samples = self._samples, []
        return samples


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Interval:
    index: int
    latency: LatencyAtRate
    memory: Memory | None  # the interval's last sample

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "rss_anon_bytes": self.memory.anon if self.memory else None,
            "rss_file_bytes": self.memory.file if self.memory else None,
            "latency": self.latency.as_dict(),
        }


@dataclass
class Soak:
    capacity: float = 0.0
    capacity_errors: int = 0
    rate: float = 0.0
    intervals: list[Interval] = field(default_factory=list)
    rss_start: Memory | None = None
    cpu_busy_before: float | None = None
    cpu_busy_after: float | None = None


def run(args: argparse.Namespace) -> int:
    busy = warn_if_busy()
    return in_workdir(
        args.data_dir, False, "dcihub-bench-soak-", lambda workdir: run_in(workdir, args, busy)
    )


def run_in(workdir: Path, args: argparse.Namespace, busy: float | None) -> int:
    options = DcihubOptions(
        people=args.people, store_url=args.store_url, registry=REGISTRY, config=SERVER_CONFIG
    )
    say(f"population: {options.people:,} people into {options.store_url or workdir / 'bench.db'}")
    population = prepare_population(options, workdir)
    say("  built" if population.built_now else "  already built; reused")
    credentials, _ = provision_partners(workdir)
    soak = Soak(cpu_busy_before=busy)
    intervals = max(1, round(args.minutes * 60 / args.interval))
    with ChildProcesses(workdir, keep=False) as procs:
        server = start_dcihub(procs, options, population.store_url, workdir)
        say(f"dcihub serving on {server.url} (pid {server.pid}); partner {SENDER}, signed")
        credentials.node_jwks = httpx.get(f"{server.url}/.well-known/jwks.json", timeout=30).json()
        token = access_token(server.url, credentials)
        headers = {SIGNED: {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}}
        with BodyFactory(credentials, population.uins, headers, workdir, args.pool) as factory:
            check_scenario(
                server.url, SIGNED, factory.bodies(SIGNED, CHECKS), headers[SIGNED], credentials
            )
            say(f"signed: {CHECKS} answers 200, reply signatures verified")
            closed = ClosedLoopSettings(10.0, 3.0, args.connections)
            say(f"capacity: wrk -t1 -c{args.connections}, 3s warm-up + 10s, signed searches")
            capacity = max_throughput(server, SIGNED, factory, closed, FIRST_GUESS_RATE)
            soak.capacity = capacity.throughput.requests_per_s
            soak.capacity_errors = capacity.throughput.error_count
            soak.rate = soak.capacity * args.share
            say(f"  {soak.capacity:,.0f} req/s; soak at {soak.rate:,.0f} req/s ({args.share:.0%})")
            per_interval = math.ceil(soak.rate * args.interval * 1.2) + BODY_SLACK
            say(f"making {intervals} × {per_interval:,} signed bodies before the soak")
            files = [factory.files(SIGNED, per_interval, f"soak-{i}") for i in range(intervals)]
            warm_files = factory.files(
                SIGNED, math.ceil(soak.rate * args.warmup * 1.2) + BODY_SLACK, "soak-warmup"
            )
        if args.warmup > 0:
            say(f"soak warm-up: {args.warmup:g} s at {soak.rate:,.0f} req/s (not measured)")
            latency_at_rate(
                server.url, warm_files, soak.rate, OpenLoopSettings(args.warmup, 0.0), "warm-up"
            )
        soak.rss_start = group_memory(server.pid)
        soak_intervals(server, soak, files, args)
        soak.cpu_busy_after = cpu_busy_share()
    rows = build_rows(soak, args)
    print_report(soak, rows, args)
    payload = {
        "benchmark": "soak",
        "environment": environment(REPO) | {"cpu_busy_before": busy},
        "server_config": SERVER_CONFIG,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "capacity_req_s": soak.capacity,
        "soak_rate_req_s": soak.rate,
        "rss_start_bytes": soak.rss_start.total if soak.rss_start else None,
        "intervals": [i.as_dict() for i in soak.intervals],
    }
    path = write_results(args.results_dir, payload, rows, prefix="soak-")
    print(f"\nresults written to {path}")
    return 1 if any(r.result == FAIL for r in rows) else 0


def soak_intervals(server: Server, soak: Soak, files: list[Any], args: argparse.Namespace) -> None:
    settings = OpenLoopSettings(duration=args.interval, warmup=0.0)
    with RssSampler(server.pid) as sampler:
        for index, request_files in enumerate(files, start=1):
            latency = latency_at_rate(
                server.url, request_files, soak.rate, settings, f"interval {index}"
            )
            samples = sampler.take()
            interval = Interval(index, latency, samples[-1] if samples else None)
            soak.intervals.append(interval)
            say(
                f"  interval {index}/{len(files)}: {latency.achieved_rate:,.0f} req/s, p50 "
                f"{latency.latency_ms.get('p50', float('nan')):.1f} ms, p99 "
                f"{latency.p99_ms:.1f} ms, errors {latency.error_count}, memory "
                f"{memory_text(interval.memory)}"
            )


# ---------------------------------------------------------------------------------------------
# Report


def mb(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**20:,.1f} MB"


def memory_text(memory: Memory | None) -> str:
    if memory is None:
        return "?"
    return f"{mb(memory.anon)} own + {mb(memory.file)} mapped files"


def ratio(last: float | None, first: float | None) -> float:
    return last / first if last is not None and first else math.nan


def build_rows(soak: Soak, args: argparse.Namespace) -> list[Row]:
    first, last = soak.intervals[0], soak.intervals[-1]
    errors = sum(i.latency.error_count for i in soak.intervals)
    anon_ratio = ratio(last.memory and last.memory.anon, first.memory and first.memory.anon)
    total_ratio = ratio(last.memory and last.memory.total, first.memory and first.memory.total)
    p99_ratio = ratio(last.latency.p99_ms, first.latency.p99_ms)
    minutes = len(soak.intervals) * args.interval / 60
    rows = [
        Row(
            f"capacity, signed sync search (wrk -t1 -c{args.connections}, 10s)",
            f"{soak.capacity:,.0f} req/s",
            "",
            INFO,
            f"{soak.capacity_errors} errors" if soak.capacity_errors else "",
        ),
        Row(
            f"soak: {args.share:.0%} of capacity for {minutes:g} min",
            f"{soak.rate:,.0f} req/s",
            "",
            FAIL if errors else INFO,
            f"{errors} errors over the soak" if errors else "",
        ),
        Row(
            "server memory (own, RSS anon) last / first interval",
            f"{anon_ratio:.2f}",
            f"<= {args.max_rss_growth:.2f}",
            PASS if anon_ratio <= args.max_rss_growth else FAIL,
            f"first {memory_text(first.memory)}, last {memory_text(last.memory)}, at the "
            f"start {memory_text(soak.rss_start)}",
        ),
        Row(
            "server RSS incl. mapped store files, last / first",
            f"{total_ratio:.2f}",
            "reference",
            INFO,
            "the mapped pages of the SQLite store grow with the store (audit trail, replay "
            "memory, transactions)",
        ),
        Row(
            "p99 last / first interval",
            f"{p99_ratio:.2f}",
            f"<= {args.max_p99_growth:.2f}",
            PASS if p99_ratio <= args.max_p99_growth else FAIL,
            f"first {first.latency.p99_ms:.1f} ms, last {last.latency.p99_ms:.1f} ms",
        ),
    ]
    return rows


def print_report(soak: Soak, rows: list[Row], args: argparse.Namespace) -> None:
    print(table(rows))
    print("\nintervals")
    print(
        f"  {'#':>3}  {'req/s':>8}  {'p50 ms':>8}  {'p99 ms':>8}  {'max ms':>8}  "
        f"{'errors':>6}  {'own MB':>8}  {'files MB':>8}"
    )
    for i in soak.intervals:
        lat = i.latency
        print(
            f"  {i.index:>3}  {lat.achieved_rate:>8,.0f}  {lat.latency_ms.get('p50', math.nan):>8.1f}"
            f"  {lat.p99_ms:>8.1f}  {lat.latency_ms.get('max', math.nan):>8.1f}  "
            f"{lat.error_count:>6}  {i.memory.anon / 2**20 if i.memory else math.nan:>8.1f}  "
            f"{i.memory.file / 2**20 if i.memory else math.nan:>8.1f}"
            + ("" if lat.generator_kept_up else f"  generator: {'; '.join(lat.generator_problems)}")
        )
    if soak.cpu_busy_before is not None:
        print(f"\nmachine CPU in use before the run: {soak.cpu_busy_before:.0%}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> int:
        wrk_binary()
        return run(args)

    return run_main(work, "the server was")


if __name__ == "__main__":
    sys.exit(main())
