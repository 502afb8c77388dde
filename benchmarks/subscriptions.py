"""The subscriptions benchmark of dcihub (benchmarks/README.md, "The subscriptions benchmark").

One secured `dcihub serve` process (CRVS and IBR, the in-process delivery worker, a
deployment's defaults) over the demo population; the callback receivers in a process of their
own (`harness/receivers.py`: --receivers HTTP servers, each on its own loopback port); this
process drives and measures. Two parts:

fan-out   1,000 subscriptions (`--subscriptions`) of IBR `enrollement`, each made by its own
          subscribe message with its own callback receiver (a programme office each: one
          third with no filter, one third filtered on the programme, one third on the
          programme and the enrolment status), so one new enrolment matches all of them and
          is 1,000 separate signed notifications. The event is raised through the API (the
          SP-MIS reports the enrolment: IBR `sync/enrollment/updates`); measured from just
          before that request is sent to the arrival of the last notification (target < 5 s),
          `--rounds` times. Baseline in the same run: an event matched by one subscription
          (an enrolment status change), from the request to its one notification.
load      10,000 subscriptions (`--load-subscriptions`) of CRVS `Death`, each following one
          person by UIN (a pension programme's pensioners; 10 subscribe messages of 1,000
          items), and an import writing `--events-per-minute` (10,000) deaths a minute in
          ten transactions a second (`upsert_many`, the import path, from this process), one in ten
          of a followed person. Meanwhile an open-loop generator (another process) sends
          `--search-rate` sync searches a second (CRVS UIN lookups) and measures p99 latency
          from each request's due time. The same search load runs with no import (baseline)
          and with it, alternating, `--load-rounds` times each; the ratio of the medians of
          p99 is the rise (target <= 1.20).

Prints the figures, ratios and PASS/FAIL; writes benchmarks/results/subscriptions-<ts>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from harness.machine import in_workdir, run_main, say, warn_if_busy
from harness.open_loop import LatencyAtRate, OpenLoopSettings, latency_at_rate
from harness.processes import BenchmarkError, ChildProcesses
from harness.report import FAIL, INFO, PASS, UNSURE, Row, environment, table, write_results
from harness.requests import RequestSet, uin_lookups, write_request_set
from harness.servers import DcihubOptions, prepare_population, start_dcihub

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RECEIVERS = Path(__file__).resolve().parent / "harness" / "receivers.py"
SENDER = "spmis.bench.subs"
CLIENT_ID = "spmis-bench-subs"
FANOUT_TARGET_S = 5.0
RISE_TARGET = 1.20
PROGRAMME = "OAP"
SERVER_CONFIG: dict[str, Any] = {
    "registries": ["crvs", "ibr"],
    "security": {"enabled": True, "token_ttl": 3600},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Subscriptions benchmark: one event fanned out to 1,000 receivers; sync "
        "search p99 while an import raises 10,000 events a minute against 10,000 subscriptions."
    )
    p.add_argument("--people", type=int, default=20_000, help="population size (20000)")
    p.add_argument("--subscriptions", type=int, default=1_000, help="fan-out subscriptions")
    p.add_argument("--rounds", type=int, default=3, help="fan-out events measured (3)")
    p.add_argument("--load-subscriptions", type=int, default=10_000, help="load part (10000)")
    p.add_argument("--events-per-minute", type=int, default=10_000, help="import rate (10000)")
    p.add_argument("--search-rate", type=float, default=100.0, help="sync searches/s (100)")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per run (15)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per run (3)")
    p.add_argument("--load-rounds", type=int, default=2, help="runs each way, alternating (2)")
    p.add_argument("--only", choices=("fanout", "load"), action="append", help="one part")
    p.add_argument(
        "--concurrency", type=int, help="the node's delivery.concurrency (default: its default)"
    )
    p.add_argument("--store-url", help="SQLAlchemy URL of the store (default: SQLite)")
    p.add_argument("--data-dir", type=Path, help="keep store, keys, config and logs here")
    p.add_argument("--keep", action="store_true", help="leave the servers running at the end")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.subscriptions, args.rounds, args.load_subscriptions, args.load_rounds) < 1:
        p.error("counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: run(args), "the servers were")


def run(args: argparse.Namespace) -> int:
    busy = warn_if_busy()
    return in_workdir(
        args.data_dir, args.keep, "dcihub-bench-subs-", lambda w: run_in(w, args, busy)
    )


# ---------------------------------------------------------------------------------------------
# Set-up


def provision(workdir: Path) -> str:
    """The benchmark programme: may search and subscribe to the CRVS and the IBR and report
    enrolments; sends unsigned requests with its token (replies to them unsigned); callbacks
    to any loopback port. Returns its client secret."""
    from dcihub.security.partners import PartnerRegistry
    from dcihub.security.provision import provision_partner

    path = workdir / "partners.yaml"
    registry = PartnerRegistry.load(path) if path.exists() else PartnerRegistry()
    registry.remove(SENDER)
    made = provision_partner(
        SENDER,
        CLIENT_ID,
        name="subscriptions benchmark",
        scopes={"crvs": "*", "ibr": "*"},
        callback_prefixes=["http://127.0.0.1:*/"],
        allow_private_callbacks=True,
        allow_unsigned=True,
        sign_replies=False,
    )
    registry.add(made.partner, client_secret=made.client_secret)
    registry.save(path)
    return made.client_secret


def access_token(url: str, secret: str) -> str:
    response = httpx.post(
        f"{url}/oauth2/client/token",
        timeout=30,
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret},
    )
    if response.status_code != 200:
        raise BenchmarkError(f"token refused: HTTP {response.status_code} {response.text[:300]}")
    return str(response.json()["access_token"])


class Receivers:
    """The receivers' process: its ports and what it logged."""

    def __init__(self, procs: ChildProcesses, workdir: Path, count: int) -> None:
        self.log = workdir / "receivers.jsonl"
        self.log.write_bytes(b"")
        name = "receivers"
        proc = procs.start(
            name, [sys.executable, str(RECEIVERS), "--ports", str(count), "--log", str(self.log)]
        )
        deadline = time.monotonic() + 60
        out = workdir / f"{name}.log"
        while True:
            text = out.read_text() if out.exists() else ""
            if text.strip():
                self.ports: list[int] = json.loads(text.splitlines()[0])["ports"]
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(f"the receivers did not start: {procs.log_tail(name)}")
            time.sleep(0.1)
        self._read = 0
        self.entries: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        data = self.log.read_bytes()
        end = data.rfind(b"\n") + 1
        if end > self._read:
            for line in data[self._read : end].splitlines():
                self.entries.append(orjson.loads(line))
            self._read = end
        return self.entries

    def of(self, path: str, since: int) -> list[dict[str, Any]]:
        return [e for e in self.poll()[since:] if e["path"] == path]

    def wait(self, path: str, count: int, since: int, timeout: float) -> list[dict[str, Any]]:
        """At least `count` requests to `path` logged after index `since`."""
        what = path
        deadline = time.monotonic() + timeout
        while True:
            got = self.of(path, since)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise BenchmarkError(f"only {len(got)} of {count} {what} callbacks in {timeout}s")
            time.sleep(0.02)


def header(action: str, total: int, sender_uri: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": "1.0.0",
        "message_id": f"m-{uuid.uuid4().hex}",
        "message_ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": action,
        "sender_id": SENDER,
        "total_count": total,
        "is_msg_encrypted": False,
    }
    if sender_uri:
        out["sender_uri"] = sender_uri
    return out


def subscribe_body(callback: str, criteria: list[dict[str, Any]]) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return orjson.dumps(
        {
            "header": header("subscribe", len(criteria), callback),
            "message": {
                "transaction_id": f"t-{uuid.uuid4().hex}",
                "subscribe_request": [
                    {
                        "reference_id": f"r-{n}",
                        "timestamp": now,
                        "subscribe_criteria": {"version": "1.0.0", **c},
                        "locale": "eng",
                    }
                    for n, c in enumerate(criteria)
                ],
            },
        }
    )


def predicate(*conditions: tuple[str, Any]) -> dict[str, Any]:
    """A predicate filter: one condition, or two joined by `and`."""
    expressions = [
        {"attribute_name": name, "operator": "eq", "attribute_value": value}
        for name, value in conditions
    ]
    item: dict[str, Any] = {"seq_num": 1, "expression1": expressions[0]}
    if len(expressions) > 1:
        item.update(condition="and", expression2=expressions[1])
    return {"filter_type": "predicate", "filter": [item]}


def frequency(i: int) -> dict[str, Any]:
    """Immediate; an end time of its own (a programme office's subscription runs to its own
    date), which also makes each subscription distinct for the same partner."""
    end = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
    return {
        "start_time": "2026-01-01T00:00:00Z",
        "end_time": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "frequency": "immediate",
    }


def post_all(url: str, token: str, path: str, bodies: list[bytes], parallel: int = 8) -> None:
    """POST every body (`parallel` at a time); each must be ACKed."""
    errors: list[str] = []
    lock = threading.Lock()
    queue = list(enumerate(bodies))

    def work() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    _, body = queue.pop()
                response = http.post(
                    url + path,
                    content=body,
                    headers={
                        "authorization": f"Bearer {token}",
                        "content-type": "application/json",
                    },
                )
                ok = response.status_code in (200, 202) and b'"ACK"' in response.content
                if not ok:
                    with lock:
                        errors.append(f"HTTP {response.status_code}: {response.text[:300]}")

    threads = [threading.Thread(target=work) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchmarkError(f"{path}: {errors[0]}")


def check_subscribed(entries: list[dict[str, Any]], items: int) -> None:
    statuses = [s for e in entries for s in e.get("statuses") or []]
    refused = [s for s in statuses if s != "succ"]
    if len(statuses) < items or refused:
        reasons = [r for e in entries for r in e.get("reasons") or []]
        raise BenchmarkError(
            f"{len(statuses) - len(refused)} of {items} subscriptions accepted: {reasons[:3]}"
        )


# ---------------------------------------------------------------------------------------------
# Part 1: fan-out


def enrolment_update(uin: str, status: str = "1") -> bytes:
    beneficiary = {
        "member": {
            "member_identifier": [{"identifier_type": "UIN", "identifier_value": uin}],
            "demographic_info": {"name": {"given_name": "Bench"}, "sex": "female"},
        },
        "programme_identifier": [{"programme_identifier": PROGRAMME}],
        "enrollment_status": status,
        "enrollment_date": "2026-01-02",
    }
    h = header("notify", 1)
    h.update(status="succ", completed_count=1)
    return orjson.dumps(
        {
            "header": h,
            "message": {
                "transaction_id": f"t-eu-{uuid.uuid4().hex}",
                "enrolled_updates": {"beneficiaries": [beneficiary]},
            },
        }
    )


def report(http: httpx.Client, url: str, token: str, body: bytes) -> None:
    response = http.post(
        f"{url}/ibr/registry/sync/enrollment/updates",
        content=body,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    items = response.json().get("message", {}).get("enrolled_response", [])
    if response.status_code != 200 or [i.get("status") for i in items] != ["succ"]:
        raise BenchmarkError(f"enrollment update refused: {response.text[:300]}")


@dataclass
class Fanout:
    seconds: list[float] = field(default_factory=list)  # change -> last delivery
    first: list[float] = field(default_factory=list)  # change -> first delivery
    single: list[float] = field(default_factory=list)  # baseline: one subscription


def fanout(url: str, token: str, receivers: Receivers, args: argparse.Namespace) -> Fanout:
    n = args.subscriptions
    bodies = []
    for i in range(n):
        port = receivers.ports[i % len(receivers.ports)]
        criteria: dict[str, Any] = {"reg_event_type": "enrollement", "frequency": frequency(i)}
        if i % 3 == 1:
            criteria.update(predicate(("programme_identifier", PROGRAMME)))
        elif i % 3 == 2:
            criteria.update(
                predicate(("programme_identifier", PROGRAMME), ("enrollment_status", "1"))
            )
        bodies.append(subscribe_body(f"http://127.0.0.1:{port}/registry/on-subscribe", [criteria]))
    baseline_uin = f"5{uuid.uuid4().int % 10**9:09d}"
    with httpx.Client(timeout=60) as http:  # enrolled before anyone subscribes
        report(http, url, token, enrolment_update(baseline_uin))
    since = len(receivers.poll())
    started = time.perf_counter()
    post_all(url, token, "/ibr/registry/subscribe", bodies)
    # the baseline's one subscription: status changes of one person's enrolment
    single = subscribe_body(
        f"http://127.0.0.1:{receivers.ports[0]}/single/registry/on-subscribe",
        [
            {
                "reg_event_type": "enrollement_status_change",
                "filter_type": "idtype-value",
                "filter": {"type": "UIN", "value": baseline_uin},
            }
        ],
    )
    post_all(url, token, "/ibr/registry/subscribe", [single])
    entries = receivers.wait("/registry/on-subscribe", n, since, timeout=300)
    entries += receivers.wait("/single/registry/on-subscribe", 1, since, timeout=60)
    check_subscribed(entries, n + 1)
    say(f"  {n:,} subscriptions made in {time.perf_counter() - started:.1f}s (1 message each)")
    result = Fanout()
    with httpx.Client(timeout=60) as http:
        for r in range(args.rounds):
            uin = f"4{r}{uuid.uuid4().int % 10**8:08d}"
            since = len(receivers.poll())
            t0 = time.time()
            report(http, url, token, enrolment_update(uin))
            got = receivers.wait("/registry/notify", n, since, timeout=120)
            arrivals = sorted(e["t"] for e in got)
            if len({e["port"] for e in got}) != min(n, len(receivers.ports)):
                raise BenchmarkError("the notifications did not reach every receiver")
            result.seconds.append(arrivals[n - 1] - t0)
            result.first.append(arrivals[0] - t0)
            say(
                f"  round {r + 1}: {n:,} notifications, first after "
                f"{result.first[-1] * 1000:.0f} ms, last after {result.seconds[-1]:.2f}s"
            )
            time.sleep(1.0)  # let late duplicates (there should be none) show up
            extra = receivers.of("/registry/notify", since)
            if len(extra) != n:
                raise BenchmarkError(f"{len(extra)} notifications for {n} subscriptions")
            since = len(receivers.poll())
            t0 = time.time()
            report(http, url, token, enrolment_update(baseline_uin, "4" if r % 2 == 0 else "1"))
            (one,) = receivers.wait("/single/registry/notify", 1, since, timeout=60)
            result.single.append(one["t"] - t0)
    return result


# ---------------------------------------------------------------------------------------------
# Part 2: search p99 while an import raises events


TICK = 0.1  # the importer commits ten times a second (an importer commits in chunks)


class Importer:
    """Writes deaths at `per_minute` through the import path (`upsert_many`), one
    transaction every TICK seconds, in this process; one in ten a followed person's."""

    def __init__(
        self,
        store_url: str,
        followed: list[tuple[str, str]],
        others: list[tuple[str, str]],
        per_minute: int,
    ) -> None:
        from dcihub.store import Store

        self.store = Store(store_url)
        self.followed = followed
        self.others = others
        self.per_second = per_minute / 60.0
        self.stop = threading.Event()
        self.written = 0
        self.batches: list[float] = []  # seconds each batch took
        self.thread: threading.Thread | None = None
        self.started = self.ended = 0.0

    @property
    def per_minute(self) -> float:
        elapsed = self.ended - self.started
        return self.written / elapsed * 60 if elapsed > 0 else 0.0

    def _next(self) -> tuple[str, str]:
        pool = self.followed if self.written % 10 == 0 else self.others
        if not pool:
            raise BenchmarkError("no living people left to die: use more --people")
        return pool.pop()

    def _run(self) -> None:
        records = self.store.records
        owed = 0.0
        tick = time.monotonic()
        while not self.stop.is_set():
            owed += self.per_second * TICK
            count, owed = int(owed), owed - int(owed)
            changed = []
            with self.store.read() as conn:
                for _ in range(count):
                    key, _uin = self._next()
                    record = records.get(conn, "crvs", key)
                    if record is None:
                        continue
                    record["death_date"] = "2026-01-03"
                    changed.append(record)
                    self.written += 1
            started = time.monotonic()
            with self.store.begin() as conn:
                records.upsert_many(conn, "crvs", changed)
            self.batches.append(time.monotonic() - started)
            tick += TICK
            self.stop.wait(max(0.0, tick - time.monotonic()))

    def __enter__(self) -> Importer:
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)
        self.ended = time.monotonic()


def living_people(store_url: str) -> list[tuple[str, str]]:
    """(record key, UIN) of the living people of the CRVS, in key order."""
    from sqlalchemy import select

    from dcihub.store import Store

    store = Store(store_url)
    try:
        person = store.records.tables("crvs", "Person")
        with store.read() as conn:
            rows = conn.execute(
                select(person.main.c.record_key, person.ids.c.id_value)
                .join(person.ids, person.ids.c.pk == person.main.c.pk)
                .where(person.ids.c.id_type == "UIN", person.main.c.a_death_date.is_(None))
                .order_by(person.main.c.pk)
            ).all()
            return [(row[0], row[1]) for row in rows]
    finally:
        store.dispose()


@dataclass
class Load:
    quiet: list[LatencyAtRate] = field(default_factory=list)
    busy: list[LatencyAtRate] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    per_minute: list[float] = field(default_factory=list)
    notifications: list[int] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)


def load(
    url: str,
    token: str,
    receivers: Receivers,
    population: Any,
    args: argparse.Namespace,
    workdir: Path,
) -> Load:
    living = living_people(population.store_url)
    per_run = int(args.events_per_minute / 60 * (args.warmup + args.duration + 2))
    need = args.load_subscriptions + per_run * args.load_rounds
    if len(living) < need:
        raise BenchmarkError(
            f"{len(living):,} living people, {need:,} needed (followed + deaths): use more "
            "--people, or fewer --load-subscriptions or --events-per-minute"
        )
    # the followed people (the first N living); the others die unfollowed
    followed_all = living[: args.load_subscriptions]
    others = living[args.load_subscriptions :]
    bodies = []
    per_message = 1_000
    for start in range(0, len(followed_all), per_message):
        chunk = followed_all[start : start + per_message]
        port = receivers.ports[(start // per_message) % len(receivers.ports)]
        criteria = [
            {
                "reg_event_type": "Death",
                "filter_type": "idtype-value",
                "filter": {"type": "UIN", "value": uin},
            }
            for _key, uin in chunk
        ]
        bodies.append(
            subscribe_body(f"http://127.0.0.1:{port}/pensions/registry/on-subscribe", criteria)
        )
    since = len(receivers.poll())
    started = time.perf_counter()
    post_all(url, token, "/crvs/registry/subscribe", bodies, parallel=2)
    entries = receivers.wait("/pensions/registry/on-subscribe", len(bodies), since, timeout=600)
    check_subscribed(entries, len(followed_all))
    say(
        f"  {len(followed_all):,} subscriptions made in {time.perf_counter() - started:.1f}s "
        f"({len(bodies)} messages)"
    )
    searches: RequestSet = uin_lookups(
        "crvs", [uin for _key, uin in living[::7]], 4_000, sender_id=SENDER
    )
    searches = RequestSet(
        searches.path,
        searches.bodies,
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    files = write_request_set(searches, workdir / "requests", "subs-search")
    settings = OpenLoopSettings(duration=args.duration, warmup=args.warmup)
    result = Load()
    followed = list(reversed(followed_all))
    pool = list(reversed(others))
    for r in range(args.load_rounds):
        quiet = latency_at_rate(url, files, args.search_rate, settings, label="no events")
        result.quiet.append(quiet)
        say(f"  run {2 * r + 1}: no events: p99 {quiet.p99_ms:.2f} ms")
        since = len(receivers.poll())
        importer = Importer(population.store_url, followed, pool, args.events_per_minute)
        with importer:
            busy = latency_at_rate(url, files, args.search_rate, settings, label="events")
        importer.store.dispose()
        result.busy.append(busy)
        result.events.append(importer.written)
        result.per_minute.append(importer.per_minute)
        result.batch_ms.append(
            statistics.median(importer.batches) * 1000 if importer.batches else 0
        )
        time.sleep(3.0)
        got = receivers.of("/pensions/registry/notify", since)
        result.notifications.append(len(got))
        say(
            f"  run {2 * r + 2}: {importer.written:,} deaths imported "
            f"({importer.per_minute:,.0f}/min), "
            f"{len(got)} notifications delivered: p99 {busy.p99_ms:.2f} ms"
        )
    return result


# ---------------------------------------------------------------------------------------------
# The run


def run_in(workdir: Path, args: argparse.Namespace, busy_before: float | None) -> int:
    parts = args.only or ["fanout", "load"]
    config = dict(SERVER_CONFIG)
    if args.concurrency:
        config["delivery"] = {"concurrency": args.concurrency}
    options = DcihubOptions(
        people=args.people, store_url=args.store_url, registry="crvs", config=config
    )
    say(f"population: {options.people:,} people into {options.store_url or workdir / 'bench.db'}")
    population = prepare_population(options, workdir)
    say("  built" if population.built_now else "  already built; reused")
    secret = provision(workdir)
    rows: list[Row] = []
    payload: dict[str, Any] = {
        "benchmark": "subscriptions",
        "options": {k: str(v) for k, v in vars(args).items()},
        "environment": environment(REPO),
        "cpu_busy_before": busy_before,
    }
    with ChildProcesses(workdir, keep=args.keep) as procs:
        receivers = Receivers(procs, workdir, args.subscriptions)
        say(f"receivers: {len(receivers.ports):,} ports")
        server = start_dcihub(procs, options, population.store_url, workdir)
        say(f"dcihub serving on {server.url} (pid {server.pid})")
        token = access_token(server.url, secret)
        if "fanout" in parts:
            say(f"fan-out: {args.subscriptions:,} subscriptions, {args.rounds} events")
            fan = fanout(server.url, token, receivers, args)
            rows += fanout_rows(fan, args.subscriptions)
            payload["fanout"] = vars(fan)
        if "load" in parts:
            say(
                f"load: {args.load_subscriptions:,} subscriptions, {args.events_per_minute:,} "
                f"events a minute, {args.search_rate:g} searches/s"
            )
            measured = load(server.url, token, receivers, population, args, workdir)
            rows += load_rows(measured, args)
            payload["load"] = {
                "quiet": [q.as_dict() for q in measured.quiet],
                "busy": [b.as_dict() for b in measured.busy],
                "events": measured.events,
                "events_per_minute": measured.per_minute,
                "notifications": measured.notifications,
                "import_batch_median_ms": measured.batch_ms,
            }
    print(table(rows))
    path = write_results(args.results_dir, payload, rows, prefix="subscriptions-")
    say(f"results written to {path}")
    return 1 if any(r.result == FAIL for r in rows) else 0


def fanout_rows(fan: Fanout, n: int) -> list[Row]:
    worst = max(fan.seconds)
    median = statistics.median(fan.seconds)
    single = statistics.median(fan.single)
    return [
        Row(
            f"one event -> {n:,} receivers, change to last delivery (median of {len(fan.seconds)})",
            f"{median:.2f} s",
            f"< {FANOUT_TARGET_S:g} s",
            PASS if worst < FANOUT_TARGET_S else FAIL,
            note=f"each: {', '.join(f'{s:.2f}' for s in fan.seconds)} s; first delivery after "
            f"{statistics.median(fan.first) * 1000:.0f} ms; {n / median:,.0f} deliveries/s",
        ),
        Row(
            "baseline: one event -> 1 receiver, change to delivery (median)",
            f"{single * 1000:.0f} ms",
            note=f"fan-out / baseline {median / single:,.1f}",
        ),
    ]


def load_rows(measured: Load, args: argparse.Namespace) -> list[Row]:
    quiet = statistics.median(q.p99_ms for q in measured.quiet)
    busy = statistics.median(b.p99_ms for b in measured.busy)
    rise = busy / quiet
    errors = sum(r.error_count for r in measured.quiet + measured.busy)
    kept_up = all(r.generator_kept_up for r in measured.quiet + measured.busy)
    rate = statistics.median(measured.per_minute)
    verdict = PASS if rise <= RISE_TARGET and not errors else FAIL
    if verdict == PASS and not kept_up:
        verdict = UNSURE
    return [
        Row(
            f"sync search p99 at {args.search_rate:g}/s, no events (median of runs)",
            f"{quiet:.2f} ms",
            note=", ".join(f"{q.p99_ms:.2f}" for q in measured.quiet) + " ms",
        ),
        Row(
            f"... while importing {rate:,.0f} events/min vs "
            f"{args.load_subscriptions:,} subscriptions",
            f"{busy:.2f} ms",
            note=", ".join(f"{b.p99_ms:.2f}" for b in measured.busy)
            + f" ms; notifications delivered {measured.notifications}; import batch "
            f"{statistics.median(measured.batch_ms):.0f} ms (median)",
        ),
        Row(
            "p99 with events / without",
            f"{rise:.2f}",
            f"<= {RISE_TARGET:.2f}",
            verdict,
            note="" if kept_up else "the load generator did not keep up",
        ),
        Row("errors", str(errors), result=INFO if not errors else FAIL),
    ]


if __name__ == "__main__":
    sys.exit(main())
