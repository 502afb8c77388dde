"""Wiring: settings + store + security layer -> the ASGI app or a standalone worker."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from ..config import Settings, load_settings
from ..security.keys import KeyManager
from ..security.partners import Partner, PartnerRegistry, httpx_fetch
from ..security.tokens import TokenIssuer
from ..store import Store
from .app import create_app
from .auth_routes import add_auth_routes
from .guard import Security, SecurityGuard
from .node import RegistryNode
from .reload import Reloader
from .sender import SecureCallbackSender
from .worker import Worker

log = logging.getLogger("dcihub.factory")


def load_keys(settings: Settings) -> KeyManager:
    options = settings.security
    return KeyManager(
        options.path(options.key_dir),
        overlap=timedelta(days=options.key_overlap_days),
        signing_alg=options.signing_alg,
    ).load_or_create()


def load_partners(settings: Settings) -> PartnerRegistry:
    path = settings.security.path(settings.security.partners_file)
    if not path.exists():
        log.warning(
            "no partner registry at %s: nobody can call this node yet "
            "(add partners with `dcihub partners add`)",
            path,
        )
        return PartnerRegistry()
    return PartnerRegistry.load(path)


def build_security(settings: Settings) -> Security:
    options = settings.security
    keys = load_keys(settings)
    partners = load_partners(settings)
    issuer = TokenIssuer(
        keys.signing_key,
        options.issuer or settings.base_url,
        options.token_ttl,
        verification_key=keys.verification_key,
    )
    fetch = httpx_fetch(httpx.AsyncClient(timeout=10, follow_redirects=False, trust_env=False))
    return Security(settings, partners, keys, issuer, fetch)


def build_app(
    settings: Settings,
    store: Store | None = None,
    demo_info: dict[str, Any] | None = None,
    run_worker: bool | None = None,
) -> tuple[FastAPI, dict[str, Any]]:
    """The app for `settings` (secured unless `security.enabled` is false)."""
    store = store or Store(settings.store_url)
    info = dict(demo_info or {})
    if not settings.security.enabled:
        log.warning(
            "security is DISABLED: no tokens, signatures or audit trail — "
            "for local experiments only"
        )
        return create_app(settings, store, run_worker=run_worker), info
    security = build_security(settings)
    client = httpx.AsyncClient(
        timeout=settings.delivery.timeout, follow_redirects=False, trust_env=False
    )
    guard = SecurityGuard(security, store)
    sender = SecureCallbackSender(security, client)

    def extra(app: FastAPI, node: RegistryNode) -> None:
        add_auth_routes(app, security)
        node.shape = _shape
        node.fields = _fields
        app.state.security = security

    reloader = Reloader(security)
    app = create_app(
        settings,
        store,
        guard=guard,
        sender=sender,
        extra=extra,
        run_worker=run_worker,
        client=client,
        partner_for=lambda sender_id: security.partners.get(sender_id),
        background=[reloader.run],
    )
    app.state.samples = info.get("samples")  # examples of the OpenAPI document
    app.state.example_sender_id = info.get("sender_id")
    return app, info


def _shape(
    partner: Partner, registry: str, entity: str | None, record: dict[str, Any]
) -> dict[str, Any]:
    from ..security.minimise import minimise

    return minimise(record, partner.allowed_fields(registry))


def _fields(partner_ctx: Any, registry: str) -> tuple[list[str] | None, list[str] | None]:
    partner = getattr(partner_ctx, "partner", partner_ctx)
    return partner.allowed_fields(registry), partner.queryable_fields(registry)


def build_worker(settings: Settings) -> Worker:
    store = Store(settings.store_url)
    store.prepare(settings.store_auto_upgrade)
    node = RegistryNode(settings, store)
    if not settings.security.enabled:
        return Worker(node)
    security = build_security(settings)
    client = httpx.AsyncClient(
        timeout=settings.delivery.timeout, follow_redirects=False, trust_env=False
    )
    node.shape = _shape
    node.fields = _fields
    worker = Worker(node, SecureCallbackSender(security, client), client)
    worker.partner_for = lambda sender_id: security.partners.get(sender_id)
    reloader = Reloader(security)
    worker.background = [reloader.run]
    return worker


def app_from_env() -> FastAPI:
    """uvicorn factory for `dcihub serve --workers N` (config path in DCIHUB_CONFIG)."""
    settings = load_settings(Path(os.environ["DCIHUB_CONFIG"]))
    app, _ = build_app(settings)
    return app
