"""A real callback receiver on loopback: an SP-MIS stand-in that records every POST
(on-search, txn/on-status, notify ...) and answers with an ACK — or with a chosen failure, to
exercise retries, or only after `delay` seconds (a slow partner). It is also the partner's
OAuth2 token endpoint (`/oauth2/client/token`, tokens `token-1`, `token-2`, ...), and answers
401 to a callback that carries one of the `refused_tokens` (a token it no longer accepts)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from support import free_port, start_server

TOKEN_PATH = "/oauth2/client/token"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class CallbackReceiver:
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with HTTP 503 first
    status_code: int = 200
    delay: float = 0.0  # seconds before answering (after recording the request)
    refused_tokens: set[str] = field(default_factory=set)  # bearer tokens answered with 401
    refused: list[Received] = field(default_factory=list)  # the callbacks answered with 401
    issued: list[str] = field(default_factory=list)  # the tokens its token endpoint gave out
    answered: int = 0  # requests answered so far
    peak: int = 0  # most requests in progress at once
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _server: Any = None
    _thread: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/registry/on-search") -> str:
        return f"{self.base_url}{path}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}{TOKEN_PATH}"

    def start(self) -> CallbackReceiver:
        async def handle(request: Request) -> Response:
            body = await request.body()
            if request.url.path == TOKEN_PATH:
                with self._lock:
                    self.issued.append(f"token-{len(self.issued) + 1}")
                    token = {"access_token": self.issued[-1], "expires_in": 300}
                return Response(orjson.dumps(token), media_type="application/json")
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            with self._lock:
                if bearer and bearer in self.refused_tokens:
                    self.refused.append(Received(request.url.path, dict(request.headers), body))
                    return Response(
                        b'{"error": "invalid_token"}',
                        status_code=401,
                        media_type="application/json",
                    )
                if self.fail_next > 0:
                    self.fail_next -= 1
                    return Response(
                        b'{"error": "try later"}', status_code=503, media_type="application/json"
                    )
                self.received.append(Received(request.url.path, dict(request.headers), body))
                self.peak = max(self.peak, len(self.received) - self.answered)
                self._lock.notify_all()
            if self.delay:
                await anyio.sleep(self.delay)
            with self._lock:
                self.answered += 1
            ack = {
                "message": {
                    "ack_status": "ACK",
                    "timestamp": "2026-01-01T00:00:00Z",
                    "correlation_id": "receiver",
                }
            }
            return Response(
                orjson.dumps(ack), status_code=self.status_code, media_type="application/json"
            )

        app = Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])])
        self._server, self._thread = start_server(app, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def wait_for(self, count: int = 1, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} callback(s), got {len(self.received)} in {timeout}s"
                    )
                self._lock.wait(left)
            return list(self.received)
