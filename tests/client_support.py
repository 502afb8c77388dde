"""Support for the client tests: settings for a live dcihub node, and a deliberately
legacy-shaped registry.

`LegacyRegistry` is a small real Starlette app on loopback that answers the way older or other
implementations do (DIGEST §6): `total_count` and `expires_in` as strings, `reg_records` as one
object, `reg_event_type` instead of `reg_record_type`, `txn_type: on-search`, on-subscribe with
the request header, and its replies and callbacks signed with a chosen profile (compact JWS by
default, or the Ed25519 HTTP-signature string, or detached JWS). It implements subscribe,
unsubscribe and notify in those older shapes. It verifies every request's signature
with the client's public keys (and decrypts encrypted ones), so the tests also prove what the
client sends. `mode` switches a behaviour for the next requests: an ERR ack, a rejected item or
header, a reply with a bad signature, a slow reply, a 401 for the current token, a bare reply.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dcihub.client import ClientSettings
from dcihub.security.jwe import decrypt_message, encrypt_message
from dcihub.security.keys import generate_key, load_jwk
from dcihub.security.signatures import sign, verify
from support import LiveServer, TestPartner, free_port, start_server

JSON = "application/json"


def settings_for(
    server: LiveServer, partner: TestPartner, registry: str = "crvs", **overrides: Any
) -> ClientSettings:
    """Client settings for `registry` of a live test node, as `partner`."""
    data: dict[str, Any] = {
        "base_url": f"{server.base_url}/{registry}",
        "registry": registry,
        "sender_id": partner.sender_id,
        "receiver_id": server.settings.registry_id(registry),
        "token_url": f"{server.base_url}/oauth2/client/token",
        "client_id": partner.client_id,
        "client_secret": partner.client_secret,
        "keys": partner.private_jwks,
        "jwks_url": f"{server.base_url}/.well-known/jwks.json",
    }
    data.update(overrides)
    return ClientSettings.build(data)


def client_keys(signing_alg: str = "ES256") -> dict[str, Any]:
    """A fresh private JWK set for a client: a signing key and an encryption key."""
    keys = [generate_key("sig", signing_alg), generate_key("enc", "ECDH-ES+A256KW")]
    return {"keys": [k.as_dict(private=True) for k in keys]}


def public(jwks: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [load_jwk(k).as_dict(private=False) for k in jwks["keys"]]}


def now_ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def legacy_person(uin: str, name: str = "Ama Owusu") -> dict[str, Any]:
    """A person in an older CRVS shape (first/last name, date_of_death, NID)."""
    first, last = name.split(" ", 1)
    return {
        "identifier": [{"identifier_type": "NID", "identifier_value": uin}],
        "name": {"first_name": first, "last_name": last},
        "date_of_birth": "1950-02-03",
        "date_of_death": "2025-11-30",
        "gender": "F",
    }


@dataclass
class LegacyRegistry:
    client_jwks: dict[str, Any]  # the client's public keys (to verify its requests)
    sender_id: str = "legacy.registry"
    profile: str = "jws-compact"  # how replies and callbacks are signed
    client_id: str = "legacy-client"
    client_secret: str = "legacy-secret"
    port: int = field(default_factory=free_port)
    mode: str = "ok"
    mode_count: int = 1_000_000  # requests the mode applies to, then back to "ok"
    received: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[httpx.Response] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    _keys: dict[str, Any] = field(default_factory=dict)
    _server: Any = None
    _thread: Any = None
    _counter: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self._keys = {
            "ES256": generate_key("sig", "ES256"),
            "EdDSA": generate_key("sig", "EdDSA"),
            "enc": generate_key("enc", "ECDH-ES+A256KW"),
        }

    # -- what a test uses ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, client_jwks: dict[str, Any], **overrides: Any) -> ClientSettings:
        data: dict[str, Any] = {
            "base_url": self.base_url,
            "sender_id": "spmis.legacy-client",
            "receiver_id": self.sender_id,
            "token_url": f"{self.base_url}/oauth2/client/token",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "keys": client_jwks,
            "jwks_url": f"{self.base_url}/.well-known/jwks.json",
            "timeout": 5,
        }
        data.update(overrides)
        return ClientSettings.build(data)

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self._keys.values()]}

    def set_mode(self, mode: str, count: int = 1_000_000) -> None:
        self.mode, self.mode_count = mode, count

    def signed(self, header: dict[str, Any], message: Any, profile: str | None = None) -> dict:
        """An envelope signed as this registry signs (to post to a receiver)."""
        profile = profile or self.profile
        key = self._keys["EdDSA" if profile == "http-sig-ed25519" else "ES256"]
        signature = sign(header, message, key, profile, sender_id=self.sender_id)
        return {"signature": signature, "header": header, "message": message}

    def callback_header(self, action: str, total: int = 1, **extra: Any) -> dict[str, Any]:
        header = {
            "version": "1.0.0",
            "message_id": new_id("lm"),
            "message_ts": now_ts(),
            "action": action,
            "status": "succ",
            "total_count": str(total),  # legacy: a string
            "completed_count": total,
            "sender_id": self.sender_id,
            "is_msg_encrypted": False,
        }
        header.update(extra)
        return header

    def wait_callbacks(self, count: int, timeout: float = 20.0) -> list[httpx.Response]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.callbacks) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} callback answers, got {len(self.callbacks)}"
                    )
                self._lock.wait(left)
            return list(self.callbacks)

    def start(self) -> LegacyRegistry:
        routes = [
            Route("/oauth2/client/token", self._token, methods=["POST"]),
            Route("/.well-known/jwks.json", self._jwks, methods=["GET"]),
            Route("/registry/{path:path}", self._dci, methods=["POST"]),
        ]
        self._server, self._thread = start_server(Starlette(routes=routes), self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    # -- endpoints -----------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return _json({"error": "invalid_client", "error_description": "wrong secret"}, 401)
        token = f"tok-{next(self._counter)}"
        self.tokens.append(token)
        return _json({"access_token": token, "token_type": "bearer", "expires_in": "36000"})

    async def _jwks(self, request: Request) -> Response:
        return _json(self.public_jwks())

    def _take_mode(self) -> str:
        mode = self.mode
        if mode != "ok":
            self.mode_count -= 1
            if self.mode_count <= 0:
                self.mode, self.mode_count = "ok", 1_000_000
        return mode

    async def _dci(self, request: Request) -> Response:
        path = request.path_params["path"]
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens or token in self.revoked:
            return _json({"errors": [{"code": "err.request.unauthorized", "message": "who?"}]}, 401)
        mode = self._take_mode()
        if mode == "revoke-token":  # as if the registry had restarted and forgotten it
            self.revoked.add(token)
            return _json(
                {"errors": [{"code": "err.request.unauthorized", "message": "expired"}]}, 401
            )
        if mode == "slow":
            await asyncio.sleep(3)
        if mode == "gateway":
            return Response(
                b"<html>502 Bad Gateway</html>", status_code=502, media_type="text/html"
            )
        body = orjson.loads(await request.body())
        header, message = body["header"], body["message"]
        verify(body.get("signature"), header, message, self._client_key)  # raises if bad
        if header.get("is_msg_encrypted"):
            message = decrypt_message(message, lambda kid: self._keys["enc"])
        self.received.append({"path": path, "header": header, "message": message})
        if mode == "err":
            return _json(
                {
                    "message": {
                        "ack_status": "ERR",
                        "timestamp": now_ts(),
                        "correlation_id": new_id("c"),
                        "error": {"code": "err.sender_id.invalid", "message": "who are you?"},
                    }
                },
                400,
            )
        handler = {
            "sync/search": self._sync_search,
            "search": self._async_search,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "sync/txn/status": self._sync_txn_status,
            "sync/check-enrollment": self._check_enrollment,
        }[path]
        return handler(header, message, mode)

    # -- answers ---------------------------------------------------------------------------------

    def _reply(
        self, action: str, message: dict[str, Any], mode: str, status: int = 200, total: int = 1
    ) -> Response:
        header = self.callback_header(action, total, receiver_id="spmis.legacy-client")
        if mode == "rjct-header":
            header.update(
                status="rjct",
                status_reason_code="rjct.message_ts.invalid",
                status_reason_message="the clock is off",
            )
        if mode == "bare":
            return _json(message, status)
        if mode == "unsigned":
            return _json({"header": header, "message": message}, status)
        envelope = self.signed(header, message)
        if mode == "bad-signature":  # changed after signing
            envelope["header"] = {**header, "completed_count": 99}
        return _json(envelope, status)

    def _search_items(self, message: dict[str, Any], mode: str) -> list[dict[str, Any]]:
        items = []
        for item in message["search_request"]:
            query = item["search_criteria"]["query"]
            uin = query.get("value", "0000") if isinstance(query, dict) else "0000"
            answer: dict[str, Any] = {
                "reference_id": item["reference_id"],
                "timestamp": now_ts(),
                "status": "succ",
                "data": {
                    "version": "1.0.0",
                    "reg_type": "ns:org:RegistryType:Civil",
                    "reg_event_type": "spdci-extensions-dci:Person",  # STD name
                    "reg_records": legacy_person(str(uin)),  # one object, not a list
                },
                "pagination": {"page_size": "10", "page_number": "1", "total_count": "1"},
                "locale": "eng",
            }
            if mode == "rjct-item":
                answer = {
                    "reference_id": item["reference_id"],
                    "timestamp": now_ts(),
                    "status": "rjct",
                    "status_reason_code": "rjct.search_criteria.invalid",
                    "status_reason_message": "unknown attribute",
                }
            items.append(answer)
        return items

    def _sync_search(self, header: dict[str, Any], message: dict[str, Any], mode: str) -> Response:
        items = self._search_items(message, mode)
        reply = {
            "transaction_id": message["transaction_id"],
            "correlation_id": new_id("c"),
            "search_response": items,
        }
        if mode == "encrypt-reply":
            reply = encrypt_message(reply, self._client_enc_key())
            header_extra = {"is_msg_encrypted": True}
            head = self.callback_header("on-search", len(items), **header_extra)
            return _json(self.signed(head, reply))
        return self._reply("on-search", reply, mode, total=len(items))

    def _ack(self, task: Any) -> Response:
        ack = {
            "message": {"ack_status": "ACK", "timestamp": now_ts(), "correlation_id": new_id("c")}
        }
        return Response(orjson.dumps(ack), status_code=202, media_type=JSON, background=task)

    async def _post(self, url: str, envelope: dict[str, Any]) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                url, content=orjson.dumps(envelope), headers={"content-type": JSON}
            )
        with self._lock:
            self.callbacks.append(response)
            self._lock.notify_all()

    def _async_search(self, header: dict[str, Any], message: dict[str, Any], mode: str) -> Response:
        if mode == "no-callback":
            return self._ack(None)
        if mode == "nack":
            nack = {"message": {"ack_status": "NACK", "timestamp": now_ts(), "correlation_id": "c"}}
            return _json(nack, 200)
        reply = {
            "transaction_id": message["transaction_id"],
            "correlation_id": new_id("c"),
            "search_response": self._search_items(message, mode),
        }
        envelope = self.signed(self.callback_header("on-search"), reply)
        return self._ack(BackgroundTask(self._post, header["sender_uri"], envelope))

    def _subscribe(self, header: dict[str, Any], message: dict[str, Any], mode: str) -> Response:
        item = message["subscribe_request"][0]
        code = new_id("sub")
        answer = {
            "transaction_id": message["transaction_id"],
            "correlation_id": new_id("c"),
            "subscribe_response": [
                {
                    "reference_id": item["reference_id"],
                    "timestamp": now_ts(),
                    "status": "succ",
                    "subscriptions": [
                        {
                            "code": code,
                            "status": "subscribe",
                            "timestamp": now_ts(),
                            "reg_event_type": item["subscribe_criteria"]["reg_event_type"],
                        }
                    ],
                }
            ],
        }
        # on-subscribe carries the *request* header (DIGEST §6 #7): no status
        on_subscribe_header = {
            "version": "1.0.0",
            "message_id": new_id("lm"),
            "message_ts": now_ts(),
            "action": "on-subscribe",
            "sender_id": self.sender_id,
            "total_count": 1,
        }
        sender_uri = header["sender_uri"]
        notify_url = sender_uri.rsplit("/", 1)[0] + "/notify"
        notify_message = {
            "transaction_id": message["transaction_id"],
            "notify_event": [
                {
                    "reference_id": new_id("ev"),
                    "timestamp": now_ts(),
                    "data": {
                        "version": "1.0.0",
                        "reg_type": "ns:org:RegistryType:Civil",
                        "reg_event_type": item["subscribe_criteria"]["reg_event_type"],
                        "reg_record_type": "Person",
                        "reg_records": legacy_person("5550001111"),  # an object, as notify has it
                    },
                }
            ],
        }
        notify_header = self.callback_header("notify", meta={"subscription_codes": [code]})
        if mode == "encrypt-reply":
            notify_message = encrypt_message(notify_message, self._client_enc_key())
            notify_header["is_msg_encrypted"] = True

        async def deliver() -> None:
            await self._post(sender_uri, self.signed(on_subscribe_header, answer))
            await self._post(notify_url, self.signed(notify_header, notify_message))

        return self._ack(BackgroundTask(deliver))

    def _unsubscribe(self, header: dict[str, Any], message: dict[str, Any], mode: str) -> Response:
        answer = {
            "transaction_id": message["transaction_id"],
            "correlation_id": new_id("c"),
            "timesatmp": now_ts(),  # STD's typo
            "status": "succ",
            "subscription_status": [
                {"code": code, "status": "unsubscribe"} for code in message["subscription_codes"]
            ],
        }
        head = {
            "version": "1.0.0",
            "message_id": new_id("lm"),
            "message_ts": now_ts(),
            "action": "on-unsubscribe",
            "sender_id": self.sender_id,
            "total_count": 1,
        }
        envelope = self.signed(head, answer)
        return self._ack(BackgroundTask(self._post, header["sender_uri"], envelope))

    def _sync_txn_status(
        self, header: dict[str, Any], message: dict[str, Any], mode: str
    ) -> Response:
        request = message["txnstatus_request"]
        answer = {
            "transaction_id": message["transaction_id"],
            "correlation_id": new_id("c"),
            "txnstatus_response": {
                "txn_type": "on-search",  # STD core's spelling
                "txn_status": {
                    "transaction_id": request["attribute_value"],
                    "correlation_id": new_id("c"),
                    "search_response": [
                        {
                            "reference_id": "r-1",
                            "timestamp": now_ts(),
                            "status": "pdng",
                        }
                    ],
                },
            },
        }
        return self._reply("txn-on-status", answer, mode)

    def _check_enrollment(
        self, header: dict[str, Any], message: dict[str, Any], mode: str
    ) -> Response:
        answer = {
            "transaction_id": message["transaction_id"],
            "correlation_id": new_id("c"),
            "enrolled_response": [
                {
                    "reference_id": message["transaction_id"],
                    "timestamp": now_ts(),
                    "status": "succ",
                    "status_reason_message": "enrolled in the job-seeker programme",
                    "enrolled_status": "Active",
                }
            ],
        }
        return self._reply("on-search", answer, mode)

    # -- keys -----------------------------------------------------------------------------------

    def _client_key(self, kid: str | None, alg: str | None = None) -> Any:
        for jwk in self.client_jwks["keys"]:
            if jwk.get("use") == "sig" and (kid is None or jwk.get("kid") == kid):
                return load_jwk(jwk)
        return None

    def _client_enc_key(self) -> Any:
        return next(load_jwk(k) for k in self.client_jwks["keys"] if k.get("use") == "enc")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)
