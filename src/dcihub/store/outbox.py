"""The durable outbox: work to do and callbacks to deliver, written in the same database
transaction as the state change that causes them.

Rows are claimed with a short lease (`inflight` until `locked_until`, by `claimed_by`, the
claiming worker's id). A live worker renews the leases of all the rows it holds, in one
statement, every third of a lease (`renew`): that is its heartbeat. A worker that dies leaves
its rows to be claimed again by any other worker as soon as their lease runs out — seconds, not
the length of the longest job. The outcome of a row (`complete`, `retry`, `give_up`) is written
only by the worker that holds it, so a worker that lost its lease (a long pause, a network
partition) cannot overwrite what the row's new holder did. On PostgreSQL the claim uses
`FOR UPDATE SKIP LOCKED`, so many workers on many hosts share one queue; on SQLite the claim is
one atomic UPDATE.

A worker that works on many rows at once claims per "work key" (`work_key`: the callback target
of a `deliver` row — a callback or a notification — the partner of a `process` or `batch` row)
no more rows than it may work on for that
key, so that the rows of a slow or dead partner never stand in front of another partner's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)

from .schema import OperationalTables

PENDING, INFLIGHT, DONE, DEAD = "pending", "inflight", "done", "dead"
FAILED = "failed"  # not a stored status: a pending row that has been tried (last_error set)
DONE_COUNT_CAP = 10_000  # `counts` counts delivered rows up to this many


# Connection.info flag: this transaction queued outbox rows (callbacks, notifications); the
# store wakes the in-process delivery worker once it has committed (Store.begin)
QUEUED_FLAG = "dcihub.outbox_queued"


@dataclass
class OutboxRow:
    pk: int
    kind: str
    registry: str | None
    txn_pk: int | None
    sender_id: str | None
    target_url: str | None
    action: str | None
    payload: str | None
    attempts: int


PROCESS_KEY = "process:"  # work key prefix of `process` rows (then the partner's sender_id)


def target_key(url: str | None) -> str:
    """The callback target of a URL: its scheme and authority as written (`https://host:8443`),
    a prefix of the URL itself."""
    if not url:
        return ""
    start = url.find("://")
    if start < 0:
        return url
    end = len(url)
    for separator in "/?#":
        found = url.find(separator, start + 3)
        if found >= 0:
            end = min(end, found)
    return url[:end]


def work_key(kind: str, target_url: str | None, sender_id: str | None) -> str:
    """What a row's work is bounded per: its callback target (`deliver`: a callback or a
    notification), its partner (`process`: an accepted async search; `batch`: a periodic
    subscription's run)."""
    if kind == "deliver":
        return target_key(target_url)
    return f"{PROCESS_KEY}{sender_id or ''}"


class Outbox:
    def __init__(self, ops: OperationalTables) -> None:
        self.t = ops.outbox

    def enqueue(
        self,
        conn: Connection,
        kind: str,
        *,
        registry: str | None = None,
        txn_pk: int | None = None,
        sender_id: str | None = None,
        target_url: str | None = None,
        action: str | None = None,
        payload: str | None = None,
        delay: float = 0.0,
    ) -> int:
        now = time.time()
        conn.info[QUEUED_FLAG] = True  # the store wakes this process's worker once committed
        return conn.execute(
            insert(self.t).returning(self.t.c.pk),
            {
                "kind": kind,
                "registry": registry,
                "txn_pk": txn_pk,
                "sender_id": sender_id,
                "target_url": target_url,
                "action": action,
                "payload": payload,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_at": now + delay,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()

    def claim(
        self,
        engine: Engine,
        limit: int = 20,
        lease: float = 60.0,
        kinds: tuple[str, ...] = ("process", "deliver", "batch"),
        owner: str | None = None,
    ) -> list[OutboxRow]:
        """Claim due rows in a transaction of their own."""
        with engine.begin() as conn:
            return self.claim_on(conn, limit, lease, kinds, owner=owner)

    def claim_on(
        self,
        conn: Connection,
        limit: int = 20,
        lease: float = 60.0,
        kinds: tuple[str, ...] = ("process", "deliver", "batch"),
        per_key: int | None = None,
        busy: Mapping[str, int] | None = None,
        owner: str | None = None,
    ) -> list[OutboxRow]:
        """Claim due rows inside the caller's transaction (e.g. a group commit).

        With `per_key`, at most that many rows per work key (`work_key`) are in work at once:
        `busy` counts the rows the caller works on already, per key. Rows of a key that is
        full are left for later, and the rows behind them are claimed instead."""
        now = time.time()
        t = self.t
        due = and_(
            t.c.kind.in_(kinds),
            or_(
                and_(t.c.status == PENDING, t.c.next_attempt_at <= now),
                and_(t.c.status == INFLIGHT, t.c.locked_until < now),
            ),
        )
        if per_key is None:
            candidates = select(t.c.pk).where(due).order_by(t.c.next_attempt_at).limit(limit)
        else:
            picked_pks = self._pick(conn, due, limit, per_key, dict(busy or {}))
            if not picked_pks:
                return []
            candidates = select(t.c.pk).where(due, t.c.pk.in_(picked_pks))
        if conn.dialect.name == "postgresql":
            # Pick the rows once, in a materialised CTE: as a `pk IN (subquery)` the planner may
            # re-run the subquery per row, and each run skips the rows this statement already
            # updated, so far more than `limit` rows would be claimed.
            picked = (
                candidates.with_for_update(skip_locked=True)
                .cte("picked")
                .prefix_with("MATERIALIZED")
            )
            where = t.c.pk == picked.c.pk
        else:
            where = and_(t.c.pk.in_(candidates.scalar_subquery()), due)
        statement = (
            update(t)
            .where(where)
            .values(
                status=INFLIGHT,
                locked_until=now + lease,
                claimed_by=owner,
                updated_at=now,
                attempts=t.c.attempts + 1,
            )
            .returning(
                t.c.pk,
                t.c.kind,
                t.c.registry,
                t.c.txn_pk,
                t.c.sender_id,
                t.c.target_url,
                t.c.action,
                t.c.payload,
                t.c.attempts,
            )
        )
        rows = conn.execute(statement).all()
        return sorted((OutboxRow(*row) for row in rows), key=lambda r: r.pk)

    def _pick(
        self, conn: Connection, due: ColumnElement[bool], limit: int, per_key: int, busy: dict
    ) -> list[int]:
        """The due rows to claim: in order of due time, at most `per_key` in work per key.
        Keys that are full already are left out by the query itself, so that their rows,
        however many, never hide the rows behind them."""
        t = self.t
        full = [key for key, n in busy.items() if n >= per_key]
        where = [due, *(not_(self._has_key(key)) for key in full)]
        window = max(limit * per_key, 100)
        rows = conn.execute(
            select(t.c.pk, t.c.kind, t.c.target_url, t.c.sender_id)
            .where(*where)
            .order_by(t.c.next_attempt_at)
            .limit(window)
        ).all()
        picked: list[int] = []
        for pk, kind, target_url, sender_id in rows:
            key = work_key(kind, target_url, sender_id)
            if busy.get(key, 0) >= per_key:
                continue
            busy[key] = busy.get(key, 0) + 1
            picked.append(pk)
            if len(picked) >= limit:
                break
        return picked

    def _has_key(self, key: str) -> ColumnElement[bool]:
        """SQL: the row's work key is `key` (see `work_key`)."""
        t = self.t
        if key.startswith(PROCESS_KEY):
            return and_(t.c.kind != "deliver", t.c.sender_id == key[len(PROCESS_KEY) :])
        return and_(
            t.c.kind == "deliver",
            or_(
                t.c.target_url == key,
                *(t.c.target_url.startswith(key + sep, autoescape=True) for sep in "/?#"),
            ),
        )

    def renew(self, conn: Connection, owner: str, lease: float) -> int:
        """The heartbeat of a worker: extend the lease of every row `owner` holds (one
        statement, over the few `inflight` rows); returns how many it holds."""
        t = self.t
        now = time.time()
        result = conn.execute(
            update(t)
            .where(t.c.status == INFLIGHT, t.c.claimed_by == owner)
            .values(locked_until=now + lease)
        )
        return result.rowcount or 0

    def _held(self, pk: int, owner: str | None) -> ColumnElement[bool]:
        """The row, if `owner` (when given) still holds it."""
        t = self.t
        if owner is None:
            return t.c.pk == pk
        return and_(t.c.pk == pk, t.c.status == INFLIGHT, t.c.claimed_by == owner)

    def complete(self, conn: Connection, pk: int, owner: str | None = None) -> bool:
        """Done (False: `owner` no longer holds the row; nothing is written)."""
        result = conn.execute(
            update(self.t)
            .where(self._held(pk, owner))
            .values(
                status=DONE,
                locked_until=None,
                last_error=None,
                updated_at=time.time(),
                payload=None,
            )
        )  # delivered: do not keep personal data in the queue
        return bool(result.rowcount)

    def retry(
        self, conn: Connection, pk: int, error: str, delay: float, owner: str | None = None
    ) -> bool:
        now = time.time()
        result = conn.execute(
            update(self.t)
            .where(self._held(pk, owner))
            .values(
                status=PENDING,
                locked_until=None,
                last_error=error[:2000],
                next_attempt_at=now + delay,
                updated_at=now,
            )
        )
        return bool(result.rowcount)

    def give_up(self, conn: Connection, pk: int, error: str, owner: str | None = None) -> bool:
        result = conn.execute(
            update(self.t)
            .where(self._held(pk, owner))
            .values(status=DEAD, locked_until=None, last_error=error[:2000], updated_at=time.time())
        )
        return bool(result.rowcount)

    def next_due(self, conn: Connection) -> float | None:
        t = self.t
        return conn.execute(
            select(func.min(t.c.next_attempt_at)).where(t.c.status == PENDING)
        ).scalar_one_or_none()

    def counts(self, conn: Connection) -> dict[str, int]:
        """Rows per status, cheap at any queue size: the rows still to do and the dead ones
        exactly (a range of the status index each), the delivered ones up to
        `DONE_COUNT_CAP` (`DONE_COUNT_CAP` means "at least that many"; retention keeps them
        few)."""
        t = self.t
        out: dict[str, int] = {}
        for status in (PENDING, INFLIGHT, DEAD):
            n = conn.execute(select(func.count()).where(t.c.status == status)).scalar_one()
            if n:
                out[status] = n
        capped = (  # in the order of ix_outbox_status_updated: read off the index, never a scan
            select(t.c.updated_at)
            .where(t.c.status == DONE)
            .order_by(t.c.status, t.c.updated_at)
            .limit(DONE_COUNT_CAP)
            .subquery()
        )
        done = conn.execute(select(func.count()).select_from(capped)).scalar_one()
        if done:
            out[DONE] = done
        return out

    def rows(self, conn: Connection, status: str | None = None) -> list[dict[str, Any]]:
        query = select(self.t).order_by(self.t.c.pk)
        if status:
            query = query.where(self.t.c.status == status)
        return [dict(r) for r in conn.execute(query).mappings().all()]

    def deliveries(
        self,
        conn: Connection,
        states: tuple[str, ...] = (PENDING, FAILED, DEAD),
        partner: str | None = None,
        registry: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Callbacks and notifications not delivered (yet): `pending` (never tried, or being
        tried), `failed` (tried, will be retried), `dead` (given up). Without the payload."""
        t = self.t
        wanted = []
        if PENDING in states:
            wanted.append(and_(t.c.status.in_((PENDING, INFLIGHT)), or_(t.c.last_error.is_(None))))
        if FAILED in states:
            wanted.append(and_(t.c.status.in_((PENDING, INFLIGHT)), t.c.last_error.is_not(None)))
        if DEAD in states:
            wanted.append(t.c.status == DEAD)
        if not wanted:
            return []
        columns = [c for c in t.c if c.name != "payload"]
        query = select(*columns).where(t.c.kind == "deliver", or_(*wanted))
        if partner:
            query = query.where(t.c.sender_id == partner)
        if registry:
            query = query.where(t.c.registry == registry)
        rows = conn.execute(query.order_by(t.c.pk).limit(limit)).mappings().all()
        out = []
        for row in rows:
            item = dict(row)
            item["state"] = (
                DEAD
                if row["status"] == DEAD
                else FAILED
                if row["last_error"] is not None
                else PENDING
            )
            out.append(item)
        return out

    def retry_now(self, conn: Connection, pks: list[int]) -> int:
        """Try these undelivered rows again at once, with a fresh count of attempts (a dead
        row keeps its payload, so it can be sent again); returns how many were reset."""
        if not pks:
            return 0
        now = time.time()
        t = self.t
        result = conn.execute(
            update(t)
            .where(t.c.pk.in_(pks), t.c.status.in_((PENDING, DEAD)), t.c.payload.is_not(None))
            .values(
                status=PENDING, attempts=0, next_attempt_at=now, locked_until=None, updated_at=now
            )
        )
        if result.rowcount:
            conn.info[QUEUED_FLAG] = True  # due now: wake this process's worker
        return result.rowcount or 0
