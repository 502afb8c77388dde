"""The client benchmark of dcihub (benchmarks/README.md, "The client benchmark").

What `dcihub.client` costs a programme: 10,000 sequential signed sync searches (`--requests`),
each one `idtype-value` UIN lookup of a different person of the CRVS, sent to one secured
`dcihub serve` process two ways, in the same run:

    bare httpx   the baseline: the same signed requests, built and signed (jws-detached,
                 ES256, with the client's own code) before the clock starts, POSTed with one
                 `httpx.Client` (keep-alive) with the access token; the answer's status is
                 checked, nothing else
    client       `RegistryClient.search(Q.id("UIN", uin))`: builds the envelope, signs it,
                 POSTs it, verifies the reply's signature against the node's JWKS, reads the
                 typed result

The two alternate request by request (one bare, one through the client, ...), after a warm-up
of each, so that whatever else the machine does touches both alike; the bare bodies of each
block of `--block` (default 1,000) requests are made before that block starts. Prints requests/s of each, the ratio
client / bare httpx (target >= 0.80) with PASS/FAIL, the client's overhead per call, and what
its own work costs in this process (build + sign, verify + read); writes
benchmarks/results/client-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness.machine import in_workdir, run_main, say, warn_if_busy
from harness.processes import BenchmarkError, ChildProcesses
from harness.report import FAIL, INFO, PASS, Row, environment, table, write_results
from harness.servers import DcihubOptions, prepare_population, start_dcihub

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REGISTRY = "crvs"
SENDER = "spmis.bench.client"
CLIENT_ID = "spmis-bench-client"
TARGET = 0.80
# Security on, with a deployment's defaults; the token lives the whole run (the server caches a
# verified token, so its lifetime does not change the cost of a request).
SERVER_CONFIG: dict[str, Any] = {"security": {"enabled": True, "token_ttl": 3600}}
WARMUP = 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Client benchmark: sequential signed sync searches through dcihub.client "
        "vs the same signed requests sent with bare httpx, against one dcihub serve process."
    )
    p.add_argument("--requests", type=int, default=10_000, help="requests each way (10000)")
    p.add_argument("--block", type=int, default=1_000, help="requests per alternating block")
    p.add_argument("--people", type=int, default=10_000, help="population size (default 10000)")
    p.add_argument("--store-url", help="SQLAlchemy URL of the store (default: SQLite)")
    p.add_argument("--data-dir", type=Path, help="keep store, keys, config and logs here")
    p.add_argument("--keep", action="store_true", help="leave the server running at the end")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.requests < 1 or args.block < 1:
        p.error("--requests and --block must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: run(args), "the server was")


def run(args: argparse.Namespace) -> int:
    busy = warn_if_busy()
    return in_workdir(
        args.data_dir,
        args.keep,
        "dcihub-bench-client-",
        lambda workdir: run_in(workdir, args, busy),
    )


# ---------------------------------------------------------------------------------------------
# Set-up


def provision(workdir: Path) -> tuple[str, dict[str, Any]]:
    """The benchmark partner in the node's partner file: may search the CRVS; ES256 signing
    key, ECDH-ES+A256KW encryption key. Returns its client secret and private keys."""
    from dcihub.security.partners import PartnerRegistry
    from dcihub.security.provision import provision_partner

    path = workdir / "partners.yaml"
    registry = PartnerRegistry.load(path) if path.exists() else PartnerRegistry()
    registry.remove(SENDER)
    made = provision_partner(
        SENDER, CLIENT_ID, name="client benchmark", scopes={REGISTRY: ["search"]}
    )
    registry.add(made.partner, client_secret=made.client_secret)
    registry.save(path)
    return made.client_secret, made.private_jwks


def client_settings(url: str, secret: str, keys: dict[str, Any]) -> Any:
    from dcihub.client import ClientSettings

    return ClientSettings(
        base_url=f"{url}/{REGISTRY}",
        registry=REGISTRY,
        sender_id=SENDER,
        receiver_id=f"{REGISTRY}.dcihub.bench",
        token_url=f"{url}/oauth2/client/token",
        client_id=CLIENT_ID,
        client_secret=secret,  # type: ignore[arg-type]
        keys=keys,
        jwks_url=f"{url}/.well-known/jwks.json",
    )


@dataclass
class Way:
    """One way of sending: its timed blocks."""

    name: str
    seconds: list[float] = field(default_factory=list)  # of each block
    calls: list[float] = field(default_factory=list)  # of each call
    requests: int = 0

    def add(self, calls: list[float]) -> None:
        self.calls.extend(calls)
        self.seconds.append(sum(calls))
        self.requests += len(calls)

    @property
    def per_s(self) -> float:
        return self.requests / sum(self.seconds)

    @property
    def median_us(self) -> float:
        return statistics.median(self.calls) * 1e6

    @property
    def us_per_call(self) -> float:
        return 1e6 / self.per_s


class Baseline:
    """Bare httpx: pre-built signed bodies, one keep-alive connection, status checked."""

    def __init__(self, client: Any, uins: list[str]) -> None:
        from dcihub.client import Q

        self.url = client.settings.url("sync/search")
        token = client._token(client.core.plan_search(Q.id("UIN", uins[0])))
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        self.http = httpx.Client(timeout=30)
        self.client = client
        self.uins = uins

    def bodies(self, start: int, count: int) -> list[bytes]:
        """Signed exactly as the client signs (its own core), before the clock starts."""
        from dcihub.client import Q

        core = self.client.core
        out = []
        for i in range(start, start + count):
            plan = core.plan_search(Q.id("UIN", self.uins[i % len(self.uins)]))
            out.append(core.seal(plan))
        return out

    def send_one(self, body: bytes) -> float:
        started = time.perf_counter()
        response = self.http.post(self.url, content=body, headers=self.headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise BenchmarkError(f"bare httpx: HTTP {response.status_code}: {response.text[:300]}")
        return elapsed


def alternate(
    baseline: Baseline, client: Any, bodies: list[bytes], queries: list[Any]
) -> tuple[list[float], list[float]]:
    """One bare request, then one through the client, and so on: both see the machine in the
    same state. Returns the seconds of each call, each way."""
    bare, through = [], []
    search, send_one, clock = client.search, baseline.send_one, time.perf_counter
    for body, query in zip(bodies, queries, strict=True):
        bare.append(send_one(body))
        started = clock()
        search(query)
        through.append(clock() - started)
    return bare, through


def check(client: Any, baseline: Baseline, uins: list[str]) -> None:
    """Three answers each way must be complete successes (the client checks its own: a
    verified signature, the transaction id, an item `succ`)."""
    import orjson

    from dcihub.client import DCIClientError, Q

    for uin in uins[:3]:
        try:
            result = client.search(Q.id("UIN", uin))
        except DCIClientError as exc:
            raise BenchmarkError(f"the client's search failed: {exc}") from None
        if result.first is None or result.first.uin != uin:
            raise BenchmarkError(f"the client's search of {uin} found {result.records}")
    for body in baseline.bodies(0, 3):
        response = baseline.http.post(baseline.url, content=body, headers=baseline.headers)
        doc = orjson.loads(response.content) if response.status_code == 200 else None
        items = (doc or {}).get("message", {}).get("search_response", [])
        if not doc or not doc.get("signature") or [i.get("status") for i in items] != ["succ"]:
            raise BenchmarkError(
                f"bare httpx: not a signed success: HTTP {response.status_code} "
                f"{response.text[:300]}"
            )


def in_situ(client: Any, uins: list[str], count: int = 500) -> dict[str, float]:
    """Median µs of the client's own steps between real exchanges (what `search` does, step
    by step): caches are colder there than in a loop."""
    from dcihub.client import Q

    core, clock = client.core, time.perf_counter
    resolve = client.registry_keys.resolve
    url = client.settings.url("sync/search")
    steps: dict[str, list[float]] = {"build + sign": [], "exchange": [], "verify + read": []}
    for uin in uins[:count]:
        t0 = clock()
        plan = core.plan_search(Q.id("UIN", uin))
        core.seal(plan)
        t1 = clock()
        response = client.http.post(
            url, content=plan.body, headers=client._headers(client._token(plan))
        )
        t2 = clock()
        core.open_reply(
            plan, core.parse_reply(plan, response.status_code, response.content), resolve
        )
        t3 = clock()
        steps["build + sign"].append(t1 - t0)
        steps["exchange"].append(t2 - t1)
        steps["verify + read"].append(t3 - t2)
    return {name: statistics.median(v) * 1e6 for name, v in steps.items()}


def own_costs(client: Any, uin: str) -> dict[str, float]:
    """µs of the client's own work per call, in this process (best of 5 rounds of 300):
    building and signing a request; verifying and reading the node's real reply."""
    from dcihub.client import Q

    core = client.core
    plan = core.plan_search(Q.id("UIN", uin))
    body = core.seal(plan)
    response = client.http.post(
        client.settings.url("sync/search"),
        content=body,
        headers=client._headers(client._token(plan)),
    )
    resolve = client.registry_keys.resolve

    def build() -> None:
        core.seal(core.plan_search(Q.id("UIN", uin)))

    def open_reply() -> None:
        raw = core.parse_reply(plan, response.status_code, response.content)
        core.open_reply(plan, raw, resolve)

    costs = {}
    for name, fn in (("build + sign", build), ("verify + read", open_reply)):
        rounds = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(300):
                fn()
            rounds.append((time.perf_counter() - started) / 300 * 1e6)
        costs[name] = min(rounds)
    return costs


# ---------------------------------------------------------------------------------------------
# The run


def run_in(workdir: Path, args: argparse.Namespace, busy: float | None) -> int:
    from dcihub.client import Q, RegistryClient

    options = DcihubOptions(
        people=args.people, store_url=args.store_url, registry=REGISTRY, config=SERVER_CONFIG
    )
    say(f"population: {options.people:,} people into {options.store_url or workdir / 'bench.db'}")
    population = prepare_population(options, workdir)
    say("  built" if population.built_now else "  already built; reused")
    secret, keys = provision(workdir)
    uins = population.uins
    ways = {"bare": Way("bare httpx (baseline)"), "client": Way("dcihub.client")}
    with ChildProcesses(workdir, keep=args.keep) as procs:
        server = start_dcihub(procs, options, population.store_url, workdir)
        say(f"dcihub serving on {server.url} (pid {server.pid}); partner {SENDER}, ES256")
        with RegistryClient(client_settings(server.url, secret, keys)) as client:
            baseline = Baseline(client, uins)
            check(client, baseline, uins)
            say("checks: 3 signed searches each way answered, replies signed, records found")
            alternate(
                baseline,
                client,
                baseline.bodies(3, WARMUP),
                [Q.id("UIN", u) for u in uins[:WARMUP]],
            )
            say(f"warm-up: {WARMUP} requests each way")
            done = 0
            offset = WARMUP + 3
            while done < args.requests:
                size = min(args.block, args.requests - done)
                bodies = baseline.bodies(offset + done, size)  # made before the clock starts
                queries = [Q.id("UIN", uins[(offset + done + i) % len(uins)]) for i in range(size)]
                bare, through = alternate(baseline, client, bodies, queries)
                ways["bare"].add(bare)
                ways["client"].add(through)
                done += size
                say(
                    f"  {done:,}/{args.requests:,}: bare {size / sum(bare):,.0f} req/s, "
                    f"client {size / sum(through):,.0f} req/s"
                )
            costs = own_costs(client, uins[0])
            situ = in_situ(client, uins[offset + done :] or uins)
            baseline.http.close()
    rows = build_rows(ways, costs)
    print(table(rows))
    blocks = [b / c for b, c in zip(ways["bare"].seconds, ways["client"].seconds, strict=True)]
    print("\ndetails")
    print(
        f"  ratio per block: {', '.join(f'{r:.2f}' for r in blocks)} "
        f"(median {statistics.median(blocks):.2f})"
    )
    bare, client = ways["bare"], ways["client"]
    print(
        f"  median call: bare {bare.median_us:,.0f} µs, client {client.median_us:,.0f} µs "
        f"(ratio of medians {bare.median_us / client.median_us:.2f})"
    )
    print(
        "  client's own work, in a loop in this process: "
        + ", ".join(f"{name} {us:.0f} µs" for name, us in costs.items())
    )
    print(
        "  the same steps between real exchanges (median of 500): "
        + ", ".join(f"{name} {us:,.0f} µs" for name, us in situ.items())
    )
    payload = {
        "benchmark": "client",
        "options": {k: str(v) for k, v in vars(args).items()},
        "environment": environment(REPO),
        "cpu_busy_before": busy,
        "ways": {
            k: {
                "requests": w.requests,
                "block_seconds": w.seconds,
                "per_s": w.per_s,
                "median_call_us": w.median_us,
            }
            for k, w in ways.items()
        },
        "own_costs_us": costs,
        "in_situ_us": situ,
    }
    path = write_results(args.results_dir, payload, rows, prefix="client-")
    say(f"results written to {path}")
    ratio = ways["client"].per_s / ways["bare"].per_s
    return 0 if ratio >= TARGET else 1


def build_rows(ways: dict[str, Way], costs: dict[str, float]) -> list[Row]:
    bare, client = ways["bare"], ways["client"]
    ratio = client.per_s / bare.per_s
    overhead = client.us_per_call - bare.us_per_call
    own = sum(costs.values())
    return [
        Row(
            f"{bare.name}, {bare.requests:,} sequential signed searches",
            f"{bare.per_s:,.0f} req/s",
            note=f"{bare.us_per_call:,.0f} µs per call",
        ),
        Row(
            f"{client.name}, {client.requests:,} sequential signed searches",
            f"{client.per_s:,.0f} req/s",
            note=f"{client.us_per_call:,.0f} µs per call",
        ),
        Row(
            "dcihub.client / bare httpx",
            f"{ratio:.2f}",
            f">= {TARGET:.2f}",
            PASS if ratio >= TARGET else FAIL,
            note=f"the client adds {overhead:,.0f} µs per call; its own work costs {own:.0f} µs "
            "in a loop (build + sign, verify + read; more between exchanges, see details)",
        ),
        Row("client overhead per call", f"{overhead:,.0f} µs", result=INFO),
    ]


if __name__ == "__main__":
    sys.exit(main())
