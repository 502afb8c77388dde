"""A constant-rate (open-loop) HTTP load generator, run as its own process by `open_loop.py`.

Request i is due at start + i / rate whatever happened to the requests before it: it is sent
on an idle keep-alive connection, or on a new one if all are busy (up to --max-connections;
past that it waits for one). Its latency is measured from its *due* time, not from the moment
it was written to a socket, so that a slow server cannot slow the generator down and hide its
own queueing (no coordinated omission). The generator also measures itself: how late it issued
requests (scheduler lag) and its CPU use, so the caller can tell whether it kept up.

Stand-alone on purpose (standard library, plus uvloop when installed): it is started as
`python open_loop_client.py ...` and prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import socket
import time
from collections import Counter, deque
from pathlib import Path

PLACEHOLDER = b"@@UNIQUE@@"
now = time.perf_counter


class ResponseParser:
    """Just enough HTTP/1.1 to know when one response is complete and what its status is."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.buf = bytearray()
        self.status = 0
        self.body_start = -1
        self.length: int | None = None
        self.chunked = False

    def feed(self, data: bytes) -> int | None:
        """Buffer `data`; return the status once the whole response has arrived."""
        self.buf += data
        if self.body_start < 0 and not self._parse_head():
            return None
        end = self._chunked_end() if self.chunked else self.body_start + (self.length or 0)
        if end is None or len(self.buf) < end:
            return None
        status = self.status
        self.reset()  # keep-alive: ready for the next response (requests are not pipelined)
        return status

    def _parse_head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                self.length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                self.chunked = True
        self.body_start = end + 4
        return True

    def _chunked_end(self) -> int | None:
        pos = self.body_start
        while True:
            line_end = self.buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(self.buf[pos:line_end]).split(b";")[0], 16)
            if size == 0:
                return line_end + 4  # no trailers
            pos = line_end + 2 + size + 2
            if pos > len(self.buf):
                return None


class Connection(asyncio.Protocol):
    def __init__(self, load: Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.due = 0.0
        self.measured = False
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def send(self, request: bytes, due: float, measured: bool) -> None:
        self.due, self.measured, self.busy = due, measured, True
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        status = self.parser.feed(data)
        if status is not None:
            self.busy = False
            self.load.on_response(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.on_lost(self)


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host, self.port = args.host, args.port
        self.rate = args.rate
        self.bodies = [
            line.split(PLACEHOLDER) for line in Path(args.bodies).read_bytes().splitlines() if line
        ]
        if not self.bodies:
            raise SystemExit(f"no request bodies in {args.bodies}")
        head = f"POST {args.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        for line in Path(args.headers).read_text().splitlines():
            if line.strip():
                head += line.strip() + "\r\n"
        self.head = head.encode("latin-1")
        self.tag = args.tag.encode()
        self.idle: deque[Connection] = deque()
        self.pending: deque[tuple[bytes, float, bool]] = deque()
        self.open_connections = 0
        self.connecting = 0
        self.most_connections = 0
        self.outstanding = 0
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.issued_measured = 0
        self.measure_from = 0.0
        self.last_answer = 0.0

    # -- requests ------------------------------------------------------------------------------

    def request(self, i: int) -> bytes:
        body = (self.tag + b"-%d" % i).join(self.bodies[i % len(self.bodies)])
        return self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    def issue(self, i: int, due: float, measured: bool) -> None:
        if measured:
            self.lags.append(now() - due)
            self.issued_measured += 1
        self.outstanding += 1
        request = self.request(i)
        if self.idle:
            self.idle.popleft().send(request, due, measured)
            return
        self.pending.append((request, due, measured))
        if (
            len(self.pending) > self.connecting
            and self.open_connections + self.connecting < self.args.max_connections
        ):
            self.connecting += 1
            asyncio.ensure_future(self.open())

    # -- connections ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open one more connection (the caller has counted it in `connecting`)."""
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                lambda: Connection(self), self.host, self.port
            )
        except OSError as exc:
            self.errors[f"connect: {exc.strerror or exc}"] += 1
            return
        finally:
            self.connecting -= 1
        self.open_connections += 1
        self.most_connections = max(self.most_connections, self.open_connections)
        self.ready(conn)

    def ready(self, conn: Connection) -> None:
        if self.pending:
            conn.send(*self.pending.popleft())
        else:
            self.idle.append(conn)

    def on_response(self, conn: Connection, status: int) -> None:
        self.outstanding -= 1
        if conn.measured:
            self.last_answer = now()
            self.latencies.append(self.last_answer - conn.due)
            self.statuses[status] += 1
        self.ready(conn)

    def on_lost(self, conn: Connection) -> None:
        self.open_connections -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.busy:
            self.outstanding -= 1
            if conn.measured:
                self.errors["connection closed mid-request"] += 1

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> dict:
        args = self.args
        for _ in range(args.initial_connections):
            self.connecting += 1
            await self.open()
        if not self.open_connections:
            raise SystemExit(f"cannot connect to {self.host}:{self.port}")
        gc.collect()
        gc.freeze()
        gc.disable()
        start = now() + 0.05
        measure_from = self.measure_from = start + args.warmup
        total = int((args.warmup + args.duration) * self.rate)
        cpu0, wall0 = time.process_time(), now()
        for i in range(total):
            due = start + i / self.rate
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            self.issue(i, due, due >= measure_from)
        cpu, wall = time.process_time() - cpu0, now() - wall0
        deadline = now() + args.drain_timeout
        while self.outstanding > 0 and now() < deadline:
            await asyncio.sleep(0.005)
        unanswered = self.issued_measured - len(self.latencies) - sum(self.errors.values())
        if unanswered > 0:
            self.errors[f"no answer within {args.drain_timeout:g}s of the end"] += unanswered
        return self.summary(cpu / wall)

    def summary(self, cpu_share: float) -> dict:
        ms = [x * 1000 for x in sorted(self.latencies)]
        lags = [x * 1000 for x in sorted(self.lags)]
        bad = {str(code): n for code, n in self.statuses.items() if not 200 <= code < 300}
        return {
            "target_rate": self.rate,
            "duration_s": self.args.duration,
            "planned": self.issued_measured,
            "completed": len(ms),
            # answers per second from the start of the measured part to the last answer
            "achieved_rate": len(ms)
            / max(self.args.duration, self.last_answer - self.measure_from),
            "status_errors": bad,
            "other_errors": dict(self.errors),
            "latency_ms": percentiles(ms),
            "scheduler_lag_ms": percentiles(lags),
            "generator_cpu_share": cpu_share,
            "most_connections": self.most_connections,
        }


def percentiles(sorted_values: list[float]) -> dict[str, float]:
    if not sorted_values:
        return {}

    def rank(q: float) -> float:  # nearest rank
        return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]

    return {
        "mean": sum(sorted_values) / len(sorted_values),
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "p99.9": rank(99.9),
        "max": sorted_values[-1],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--bodies", required=True, help="file: one request body per line")
    p.add_argument("--headers", required=True, help="file: one 'Name: value' per line")
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds at the rate, not measured")
    p.add_argument("--initial-connections", type=int, default=16)
    p.add_argument("--max-connections", type=int, default=512)
    p.add_argument("--drain-timeout", type=float, default=10.0)
    p.add_argument("--tag", required=True, help="makes the placeholder tokens of this run unique")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    load = Load(args)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(load.run())
    else:
        result = uvloop.run(load.run())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
