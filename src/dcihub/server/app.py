"""The ASGI application: one route per DCI endpoint of each registry served, plus the node's
well-known endpoints (`/healthz`, `/metrics`, JWKS, locations, token, console).

Layout (DESIGN.md): `/<registry>/registry/...` with the exact DCI paths after it.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..config import Settings
from ..security.partners import Partner
from ..standard.codes import ErrorCode
from ..standard.envelope import err_ack
from ..store import Store
from ..store.access import Reader
from .node import RegistryNode, endpoints_for
from .openapi import build_openapi
from .operator import OperatorAccess
from .pipeline import EndpointSpec, Guard, Pipeline, json_response, new_correlation_id
from .ratelimit import RateLimiter
from .worker import CallbackSender, Worker

log = logging.getLogger("dcihub.app")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dcihub_requests_total",
            "DCI messages answered",
            ["registry", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dcihub_request_seconds",
            "Time to answer a DCI message",
            ["registry", "endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def observe(self, endpoint: EndpointSpec, status: int, seconds: float) -> None:
        self.requests.labels(endpoint.registry, endpoint.path, str(status)).inc()
        self.latency.labels(endpoint.registry, endpoint.path).observe(seconds)


def _threadsafe(wake: Callable[[], None]) -> Callable[[], None]:
    """`wake` (an anyio event's set, loop-bound) made callable from any thread."""
    import asyncio

    loop = asyncio.get_running_loop()

    def call() -> None:
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            wake()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(wake)

    return call


def create_app(
    settings: Settings,
    store: Store | None = None,
    guard: Guard | None = None,
    sender: CallbackSender | None = None,
    extra: Callable[[FastAPI, RegistryNode], None] | None = None,
    run_worker: bool | None = None,
    client: Any = None,
    partner_for: Callable[[str | None], Partner | None] | None = None,
    background: list[Callable[[], Any]] | None = None,
) -> FastAPI:
    """Build the app. `guard` and `sender` are the security layer's pipeline steps; `extra`
    adds routes (token endpoint, JWKS, console) that need the node."""
    store = store or Store(settings.store_url)
    node = RegistryNode(settings, store)
    metrics = Metrics()
    pipeline = Pipeline(
        guard or Guard(),
        node.committer,
        settings.limits.max_body_bytes,
        metrics.observe,
        read_timeout=settings.limits.read_timeout,
        limiter=RateLimiter(settings.limits, store, node.committer),
    )
    worker = Worker(node, sender, client)
    if partner_for is not None:
        worker.partner_for = partner_for
    node.wakeup = worker.wake
    in_process = settings.delivery.in_process_worker if run_worker is None else run_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.access.run(store.prepare, settings.store_auto_upgrade)
        settle_heap()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(node.committer.run)
            tasks.start_soon(_checkpoints, store)
            if settings.security.enabled:
                tasks.start_soon(
                    _purge_replay_window,
                    node,
                    settings.security.replay_window,
                    settings.security.replay_reply_seconds,
                )
            for task in background or []:
                tasks.start_soon(task)
            if in_process:
                # a change that queued notifications (API, `dcihub demo` events, any thread of
                # this process) wakes the worker at once instead of waiting for its next poll
                store.subscriptions.wakeup = _threadsafe(worker.wake)
                tasks.start_soon(worker.run)
            yield
            store.subscriptions.wakeup = None
            tasks.cancel_scope.cancel()
        await worker.aclose()

    app = FastAPI(
        title="dcihub",
        version=__version__,
        summary="DCI-conformant registry APIs: "
        + ", ".join(profile.title for profile in node.profiles.values()),
        lifespan=lifespan,
        docs_url=None,  # served below from the package's own copy of Swagger UI (no CDN)
        redoc_url=None,
    )
    add_offline_docs(app)
    app.state.node = node
    app.state.worker = worker
    app.state.metrics = metrics
    app.state.pipeline = pipeline

    routes: dict[tuple[str, str], tuple[EndpointSpec, Any, Any]] = {}
    for name, profile in node.profiles.items():
        for spec in endpoints_for(profile):
            routes[(name, spec.path)] = (spec, profile, node.handlers[spec.kind])
    served = ", ".join(node.profiles)

    async def dci_endpoint(request: Request) -> Response:
        """Every DCI endpoint: one route, a dict lookup, then the one inbound pipeline."""
        registry = request.path_params["registry"]
        path = request.path_params["path"]
        found = routes.get((registry, path))
        if found is None:
            return _unknown_endpoint(node, registry, path, served)
        if request.method != "POST":
            return json_response(
                405,
                err_ack(
                    ErrorCode.REQUEST_BAD,
                    f"/{registry}/registry/{path} takes POST with a DCI "
                    f"envelope, not {request.method}",
                    new_correlation_id(),
                ),
            )
        spec, profile, handler = found
        return await pipeline.handle(request, spec, profile, handler)

    app.router.routes.insert(
        0,
        Route(
            "/{registry}/registry/{path:path}",
            dci_endpoint,
            methods=["POST", "GET", "PUT", "PATCH", "DELETE"],
        ),
    )
    # Built afresh each time it is read: its examples carry fresh ids and timestamps.
    app.openapi = lambda: build_openapi(app, node)  # type: ignore[method-assign]

    operator = OperatorAccess(settings)
    app.state.operator = operator

    @app.get("/healthz", tags=["Operations"], summary="Liveness: is the node and its store up?")
    async def healthz() -> Response:
        def check(reader: Reader) -> None:
            reader.conn.execute(text("SELECT 1"))

        try:
            await store.access.read(check, light=True)
        except Exception:  # the store is down: say so, do not crash
            return json_response(503, {"status": "unavailable"})
        return json_response(200, {"status": "ok"})

    @app.get("/status", tags=["Operations"], summary="Node status (operator token)")
    async def status(request: Request) -> Response:
        refused = operator.refused(request)
        if refused is not None:
            return refused

        def check(reader: Reader) -> dict[str, Any]:
            return store.outbox.counts(reader.conn)

        try:
            outbox = await store.access.read(check, light=True)
        except Exception as exc:
            return json_response(
                503, {"status": "unavailable", "store": store.dialect, "error": type(exc).__name__}
            )
        return json_response(
            200,
            {
                "status": "ok",
                "version": __version__,
                "store": store.dialect,
                "registries": list(node.profiles),
                "outbox": outbox,
            },
        )

    @app.get("/metrics", tags=["Operations"], summary="Prometheus metrics (operator token)")
    async def prometheus(request: Request) -> Response:
        refused = operator.refused(request)
        if refused is not None:
            return refused
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", tags=["Operations"])
    async def index() -> Response:
        return json_response(
            200,
            {
                "name": "dcihub",
                "version": __version__,
                "node_id": settings.node_id,
                "registries": {
                    name: {
                        "title": profile.title,
                        "url": settings.registry_url(name),
                        "id": settings.registry_id(name),
                        "endpoints": [f"/registry/{s.path}" for s in endpoints_for(profile)],
                    }
                    for name, profile in node.profiles.items()
                },
                "docs": "/docs",
            },
        )

    from .operations import add_operation_routes

    add_operation_routes(app, node)
    if extra is not None:
        extra(app, node)
    return app


def settle_heap() -> None:
    """Collect start-up garbage and freeze what survives (modules, models, tables): the
    collector's full passes then no longer walk them while serving, which otherwise stalls
    every request in flight for tens of milliseconds now and then."""
    gc.collect()
    gc.freeze()


async def _checkpoints(
    store: Store, every: float = 1.0, wal_limit: int = 64 << 20, poll: float = 0.5
) -> None:
    """SQLite: checkpoint the write-ahead log in a worker thread, off the request path.

    Frequent passive checkpoints let the next commit restart the log from its beginning, so
    the file stops growing (appending to a growing file waits on the file system's journal,
    which showed as tail latency); `wal_limit` forces one sooner under heavy writing."""
    if store.dialect != "sqlite":
        return
    wal = store.wal_path()
    last = time.monotonic()
    while True:
        await anyio.sleep(poll)
        size = wal.stat().st_size if wal is not None and wal.exists() else 0
        if time.monotonic() - last < every and size < wal_limit:
            continue
        last = time.monotonic()
        try:
            await store.access.run(store.checkpoint)
        except Exception:  # a busy database: try again at the next tick
            log.debug("checkpoint skipped", exc_info=True)


async def _purge_replay_window(
    node: RegistryNode, window: float, reply_seconds: float, every: float = 30.0
) -> None:
    """Forget (sender_id, message_id) pairs older than the replay window, and the kept copies
    of sync replies older than `reply_seconds` (through the group commit: one writer)."""
    store = node.store
    while True:
        await anyio.sleep(min(every, reply_seconds))
        try:
            await node.committer.submit(
                lambda conn: store.replay.purge(conn, window, reply_seconds)
            )
        except Exception:  # busy store: next time
            log.debug("replay purge skipped", exc_info=True)


DOCS_ASSETS = "/docs/assets"


def add_offline_docs(app: FastAPI) -> None:
    """`/docs`: Swagger UI from the copy the fastapi-offline package ships, so that it works on
    a closed network (nothing is fetched from the internet)."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from starlette.staticfiles import StaticFiles

    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> Response:
        return get_swagger_ui_oauth2_redirect_html()


def _unknown_endpoint(node: RegistryNode, registry: str, path: str, served: str) -> Response:
    if registry not in node.profiles:
        message = f"unknown registry '{registry}'; this node serves: {served}"
    else:
        paths = ", ".join(f"/registry/{s.path}" for s in endpoints_for(node.profiles[registry]))
        message = (
            f"/{registry}/registry/{path} is not an endpoint of the "
            f"{node.profiles[registry].title} here; it serves: {paths}"
        )
    return json_response(404, err_ack(ErrorCode.REQUEST_NOT_FOUND, message, new_correlation_id()))
