"""`dcihub conform client`: a strict simulated registry that judges a programme's client.

`ClientKit` serves dcihub's own registry node (one registry, a small synthetic population in a
store of its own, its token endpoint and JWKS) behind a recorder that keeps every request the
client makes and every answer. The node does what a registry does (it verifies tokens and
signatures, answers, and calls the client back through its outbox); `finish()` then judges the
recorded requests against the client requirements and returns a `Report` like the server
checks' (the same HTML, JUnit and JSON reports).

    kit = ClientKit("crvs")
    info = kit.start()          # base_url, token_url, client_id, client_secret, sender_id, ...
    ...                         # the programme's client talks to info["base_url"]
    report = kit.finish()
"""

from __future__ import annotations

import datetime
import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from pydantic import BaseModel, ValidationError

from dcihub.standard import messages
from dcihub.standard.envelope import MsgHeader, describe_validation_error
from dcihub.standard.profiles import PROFILES

from .contract import Contract, is_rfc3339_date_time, load_contract
from .judge import Finding
from .requirements import TIERS
from .runner import CheckOutcome, Report, judge, requirements_for
from .session import Exchange, TargetError

__all__ = ["CLIENT_JUDGES", "ClientKit"]

# judge name -> the client requirements it verifies
CLIENT_JUDGES: dict[str, tuple[str, ...]] = {
    "client.tokens": ("CLIENT-TOKEN-001",),
    "client.envelope": ("CLIENT-ENV-001",),
    "client.bodies": ("CLIENT-BODY-001",),
    "client.signatures": ("CLIENT-SIG-001",),
    "client.callbacks": ("CLIENT-ASYNC-001",),
    "client.pagination": ("CLIENT-PAGE-001",),
}

SENDER_ID = "conformance.client"
CLIENT_ID = "conformance-client"
_ASYNC = ("search", "txn/status", "subscribe", "unsubscribe")
_ACTIONS = {
    "search": "search",
    "sync/search": "search",
    "txn/status": "txn-status",
    "sync/txn/status": "txn-status",
    "subscribe": "subscribe",
    "unsubscribe": "unsubscribe",
}
_MODELS: dict[str, type[BaseModel]] = {
    "search": messages.SearchRequest,
    "sync/search": messages.SearchRequest,
    "txn/status": messages.TxnStatusRequest,
    "sync/txn/status": messages.TxnStatusRequest,
    "subscribe": messages.SubscribeRequest,
    "unsubscribe": messages.UnsubscribeRequest,
}
_ITEMS = {
    "search": "search_request",
    "sync/search": "search_request",
    "subscribe": "subscribe_request",
}


@dataclass
class Recorded:
    path: str  # after /<registry>/registry/ (or the root path, e.g. oauth2/client/token)
    dci: bool
    headers: dict[str, str]
    body: bytes
    status: int = 0
    answer: bytes = b""
    at: float = field(default_factory=time.monotonic)

    def exchange(self, base_url: str) -> Exchange:
        return Exchange(
            f"client {self.path}",
            "POST",
            f"{base_url}/{self.path}",
            self.headers,
            self.body,
            self.status,
            {},
            self.answer,
        )


class _Recorder:
    """ASGI middleware: keeps every POST the client makes, and the answer."""

    def __init__(self, app: Any, registry: str) -> None:
        self.app = app
        self.prefix = f"/{registry}/registry/"
        self.records: list[Recorded] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            event = await receive()
            chunks.append(event.get("body", b""))
            more = event.get("more_body", False)
        body = b"".join(chunks)
        path: str = scope["path"]
        dci = path.startswith(self.prefix)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        record = Recorded(path[len(self.prefix) :] if dci else path.lstrip("/"), dci, headers, body)
        with self.lock:
            self.records.append(record)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        answer: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body":
                answer.append(message.get("body", b""))
                record.answer = b"".join(answer)
            await send(message)

        await self.app(scope, replay, capture)


class ClientKit:
    def __init__(
        self,
        registry: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_keys: dict[str, Any] | None = None,
        sender_id: str = SENDER_ID,
        callback_prefixes: list[str] | None = None,
        data_dir: Path | None = None,
        people: int = 300,
        spec_dir: Path | None = None,
        tiers: tuple[str, ...] = TIERS,
    ) -> None:
        if registry not in PROFILES:
            raise TargetError(f"unknown registry {registry!r}; choose from {', '.join(PROFILES)}")
        self.registry = registry
        self.host, self.port = host, port
        self.client_keys = client_keys
        self.sender_id = sender_id
        self.callback_prefixes = callback_prefixes or ["http://127.0.0.1:*/", "http://localhost:*/"]
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="dcihub-conform-client-"))
        self.people = people
        self.tiers = tiers
        self.contract: Contract | None = None
        if spec_dir is not None:
            try:
                self.contract = load_contract(spec_dir, registry)
            except Exception as exc:  # noqa: BLE001 - OSError / ContractLoadError
                raise TargetError(f"--spec {spec_dir}: {exc}") from None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._recorder: _Recorder | None = None
        self._store: Any = None
        self._started = 0.0
        self._started_at = ""
        self.info: dict[str, Any] = {}
        self._public_jwks: dict[str, Any] = {}

    # -- serving -------------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Build the simulated registry and serve it; what the client needs to connect."""
        import socket

        from dcihub.config import Settings
        from dcihub.population.generator import generate_country
        from dcihub.population.load import load_country
        from dcihub.security.partners import Partner, PartnerRegistry
        from dcihub.security.provision import Provisioned, provision_partner
        from dcihub.server.factory import build_app
        from dcihub.store import Store

        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise TargetError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        sock.listen(128)
        port = sock.getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        base = f"http://{shown}:{port}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        settings = Settings.model_validate(
            {
                "store_url": f"sqlite:///{(self.data_dir / 'registry.db').resolve()}",
                "node_id": "dcihub.conformance",
                "base_url": base,
                "registries": [self.registry],
                "security": {"base_dir": str(self.data_dir.resolve())},
            }
        )
        store = Store(settings.store_url)
        store.upgrade()
        country = generate_country(people=self.people, seed=20260101)
        load_country(store, country)
        fields: dict[str, Any] = {
            "scopes": {self.registry: "*"},
            "callback_prefixes": self.callback_prefixes,
            "allow_private_callbacks": True,
        }
        made = provision_partner(self.sender_id, CLIENT_ID, **fields)
        if self.client_keys is not None:  # the client's own keys (public halves only)
            try:
                partner = Partner(
                    sender_id=self.sender_id, client_id=CLIENT_ID, jwks=self.client_keys, **fields
                )
            except Exception as exc:  # noqa: BLE001 - PartnerConfigError names the problem
                raise TargetError(f"the client's keys: {exc}") from None
            made = Provisioned(partner, made.client_secret, {})
        path = settings.security.path(settings.security.partners_file)
        partners = PartnerRegistry.load(path) if path.exists() else PartnerRegistry()
        partners.remove(self.sender_id)
        partners.add(made.partner, client_secret=made.client_secret)
        partners.save(path)
        keys_file = None
        if made.private_jwks:
            keys_file = self.data_dir / "client.jwk.json"
            keys_file.write_text(json.dumps(made.private_jwks, indent=2) + "\n", "utf-8")
            keys_file.chmod(0o600)
        self._public_jwks = made.partner.jwks or {}
        app, _ = build_app(settings, store)
        self._recorder = _Recorder(app, self.registry)
        config = uvicorn.Config(self._recorder, log_level="error", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise TargetError("the simulated registry did not start")
            time.sleep(0.02)
        self._store = store
        self._started = time.monotonic()
        self._started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        samples = country.samples().get(self.registry, {})
        self.info = {
            "base_url": f"{base}/{self.registry}",
            "registry": self.registry,
            "token_url": f"{base}/oauth2/client/token",
            "jwks_url": f"{base}/.well-known/jwks.json",
            "client_id": CLIENT_ID,
            "client_secret": made.client_secret,
            "sender_id": self.sender_id,
            "receiver_id": settings.registry_id(self.registry),
            "keys_file": str(keys_file) if keys_file else None,
            "known": samples.get("identifiers", []),
        }
        return self.info

    def dci_requests(self) -> list[Recorded]:
        if self._recorder is None:
            return []
        with self._recorder.lock:
            return [r for r in self._recorder.records if r.dci]

    def finish(self, settle: float = 3.0) -> Report:
        """Stop serving (after letting pending callbacks go out) and judge what was recorded."""
        deadline = time.monotonic() + settle
        while self._undelivered(("pending",)) and time.monotonic() < deadline:
            time.sleep(0.05)
        undelivered = self._undelivered(("pending", "failed", "dead"))
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        records = list(self._recorder.records) if self._recorder is not None else []
        if self._store is not None:
            self._store.dispose()
        return self._judge(records, undelivered)

    def _undelivered(self, states: tuple[str, ...]) -> list[dict[str, Any]]:
        if self._store is None:
            return []
        with self._store.begin() as conn:
            return list(self._store.outbox.deliveries(conn, states, self.sender_id))

    # -- judging -------------------------------------------------------------------------------

    def _judge(self, records: list[Recorded], undelivered: list[dict[str, Any]]) -> Report:
        base = self.info.get("base_url", "")
        requirements = requirements_for("client", self.registry, self.tiers)
        selected = {r.id for r in requirements}
        dci = [r for r in records if r.dci]
        issued = set()
        for r in records:
            if r.path == "oauth2/client/token" and r.status == 200:
                try:
                    issued.add(orjson.loads(r.answer)["access_token"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    pass
        outcomes = []
        for name, fn in _JUDGES.items():
            findings: list[Finding] = []
            exchanges: list[Exchange] = []

            def expect(
                rid: str,
                ok: bool,
                why: str,
                record: Recorded | None = None,
                findings: list[Finding] = findings,
                exchanges: list[Exchange] = exchanges,
            ) -> None:
                if rid not in selected:
                    return
                index = None
                if record is not None and (not ok or not exchanges):  # evidence, not a log
                    exchanges.append(record.exchange(base.rsplit("/", 1)[0]))
                    index = len(exchanges) - 1
                findings.append(Finding(rid, ok, "" if ok else why, index))

            started = time.monotonic()
            status, reason = "ran", ""
            if not dci:
                status, reason = "skipped", "the client made no DCI request"
            else:
                fn(self, dci, expect, issued=issued, undelivered=undelivered)
            outcomes.append(
                CheckOutcome(
                    name,
                    name,
                    "security" if name == "client.signatures" else "core",
                    CLIENT_JUDGES[name],
                    status,
                    reason,
                    findings,
                    exchanges,
                    time.monotonic() - started,
                )
            )
        return Report(
            "client",
            self.registry,
            f"the client of {self.sender_id}",
            self.tiers,
            self._started_at,
            time.monotonic() - self._started,
            judge(requirements, outcomes, {}),
            outcomes,
        )


Expect = Callable[..., None]


def _envelope(record: Recorded) -> tuple[dict[str, Any], Any, Any] | None:
    try:
        doc = orjson.loads(record.body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("header"), dict):
        return None
    return doc["header"], doc.get("message"), doc.get("signature")


def _judge_tokens(kit: ClientKit, dci: list[Recorded], expect: Expect, **kw: Any) -> None:
    issued: set[str] = kw["issued"]
    expect(
        "CLIENT-TOKEN-001",
        bool(issued),
        "the client never obtained a token from the token endpoint (client credentials)",
    )
    for record in dci:
        auth = record.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        expect(
            "CLIENT-TOKEN-001",
            bool(token) and token in issued,
            f"{record.path}: "
            + (
                "no Authorization: Bearer token"
                if not token
                else "a token the registry never issued"
            ),
            record,
        )


def _judge_envelope(kit: ClientKit, dci: list[Recorded], expect: Expect, **kw: Any) -> None:
    seen_ids: set[str] = set()
    profile = PROFILES[kit.registry]
    for record in dci:
        parsed = _envelope(record)
        if parsed is None:
            expect("CLIENT-ENV-001", False, f"{record.path}: the body is not an envelope", record)
            continue
        header, message, _ = parsed
        problems = []
        special = profile.special(record.path)
        if special is not None and special.header == "callback":
            continue  # a call the standard gives a callback header (IBR enrollment/updates)
        try:
            MsgHeader.model_validate(header)
        except ValidationError as exc:
            problems.append(describe_validation_error(exc, "header"))
        if header.get("version") != "1.0.0":
            problems.append(f"header.version {header.get('version')!r}")
        message_id = header.get("message_id")
        if not isinstance(message_id, str) or not message_id or message_id in seen_ids:
            problems.append(f"header.message_id {message_id!r} is empty or was used before")
        elif isinstance(message_id, str):
            seen_ids.add(message_id)
        ts = header.get("message_ts")
        if not isinstance(ts, str) or not is_rfc3339_date_time(ts):
            problems.append(f"header.message_ts {ts!r} is not an RFC 3339 date-time with a zone")
        wanted = _ACTIONS.get(record.path) or (special.request_action if special else None)
        if wanted is not None and header.get("action") != wanted:
            problems.append(f"header.action {header.get('action')!r} where {wanted!r} belongs")
        if header.get("sender_id") != kit.sender_id:
            problems.append(f"header.sender_id {header.get('sender_id')!r}, not {kit.sender_id!r}")
        items_key = _ITEMS.get(record.path)
        if items_key and isinstance(message, dict) and isinstance(message.get(items_key), list):
            if header.get("total_count") != len(message[items_key]):
                problems.append(
                    f"header.total_count {header.get('total_count')!r} for "
                    f"{len(message[items_key])} item(s)"
                )
        expect(
            "CLIENT-ENV-001",
            not problems,
            f"{record.path}: {'; '.join(problems)}",
            record,
        )


def _judge_bodies(kit: ClientKit, dci: list[Recorded], expect: Expect, **kw: Any) -> None:
    for record in dci:
        parsed = _envelope(record)
        if parsed is None:
            continue
        header, message, _ = parsed
        if header.get("is_msg_encrypted") is True:
            continue  # the registry decrypted it; its content is judged by the registry's answer
        problems = []
        model = _MODELS.get(record.path)
        if not isinstance(message, dict):
            problems.append("message is not an object")
        else:
            if not isinstance(message.get("transaction_id"), str) or not message["transaction_id"]:
                problems.append("no transaction_id")
            if model is not None:
                try:
                    model.model_validate(message)
                except ValidationError as exc:
                    problems.append(describe_validation_error(exc, "message"))
            items = message.get(_ITEMS.get(record.path, ""), [])
            refs = [i.get("reference_id") for i in items if isinstance(i, dict)]
            if len(set(refs)) != len(refs) or not all(isinstance(r, str) and r for r in refs):
                problems.append(f"reference_ids are missing or repeated: {refs}")
        if kit.contract is not None and f"/registry/{record.path}" in kit.contract.paths:
            errors = kit.contract.errors_request(
                f"/registry/{record.path}", {**{"header": header}, "message": message}
            )
            problems += errors[:3]
        expect("CLIENT-BODY-001", not problems, f"{record.path}: {'; '.join(problems)}", record)


def _judge_signatures(kit: ClientKit, dci: list[Recorded], expect: Expect, **kw: Any) -> None:
    from dcihub.security.partners import JwksResolver, Partner
    from dcihub.security.signatures import verify

    resolver = JwksResolver(Partner(sender_id=kit.sender_id, jwks=kit._public_jwks), None)
    for record in dci:
        parsed = _envelope(record)
        if parsed is None:
            continue
        header, message, signature = parsed
        if not signature:
            expect("CLIENT-SIG-001", False, f"{record.path}: not signed", record)
            continue
        try:
            verify(str(signature), header, message, resolver.resolve)
        except Exception as exc:  # noqa: BLE001 - SecurityError names the problem
            expect("CLIENT-SIG-001", False, f"{record.path}: the signature: {exc}", record)
        else:
            expect("CLIENT-SIG-001", True, "", record)


def _judge_callbacks(kit: ClientKit, dci: list[Recorded], expect: Expect, **kw: Any) -> None:
    undelivered: list[dict[str, Any]] = kw["undelivered"]
    for record in dci:
        if record.path not in _ASYNC:
            continue
        parsed = _envelope(record)
        if parsed is None:
            continue
        header, _, _ = parsed
        uri = header.get("sender_uri")
        if not isinstance(uri, str) or not uri:
            expect("CLIENT-ASYNC-001", False, f"{record.path}: no header.sender_uri", record)
            continue
        if record.status >= 400:
            expect(
                "CLIENT-ASYNC-001",
                False,
                f"{record.path}: the registry refused it (HTTP {record.status}), so no callback "
                f"was sent: {record.answer[:200]!r}",
                record,
            )
            continue
        stuck = [d for d in undelivered if str(d.get("target_url", "")) == uri]
        why = "; ".join(
            f"{d.get('target_url')}: {d.get('last_error') or 'not acknowledged yet'}" for d in stuck
        )
        expect(
            "CLIENT-ASYNC-001",
            not stuck,
            f"{record.path}: the callback to {uri} was not acknowledged: {why}",
            record,
        )


def _judge_pagination(kit: ClientKit, dci: list[Recorded], expect: Expect, **kw: Any) -> None:
    walks: dict[str, list[tuple[int, Recorded]]] = {}
    for record in dci:
        if record.path != "sync/search":
            continue
        parsed = _envelope(record)
        if parsed is None or not isinstance(parsed[1], dict):
            continue
        for item in parsed[1].get("search_request") or []:
            criteria = item.get("search_criteria") if isinstance(item, dict) else None
            if not isinstance(criteria, dict) or not isinstance(criteria.get("pagination"), dict):
                continue
            pagination = criteria["pagination"]
            query = json.dumps(
                [criteria.get("query_type"), criteria.get("query"), pagination.get("page_size")],
                sort_keys=True,
            )
            number = pagination.get("page_number", 1)
            walks.setdefault(query, []).append((number if isinstance(number, int) else -1, record))
    for pages in walks.values():
        numbers = [n for n, _ in pages]
        ok = numbers == list(range(1, len(numbers) + 1))
        expect(
            "CLIENT-PAGE-001",
            ok,
            f"pages asked, in order: {numbers} (page 1 first, then each following page)",
            pages[-1][1],
        )


_JUDGES: dict[str, Callable[..., None]] = {
    "client.tokens": _judge_tokens,
    "client.envelope": _judge_envelope,
    "client.bodies": _judge_bodies,
    "client.signatures": _judge_signatures,
    "client.callbacks": _judge_callbacks,
    "client.pagination": _judge_pagination,
}
