"""The results table (measure, value, target, PASS/FAIL) and the JSON results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .closed_loop import Throughput
from .open_loop import LatencyAtRate

PASS, FAIL, INFO, UNSURE = "PASS", "FAIL", "-", "UNSURE"


@dataclass(frozen=True)
class Row:
    measure: str
    value: str
    target: str = ""
    result: str = INFO
    note: str = ""


def verdict(ok: bool, errors: int = 0) -> str:
    return PASS if ok and errors == 0 else FAIL


def throughput_row(name: str, t: Throughput, settings: str) -> Row:
    note = f"{t.error_count} errors: {t.errors}" if t.error_count else ""
    return Row(
        f"{name} max throughput ({settings})",
        f"{t.requests_per_s:,.0f} req/s",
        result=FAIL if t.error_count else INFO,
        note=note,
    )


def ratio_row(dcihub: Throughput, ceiling: Throughput, target: float) -> Row:
    ratio = dcihub.requests_per_s / ceiling.requests_per_s
    return Row(
        "dcihub / ceiling throughput",
        f"{ratio:.2f}",
        f">= {target:.2f}",
        verdict(ratio >= target, dcihub.error_count),
    )


def latency_row(name: str, lat: LatencyAtRate, target_ms: float | None) -> Row:
    notes = []
    if lat.error_count:
        notes.append(f"{lat.error_count} errors: {lat.status_errors or ''}{lat.other_errors or ''}")
    if lat.achieved_rate < 0.95 * lat.target_rate:
        notes.append(f"the server answered only {lat.achieved_rate:,.0f} req/s")
    if lat.completed < 0.99 * lat.planned:
        notes.append(f"only {lat.completed:,} of {lat.planned:,} answered in time")
    if not lat.generator_kept_up:
        notes.append("load generator did not keep up: " + "; ".join(lat.generator_problems))
    measure = f"{name} p99 latency @ {lat.target_rate:,.0f} req/s ({lat.label})"
    if target_ms is None:
        result = UNSURE if not lat.generator_kept_up else INFO
        return Row(measure, f"{lat.p99_ms:.1f} ms", "reference", result, "; ".join(notes))
    ok = lat.p99_ms < target_ms and lat.completed >= 0.99 * lat.planned
    result = verdict(ok, lat.error_count)
    if result == PASS and not lat.generator_kept_up:
        result = UNSURE
    return Row(measure, f"{lat.p99_ms:.1f} ms", f"< {target_ms:g} ms", result, "; ".join(notes))


def table(rows: list[Row]) -> str:
    header = Row("measure", "value", "target", "result")
    widths = [
        max(len(getattr(r, f)) for r in [header, *rows])
        for f in ("measure", "value", "target", "result")
    ]

    def line(r: Row) -> str:
        cells = (
            r.measure.ljust(widths[0]),
            r.value.rjust(widths[1]),
            r.target.ljust(widths[2]),
            r.result.ljust(widths[3]),
        )
        return "  ".join(cells).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append(line(r))
        if r.note:
            out.append(f"    ^ {r.note}")
    return "\n".join(out)


def describe_latency(lat: LatencyAtRate) -> str:
    ms = lat.latency_ms
    lag = lat.scheduler_lag_ms
    return (
        f"target {lat.target_rate:,.0f} req/s, answered {lat.achieved_rate:,.0f} req/s "
        f"({lat.completed:,}/{lat.planned:,}); latency ms p50 {ms.get('p50', 0):.2f} "
        f"p90 {ms.get('p90', 0):.2f} p99 {ms.get('p99', 0):.2f} p99.9 "
        f"{ms.get('p99.9', 0):.2f} max {ms.get('max', 0):.2f}; generator: scheduler lag p99 "
        f"{lag.get('p99', 0):.2f} ms, CPU {lat.generator_cpu_share:.0%}, "
        f"{lat.most_connections} connections"
    )


def describe_throughput(t: Throughput) -> str:
    ms = t.latency_ms
    return (
        f"{t.requests:,} requests in {t.duration_s:.1f} s; closed-loop latency ms p50 "
        f"{ms.get('p50', 0):.2f} p99 {ms.get('p99', 0):.2f} max {ms.get('max', 0):.2f}; "
        f"errors {t.error_count}"
    )


# ---------------------------------------------------------------------------------------------
# JSON file


def environment(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "src")),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_results(
    directory: Path, payload: dict[str, Any], rows: list[Row], prefix: str = ""
) -> Path:
    """Write `<prefix><timestamp>.json` into `directory` (e.g. prefix "security-")."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = directory / f"{prefix}{stamp}.json"
    document = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **payload,
        "table": [asdict(r) for r in rows],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
