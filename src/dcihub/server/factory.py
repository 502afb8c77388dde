"""Wiring: settings + store + security layer -> the ASGI app or a standalone worker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ..config import Settings, load_settings
from ..store import Store
from .app import create_app
from .node import RegistryNode
from .worker import Worker


def build_app(settings: Settings, store: Store | None = None,
              demo_info: dict[str, Any] | None = None,
              run_worker: bool | None = None) -> tuple[FastAPI, dict[str, Any]]:
    """The app for `settings`; returns it with the demo info completed by the security layer
    (demo partner credentials) when `demo_info` is given."""
    store = store or Store(settings.store_url)
    info = dict(demo_info or {})
    app = create_app(settings, store, run_worker=run_worker)
    return app, info


def build_worker(settings: Settings) -> Worker:
    store = Store(settings.store_url)
    store.create_all()
    node = RegistryNode(settings, store)
    return Worker(node)


def app_from_env() -> FastAPI:
    """uvicorn factory for `dcihub serve --workers N` (config path in DCIHUB_CONFIG)."""
    settings = load_settings(Path(os.environ["DCIHUB_CONFIG"]))
    app, _ = build_app(settings)
    return app
