"""What the server checks stand on: the target's connection (`Target`), the exchanges with it
(`Session`, every request and answer recorded as an `Exchange`), and a recording callback
receiver (`Receiver`) for the asynchronous flows.

The session builds its messages with `dcihub.client` (headers, signing with the tester's keys,
encryption, tokens), but sends them itself, so that a check can send exactly the bytes it
means to (an unsigned message, a forged token, a replay) and judge the raw answer.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dcihub.client.envelopes import new_id
from dcihub.client.keys import OwnKeys
from dcihub.client.settings import ClientSettings
from dcihub.security.jwe import decrypt_message, encrypt_message
from dcihub.security.keys import AsymmetricKey
from dcihub.security.partners import JwksResolver, Partner, httpx_fetch
from dcihub.security.signatures import sign
from dcihub.standard.envelope import format_ts

__all__ = ["Exchange", "Receiver", "Session", "Target", "TargetError"]

JSON = "application/json"
_SHOWN = 20_000
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")  # characters of a body kept in a report


class TargetError(Exception):
    """The target cannot be tested as configured (one line saying why)."""


@dataclass
class Target:
    """How to reach the registry under test and who the tester is there."""

    base_url: str  # where <base_url>/registry/sync/search is
    registry: str
    sender_id: str
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    bearer: str | None = None
    keys_file: Path | None = None
    keys: dict[str, Any] | None = None
    receiver_id: str | None = None
    jwks_url: str | None = None
    callback_host: str = "127.0.0.1"
    callback_port: int = 0
    callback_url: str | None = None  # the receiver's public URL, when not its own address
    known: list[tuple[str, str]] = field(default_factory=list)
    timeout: float = 10.0  # per exchange, and for each callback to arrive
    spec_dir: Path | None = None
    unsigned_allowed: bool = False  # the tester's partner may send unsigned messages (demo)
    expired_token: str | None = None
    huge_body_bytes: int = 16 * 1024 * 1024  # ROB-SIZE-001's body
    replay_wait: float | None = None  # how long to watch for a replay's second callback
    trigger: str | None = None  # a shell command making one change the subscription follows
    trigger_event: str | None = None  # the event type to follow (default: per registry)

    def client_settings(self) -> ClientSettings:
        data: dict[str, Any] = {
            "base_url": self.base_url,
            "registry": self.registry,
            "sender_id": self.sender_id,
            "receiver_id": self.receiver_id,
            "token_url": self.token_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "token": self.bearer,
            "keys_file": self.keys_file,
            "keys": self.keys,
            "jwks_url": self.jwks_url,
            "timeout": self.timeout,
            "verify_replies": False,
        }
        return ClientSettings.build({k: v for k, v in data.items() if v is not None})


@dataclass
class Exchange:
    """One HTTP exchange (or one callback received), as a report shows it."""

    label: str
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    error: str | None = None  # the transport failed
    seconds: float = 0.0

    def json(self) -> Any:
        """The answer's JSON (None when it is none)."""
        try:
            return orjson.loads(self.response_body) if self.response_body else None
        except orjson.JSONDecodeError:
            return None

    def request_json(self) -> Any:
        try:
            return orjson.loads(self.request_body) if self.request_body else None
        except orjson.JSONDecodeError:
            return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "method": self.method,
            "url": self.url,
            "request_headers": _redact(self.request_headers),
            "request_body": _shown(self.request_body),
            "status": self.status,
            "response_headers": self.response_headers,
            "response_body": _shown(self.response_body),
            "error": self.error,
        }


def _shown(body: bytes) -> str:
    text = body[:_SHOWN].decode("utf-8", "replace")
    if len(body) > _SHOWN:
        text += f"\n... ({len(body) - _SHOWN} more bytes)"
    try:  # pretty-print JSON bodies
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


def _redact(headers: Mapping[str, str]) -> dict[str, str]:
    shown = {}
    for name, value in headers.items():
        if name.lower() == "authorization" and len(value) > 24:
            value = value[:20] + "…(redacted)"
        shown[name] = value
    return shown


@dataclass
class Callback:
    path: str  # after /registry/, e.g. "on-search"
    headers: dict[str, str]
    body: bytes
    received: float

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def transaction_id(self) -> str | None:
        doc = self.json()
        message = doc.get("message") if isinstance(doc, dict) else None
        if isinstance(message, dict):
            value = message.get("transaction_id")
            return value if isinstance(value, str) else None
        return None


class Receiver:
    """Serves `POST <url>/registry/<callback path>`, records every callback and acknowledges
    it (the kit judges them afterwards: a receiver refusing a bad callback would hide it)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, public_url: str | None = None):
        self.host, self.port = host, port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.callbacks: list[Callback] = []
        self._cond = threading.Condition()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.url = ""

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/registry/{path:path}", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        path = request.path_params["path"]
        with self._cond:
            self.callbacks.append(Callback(path, dict(request.headers), body, time.monotonic()))
            self._cond.notify_all()
        ack = {
            "message": {
                "ack_status": "ACK",
                "timestamp": format_ts(),
                "correlation_id": new_id(),
            }
        }
        return Response(orjson.dumps(ack), status_code=202, media_type=JSON)

    def callback_url(self, path: str) -> str:
        return f"{self.public_url or self.url}/registry/{path}"

    def wait(
        self, match: Callable[[Callback], bool], timeout: float, count: int = 1
    ) -> list[Callback]:
        """The callbacks matching `match`, once `count` arrived or `timeout` passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [c for c in self.callbacks if match(c)]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._cond.wait(remaining)

    def for_transaction(self, path: str, transaction_id: str) -> Callable[[Callback], bool]:
        return lambda c: c.path == path and c.transaction_id() == transaction_id

    def start(self) -> Receiver:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise TargetError(
                f"the callback receiver cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        sock.listen(128)
        bound = sock.getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{bound}"
        config = uvicorn.Config(
            self.app(), host=self.host, log_level="error", lifespan="off", access_log=False
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise TargetError(f"the callback receiver did not start on {self.url}")
            time.sleep(0.01)
        self._server, self._thread, self._sock = server, thread, sock
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None


class Session:
    """The tester at the registry: its settings, keys, token, the registry's keys, and every
    exchange made (`exchanges`, in order)."""

    def __init__(self, target: Target, http: httpx.Client | None = None) -> None:
        self.target = target
        try:
            self.settings = target.client_settings()
            self.keys = OwnKeys(self.settings.private_jwks())
        except Exception as exc:  # noqa: BLE001 - ConfigurationError / ValidationError
            raise TargetError(f"the tester's settings: {_one_line(exc)}") from None
        self.http = http or httpx.Client(timeout=target.timeout)
        self._token: str | None = target.bearer
        self.registry_jwks: dict[str, Any] | None = None
        self.jwks_url: str | None = None
        self.jwks_error: str | None = None
        self._resolver: JwksResolver | None = None

    def close(self) -> None:
        self.http.close()

    # -- keys ------------------------------------------------------------------------------------

    def signing_key(self) -> AsymmetricKey | None:
        try:
            return self.keys.signing_key("jws-detached")
        except Exception:  # noqa: BLE001 - no signing key
            return None

    def load_registry_keys(self) -> None:
        """Fetch the registry's JWKS: `jwks_url`, else `<base_url>/.well-known/jwks.json`,
        else the same at the server's root."""
        candidates = [self.target.jwks_url] if self.target.jwks_url else []
        if not candidates:
            base = self.target.base_url.rstrip("/")
            parts = urlsplit(base)
            candidates = [f"{base}/.well-known/jwks.json"]
            candidates.append(f"{parts.scheme}://{parts.netloc}/.well-known/jwks.json")
        errors = []
        for url in candidates:
            try:
                response = self.http.get(url, headers={"accept": JSON})
            except httpx.HTTPError as exc:
                errors.append(f"{url}: {_one_line(exc)}")
                continue
            doc = _json_or_none(response.content)
            if response.status_code == 200 and isinstance(doc, dict) and "keys" in doc:
                self.registry_jwks, self.jwks_url = doc, url
                public = {  # a leaked private member is judged by SEC-JWKS-001, not used
                    "keys": [
                        {k: v for k, v in jwk.items() if k not in _PRIVATE_MEMBERS}
                        for jwk in doc["keys"]
                        if isinstance(jwk, dict)
                    ]
                }
                try:
                    partner = Partner(sender_id="registry", jwks=public)
                except Exception as exc:  # noqa: BLE001 - PartnerConfigError names it
                    errors.append(f"{url}: {_one_line(exc)}")
                    continue
                self._resolver = JwksResolver(partner, httpx_fetch(self.http))
                return
            errors.append(f"{url}: HTTP {response.status_code}")
        self.jwks_error = "; ".join(errors) or "no JWKS URL"

    @property
    def resolver(self) -> JwksResolver | None:
        return self._resolver

    def registry_encryption_key(self) -> AsymmetricKey | None:
        return self._resolver.encryption_key() if self._resolver is not None else None

    def decrypt(self, message: Any) -> Any:
        if not self.keys.decryption:
            raise ValueError("the tester has no decryption key (give --key)")
        return decrypt_message(message, self.keys.decryption_key)

    # -- tokens ----------------------------------------------------------------------------------

    def token(self) -> str | None:
        if self._token is None and self.target.token_url:
            self._token = self.fetch_token(self.target.client_id, self.target.client_secret)
        return self._token

    def fetch_token(self, client_id: str | None, client_secret: str | None) -> str:
        exchange = self.token_exchange(client_id, client_secret, "token")
        if exchange.error is not None:
            raise TargetError(
                f"cannot reach the token endpoint {self.target.token_url}: {exchange.error}"
            )
        doc = exchange.json()
        if exchange.status != 200 or not isinstance(doc, dict) or "access_token" not in doc:
            raise TargetError(
                f"the token endpoint {self.target.token_url} gave no token "
                f"(HTTP {exchange.status}): {exchange.response_body[:200]!r}"
            )
        return str(doc["access_token"])

    def token_exchange(
        self, client_id: str | None, client_secret: str | None, label: str
    ) -> Exchange:
        assert self.target.token_url
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id or "",
            "client_secret": client_secret or "",
        }
        body = str(httpx.QueryParams(form))
        headers = {"content-type": "application/x-www-form-urlencoded", "accept": JSON}
        return self.send_bytes(label, self.target.token_url, body.encode(), headers)

    # -- messages --------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.target.base_url.rstrip('/')}/registry/{path}"

    def header(
        self, action: str, total_count: int, sender_uri: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        header: dict[str, Any] = {
            "version": "1.0.0",
            "message_id": new_id(),
            "message_ts": format_ts(),
            "action": action,
            "sender_id": self.target.sender_id,
            "total_count": total_count,
            "is_msg_encrypted": False,
        }
        if sender_uri:
            header["sender_uri"] = sender_uri
        if self.target.receiver_id:
            header["receiver_id"] = self.target.receiver_id
        header.update(extra)
        return header

    def envelope(
        self,
        header: dict[str, Any],
        message: Any,
        *,
        signed: bool = True,
        encrypt_to: AsymmetricKey | None = None,
    ) -> dict[str, Any]:
        sent = message
        if encrypt_to is not None:
            sent = encrypt_message(message, encrypt_to)
            header = {**header, "is_msg_encrypted": True}
        envelope: dict[str, Any] = {"header": header, "message": sent}
        key = self.signing_key() if signed else None
        if key is not None:
            envelope = {"signature": sign(header, sent, key), **envelope}
        return envelope

    def headers(self, token: str | None | bool = True) -> dict[str, str]:
        """HTTP headers; `token=True`: the session's token, a string: that one, None: none."""
        headers = {"content-type": JSON, "accept": JSON}
        chosen = self.token() if token is True else token
        if isinstance(chosen, str) and chosen:
            headers["authorization"] = f"Bearer {chosen}"
        return headers

    def post(
        self,
        label: str,
        path: str,
        envelope: Any,
        *,
        token: str | None | bool = True,
    ) -> Exchange:
        return self.send_bytes(label, self.url(path), orjson.dumps(envelope), self.headers(token))

    def send_bytes(self, label: str, url: str, body: bytes, headers: Mapping[str, str]) -> Exchange:
        exchange = Exchange(label, "POST", url, dict(headers), body)
        started = time.monotonic()
        try:
            response = self.http.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            exchange.error = f"{type(exc).__name__}: {_one_line(exc)}"
        else:
            exchange.status = response.status_code
            exchange.response_headers = dict(response.headers)
            exchange.response_body = response.content
        exchange.seconds = time.monotonic() - started
        return exchange

    def get(self, label: str, url: str) -> Exchange:
        exchange = Exchange(label, "GET", url, {"accept": JSON}, b"")
        try:
            response = self.http.get(url, headers={"accept": JSON})
        except httpx.HTTPError as exc:
            exchange.error = f"{type(exc).__name__}: {_one_line(exc)}"
        else:
            exchange.status = response.status_code
            exchange.response_headers = dict(response.headers)
            exchange.response_body = response.content
        return exchange


def _json_or_none(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
