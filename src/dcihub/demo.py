"""`dcihub demo`: build a synthetic country once into an embedded SQLite store and serve all five
registries over it, writing `DIR/demo.json` for clients (DESIGN.md, public surface)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .population.generator import Country
from .population.load import ensure_population
from .store import Store

DEMO_NODE_ID = "dcihub.demo"
DEFAULT_SEED = 20260101


@dataclass
class DemoSetup:
    settings: Settings
    store: Store
    country: Country
    built_now: bool
    data_dir: Path
    info: dict[str, Any]


def demo_settings(data_dir: Path, host: str, port: int) -> Settings:
    return Settings(
        store_url=f"sqlite:///{(data_dir / 'demo.db').resolve()}",
        node_id=DEMO_NODE_ID,
        base_url=f"http://{host}:{port}",
        security={"base_dir": str(data_dir.resolve()), "demo": True},
    )


def prepare_demo(data_dir: Path, host: str, port: int, people: int, seed: int = DEFAULT_SEED,
                 progress: Any = None) -> DemoSetup:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(data_dir, host, port)
    store = Store(settings.store_url)
    country, built_now = ensure_population(store, people, seed, progress=progress)
    info = demo_info(settings, country)
    return DemoSetup(settings, store, country, built_now, data_dir, info)


def demo_info(settings: Settings, country: Country) -> dict[str, Any]:
    base = settings.base_url.rstrip("/")
    return {
        "base_url": base,
        "registries": {name: settings.registry_url(name) for name in settings.registries},
        "registry_ids": {name: settings.registry_id(name) for name in settings.registries},
        "token_url": f"{base}/oauth2/client/token",
        "jwks_url": f"{base}/.well-known/jwks.json",
        "people": country.people,
        "seed": country.seed,
        "as_of": country.as_of.isoformat(),
        "samples": country.samples(),
    }


def write_demo_json(data_dir: Path, info: dict[str, Any]) -> Path:
    path = data_dir / "demo.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
