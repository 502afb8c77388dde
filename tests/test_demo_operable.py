"""The demo is operable: `dcihub demo` writes its node's configuration into its data
directory, and every operator command run next to `dcihub-demo/` works on that node with no
flags at all (a real demo process, real commands)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import free_port

DCIHUB = [sys.executable, "-m", "dcihub.cli"]


def dcihub(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DCIHUB, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    cwd = tmp_path_factory.mktemp("demo")
    port = free_port()
    process = subprocess.Popen(
        [*DCIHUB, "demo", "--port", str(port), "--people", "300"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the demo did not start: {process.stdout.read()}")  # type: ignore[union-attr]
        time.sleep(0.2)
    yield cwd, base
    process.terminate()
    process.wait(timeout=30)


def test_the_demo_writes_its_node_configuration(demo: tuple[Path, str]) -> None:
    cwd, _ = demo
    config = cwd / "dcihub-demo" / "dcihub.yaml"
    assert config.exists()
    import json

    info = json.loads((cwd / "dcihub-demo" / "demo.json").read_text())
    assert Path(info["config"]).resolve() == config.resolve()


@pytest.mark.parametrize(
    "command",
    [
        ["partners", "list"],
        ["partners", "show", "spmis.demo"],
        ["keys", "list"],
        ["keys", "jwks"],
        ["audit", "verify"],
        ["audit", "show", "--limit", "5"],
        ["store", "status"],
        ["deliveries"],
    ],
)
def test_operator_commands_work_on_the_demo_with_no_flags(
    demo: tuple[Path, str], command: list[str]
) -> None:
    cwd, _ = demo
    result = dcihub(cwd, *command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.strip()


def test_dcihub_config_points_anywhere(demo: tuple[Path, str], tmp_path: Path) -> None:
    cwd, _ = demo
    elsewhere = dcihub(
        tmp_path, "partners", "list", env={"DCIHUB_CONFIG": str(cwd / "dcihub-demo/dcihub.yaml")}
    )
    assert elsewhere.returncode == 0 and "spmis.demo" in elsewhere.stdout
    nowhere = dcihub(tmp_path, "partners", "list", env={"DCIHUB_CONFIG": ""})
    assert nowhere.returncode == 2
    assert "no configuration" in nowhere.stderr + nowhere.stdout
    assert "Traceback" not in nowhere.stderr + nowhere.stdout
    assert shutil.which  # the demo keeps running for the other tests
