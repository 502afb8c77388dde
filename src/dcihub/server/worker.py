"""The delivery worker: claims outbox rows and carries them out.

* `process` rows run accepted asynchronous work (an async search): results and the callback
  row are written in one database transaction;
* `deliver` rows POST a callback to the partner: outbound pipeline (encrypt -> sign, by the
  `CallbackSender`), no redirects followed, retried with exponential back-off while the
  receiver is down, given up ("dead") after `max_attempts` or on a permanent refusal.

Rows are worked on concurrently: at most `delivery.concurrency` at once, at most
`delivery.per_target` at once per callback target (scheme and host:port) and per partner for
async work, and each delivery attempt within `delivery.timeout` — so a slow or dead partner
holds up only its own callbacks. A claimed row is worked on by one task, once, until its
outcome is written (its lease outlasts the attempt).

It runs inside `dcihub serve` / `dcihub demo` by default, or alone as `dcihub worker`; any number
of workers may share one PostgreSQL (rows are claimed with SKIP LOCKED and a lease).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import orjson
from anyio.abc import TaskGroup

from ..config import DeliverySettings
from ..security.partners import Partner
from ..store.access import unavailable
from ..store.audit import AuditEntry
from ..store.outbox import OutboxRow, work_key
from ..store.subscriptions import NOTIFY_KEY
from .node import RegistryNode

log = logging.getLogger("dcihub.worker")

RETRYABLE_STATUS = {408, 409, 425, 429}


@dataclass
class Outgoing:
    url: str
    body: bytes
    headers: dict[str, str]


class PermanentFailure(Exception):
    """Delivery cannot succeed by retrying (e.g. a refused or invalid callback target)."""


class CallbackSender:
    """Outbound mirror of the inbound pipeline: build -> encrypt -> sign -> send.

    This base sends the envelope as JSON; the security layer's sender encrypts and signs it for
    the receiving partner, adds its bearer token and checks the target address."""

    async def prepare(self, row: OutboxRow, envelope: dict[str, Any]) -> Outgoing:
        if not row.target_url:
            raise PermanentFailure("no callback URL")
        envelope = {k: v for k, v in envelope.items() if not k.startswith("dcihub:")}
        return Outgoing(
            row.target_url, orjson.dumps(envelope), {"content-type": "application/json"}
        )

    async def check_target(self, row: OutboxRow) -> None:
        return None

    async def renew(self, row: OutboxRow) -> bool:
        """The receiver refused our credentials (401/403): drop the cached access token, so
        that the next attempt fetches a fresh one. False: no token is used for it."""
        return False


def backoff(attempt: int, settings: DeliverySettings) -> float:
    delay = min(settings.backoff_base * (2 ** max(attempt - 1, 0)), settings.backoff_max)
    return delay * random.uniform(0.8, 1.2)


class Worker:
    def __init__(
        self,
        node: RegistryNode,
        sender: CallbackSender | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.node = node
        self.store = node.store
        self.settings = node.settings.delivery
        self.sender = sender or CallbackSender()
        self.client = client or httpx.AsyncClient(
            timeout=self.settings.timeout, follow_redirects=False, trust_env=False
        )
        self._wake = anyio.Event()
        self.partner_for: Callable[[str | None], Partner | None] = lambda sender_id: None
        self.background: list[Any] = []
        self._working = 0  # rows being worked on by this worker
        self._busy: dict[str, int] = {}  # work key (callback target, partner) -> rows
        # who holds a claimed row (`outbox.claimed_by`): unique per worker, and readable
        self.id = f"{socket.gethostname()[:40]}:{os.getpid()}:{random.getrandbits(32):08x}"
        self.renewed_at: float | None = None  # the last heartbeat that reached the store

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Run until cancelled (with the background tasks of a standalone worker)."""
        async with anyio.create_task_group() as tasks:
            for task in self.background:
                tasks.start_soon(task)
            tasks.start_soon(self._heartbeat)
            tasks.start_soon(self._retention)
            await self._loop()
            tasks.cancel_scope.cancel()

    async def heartbeat(self) -> int:
        """Renew the lease of every row this worker holds; returns how many it holds."""
        lease = self.settings.lease_seconds
        held = await self._write(lambda conn: self.store.outbox.renew(conn, self.id, lease))
        self.renewed_at = time.time()
        return int(held)

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.settings.lease_seconds / 3)
            if not self._working:
                continue
            try:
                await self.heartbeat()
            except Exception as exc:  # the store is away: the rows may be claimed again
                log.warning(
                    "could not renew the leases of worker %s: %s",
                    self.id,
                    type(exc).__name__,
                    exc_info=not unavailable(exc),
                )

    async def _retention(self) -> None:
        retention = self.node.settings.retention
        if not retention.enabled:
            return
        from ..store.retention import purge

        await anyio.sleep(random.uniform(0, min(retention.interval, 60.0)))
        while True:
            more = False
            try:
                done = await self._write(lambda conn: purge(self.store, conn, retention))
                more = done.full
                if done.total:
                    log.info("retention purge: %s", done.summary())
            except Exception as exc:
                log.warning(
                    "retention purge failed (%s); tried again later",
                    type(exc).__name__,
                    exc_info=not unavailable(exc),
                )
            await anyio.sleep(0.05 if more else retention.interval)

    async def _loop(self) -> None:
        async with anyio.create_task_group() as tasks:
            while True:
                try:
                    started = await self._dispatch(tasks)
                except Exception as exc:  # keep the worker alive; the rows will be claimed again
                    if unavailable(exc):  # the store is away: one line, try again later
                        log.warning("worker cycle: store unavailable (%s)", type(exc).__name__)
                    else:
                        log.exception("worker cycle failed")
                    started = 0
                if started:
                    continue
                with anyio.move_on_after(self.settings.poll_interval):
                    await self._wake.wait()  # new rows, or a row done (a free slot)
                self._wake = anyio.Event()

    async def _dispatch(self, tasks: TaskGroup) -> int:
        """Claim as many due rows as there are free slots (per target, too) and start one
        task for each; returns how many were started."""
        free = self.settings.concurrency - self._working
        if free <= 0:
            return 0
        lease, per_key, busy = (
            self.settings.lease_seconds,
            self.settings.per_target,
            dict(self._busy),
        )
        rows = await self._write(
            lambda conn: self.store.outbox.claim_on(
                conn, free, lease, per_key=per_key, busy=busy, owner=self.id
            )
        )
        for row in rows:
            key = work_key(row.kind, row.target_url, row.sender_id)
            self._working += 1
            self._busy[key] = self._busy.get(key, 0) + 1
            tasks.start_soon(self._work, row, key)
        return len(rows)

    async def _work(self, row: OutboxRow, key: str) -> None:
        try:
            if row.kind == "process":
                await self._process(row)
            elif row.kind == "batch":
                await self._batch(row)
            else:
                await self._deliver(row)
        except Exception as exc:  # its lease runs out and it is claimed again
            if unavailable(exc):
                log.warning("outbox row %s: store unavailable (%s)", row.pk, type(exc).__name__)
            else:
                log.exception("outbox row %s failed", row.pk)
        finally:
            self._working -= 1
            left = self._busy.get(key, 1) - 1
            if left > 0:
                self._busy[key] = left
            else:
                self._busy.pop(key, None)
            self.wake()

    async def _write(self, write: Any) -> Any:
        """Run a write: through the node's group commit when one runs in this process and the
        store has one writer (SQLite: the event loop never waits on a lock held by a worker
        thread), otherwise in a transaction of its own (`store.access.write`)."""
        committer = self.node.committer
        if committer.running and self.store.access.one_writer:
            return await committer.submit(write)
        return await self.store.access.write(write)

    async def run_once(self) -> int:
        """Work on the rows due now (as many as the bounds allow) and wait until they are
        done; returns how many there were."""
        started = 0
        async with anyio.create_task_group() as tasks:
            started = await self._dispatch(tasks)
        return started

    async def _batch(self, row: OutboxRow) -> None:
        """A periodic subscription's run: its queued events become one notification."""
        sub_pk = row.txn_pk

        def run(conn: Any) -> None:
            if not self.store.outbox.complete(conn, row.pk, self.id):
                return  # another worker holds the row now: it runs the batch
            if sub_pk is not None:
                self.store.subscriptions.run_batch(conn, sub_pk)

        try:
            await self._write(run)
        except Exception as exc:
            log.exception("subscription batch %s failed", row.pk)
            await self._failed(row, f"batch failed: {exc}", permanent=False)
            return
        self.wake()

    async def _process(self, row: OutboxRow) -> None:
        try:
            partner = self.partner_for(row.sender_id)
            write = await self.store.access.read(self.node.plan_async_search, row.txn_pk, partner)
            if write is not None:
                await self._write(write)
        except Exception as exc:
            if unavailable(exc):
                log.warning("async work %s: store unavailable (%s)", row.pk, type(exc).__name__)
            else:
                log.exception("async work %s failed", row.pk)
            await self._failed(row, f"processing failed: {exc}", permanent=False)
            return
        await self._complete(row)
        self.wake()

    async def _deliver(self, row: OutboxRow) -> None:
        if not row.payload:
            await self._failed(row, "no payload", permanent=True)
            return
        envelope = orjson.loads(row.payload)
        facts = _callback_facts(row, envelope)
        timeout = self.settings.timeout
        try:
            if NOTIFY_KEY in envelope:
                await self._check_filters(row, envelope)
                envelope = self._notification(row, envelope)
            with anyio.fail_after(timeout):  # the whole attempt: token, sealing, POST, answer
                await self.sender.check_target(row)
                outgoing = await self.sender.prepare(row, dict(envelope))
                response = await self.client.post(
                    outgoing.url, content=outgoing.body, headers=outgoing.headers
                )
                if response.status_code in (401, 403) and await self.sender.renew(row):
                    # a token the receiver no longer accepts: once more with a fresh one
                    outgoing = await self.sender.prepare(row, dict(envelope))
                    response = await self.client.post(
                        outgoing.url, content=outgoing.body, headers=outgoing.headers
                    )
        except PermanentFailure as exc:
            await self._failed(row, str(exc), permanent=True, facts=facts)
            return
        except TimeoutError:
            error = f"no answer within delivery.timeout ({timeout:g} s)"
            await self._failed(row, error, permanent=False, facts=facts)
            return
        except httpx.HTTPError as exc:
            await self._failed(row, f"{type(exc).__name__}: {exc}", permanent=False, facts=facts)
            return
        facts.status = response.status_code
        if 200 <= response.status_code < 300:
            verdict = _ack_status(response)
            if verdict == "ERR":
                await self._failed(
                    row,
                    f"receiver answered ERR: {response.text[:500]}",
                    permanent=True,
                    facts=facts,
                )
                return
            await self._complete(row, facts)
            log.info("delivered %s %s -> %s", row.action, row.pk, outgoing.url)
            return
        permanent = (
            400 <= response.status_code < 500 and response.status_code not in RETRYABLE_STATUS
        )
        if 300 <= response.status_code < 400:
            permanent = True  # redirects are never followed
        await self._failed(
            row,
            f"HTTP {response.status_code}: {response.text[:500]}",
            permanent=permanent,
            facts=facts,
        )

    async def _check_filters(self, row: OutboxRow, envelope: dict[str, Any]) -> None:
        """A subscription whose filter the partner may no longer use (its query_fields were
        narrowed) does not reveal what it matched: the notification is refused (dead)."""
        partner = self.partner_for(row.sender_id)
        registry = row.registry or envelope[NOTIFY_KEY].get("registry")
        if partner is None or registry not in self.node.profiles:
            return
        codes = list((envelope.get("header", {}).get("meta") or {}).get("subscription_codes") or [])
        problem = await self.store.access.read(
            self.node.subscriptions.filters_refused, partner, registry, codes
        )
        if problem:
            raise PermanentFailure(problem)

    def _notification(self, row: OutboxRow, envelope: dict[str, Any]) -> dict[str, Any]:
        """Finish a queued notification for its partner: the registry's id as sender, and each
        record cut to the fields the partner may receive (the record shaping of search)."""
        partner = self.partner_for(row.sender_id)
        registry = row.registry or envelope[NOTIFY_KEY].get("registry")
        if registry not in self.node.profiles:
            raise PermanentFailure(f"registry '{registry}' is no longer served here")
        if partner is not None and not partner.allows(registry, "subscribe"):
            raise PermanentFailure(
                f"partner '{row.sender_id}' may no longer subscribe to the {registry} registry"
            )
        envelope.pop(NOTIFY_KEY, None)
        envelope["header"]["sender_id"] = self.node.registry_id(registry)
        shape = self.node.shaper(partner, registry)
        if shape is not None:
            for item in envelope["message"]["notify_event"]:
                data = item["data"]
                data["reg_records"] = shape(data.get("reg_record_type"), data["reg_records"])
        return envelope

    def _audit(self, conn: Any, facts: AuditEntry | None, outcome: str) -> None:
        """Callbacks are exchanges too: each delivery attempt goes into the audit trail."""
        security = self.node.settings.security
        if facts is None or not (security.enabled and security.audit):
            return
        self.store.audit.append_many(conn, [replace(facts, ts=time.time(), outcome=outcome)])

    async def _complete(self, row: OutboxRow, facts: AuditEntry | None = None) -> None:
        def done(conn: Any) -> None:
            self.store.outbox.complete(conn, row.pk, self.id)
            self._audit(conn, facts, "delivered")

        await self._write(done)

    async def _failed(
        self, row: OutboxRow, error: str, permanent: bool, facts: AuditEntry | None = None
    ) -> None:
        give_up = permanent or row.attempts >= self.settings.max_attempts
        delay = backoff(row.attempts, self.settings)

        def record(conn: Any) -> None:
            if give_up:
                self.store.outbox.give_up(conn, row.pk, error, self.id)
            else:
                self.store.outbox.retry(conn, row.pk, error, delay, self.id)
            # the receiver's text in `error` is cut to the trail's bound (store/audit.py)
            self._audit(conn, facts, f"{'gave up' if give_up else 'will retry'}: {error}")

        await self._write(record)
        if give_up:
            log.warning(
                "gave up on outbox row %s (%s) after %s attempt(s): %s",
                row.pk,
                row.action,
                row.attempts,
                error,
            )
        else:
            log.info(
                "outbox row %s (%s) failed, retry in %.1fs: %s", row.pk, row.action, delay, error
            )

    async def aclose(self) -> None:
        await self.client.aclose()


def _callback_facts(row: OutboxRow, envelope: dict[str, Any]) -> AuditEntry:
    """What the audit trail keeps of a callback: ids and record counts, no content (the
    outcome and the time are set when the attempt ends)."""
    header = envelope.get("header") or {}
    message = envelope.get("message") or {}
    records = 0
    for item in message.get("search_response") or []:
        data = item.get("data") if isinstance(item, dict) else None
        if isinstance(data, dict) and isinstance(data.get("reg_records"), list):
            records += len(data["reg_records"])
    for item in message.get("notify_event") or []:
        data = item.get("data") if isinstance(item, dict) else None
        if isinstance(data, dict) and isinstance(data.get("reg_records"), dict):
            records += 1
    target = urlsplit(row.target_url or "")
    return AuditEntry(
        direction="out",
        action=row.action or "",
        partner=row.sender_id,
        registry=row.registry,
        endpoint=target.path,
        target_host=target.hostname,
        message_id=header.get("message_id"),
        transaction_id=message.get("transaction_id"),
        correlation_id=message.get("correlation_id"),
        attempt=row.attempts,
        records_sent=records,
    )


def _ack_status(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, dict):
        status = message.get("ack_status")
        return status if isinstance(status, str) else None
    return None
