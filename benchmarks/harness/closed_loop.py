"""Maximum throughput: wrk (closed loop, a fixed number of connections each sending its next
request as soon as the previous one is answered), driven by `cycle.lua`."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from .processes import BenchmarkError
from .requests import RequestFiles

LUA_SCRIPT = Path(__file__).with_name("cycle.lua")
MARKER = "WRK_JSON "


@dataclass(frozen=True)
class ClosedLoopSettings:
    duration: float = 10.0  # seconds measured
    warmup: float = 3.0  # seconds of load before the measured run, not counted
    connections: int = 16
    threads: int = 1
    timeout: float = 10.0  # a request taking longer counts as an error


@dataclass(frozen=True)
class Throughput:
    requests_per_s: float
    requests: int
    duration_s: float
    errors: dict[str, int]  # connect / read / write / status (HTTP >= 400) / timeout
    latency_ms: dict[str, float]  # closed-loop latency: mean, max, p50 ... p99.9

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict:
        return asdict(self)


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchmarkError(
            "wrk is not installed; install it with `apt-get install wrk` "
            "(Debian/Ubuntu) and run the benchmark again"
        )
    return path


def max_throughput(url: str, files: RequestFiles, settings: ClosedLoopSettings) -> Throughput:
    """Warm up, then measure requests/s at `url` + `files.path`."""
    if settings.warmup > 0:
        run_wrk(url, files, settings, settings.warmup)
    return run_wrk(url, files, settings, settings.duration)


def run_wrk(
    url: str, files: RequestFiles, settings: ClosedLoopSettings, seconds: float
) -> Throughput:
    tag = uuid.uuid4().hex[:10]  # unique per run: message ids never repeat across runs
    argv = [
        wrk_binary(),
        f"-t{settings.threads}",
        f"-c{settings.connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(settings.timeout))}s",
        "-s",
        str(LUA_SCRIPT),
        url.rstrip("/") + files.path,
        "--",
        str(files.bodies),
        str(files.headers),
        tag,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchmarkError(f"wrk failed (exit {done.returncode}): {done.stderr.strip()}")
    return _parse(done.stdout)


def _parse(stdout: str) -> Throughput:
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise BenchmarkError(f"wrk printed no summary; its output was:\n{stdout}")
    raw = json.loads(line[len(MARKER) :])
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    latency_ms = {"mean": lat["mean"] / 1000, "max": lat["max"] / 1000}
    latency_ms.update({f"p{q}": v / 1000 for q, v in lat["percentiles"].items()})
    return Throughput(
        requests_per_s=raw["requests"] / seconds,
        requests=raw["requests"],
        duration_s=seconds,
        errors=raw["errors"],
        latency_ms=latency_ms,
    )
