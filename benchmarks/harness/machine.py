"""The machine a benchmark runs on: how busy it already is, and how much CPU a server process
group used (Linux `/proc`; elsewhere these return None and the benchmark goes on without them).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BUSY_WARNING_SHARE = 0.2


def say(message: str) -> None:
    """Progress on stderr, time-stamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_busy_share(seconds: float = 1.0) -> float | None:
    """Share of all cores busy over `seconds` (Linux /proc/stat), or None elsewhere."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def warn_if_busy() -> float | None:
    """Other work on the machine takes cores from the server or the load generator."""
    busy = cpu_busy_share()
    if busy is not None and busy > BUSY_WARNING_SHARE:
        say(
            f"warning: the machine is busy ({busy:.0%} of its CPU in use before the benchmark "
            f"started); the numbers will be low and noisy — run on a quiet machine"
        )
    return busy


def process_group_cpu_seconds(pgid: int) -> float | None:
    """User + system CPU seconds used so far by the live processes of process group `pgid`
    (a server started by `ChildProcesses` leads its own group), or None without /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    found = False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        # fields[0] is the state (field 3 of stat): pgrp is field 5, utime 14, stime 15
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
            found = True
    return total / ticks if found else None


def in_workdir(data_dir: Path | None, keep: bool, prefix: str, body: Callable[[Path], int]) -> int:
    """Run `body(workdir)` in `data_dir` (created, kept) or in a temporary directory that is
    removed afterwards unless `keep`."""
    if data_dir:
        data_dir.mkdir(parents=True, exist_ok=True)
        return body(data_dir.resolve())
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return body(workdir)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run_main(work: Callable[[], int], stopped: str) -> int:
    """Exit status of a benchmark's main: 2 on a BenchmarkError, 130 when interrupted
    (`stopped` says which servers were stopped)."""
    from .processes import BenchmarkError

    try:
        return work()
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {stopped} stopped", file=sys.stderr)
        return 130
