"""Child processes of a benchmark run: started in their own process group, and all of them
ended when the run ends — normally, on an error, on Ctrl-C or on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx


class BenchmarkError(Exception):
    """A problem the person running the benchmark can act on (printed without a traceback)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raise_keyboard_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class ChildProcesses:
    """A context manager that owns long-running children (servers) and kills them on exit.

    `keep=True` leaves them running (for `--keep`), so that a person can look at them."""

    def __init__(self, log_dir: Path, keep: bool = False) -> None:
        self.log_dir = log_dir
        self.keep = keep
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._previous_sigterm: object = None

    def __enter__(self) -> ChildProcesses:
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self.keep or exc_type is not None:
                self.stop_all()
        finally:
            signal.signal(signal.SIGTERM, self._previous_sigterm)  # type: ignore[arg-type]

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in a new session; its output goes to LOG_DIR/<name>.log."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.children.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> None:
        for _name, proc in reversed(self.children):
            _stop(proc)
        self.children.clear()


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the child's process group (it is the group leader), then SIGKILL if needed."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_until_ok(
    url: str,
    proc: subprocess.Popen[bytes],
    what: str,
    log_tail: Callable[[], str],
    timeout: float = 60.0,
) -> None:
    """Poll GET `url` until it answers 200; fail clearly if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchmarkError(
                f"{what} exited with code {proc.returncode} before answering "
                f"{url}{_log_hint(log_tail())}"
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise BenchmarkError(
        f"{what} did not answer 200 on {url} within {timeout:.0f}s{_log_hint(log_tail())}"
    )


def _log_hint(log: str) -> str:
    return f"; its log ends with:\n{log}" if log else ""


def wait_until_quiet(
    base_url: str, fast_ms: float = 20.0, streak: int = 3, timeout: float = 60.0
) -> None:
    """Wait until GET /healthz answers fast `streak` times in a row, so that the backlog of an
    overloading run does not spill into the next measurement."""
    deadline = time.monotonic() + timeout
    fast = 0
    with httpx.Client(timeout=timeout) as client:
        while fast < streak and time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                client.get(f"{base_url.rstrip('/')}/healthz")
            except httpx.HTTPError:
                fast = 0
                time.sleep(0.2)
                continue
            fast = fast + 1 if (time.perf_counter() - started) * 1000 < fast_ms else 0
            time.sleep(0.05)
