"""The servers under test: dcihub as users run it (`dcihub serve --config FILE`) over a demo
population, and the ceiling (`ceiling_app.py`), each a child process on a free loopback port."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .processes import BenchmarkError, ChildProcesses, free_port, wait_until_ok

BENCHMARKS_DIR = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_SEED = 20260101


@dataclass
class Server:
    name: str
    url: str  # base URL, e.g. http://127.0.0.1:PORT
    pid: int


@dataclass(frozen=True)
class DcihubOptions:
    """How to start dcihub for a benchmark."""

    people: int = 10_000
    seed: int = DEFAULT_SEED
    store_url: str | None = None  # default: SQLite in the data directory
    registry: str = "crvs"  # whose UINs the request generator gets
    workers: int = 1
    config: dict[str, Any] = field(default_factory=dict)  # merged into the YAML configuration


@dataclass
class Population:
    store_url: str
    uins: list[str]  # of people in `registry`, in record order
    built_now: bool


def prepare_population(options: DcihubOptions, data_dir: Path) -> Population:
    """Build (once per store, people and seed) the demo population the server will serve."""
    from dcihub.population.load import ensure_population
    from dcihub.store import Store

    store_url = options.store_url or f"sqlite:///{(data_dir / 'bench.db').resolve()}"
    store = Store(store_url)
    try:
        _population, built_now = ensure_population(store, options.people, options.seed)
        uins = registry_uins(store, options.registry)
    finally:
        store.dispose()
    if not uins:
        raise BenchmarkError(f"the {options.registry} registry of the population has no UINs")
    return Population(store_url, uins, built_now)


def registry_uins(store: Any, registry: str, limit: int = 100_000) -> list[str]:
    """UINs of up to `limit` records of the registry's default entity, in record order (read
    from the store: the population is not regenerated)."""
    from sqlalchemy import select

    profile = store.profiles[registry]
    ids = store.schema.tables(registry, profile.default_entity).ids
    with store.read() as conn:
        rows = conn.execute(
            select(ids.c.id_value).where(ids.c.id_type == "UIN").order_by(ids.c.pk).limit(limit)
        )
        return [value for (value,) in rows]


def write_config(options: DcihubOptions, store_url: str, port: int, path: Path) -> Path:
    config: dict[str, Any] = {
        "store_url": store_url,
        "node_id": "dcihub.bench",
        "base_url": f"http://{HOST}:{port}",
        "delivery": {"in_process_worker": True},
    }
    _merge(config, options.config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def dcihub_command() -> list[str]:
    """`dcihub`, the command users run: the one installed beside this Python, else on PATH."""
    beside = Path(sys.executable).with_name("dcihub")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dcihub")
    if found:
        return [found]
    raise BenchmarkError(
        "the `dcihub` command is not installed; run `make bench` (it installs "
        "the package into .venv) or `pip install -e .`"
    )


def start_dcihub(
    procs: ChildProcesses,
    options: DcihubOptions,
    store_url: str,
    workdir: Path,
    name: str = "dcihub",
) -> Server:
    port = free_port()
    config = write_config(options, store_url, port, workdir / f"{name}.yaml")
    argv = [
        *dcihub_command(),
        "serve",
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(options.workers),
        "--log-level",
        "warning",
    ]
    proc = procs.start(name, argv)
    url = f"http://{HOST}:{port}"
    wait_until_ok(f"{url}/healthz", proc, f"`{' '.join(argv)}`", lambda: procs.log_tail(name))
    return Server(name, url, proc.pid)


def start_ceiling(
    procs: ChildProcesses, response: bytes, workdir: Path, name: str = "ceiling"
) -> Server:
    response_file = workdir / "ceiling-response.json"
    response_file.write_bytes(response)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "ceiling_app:app",
        "--app-dir",
        str(BENCHMARKS_DIR),
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    env = {**os.environ, "DCIHUB_CEILING_RESPONSE": str(response_file)}
    proc = procs.start(name, argv, env=env)
    url = f"http://{HOST}:{port}"
    wait_until_ok(f"{url}/healthz", proc, "the ceiling server", lambda: procs.log_tail(name))
    return Server(name, url, proc.pid)
