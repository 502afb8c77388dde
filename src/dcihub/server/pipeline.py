"""The one inbound pipeline every DCI endpoint goes through, and its outbound mirror.

    read body -> authenticate -> parse -> verify signature -> decrypt -> validate header
    -> deduplicate -> dispatch to the endpoint handler -> (outbound) encrypt -> sign -> reply

Security steps are provided by a `Guard` (see `server.guard`): the base Guard accepts every
message (used by unit tests of the pipeline only); the security layer's Guard authenticates
partners, verifies signatures, decrypts, remembers message ids and writes the audit trail.
No endpoint re-implements a step.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..security.partners import JwksResolver, Partner
from ..security.tokens import TokenClaims
from ..standard.calls import SpecialEndpoint
from ..standard.codes import ErrorCode
from ..standard.envelope import (
    MsgCallbackHeader,
    MsgHeader,
    callback_header,
    err_ack,
    http_error_body,
    parse_callback_header,
    parse_request_header,
    split_envelope,
)
from ..standard.errors import DCIError, MessageRejected
from ..standard.profiles.base import RegistryProfile
from ..store.access import unavailable
from ..store.audit import AuditEntry
from ..store.replay import DuplicateMessage
from .committer import GroupCommitter, RequestWrites

log = logging.getLogger("dcihub.pipeline")

JSON = "application/json"


@dataclass(frozen=True)
class EndpointSpec:
    """One DCI endpoint of one registry."""

    registry: str
    path: str  # after /registry/, e.g. "sync/search"
    kind: str  # handler name
    action: str  # expected header.action
    header: str = "request"  # request | callback
    asynchronous: bool = False
    response_action: str = ""  # action of a sync response envelope
    scope: str = ""  # the token scope action it needs (default: action)
    special: SpecialEndpoint | None = None  # a profile's special call

    @property
    def url_path(self) -> str:
        return f"/{self.registry}/registry/{self.path}"

    @property
    def scope_action(self) -> str:
        return self.scope or self.action


@dataclass(slots=True)
class Caller:
    """Who sent an inbound message, as the security guard established it from the access
    token: the partner it names, the token's claims and the partner's keys; then, as the
    message goes through the pipeline, the signature verdict and whether it was encrypted."""

    partner: Partner
    claims: TokenClaims
    resolver: JwksResolver
    # `<profile>:<kid>`, "unsigned", "invalid" or "not verified (partner policy)" (audit trail)
    signature: str = "unsigned"
    encrypted: bool = False


@dataclass
class Inbound:
    """A message that passed the pipeline up to dispatch."""

    endpoint: EndpointSpec
    profile: RegistryProfile
    raw_header: dict[str, Any]
    header: MsgHeader | MsgCallbackHeader
    message: Any
    signature: str | None
    sender_id: str
    correlation_id: str
    received_at: float
    caller: Caller | None = None  # None when security is off
    records: list[str] = field(default_factory=list)  # audit trail: the records returned
    wire_message: Any = None  # the message as received (before decryption)
    request_digest: str | None = None  # what the replay memory keeps of the request
    writes: RequestWrites = field(default_factory=RequestWrites)  # committed before replying

    @property
    def registry(self) -> str:
        return self.endpoint.registry

    @property
    def partner(self) -> Partner | None:
        """The sending partner (None when security is off)."""
        return self.caller.partner if self.caller is not None else None

    @property
    def encrypted(self) -> bool:
        """Whether the message arrived encrypted (then so must the replies to it)."""
        return self.caller is not None and self.caller.encrypted


@dataclass
class Reply:
    status_code: int
    body: dict[str, Any]
    is_envelope: bool = False  # a full {header, message} envelope (signed on the way out)
    heavy: bool = False  # many records: sealed and serialised in a worker thread


Handler = Callable[[Inbound], Awaitable[Reply]]


class Guard:
    """Security hooks of the pipeline. This base accepts every message and changes nothing
    (used by tests of the pipeline alone); `server.guard.SecurityGuard` is the real one."""

    async def authenticate(self, request: Request, endpoint: EndpointSpec) -> Caller | None:
        return None

    async def check_header(self, inbound: Inbound) -> None:
        return None

    async def verify(self, inbound: Inbound) -> None:
        return None

    async def decrypt(self, inbound: Inbound) -> None:
        return None

    async def replayed(self, inbound: Inbound) -> tuple[int, bytes] | None:
        return None

    async def original_reply(self, inbound: Inbound) -> tuple[int, bytes] | None:
        """After losing the race for its message id to another process: the reply that
        process gave, if it answered this very request and its copy is kept."""
        return None

    def outbound(self, inbound: Inbound, reply: Reply) -> dict[str, Any]:
        return reply.body

    def remember(self, inbound: Inbound) -> bool:
        """Whether the reply to this message is kept for replay protection."""
        return False

    def replay_copy(self, reply: bytes) -> bytes:
        """What the replay memory keeps of a reply: the reply itself, or b"" (the message id
        is remembered, and a replay is refused, without a second copy of a large reply)."""
        return reply

    def release(self, inbound: Inbound) -> None:
        """The exchange is over (committed or failed)."""
        return None

    def registry_id(self, registry: str) -> str:
        return registry

    def audit_entry(
        self,
        endpoint: EndpointSpec,
        request: Request,
        inbound: Inbound | None,
        caller: Caller | None,
        status: int,
        body: dict[str, Any],
        error: DCIError | None,
        replay: bool,
        correlation_id: str,
    ) -> AuditEntry | None:
        """What the audit trail records of this exchange (None: no audit trail). Never
        raises: an entry that cannot be built in full is recorded as far as it is known."""
        return None


def new_correlation_id() -> str:
    """A time-ordered UUID (version 7, RFC 9562): 48 bits of Unix milliseconds, then random.

    Ids that grow with time keep the unique index of correlation ids append-only, so a group
    commit dirties few index pages."""
    h = f"{time.time_ns() // 1_000_000:012x}" + os.urandom(10).hex()
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def json_response(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def rejection_envelope(
    rejection: MessageRejected, endpoint: EndpointSpec, guard: Guard, inbound: Inbound | None
) -> dict[str, Any]:
    """The sync response envelope of a whole-message rejection (header.status 'rjct')."""
    header = callback_header(
        message_id=new_correlation_id(),
        action=endpoint.response_action or "on-search",
        status="rjct",
        sender_id=guard.registry_id(endpoint.registry),
        receiver_id=inbound.sender_id if inbound is not None else None,
        total_count=getattr(inbound.header, "total_count", 0) or 0 if inbound else 0,
        completed_count=0,
        reason_code=rejection.reason,
        reason_message=rejection.detail,
    )
    return {"header": header}


def error_reply(error: DCIError, correlation_id: str) -> Reply:
    if error.http_status in (401, 403):
        # The contracts' HttpErrorResponse, plus the ERR ack every other DCI error carries
        # (clients that look for `message.ack_status` read these too).
        body = http_error_body(error.code, error.message)
        body.update(err_ack(error.code, error.message, correlation_id))
        return Reply(error.http_status, body)
    return Reply(error.http_status, err_ack(error.code, error.message, correlation_id))


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            f"the body is {declared} bytes; this registry accepts at most {limit}",
            413,
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"the body exceeds {limit} bytes, the most this registry accepts",
                413,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON or (media.startswith("application/") and media.endswith("+json")):
        return
    if media == "multipart/form-data":
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            "multipart/form-data file upload is not supported by this registry; send "
            "the envelope as application/json",
            415,
        )
    shown = media or "none"
    raise DCIError(
        ErrorCode.REQUEST_BAD,
        f"Content-Type is {shown}; send the envelope as application/json",
        415,
    )


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise DCIError(ErrorCode.REQUEST_BAD, "the body is empty; send a DCI envelope as JSON")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DCIError(ErrorCode.REQUEST_BAD, f"the body is not valid JSON: {exc}") from None
    refuse_deep_nesting(body, "the body")
    _refuse_duplicate_keys(body)
    return doc


def refuse_deep_nesting(document: bytes, what: str) -> None:
    """Refuse valid JSON `document` (a body, a decrypted message) nested deeper than
    MAX_NESTING: too deep to audit or store."""
    if nesting_exceeds(document, MAX_NESTING):
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            f"{what} nests objects and arrays more than {MAX_NESTING} levels deep; a DCI "
            "envelope needs far fewer",
        )


LARGE_BODY = 256 * 1024
MAX_NESTING = 64  # levels of objects/arrays in a body (an envelope with records needs ~15)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_INNERMOST = re.compile(rb"\{\}|\[\]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{}[]")


def nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether valid JSON `body` nests deeper than `limit`, at C speed: with the strings taken
    out and only brackets kept, each pass removes the innermost pairs; the passes needed to
    empty it are the depth."""
    if body.count(b"{") + body.count(b"[") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        brackets = _INNERMOST.sub(b"", brackets)
        if not brackets:
            return False
    return True


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return found


def _refuse_duplicate_keys(body: bytes) -> None:
    """A JSON object naming a member twice is ambiguous (parsers differ on which one wins, so
    a signer and a verifier could read different messages): refuse it. orjson has parsed the
    body already (strictly); the standard library's parser reports the repeated names."""
    try:
        json.loads(body, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as exc:
        name = str(exc)[:60]
        raise DCIError(
            ErrorCode.REQUEST_BAD,
            f"the body names the member '{name}' twice in one JSON object; send each once",
        ) from None
    except (ValueError, RecursionError):  # orjson accepted it: nothing else to report
        return


class Pipeline:
    def __init__(
        self,
        guard: Guard,
        committer: GroupCommitter,
        max_body_bytes: int,
        on_done: Callable[[EndpointSpec, int, float], None] | None = None,
        read_timeout: float = 30.0,
        limiter: Any = None,
    ) -> None:
        self.limiter = limiter  # a ratelimit.RateLimiter: `await admit(partner)`
        self.guard = guard
        self.committer = committer
        self.max_body_bytes = max_body_bytes
        self.on_done = on_done
        self.read_timeout = read_timeout

    async def handle(
        self, request: Request, endpoint: EndpointSpec, profile: RegistryProfile, handler: Handler
    ) -> Response:
        started = time.perf_counter()
        correlation_id = new_correlation_id()
        guard = self.guard
        inbound: Inbound | None = None
        caller: Caller | None = None
        error: DCIError | None = None
        replay: tuple[int, bytes] | None = None
        remember = False
        try:
            caller = await guard.authenticate(request, endpoint)
            if caller is not None and self.limiter is not None:
                await self.limiter.admit(caller.partner)
            check_content_type(request)
            try:
                with anyio.fail_after(self.read_timeout):
                    raw_body = await read_body(request, self.max_body_bytes)
            except TimeoutError:
                raise DCIError(
                    ErrorCode.REQUEST_TIMEOUT,
                    f"the body did not arrive within {self.read_timeout:g} s; send it at once",
                    408,
                ) from None
            if len(raw_body) > LARGE_BODY:  # checking a large body is not for the event loop
                body = await anyio.to_thread.run_sync(parse_json, raw_body)
            else:
                body = parse_json(raw_body)
            raw_header, message, signature = split_envelope(body)
            inbound = Inbound(
                endpoint=endpoint,
                profile=profile,
                raw_header=raw_header,
                header=None,  # type: ignore[arg-type]
                message=message,
                signature=signature,
                sender_id="",
                correlation_id=correlation_id,
                received_at=time.time(),
                caller=caller,
                wire_message=message,
            )
            inbound.header = self._parse_header(raw_header, endpoint)
            inbound.sender_id = inbound.header.sender_id or ""
            if not inbound.sender_id:
                raise DCIError(ErrorCode.SENDER_ID_INVALID, "header.sender_id is required")
            await guard.check_header(inbound)
            await guard.verify(inbound)
            await guard.decrypt(inbound)
            replay = await guard.replayed(inbound)
            remember = replay is None and guard.remember(inbound)
            if replay is None:
                reply = await handler(inbound)
                if reply.heavy:  # signing megabytes must not hold up the event loop
                    body_out = await anyio.to_thread.run_sync(guard.outbound, inbound, reply)
                else:
                    body_out = guard.outbound(inbound, reply)
        except DCIError as exc:
            error = exc
            reply = error_reply(exc, correlation_id)
            body_out = reply.body
            if isinstance(exc, MessageRejected) and not endpoint.asynchronous:
                reply = Reply(
                    400, rejection_envelope(exc, endpoint, guard, inbound), is_envelope=True
                )
                body_out = reply.body
                if inbound is not None and inbound.caller is not None:
                    try:  # signed like every response envelope
                        body_out = guard.outbound(inbound, reply)
                    except Exception:  # the rejection still goes out, unsigned
                        log.exception("could not sign a rejection envelope")
        except Exception as exc:
            if unavailable(exc):  # the store is away (restarting, disk full): nothing was done
                log.warning("store unavailable on %s: %s", endpoint.url_path, type(exc).__name__)
                error = DCIError(
                    ErrorCode.SERVICE_UNAVAILABLE,
                    "the registry's store is unavailable; nothing was done, send it again later",
                    503,
                )
                reply = error_reply(error, correlation_id)
            else:  # a defect, not the caller's fault: log it, answer without details
                log.exception("unexpected error on %s", endpoint.url_path)
                error = DCIError(
                    ErrorCode.SERVICE_UNAVAILABLE,
                    "the registry could not process the message; it has been logged",
                    500,
                )
                reply = Reply(500, http_error_body(error.code, error.message))
            body_out = reply.body
            remember = False
        if replay is not None:
            status, raw = replay
            body_out = orjson.loads(raw)
        elif reply.heavy and error is None:
            status, raw = reply.status_code, await anyio.to_thread.run_sync(orjson.dumps, body_out)
        else:
            status, raw = reply.status_code, orjson.dumps(body_out)
        writes = inbound.writes if inbound is not None and error is None else RequestWrites()
        if remember and inbound is not None and status < 500:
            kept = guard.replay_copy(raw)
            writes.seen.append(
                (inbound.sender_id, inbound.header.message_id, status, kept, inbound.request_digest)
            )
        entry = guard.audit_entry(
            endpoint,
            request,
            inbound,
            caller,
            status,
            body_out,
            error,
            replay is not None,
            correlation_id,
        )
        if entry is not None:
            writes.audit.append(entry)
        try:
            await self.committer.commit(writes)
        except DuplicateMessage:  # another process committed this message id first
            assert inbound is not None
            status, raw, outcome = await self._lost_race(inbound, correlation_id)
            if entry is not None:
                await self._audit_alone(entry, endpoint, status, outcome)
        except Exception as exc:  # the store refused the writes: nothing of this request persisted
            if unavailable(exc):
                log.warning("store unavailable, writes of %s not committed", endpoint.url_path)
            else:
                log.exception("could not commit the writes of %s", endpoint.url_path)
            status = 503
            raw = orjson.dumps(
                err_ack(
                    ErrorCode.SERVICE_UNAVAILABLE,
                    "the registry could not record the message; nothing was "
                    "done, send it again later",
                    correlation_id,
                )
            )
            if entry is not None:
                await self._audit_alone(entry, endpoint)
        if inbound is not None and inbound.header is not None:
            guard.release(inbound)
        if self.on_done is not None:
            self.on_done(endpoint, status, time.perf_counter() - started)
        retry_after = getattr(error, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after and status == 429 else None
        return Response(raw, status_code=status, media_type=JSON, headers=headers)

    async def _lost_race(self, inbound: Inbound, correlation_id: str) -> tuple[int, bytes, str]:
        """The answer to a message whose id another process committed while this one worked
        on it (nothing of this request's work was kept): that process's reply if it answered
        this very request, else 409 as for any reuse of a message id."""
        original = None
        try:
            original = await self.guard.original_reply(inbound)
        except Exception:
            log.warning("could not read the reply of a raced message", exc_info=True)
        if original is not None:
            return original[0], original[1], "replay"
        error = DCIError(
            ErrorCode.REQUEST_BAD,
            f"message_id '{inbound.header.message_id}' was answered already "
            "(rjct.message_id.duplicate) by another process of this node; send a new message "
            "with a new message_id",
            409,
        )
        return (
            409,
            orjson.dumps(error_reply(error, correlation_id).body),
            "rjct.message_id.duplicate",
        )

    async def _audit_alone(
        self,
        entry: AuditEntry,
        endpoint: EndpointSpec,
        status: int = 503,
        outcome: str | None = None,
    ) -> None:
        """The request's writes failed: record its audit row alone, as answered (503, nothing
        returned; or the answer of a message raced by another process), so that no request
        leaves the trail without a trace (fail closed: if even this fails, the caller has the
        answer and nothing was done)."""
        alone = replace(
            entry,
            status=status,
            outcome=outcome
            or f"{ErrorCode.SERVICE_UNAVAILABLE}: its writes failed (verdict before: "
            f"{entry.outcome})",
            records=[],
        )
        try:
            await self.committer.commit(RequestWrites(audit=[alone]))
        except Exception as exc:
            if unavailable(exc):
                log.warning("store unavailable, audit row of %s not recorded", endpoint.url_path)
            else:
                log.exception("could not record the audit row of %s alone", endpoint.url_path)

    @staticmethod
    def _parse_header(raw: dict[str, Any], endpoint: EndpointSpec) -> MsgHeader | MsgCallbackHeader:
        if endpoint.header == "callback":
            return parse_callback_header(raw, endpoint.action)
        return parse_request_header(raw, endpoint.action)
