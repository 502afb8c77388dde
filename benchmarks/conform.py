"""The conformance kit benchmark: a full `dcihub conform server` run (all tiers) against a
running `dcihub demo`, per registry, against the target of 60 s — and against a baseline
measured in the same run: the same number of plain signed sync searches sent one after the
other by `dcihub.client` (what the exchanges cost without the kit's judging, callbacks and
waits).

    .venv/bin/python benchmarks/conform.py                      # all six registries
    .venv/bin/python benchmarks/conform.py --registry crvs --people 20000
    make bench-conform ARGS="--registry social"
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TARGET_SECONDS = 60.0
REGISTRIES = ("social", "crvs", "dr", "fr", "ibr", "ess")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_demo(data_dir: Path, port: int, people: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [str(BIN / "dcihub"), "demo", "--port", str(port), "--people", str(people)],
        cwd=data_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                if (data_dir / "dcihub-demo" / "demo.json").exists():
                    return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit("the demo stopped before it served")
        time.sleep(0.5)
    raise SystemExit("the demo did not start within 10 minutes")


def kit_run(data_dir: Path, registry: str) -> tuple[float, dict]:
    out = data_dir / f"conform-{registry}.json"
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "dcihub"), "conform", "server", "--registry", registry, "--json", str(out)],
        cwd=data_dir,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"conform server {registry} failed: {result.stderr.strip()}")
    return elapsed, json.loads(out.read_text())


def baseline(data_dir: Path, registry: str, count: int) -> float:
    from dcihub.client import Q, RegistryClient

    demo = data_dir / "dcihub-demo" / "demo.json"
    info = json.loads(demo.read_text())
    sample = info["samples"][registry]["identifiers"][0]
    with RegistryClient.from_demo(registry, demo_json_path=demo) as client:
        client.search(Q.id(sample["type"], sample["value"]))  # token, JWKS, connection
        started = time.monotonic()
        for _ in range(count):
            client.search(Q.id(sample["type"], sample["value"]))
        return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--registry", action="append", choices=REGISTRIES)
    parser.add_argument("--people", type=int, default=10_000, help="demo population (10,000)")
    args = parser.parse_args()
    registries = args.registry or list(REGISTRIES)
    data_dir = Path(tempfile.mkdtemp(prefix="dcihub-bench-conform-"))
    port = free_port()
    print(f"building and serving the demo ({args.people} people) in {data_dir} ...", flush=True)
    demo = start_demo(data_dir, port, args.people)
    failed = False
    try:
        print(
            f"{'registry':<9}{'kit run':>10}{'exchanges':>11}{'baseline':>10}{'ratio':>8}"
            f"{'target':>9}  result"
        )
        for registry in registries:
            elapsed, report = kit_run(data_dir, registry)
            exchanges = sum(len(c["exchanges"]) for c in report["checks"])
            base = baseline(data_dir, registry, exchanges)
            ok = elapsed < TARGET_SECONDS and report["counts"]["fail"] == 0
            failed |= not ok
            print(
                f"{registry:<9}{elapsed:>9.1f}s{exchanges:>11}{base:>9.2f}s{elapsed / base:>7.1f}x"
                f"{TARGET_SECONDS:>8.0f}s  {'PASS' if ok else 'FAIL'}"
                f" ({report['counts']['pass']} passed, {report['counts']['fail']} failed, "
                f"{report['counts']['skip']} skipped; the kit says {report['seconds']:.1f} s)",
                flush=True,
            )
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=30)
    print(
        "kit run: the whole command (Python start-up, every check, the callbacks' waits); "
        "baseline: as many plain sync searches by dcihub.client, one after the other."
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
