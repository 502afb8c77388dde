"""`CallbackReceiver`: the SP-MIS side of the standard's asynchronous flows, as an ASGI app.

It serves the endpoints a programme implements (DIGEST §1.1):

    POST /registry/on-search        results of an asynchronous search
    POST /registry/txn/on-status    results of an asynchronous txn/status
    POST /registry/on-subscribe     the subscription codes of a subscribe
    POST /registry/on-unsubscribe   the outcome of an unsubscribe
    POST /registry/notify           events of a subscription
    GET  /.well-known/jwks.json     the client's public keys (for the registry to verify and
                                    encrypt to; what a partner file's `jwks_url` can point at)
    POST /oauth2/client/token       only with `auth=`: tokens for the registry (below)

Each callback goes through the same steps as a sync reply (`core.open_envelope`): the registry
is found by `header.sender_id` (or by the outstanding request with that `transaction_id`), its
signature verified with its JWKS, the message decrypted; a message id seen before is answered
with the same ACK and not handed over twice. Then the result completes the `Pending` of the
request it answers (matched by `transaction_id`), or goes to the application's callback
(`on_search=`, `on_status=`, `on_subscribe=`, `on_unsubscribe=`, `on_notify=`; plain or async
functions). The answer is the standard's ack: 200 ACK, or an ERR ack with the `err.*` code —
`err.request.bad` (not an envelope, wrong action), `err.sender_id.invalid` (a registry it does
not trust), `err.signature.missing` / `err.signature.invalid`, `err.encryption.invalid`,
`err.request.not_found` (nobody awaits or handles it), `err.request.unauthorized` (token), and
503 `err.service.unavailable` when the application's callback failed (so that the registry
retries). `message_ts` is not checked for freshness: registries retry callbacks for days.

**Tokens.** dcihub calls a partner back with a bearer token from the partner's token endpoint
when the partner file gives `token_url` (see `server/sender.py`). Without `auth=`, the receiver
accepts any well-formed callback whatever its `Authorization` header: trust rests on the
registry's signature, which is always verified. With `auth=ReceiverAuth(client_id,
client_secret)` it serves `/oauth2/client/token` (client_credentials) issuing short-lived tokens
signed with the client's signing key, and refuses callbacks without a valid one (401).

Mount `receiver.app` in a Starlette/FastAPI app (`app.mount("/dci", receiver.app)`, and give
the clients `callback_url` = that public base URL), or run it alone: `receiver.serve(host,
port)` in a thread, or `await receiver.start(host, port)` on the running event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import inspect
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dcihub.security.errors import SecurityError
from dcihub.security.partners import JwksResolver
from dcihub.security.signatures import inspect_signature
from dcihub.security.tokens import TokenIssuer, bearer_token
from dcihub.standard.codes import Action, ErrorCode
from dcihub.standard.envelope import ack, err_ack

from .envelopes import check_rejected, new_id, open_envelope
from .errors import DCIClientError, DecryptionError, SignatureVerificationError
from .keys import OwnKeys, registry_keys
from .pending import Waiter, Waiters
from .results import (
    BatchResult,
    Notification,
    SubscribeResult,
    TxnStatusResult,
    UnsubscribeResult,
    as_str,
    read_notification,
    read_search_response,
    read_subscribe_response,
    read_txn_status,
    read_unsubscribe_response,
)
from .settings import ClientSettings

__all__ = ["CallbackReceiver", "ReceiverAuth", "RunningReceiver", "CALLBACKS"]

log = logging.getLogger("dcihub.client.receiver")

# receiver path (after /registry/) -> the header action it takes
CALLBACKS: dict[str, str] = {
    "on-search": Action.ON_SEARCH.value,
    "txn/on-status": Action.TXN_ON_STATUS.value,
    "on-subscribe": Action.ON_SUBSCRIBE.value,
    "on-unsubscribe": Action.ON_UNSUBSCRIBE.value,
    "notify": Action.NOTIFY.value,
}
JSON = "application/json"

Handler = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class ReceiverAuth:
    """Client credentials the registry uses at the receiver's token endpoint."""

    client_id: str
    client_secret: str
    token_ttl: int = 300


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class CallbackReceiver:
    """Receives, verifies and dispatches a registry's callbacks (see the module doc)."""

    def __init__(
        self,
        *,
        keys: OwnKeys | Mapping[str, Any] | None = None,
        registries: Mapping[str, JwksResolver] | None = None,
        on_search: Handler | None = None,
        on_status: Handler | None = None,
        on_subscribe: Handler | None = None,
        on_unsubscribe: Handler | None = None,
        on_notify: Handler | None = None,
        require_signature: bool = True,
        auth: ReceiverAuth | None = None,
        public_url: str | None = None,
        remember: int = 10_000,
    ) -> None:
        self.keys = OwnKeys(None if isinstance(keys, OwnKeys) else keys)
        if isinstance(keys, OwnKeys):
            self.keys.add(keys)
        self._registries: dict[str, JwksResolver] = dict(registries or {})
        self._resolvers: dict[tuple[str | None, bytes], JwksResolver] = {}
        self.handlers: dict[str, Handler | None] = {
            "on-search": on_search,
            "txn/on-status": on_status,
            "on-subscribe": on_subscribe,
            "on-unsubscribe": on_unsubscribe,
            "notify": on_notify,
        }
        self.require_signature = require_signature
        self.auth = auth
        self._public_url = public_url.rstrip("/") if public_url else None
        self.url: str | None = self._public_url
        self.waiters = Waiters()
        self._seen: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._remember = remember
        self._seen_lock = threading.Lock()
        self._issuer: TokenIssuer | None = None
        self.received = 0  # callbacks accepted (ACKed), for monitoring
        self._app: Starlette | None = None
        self._running: RunningReceiver | None = None
        self._async_server: uvicorn.Server | None = None
        self._async_task: asyncio.Task[None] | None = None

    # -- configuration -----------------------------------------------------------------------

    def trust(self, sender_id: str, resolver: JwksResolver) -> None:
        """Accept callbacks from `sender_id` (a registry id), verified with `resolver`."""
        self._registries[sender_id] = resolver

    def trust_registry(self, settings: ClientSettings) -> JwksResolver:
        """Accept callbacks from the registry of these client settings (`receiver_id`),
        verified with its JWKS (fetched by the receiver itself). Returns the resolver."""
        key = (settings.jwks_url, orjson.dumps(settings.registry_jwks, option=orjson.OPT_SORT_KEYS))
        resolver = self._resolvers.get(key)
        if resolver is None:
            resolver = registry_keys(settings, _fetch_jwks)
            self._resolvers[key] = resolver
        if settings.receiver_id:
            self._registries[settings.receiver_id] = resolver
        return resolver

    def use_keys(self, keys: OwnKeys) -> None:
        """Also decrypt with these keys (those of a client whose callbacks come here)."""
        if keys is not self.keys:
            self.keys.add(keys)

    def callback_url(self, path: str) -> str:
        """The full URL of one of the receiver's endpoints (`on-search`, `txn/on-status`...)."""
        if self.url is None:
            raise DCIClientError(
                "the callback receiver has no URL yet: serve() it, or give public_url= (the "
                "address the registry reaches it at)"
            )
        return f"{self.url}/registry/{path}"

    def expect(self, waiter: Waiter) -> None:
        self.waiters.add(waiter)

    def forget(self, transaction_id: str) -> None:
        self.waiters.pop(transaction_id)

    # -- the ASGI app --------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        if self._app is None:
            routes = [
                Route(f"/registry/{path}", self._endpoint(path), methods=["POST"])
                for path in CALLBACKS
            ]
            routes.append(Route("/.well-known/jwks.json", self._jwks, methods=["GET"]))
            if self.auth is not None:
                routes.append(Route("/oauth2/client/token", self._token, methods=["POST"]))
            self._app = Starlette(routes=routes)
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def _endpoint(self, path: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.handle(path, request)

        return endpoint

    async def handle(self, path: str, request: Request) -> Response:
        correlation_id = new_id()
        try:
            self._check_token(request)
            body = await request.body()
            status, reply = await self._receive(path, body)
        except _Refusal as refusal:
            refused = err_ack(refusal.code, refusal.message, correlation_id)
            log.warning("callback /registry/%s refused: %s %s", path, refusal.code, refusal.message)
            return Response(orjson.dumps(refused), status_code=refusal.status, media_type=JSON)
        except Exception:  # a defect of the receiver, not the caller's: logged, answered 500
            log.exception("callback /registry/%s could not be handled", path)
            failed = err_ack(
                ErrorCode.SERVICE_UNAVAILABLE,
                "the receiver could not handle the callback; send it again later",
                correlation_id,
            )
            return Response(orjson.dumps(failed), status_code=500, media_type=JSON)
        return Response(reply, status_code=status, media_type=JSON)

    async def _receive(self, path: str, body: bytes) -> tuple[int, bytes]:
        action = CALLBACKS[path]
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _Refusal(400, ErrorCode.REQUEST_BAD, f"the body is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("header"), dict):
            raise _Refusal(
                400, ErrorCode.REQUEST_BAD, "the body must be a DCI envelope with a 'header'"
            )
        header: dict[str, Any] = doc["header"]
        message = doc.get("message")
        plain_tid = message.get("transaction_id") if isinstance(message, dict) else None
        waiter = self.waiters.get(plain_tid if isinstance(plain_tid, str) else None)
        sender_id = as_str(header.get("sender_id"))
        resolver = self._resolver(sender_id, waiter)
        message_id = as_str(header.get("message_id"))
        seen_key = (sender_id or "", message_id or "")
        with self._seen_lock:
            earlier = self._seen.get(seen_key) if message_id else None
        signature = doc.get("signature")
        if isinstance(signature, str) and signature:
            try:
                info = inspect_signature(signature)
            except SecurityError as exc:
                raise _Refusal(400, ErrorCode.SIGNATURE_INVALID, exc.message) from None
            await resolver.refresh_for(info.kid)
        else:
            info = None
        try:
            opened = open_envelope(
                doc,
                expected_action=action,
                resolve=resolver.resolve,
                keys=self.keys,
                require_signature=self.require_signature,
                info=info,
            )
        except SignatureVerificationError as exc:
            raise _Refusal(400, exc.code, exc.message) from None
        except DecryptionError as exc:
            raise _Refusal(400, ErrorCode.ENCRYPTION_INVALID, exc.message) from None
        except DCIClientError as exc:
            raise _Refusal(400, ErrorCode.REQUEST_BAD, exc.message) from None
        if earlier is not None:  # a retry of a callback already handled: same answer
            return 200, earlier
        tid = as_str(opened.message.get("transaction_id"))
        if waiter is None:
            waiter = self.waiters.get(tid)
        if waiter is not None and waiter.callback == path:
            self._complete(waiter, opened)
        else:
            await self._dispatch(path, opened)
        reply = orjson.dumps(ack(new_id()))
        if message_id:
            with self._seen_lock:
                self._seen[seen_key] = reply
                while len(self._seen) > self._remember:
                    self._seen.popitem(last=False)
        self.received += 1
        return 200, reply

    def _resolver(self, sender_id: str | None, waiter: Waiter | None) -> JwksResolver:
        """The keys to verify with: those of the registry the awaited request went to (the
        callback answers it), else those of the trusted registry named `sender_id`."""
        if waiter is not None and waiter.resolver is not None:
            if sender_id:  # learn who answers for this client's registry
                self._registries.setdefault(sender_id, waiter.resolver)
            return waiter.resolver
        found = self._registries.get(sender_id) if sender_id else None
        if found is not None:
            return found
        known = ", ".join(sorted(self._registries)) or "none"
        raise _Refusal(
            400,
            ErrorCode.SENDER_ID_INVALID,
            f"callbacks from {sender_id!r} are not expected here (trusted registries: {known})",
        )

    def _complete(self, waiter: Waiter, opened: Any) -> None:
        self.waiters.pop(waiter.transaction_id)
        if waiter.future.done():
            return
        try:
            check_rejected(opened)
            waiter.future.set_result(waiter.read(opened))
        except DCIClientError as exc:
            waiter.future.set_exception(exc.with_ids(waiter.transaction_id, waiter.message_id))

    async def _dispatch(self, path: str, opened: Any) -> None:
        handler = self.handlers.get(path)
        if handler is None:
            tid = opened.message.get("transaction_id")
            raise _Refusal(
                404,
                ErrorCode.REQUEST_NOT_FOUND,
                f"no outstanding request with transaction_id {tid!r} and no {path} handler here",
            )
        try:
            value = _read_callback(path, opened)
        except DCIClientError as exc:
            raise _Refusal(400, ErrorCode.REQUEST_BAD, exc.message) from None
        try:
            if inspect.iscoroutinefunction(handler):
                await handler(value)
            else:
                result = await anyio.to_thread.run_sync(handler, value)
                if inspect.isawaitable(result):
                    await result
        except Exception:  # the application's failure: the registry should retry
            log.exception("the %s handler failed", path)
            raise _Refusal(
                503,
                ErrorCode.SERVICE_UNAVAILABLE,
                f"the receiver's {path} handler failed; send the callback again later",
            ) from None

    # -- tokens ----------------------------------------------------------------------------------

    def _token_issuer(self) -> TokenIssuer:
        if self._issuer is None:
            assert self.auth is not None
            if not self.keys.signing:
                raise DCIClientError("the receiver needs a signing key to issue tokens (keys=)")
            self._issuer = TokenIssuer(
                self.keys.signing[0],
                issuer=self.url or "dcihub-client-receiver",
                ttl_seconds=self.auth.token_ttl,
            )
        return self._issuer

    def _check_token(self, request: Request) -> None:
        if self.auth is None:
            return
        try:
            token = bearer_token(request.headers.get("authorization"))
            claims = self._token_issuer().verify(token)
        except SecurityError as exc:
            raise _Refusal(401, ErrorCode.REQUEST_UNAUTHORIZED, exc.message) from None
        if claims.client_id != self.auth.client_id:
            raise _Refusal(401, ErrorCode.REQUEST_UNAUTHORIZED, "the token is not for this client")

    async def _token(self, request: Request) -> Response:
        assert self.auth is not None
        try:
            form = dict(parse_qsl((await request.body()).decode("utf-8"), max_num_fields=20))
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(400, "invalid_request", "send an x-www-form-urlencoded form")
        client_id = str(form.get("client_id") or "")
        secret = str(form.get("client_secret") or "")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                client_id = secret = ""
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(
                400, "unsupported_grant_type", "grant_type must be client_credentials"
            )
        ok = hmac.compare_digest(client_id.encode(), self.auth.client_id.encode())
        ok = hmac.compare_digest(secret.encode(), self.auth.client_secret.encode()) and ok
        if not ok:
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
        body = self._token_issuer().issue(client_id, client_id, ["registry.callbacks"])
        return Response(orjson.dumps(body), media_type=JSON, headers={"cache-control": "no-store"})

    async def _jwks(self, request: Request) -> Response:
        return Response(orjson.dumps(self.keys.public_jwks()), media_type=JSON)

    # -- running it alone ------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> RunningReceiver:
        """Serve the receiver in a background thread (port 0: any free port). Returns a handle
        (also a context manager) whose `stop()` ends it."""
        sock = self._bind(host, port)
        server = uvicorn.Server(_config(self.app, host))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise DCIClientError(f"the callback receiver did not start on {host}:{port}")
            time.sleep(0.01)
        self._running = RunningReceiver(self, server, thread, sock)
        return self._running

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the receiver on the running event loop; returns its URL."""
        sock = self._bind(host, port)
        server = uvicorn.Server(_config(self.app, host))
        self._async_server = server
        self._async_task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._async_task.done():
                self._async_task.result()
                raise DCIClientError(f"the callback receiver did not start on {host}:{port}")
            await asyncio.sleep(0.01)
        assert self.url is not None
        return self.url

    async def stop(self) -> None:
        if self._async_server is not None and self._async_task is not None:
            self._async_server.should_exit = True
            await self._async_task
            self._async_server = self._async_task = None
        if self._running is not None:
            self._running.stop()

    def _bind(self, host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise DCIClientError(
                f"the callback receiver cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        sock.listen(128)
        sock.set_inheritable(True)
        if self._public_url is None:  # served again: the new address
            bound = sock.getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            self.url = f"http://{shown}:{bound}"
        return sock


class RunningReceiver:
    """A receiver served in a background thread."""

    def __init__(
        self,
        receiver: CallbackReceiver,
        server: uvicorn.Server,
        thread: threading.Thread,
        sock: socket.socket,
    ) -> None:
        self.receiver = receiver
        self.server = server
        self.thread = thread
        self.sock = sock

    @property
    def url(self) -> str:
        assert self.receiver.url is not None
        return self.receiver.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> RunningReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _config(app: Any, host: str) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, log_level="warning", lifespan="off", access_log=False)


def _fetch_jwks(url: str) -> Any:
    """Fetch a registry's JWKS (rare: once, then on an unknown kid): a connection of its own,
    so that the receiver does not depend on any client's HTTP pool."""
    response = httpx.get(url, timeout=10, headers={"accept": JSON})
    response.raise_for_status()
    return response.json()


def _oauth_error(status: int, error: str, description: str) -> Response:
    body = {"error": error, "error_description": description}
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def _read_callback(path: str, opened: Any) -> Any:
    """What an application callback receives for each receiver path."""
    message = opened.message
    if path == "on-search":
        result: BatchResult = read_search_response(message)
        return result
    if path == "txn/on-status":
        status: TxnStatusResult = read_txn_status(message)
        return status
    if path == "on-subscribe":
        subscribed: SubscribeResult = read_subscribe_response(message)
        return subscribed
    if path == "on-unsubscribe":
        unsubscribed: UnsubscribeResult = read_unsubscribe_response(message)
        return unsubscribed
    notification: Notification = read_notification(opened.header, message)
    return notification
