"""The speed benchmark of the dcihub registry server (`make bench`, see benchmarks/README.md).

Starts `dcihub serve` over the demo population and a ceiling server (same stack, no work), then
measures in the same run: max throughput of both (wrk), dcihub's p99 latency at constant rates
(open loop), and the time of one 1,000-lookup message. Prints a table with PASS/FAIL against the
targets and writes the numbers to benchmarks/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.closed_loop import ClosedLoopSettings, Throughput, max_throughput, wrk_binary
from harness.machine import in_workdir, run_main, say, warn_if_busy
from harness.measure import MessageTiming, check_answers, time_message
from harness.open_loop import LatencyAtRate, OpenLoopSettings, latency_at_rate
from harness.processes import ChildProcesses
from harness.report import (
    FAIL,
    PASS,
    Row,
    describe_latency,
    describe_throughput,
    environment,
    latency_row,
    ratio_row,
    table,
    throughput_row,
    write_results,
)
from harness.requests import (
    RequestFiles,
    RequestSet,
    batch_lookup,
    uin_lookups,
    write_request_set,
)
from harness.servers import (
    DcihubOptions,
    Population,
    Server,
    prepare_population,
    start_ceiling,
    start_dcihub,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REGISTRY = "crvs"
# The speed of the DCI server itself: no access tokens, signatures or audit trail (their cost is
# the subject of a security benchmark, which passes its own `security` configuration).
SERVER_CONFIG = {"security": {"enabled": False}}

# Targets
THROUGHPUT_RATIO = 0.50  # dcihub / ceiling requests/s
P99_MS = 25.0  # at half of the target load
TARGET_LOAD_SHARE = 0.25  # of the ceiling: half of the target load (0.50 of the ceiling)
OWN_MAX_SHARE = 0.50  # of dcihub's own measured max
BATCH_ITEMS = 1000
BATCH_SECONDS = 1.0
BATCH_REPEATS = 5

PHASES = ("throughput", "latency", "batch")


@dataclass
class Results:
    ceiling: Throughput | None = None
    dcihub: Throughput | None = None
    latencies: dict[str, LatencyAtRate] = field(default_factory=dict)
    batch: MessageTiming | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ceiling_throughput": self.ceiling.as_dict() if self.ceiling else None,
            "dcihub_throughput": self.dcihub.as_dict() if self.dcihub else None,
            "latency": {k: v.as_dict() for k, v in self.latencies.items()},
            "batch": self.batch.as_dict() if self.batch else None,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Speed benchmark of the dcihub registry server.")
    p.add_argument("--people", type=int, default=10_000, help="population size (default 10000)")
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="measured seconds of each load run (default 10)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds of load before each measured run (default 3)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=16,
        help="wrk connections for max throughput (default 16)",
    )
    p.add_argument(
        "--bodies",
        type=int,
        default=2000,
        help="distinct lookup requests, each of a different person (default 2000)",
    )
    p.add_argument(
        "--only",
        choices=PHASES,
        action="append",
        help="run only this part (repeatable); latency also measures throughput, "
        "since its rates are derived from it",
    )
    p.add_argument(
        "--store-url",
        help="SQLAlchemy URL of the store to build and serve "
        "(default: SQLite in the data directory); e.g. postgresql+psycopg://...",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="keep the store, configs, request files and server logs here "
        "(default: a temporary directory); a store already built is reused",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the servers running at the end (prints how to stop them)",
    )
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.people < BATCH_ITEMS:
        p.error(
            f"--people must be at least {BATCH_ITEMS} (the batch message looks up "
            f"{BATCH_ITEMS} different people)"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases = set(args.only or PHASES)
    if "latency" in phases:
        phases.add("throughput")

    def work() -> int:
        if phases & {"throughput", "latency"}:
            wrk_binary()
        return run(args, phases)

    return run_main(work, "the servers were")


def run(args: argparse.Namespace, phases: set[str]) -> int:
    busy = warn_if_busy()
    return in_workdir(
        args.data_dir,
        args.keep,
        "dcihub-bench-",
        lambda workdir: run_in(workdir, args, phases, busy),
    )


def run_in(
    workdir: Path, args: argparse.Namespace, phases: set[str], cpu_busy_before: float | None
) -> int:
    options = DcihubOptions(
        people=args.people, store_url=args.store_url, registry=REGISTRY, config=SERVER_CONFIG
    )
    population, lookups = prepare(options, workdir, args.bodies)
    with ChildProcesses(workdir, keep=args.keep) as procs:
        results, servers = measure_all(procs, options, population, lookups, workdir, args, phases)
    rows = build_rows(results, args)
    print_report(results, rows)
    payload = {
        "environment": environment(REPO) | {"cpu_busy_before": cpu_busy_before},
        "server_config": SERVER_CONFIG,
        "options": vars(args) | {"phases": sorted(phases)},
        "results": results.as_dict(),
    }
    path = write_results(args.results_dir, payload, rows)
    print(f"\nresults written to {path}")
    if args.keep:
        keep_notice(servers, workdir)
    return 1 if any(r.result == FAIL for r in rows) else 0


def prepare(options: DcihubOptions, workdir: Path, bodies: int) -> tuple[Population, RequestSet]:
    say(f"population: {options.people:,} people into {options.store_url or workdir / 'bench.db'}")
    population = prepare_population(options, workdir)
    say("  built" if population.built_now else "  already built; reused")
    lookups = uin_lookups(REGISTRY, population.uins, min(bodies, len(population.uins)))
    return population, lookups


def measure_all(
    procs: ChildProcesses,
    options: DcihubOptions,
    population: Population,
    lookups: RequestSet,
    workdir: Path,
    args: argparse.Namespace,
    phases: set[str],
) -> tuple[Results, list[Server]]:
    files = write_request_set(lookups, workdir, "lookups")
    closed = ClosedLoopSettings(args.duration, args.warmup, args.connections)
    open_ = OpenLoopSettings(args.duration, min(args.warmup, 2.0))
    results = Results()
    dcihub = start_dcihub(procs, options, population.store_url, workdir)
    say(f"dcihub serving on {dcihub.url} (pid {dcihub.pid}); config {SERVER_CONFIG}")
    real_response = check_answers(dcihub.url, lookups)
    servers = [dcihub]
    if "throughput" in phases:
        ceiling = start_ceiling(procs, real_response, workdir)
        servers.append(ceiling)
        say(
            f"ceiling serving on {ceiling.url} (pid {ceiling.pid}), answering "
            f"{len(real_response):,} bytes"
        )
        measure_throughput(results, ceiling, dcihub, files, closed)
        if "latency" in phases:
            measure_latency(results, ceiling, dcihub, files, open_)
    if "batch" in phases:
        measure_batch(results, dcihub, population.uins)
    return results, servers


def measure_throughput(
    results: Results,
    ceiling: Server,
    dcihub: Server,
    files: RequestFiles,
    closed: ClosedLoopSettings,
) -> None:
    say(
        f"ceiling max throughput: wrk -t{closed.threads} -c{closed.connections}, "
        f"{closed.warmup:g}s warm-up + {closed.duration:g}s"
    )
    results.ceiling = max_throughput(ceiling.url, files, closed)
    say(f"  {results.ceiling.requests_per_s:,.0f} req/s")
    say("dcihub max throughput, same settings")
    results.dcihub = max_throughput(dcihub.url, files, closed)
    say(f"  {results.dcihub.requests_per_s:,.0f} req/s")


def measure_latency(
    results: Results, ceiling: Server, dcihub: Server, files: RequestFiles, open_: OpenLoopSettings
) -> None:
    assert results.ceiling is not None and results.dcihub is not None
    quarter = results.ceiling.requests_per_s * TARGET_LOAD_SHARE
    half_own = results.dcihub.requests_per_s * OWN_MAX_SHARE
    runs = [
        ("dcihub@target", dcihub, quarter, f"{TARGET_LOAD_SHARE:.0%} of ceiling"),
        ("ceiling@target", ceiling, quarter, f"{TARGET_LOAD_SHARE:.0%} of ceiling"),
        ("dcihub@own", dcihub, half_own, f"{OWN_MAX_SHARE:.0%} of own max"),
    ]
    for key, server, rate, label in runs:
        say(
            f"{server.name} latency at a constant {rate:,.0f} req/s ({label}), "
            f"{open_.warmup:g}s warm-up + {open_.duration:g}s"
        )
        lat = latency_at_rate(server.url, files, rate, open_, label)
        results.latencies[key] = lat
        say(f"  p99 {lat.p99_ms:.1f} ms")


def measure_batch(results: Results, dcihub: Server, uins: list[str]) -> None:
    say(f"one message of {BATCH_ITEMS:,} idtype-value lookups, {BATCH_REPEATS} times")
    message = batch_lookup(REGISTRY, uins[:BATCH_ITEMS])
    results.batch = time_message(dcihub.url, message, BATCH_ITEMS, BATCH_REPEATS)
    say(f"  median {results.batch.median_s:.3f} s")


def keep_notice(servers: list[Server], workdir: Path) -> None:
    print("\n--keep: servers left running:")
    for server in servers:
        print(f"  {server.name:<8} {server.url}  pid {server.pid}")
    print(
        f"  stop them with `kill {' '.join(str(s.pid) for s in servers)}`; "
        f"configs, request files and logs are in {workdir}"
    )


def build_rows(results: Results, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    wrk = f"wrk -t1 -c{args.connections}, {args.duration:g}s"
    if results.ceiling and results.dcihub:
        rows.append(throughput_row("ceiling", results.ceiling, wrk))
        rows.append(throughput_row("dcihub", results.dcihub, wrk))
        rows.append(ratio_row(results.dcihub, results.ceiling, THROUGHPUT_RATIO))
    lat = results.latencies
    if "dcihub@target" in lat:
        rows.append(latency_row("dcihub", lat["dcihub@target"], P99_MS))
    if "ceiling@target" in lat:
        rows.append(latency_row("ceiling", lat["ceiling@target"], None))
    if "dcihub@own" in lat:
        rows.append(latency_row("dcihub", lat["dcihub@own"], P99_MS))
    if results.batch:
        b = results.batch
        ok = b.median_s < BATCH_SECONDS
        rows.append(
            Row(
                f"one message of {b.items:,} lookups, median of {len(b.seconds)}",
                f"{b.median_s:.3f} s",
                f"< {BATCH_SECONDS:g} s",
                PASS if ok else FAIL,
                "runs: "
                + ", ".join(f"{s:.3f}" for s in b.seconds)
                + f" s; response {b.response_bytes:,} bytes",
            )
        )
    return rows


def print_report(results: Results, rows: list[Row]) -> None:
    print("\ndcihub speed benchmark\n")
    print(table(rows))
    details = []
    if results.ceiling and results.dcihub:
        details.append(f"ceiling throughput: {describe_throughput(results.ceiling)}")
        details.append(f"dcihub throughput:  {describe_throughput(results.dcihub)}")
    for key, lat in results.latencies.items():
        details.append(f"{key}: {describe_latency(lat)}")
    if details:
        print("\ndetails")
        for line in details:
            print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
