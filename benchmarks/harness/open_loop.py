"""Latency at a constant request rate: runs `open_loop_client.py` in a process of its own (the
server under test has the other core) and reads its JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .processes import BenchmarkError, wait_until_quiet
from .requests import RequestFiles

CLIENT = Path(__file__).with_name("open_loop_client.py")

# The generator "kept up" when it issued requests on time and had CPU to spare.
MAX_SCHEDULER_LAG_P99_MS = 5.0
MAX_GENERATOR_CPU_SHARE = 0.9


@dataclass(frozen=True)
class OpenLoopSettings:
    duration: float = 10.0  # seconds measured
    warmup: float = 2.0  # seconds at the rate before the measured part
    initial_connections: int = 16
    max_connections: int = 512


@dataclass(frozen=True)
class LatencyAtRate:
    target_rate: float
    achieved_rate: float
    planned: int
    completed: int
    status_errors: dict[str, int]  # HTTP status -> count (non-2xx)
    other_errors: dict[str, int]
    latency_ms: dict[str, float]  # from each request's due time: mean, p50, p90, p99, ...
    scheduler_lag_ms: dict[str, float]  # how late the generator issued requests
    generator_cpu_share: float
    most_connections: int
    label: str = ""
    generator_problems: list[str] = field(default_factory=list)

    @property
    def generator_kept_up(self) -> bool:
        return not self.generator_problems

    @property
    def error_count(self) -> int:
        return sum(self.status_errors.values()) + sum(self.other_errors.values())

    @property
    def p99_ms(self) -> float:
        return self.latency_ms.get("p99", float("nan"))

    def as_dict(self) -> dict:
        return {**asdict(self), "generator_kept_up": self.generator_kept_up}


def latency_at_rate(
    url: str, files: RequestFiles, rate: float, settings: OpenLoopSettings, label: str = ""
) -> LatencyAtRate:
    """Send `rate` requests/s to `url` + `files.path` for warm-up + duration seconds."""
    if rate <= 0:
        raise BenchmarkError(f"cannot run at {rate} requests/s")
    wait_until_quiet(url)
    target = urlsplit(url)
    argv = [
        sys.executable,
        str(CLIENT),
        "--host",
        target.hostname or "127.0.0.1",
        "--port",
        str(target.port or 80),
        "--path",
        files.path,
        "--bodies",
        str(files.bodies),
        "--headers",
        str(files.headers),
        "--rate",
        f"{rate:.3f}",
        "--duration",
        str(settings.duration),
        "--warmup",
        str(settings.warmup),
        "--initial-connections",
        str(settings.initial_connections),
        "--max-connections",
        str(settings.max_connections),
        "--tag",
        uuid.uuid4().hex[:10],
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=settings.warmup + settings.duration + 120
    )
    if done.returncode != 0:
        raise BenchmarkError(
            f"the open-loop load generator failed (exit {done.returncode}):\n{done.stderr.strip()}"
        )
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    raw.pop("duration_s", None)
    result = LatencyAtRate(**raw, label=label)
    result.generator_problems.extend(_generator_problems(result))
    return result


def _generator_problems(result: LatencyAtRate) -> list[str]:
    problems = []
    lag = result.scheduler_lag_ms.get("p99", 0.0)
    if lag > MAX_SCHEDULER_LAG_P99_MS:
        problems.append(f"scheduler lag p99 {lag:.1f} ms > {MAX_SCHEDULER_LAG_P99_MS:g} ms")
    if result.generator_cpu_share > MAX_GENERATOR_CPU_SHARE:
        problems.append(f"generator used {result.generator_cpu_share:.0%} of a core")
    return problems
