"""Measures over a running server, and `benchmark_dcihub`: the reusable harness (start dcihub
with given options, send the requests a generator makes, return requests/s and latencies)."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from .closed_loop import ClosedLoopSettings, Throughput, max_throughput
from .open_loop import LatencyAtRate, OpenLoopSettings, latency_at_rate
from .processes import BenchmarkError, ChildProcesses, wait_until_quiet
from .requests import RequestFiles, RequestSet, materialise, write_request_set
from .servers import DcihubOptions, prepare_population, start_dcihub


@dataclass
class Measurement:
    throughput: Throughput | None = None
    latencies: list[LatencyAtRate] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "throughput": self.throughput.as_dict() if self.throughput else None,
            "latencies": [x.as_dict() for x in self.latencies],
        }


def measure(
    url: str,
    files: RequestFiles,
    closed: ClosedLoopSettings,
    open_: OpenLoopSettings,
    rates: Sequence[float] = (),
    max_fractions: Sequence[float] = (0.5,),
) -> Measurement:
    """Max throughput (wrk), then p99 latency at each of `rates` and at each fraction of the
    measured max (open loop)."""
    result = Measurement(throughput=max_throughput(url, files, closed))
    targets = [(rate, f"{rate:.0f} req/s") for rate in rates]
    targets += [
        (result.throughput.requests_per_s * f, f"{f:.0%} of own max") for f in max_fractions
    ]
    for rate, label in targets:
        result.latencies.append(latency_at_rate(url, files, rate, open_, label))
    return result


def benchmark_dcihub(
    options: DcihubOptions,
    make_requests: Callable[[list[str]], RequestSet],
    closed: ClosedLoopSettings = ClosedLoopSettings(),
    open_: OpenLoopSettings = OpenLoopSettings(),
    rates: Sequence[float] = (),
    max_fractions: Sequence[float] = (0.5,),
    workdir: Path | None = None,
) -> Measurement:
    """Start dcihub with `options` over the demo population, build the requests with
    `make_requests(uins)`, check that one is answered with 200, and measure. Every process it
    starts is stopped before it returns."""
    with tempfile.TemporaryDirectory(prefix="dcihub-bench-") as tmp:
        work = workdir or Path(tmp)
        population = prepare_population(options, work)
        requests = make_requests(population.uins)
        files = write_request_set(requests, work, "requests")
        with ChildProcesses(work) as procs:
            server = start_dcihub(procs, options, population.store_url, work)
            check_answers(server.url, requests, count=1)
            return measure(server.url, files, closed, open_, rates, max_fractions)


# ---------------------------------------------------------------------------------------------
# Checking answers, timing single messages


def post(client: httpx.Client, url: str, requests: RequestSet, body: bytes) -> httpx.Response:
    return client.post(
        url.rstrip("/") + requests.path, content=materialise(body), headers=requests.headers
    )


def check_answers(url: str, requests: RequestSet, count: int = 3) -> bytes:
    """POST the first `count` requests; fail unless each is a 200 whose search results all
    succeeded with at least one record. Returns the first response's bytes."""
    first = b""
    with httpx.Client(timeout=30) as client:
        for body in requests.bodies[:count]:
            response = post(client, url, requests, body)
            problem = search_problem(response)
            if problem:
                raise BenchmarkError(
                    f"{url}{requests.path} did not answer the benchmark's "
                    f"request as expected: {problem}"
                )
            first = first or response.content
    return first


def search_problem(response: httpx.Response, expected_items: int | None = None) -> str | None:
    """Why `response` is not a full success of a sync search, or None."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    try:
        results = orjson.loads(response.content)["message"]["search_response"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"not a sync search response: {response.text[:500]}"
    failed = [
        r
        for r in results
        if r.get("status") != "succ" or not (r.get("data") or {}).get("reg_records")
    ]
    if failed:
        return f"{len(failed)} of {len(results)} items did not succeed, e.g. {failed[0]}"
    if expected_items is not None and len(results) != expected_items:
        return f"{len(results)} results for {expected_items} items"
    return None


@dataclass(frozen=True)
class MessageTiming:
    items: int
    seconds: list[float]  # send to full response, each run
    response_bytes: int

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "seconds": self.seconds,
            "median_s": self.median_s,
            "response_bytes": self.response_bytes,
        }


def time_message(url: str, requests: RequestSet, items: int, repeats: int = 5) -> MessageTiming:
    """Send the (one) message of `requests` `repeats` times on a warm connection, each time with
    fresh ids; time send to full response; check every answer."""
    wait_until_quiet(url)
    seconds, size = [], 0
    with httpx.Client(timeout=120) as client:
        client.get(url.rstrip("/") + "/healthz")  # open the connection outside the timing
        for _ in range(repeats):
            started = time.perf_counter()
            response = post(client, url, requests, requests.bodies[0])
            seconds.append(time.perf_counter() - started)
            problem = search_problem(response, expected_items=items)
            if problem:
                raise BenchmarkError(f"the {items}-item message failed: {problem}")
            size = len(response.content)
    return MessageTiming(items, seconds, size)
