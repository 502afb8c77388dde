"""Subscriptions, and the events every change of registry data raises.

A subscription is a row of `subscriptions` plus its index rows in `subscription_keys`:
(registry, event type, key), where the key is an identifier the filter requires
(`UIN=123`) or `*`. A change of one record (`RecordStore.upsert`, `bulk_load`, `upsert_many`:
the API, an import, the CLI) asks its profile which events it raised (`profile.changes`),
finds the candidate subscriptions by that index — the event type and the identifiers of the
changed records, never every subscription — and evaluates only the candidates' filters, in
SQL over the changed record's primary key (bound again for the day, so that ages count from
the event). Each match becomes a notification in the outbox, in the same database
transaction as the change: at once for an immediate subscription (one `notify` per partner,
callback URL and subscribe transaction), or queued in `notify_queue` until a periodic
subscription's next run (`run_batch`, driven by a `batch` outbox row).

The outbox payload of a notification is its envelope without `header.sender_id`, marked with
`dcihub:notify`: the worker fills in the registry's id and cuts each record to what the
partner may receive, then the sender encrypts and signs it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, select, update

from ..standard.envelope import format_ts
from ..standard.plan import Limits
from ..standard.profiles.base import Event, RegistryProfile, identifiers_of
from ..standard.subscriptions import (
    ANY_KEY,
    Schedule,
    SubscribeTerms,
    bind_filter,
    identifier_key,
    is_identifier_only,
    notify_item,
    notify_meta,
)
from .schema import OperationalTables

if TYPE_CHECKING:
    from .outbox import Outbox
    from .records import RecordStore

SUBSCRIBED, UNSUBSCRIBED = "subscribe", "unsubscribe"
NOTIFY_KEY = "dcihub:notify"  # marks an outbox payload as a notification to finish at delivery
FILTER_LIMITS = Limits(1, 1, None, 10_000)


def new_code() -> str:
    """A subscription code: opaque, unguessable, at most 99 characters."""
    return f"sub-{uuid.uuid4().hex}"


def new_message_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Subscription:
    pk: int
    code: str
    registry: str
    sender_id: str
    transaction_id: str
    reference_id: str
    event_type: str
    entity: str
    filter_type: str | None
    filter: Any
    frequency: dict[str, Any] | None
    cron: str | None
    start_at: float
    end_at: float | None
    target_url: str
    status: str
    locale: str | None
    info: dict[str, Any]
    batch_pending: bool
    created_at: float

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.cron, self.start_at, self.end_at)

    def current_info(self) -> dict[str, Any]:
        return {**self.info, "status": self.status}


@dataclass
class NewSubscription:
    code: str
    registry: str
    sender_id: str
    transaction_id: str
    reference_id: str
    terms: SubscribeTerms
    target_url: str
    info: dict[str, Any]
    keys: list[str]


@dataclass
class Change:
    """One changed top-level record, as the record store wrote it."""

    registry: str
    profile: RegistryProfile
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    pks: dict[tuple[str, str], int] = field(default_factory=dict)  # (entity, key) -> pk


class Subscriptions:
    """The subscriptions of every registry, and the matching of changes against them."""

    def __init__(
        self, ops: OperationalTables, records: RecordStore, outbox: Outbox, today: Any = None
    ) -> None:
        self.t = ops.subscriptions
        self.keys = ops.subscription_keys
        self.queue = ops.notify_queue
        self.records = records
        self.outbox = outbox
        self.today = today or (lambda: datetime.now(UTC).date())
        # called (from any thread) once a transaction that queued outbox rows committed
        self.wakeup: Callable[[], None] | None = None

    # ----------------------------------------------------------------------------- writing

    def create(self, conn: Connection, new: list[NewSubscription]) -> list[int]:
        now = time.time()
        pks = []
        for sub in new:
            terms = sub.terms
            pk = conn.execute(
                insert(self.t).returning(self.t.c.pk),
                {
                    "code": sub.code,
                    "registry": sub.registry,
                    "sender_id": sub.sender_id,
                    "transaction_id": sub.transaction_id,
                    "reference_id": sub.reference_id,
                    "event_type": terms.event.name,
                    "entity": terms.entity.name,
                    "filter_type": terms.filter_type,
                    "filter": None if terms.filter is None else orjson.dumps(terms.filter).decode(),
                    "frequency": None
                    if terms.frequency is None
                    else orjson.dumps(terms.frequency).decode(),
                    "cron": terms.schedule.cron,
                    "start_at": terms.schedule.start,
                    "end_at": terms.schedule.end,
                    "target_url": sub.target_url,
                    "status": SUBSCRIBED,
                    "locale": terms.locale,
                    "info": orjson.dumps(sub.info).decode(),
                    "dedupe": terms.dedupe_key(sub.registry, sub.sender_id),
                    "batch_pending": False,
                    "created_at": now,
                    "updated_at": now,
                },
            ).scalar_one()
            conn.execute(
                insert(self.keys),
                [
                    {
                        "registry": sub.registry,
                        "event_type": terms.event.name,
                        "key": key,
                        "sub_pk": pk,
                    }
                    for key in sub.keys
                ],
            )
            pks.append(pk)
        return pks

    def unsubscribe(self, conn: Connection, pks: list[int]) -> None:
        """End subscriptions: out of the index at once; events queued for a periodic one are
        dropped (the partner asked for no more)."""
        if not pks:
            return
        now = time.time()
        conn.execute(
            update(self.t)
            .where(self.t.c.pk.in_(pks))
            .values(status=UNSUBSCRIBED, dedupe=None, updated_at=now)
        )
        conn.execute(delete(self.keys).where(self.keys.c.sub_pk.in_(pks)))
        conn.execute(delete(self.queue).where(self.queue.c.sub_pk.in_(pks)))

    # ----------------------------------------------------------------------------- reading

    def by_codes(self, conn: Connection, codes: list[str]) -> dict[str, Subscription]:
        found: dict[str, Subscription] = {}
        for start in range(0, len(codes), 500):
            chunk = codes[start : start + 500]
            for row in conn.execute(select(self.t).where(self.t.c.code.in_(chunk))).mappings():
                sub = _subscription(row)
                found[sub.code] = sub
        return found

    def by_pks(self, conn: Connection, pks: list[int]) -> list[Subscription]:
        out: list[Subscription] = []
        for start in range(0, len(pks), 500):
            chunk = pks[start : start + 500]
            rows = conn.execute(select(self.t).where(self.t.c.pk.in_(chunk))).mappings()
            out.extend(_subscription(r) for r in rows)
        return sorted(out, key=lambda s: s.pk)

    def existing(self, conn: Connection, dedupe_keys: list[str]) -> dict[str, str]:
        """Active subscriptions with these dedupe keys: key -> code."""
        if not dedupe_keys:
            return {}
        rows = conn.execute(
            select(self.t.c.dedupe, self.t.c.code).where(self.t.c.dedupe.in_(dedupe_keys))
        )
        return {d: c for d, c in rows}

    def of_transaction(
        self, conn: Connection, registry: str, sender_id: str, transaction_id: str
    ) -> list[Subscription]:
        rows = conn.execute(
            select(self.t)
            .where(
                self.t.c.registry == registry,
                self.t.c.sender_id == sender_id,
                self.t.c.transaction_id == transaction_id,
            )
            .order_by(self.t.c.pk)
        ).mappings()
        return [_subscription(r) for r in rows]

    def rows(self, conn: Connection, status: str | None = SUBSCRIBED) -> list[Subscription]:
        query = select(self.t).order_by(self.t.c.pk)
        if status:
            query = query.where(self.t.c.status == status)
        return [_subscription(r) for r in conn.execute(query).mappings()]

    def any_active(self, conn: Connection, registry: str) -> bool:
        found = conn.execute(
            select(self.keys.c.sub_pk).where(self.keys.c.registry == registry).limit(1)
        ).first()
        return found is not None

    def count(self, conn: Connection) -> dict[str, int]:
        rows = conn.execute(select(self.t.c.status, func.count()).group_by(self.t.c.status))
        return {status: n for status, n in rows}

    # ----------------------------------------------------------------------------- matching

    def changed(self, conn: Connection, change: Change) -> int:
        """Raise the events of one change and queue the notifications of every subscription
        they match, in the caller's transaction; returns the notifications queued."""
        events = change.profile.changes(change.before, change.after)
        if not events:
            return 0
        queued = 0
        now = time.time()
        for event in events:
            queued += self._raise(conn, change, event, now)
        return queued

    def _raise(self, conn: Connection, change: Change, event: Event, now: float) -> int:
        profile = change.profile
        etype = profile.event_type(event.type)
        assert etype is not None
        keys = [ANY_KEY, *self._identifier_keys(change, event)]
        k = self.keys
        pks = (
            conn.execute(
                select(k.c.sub_pk)
                .where(
                    k.c.registry == change.registry,
                    k.c.event_type == etype.name,
                    k.c.key.in_(keys),
                )
                .distinct()
            )
            .scalars()
            .all()
        )
        if not pks:
            return 0
        candidates = [
            s
            for s in self.by_pks(conn, list(pks))
            if s.status == SUBSCRIBED and s.schedule.active(now)
        ]
        matched: list[tuple[Subscription, dict[str, Any]]] = []
        verdicts: dict[tuple[str, str | None, str], bool] = {}
        for sub in candidates:
            record, entity, key = self._record_for(change, event, sub.entity)
            if record is None:
                continue
            digest = (entity, sub.filter_type, orjson.dumps(sub.filter).decode())
            verdict = verdicts.get(digest)
            if verdict is None:
                verdict = verdicts[digest] = self._passes(conn, change, sub, entity, key)
            if verdict:
                matched.append((sub, record))
        if not matched:
            return 0
        stamp = format_ts()
        reference = f"evt-{uuid.uuid4().hex}"
        immediate: dict[tuple[str, str, str, str], list[tuple[Subscription, dict[str, Any]]]] = {}
        for sub, record in matched:
            if sub.cron is None:
                group = (sub.sender_id, sub.target_url, sub.transaction_id, sub.entity)
                immediate.setdefault(group, []).append((sub, record))
            else:
                item = notify_item(reference, stamp, profile, etype, sub.entity, record, sub.locale)
                self._queue(conn, sub, item, now)
        for (sender_id, target, transaction_id, entity), subs in immediate.items():
            item = notify_item(
                reference, stamp, profile, etype, entity, subs[0][1], subs[0][0].locale
            )
            envelope = notify_envelope(
                change.registry,
                sender_id,
                transaction_id,
                [s.code for s, _ in subs],
                [etype.name],
                [item],
            )
            self.outbox.enqueue(
                conn,
                "deliver",
                registry=change.registry,
                sender_id=sender_id,
                target_url=target,
                action="notify",
                payload=orjson.dumps(envelope).decode(),
            )
        return len(matched)

    def _identifier_keys(self, change: Change, event: Event) -> list[str]:
        """The identifiers of the records the event is about (its own and its holder's)."""
        profile = change.profile
        entity = profile.entity(event.entity)
        found = identifiers_of(event.record, entity.identifier_paths)
        top = profile.top_entities[0] if profile.top_entities else entity
        if change.after is not None and top.name != entity.name:
            found += identifiers_of(change.after, top.identifier_paths)
            for child in profile.children(top):
                if child.embedded_at and child.name != entity.name:
                    for sub in change.after.get(child.embedded_at) or []:
                        if isinstance(sub, dict):
                            found += identifiers_of(sub, child.identifier_paths)
        return sorted({identifier_key(t, v) for t, v in found})

    def _record_for(
        self, change: Change, event: Event, entity: str
    ) -> tuple[dict[str, Any] | None, str, str | None]:
        """The record a subscription to `entity` records gets for this event: the event's own,
        or the record holding it."""
        profile = change.profile
        if entity == event.entity:
            ent = profile.entity(entity)
            return event.record, entity, _key(ent, event.record)
        holder = profile.parent(profile.entity(event.entity))
        if holder is not None and holder.name == entity and change.after is not None:
            return change.after, entity, _key(holder, change.after)
        return None, entity, None

    def _passes(
        self, conn: Connection, change: Change, sub: Subscription, entity: str, key: str | None
    ) -> bool:
        """Whether the record `key` of `entity` satisfies the subscription's filter, evaluated
        in SQL over that record's primary key (filters are bound again for today)."""
        if sub.filter is None:
            return True
        profile = change.profile
        terms = terms_of(profile, sub)
        try:
            plan = bind_filter(profile, terms, self.today(), FILTER_LIMITS, "filter")
        except Exception:  # a filter the profile no longer accepts matches nothing
            return False
        if plan is None:
            return True
        if is_identifier_only(plan.node):
            return True  # the index matched the identifier already
        if key is None:
            return False
        pk = change.pks.get((entity, key))
        main = self.records.tables(change.registry, entity).main
        if pk is None:
            pk = conn.execute(select(main.c.pk).where(main.c.record_key == key)).scalar()
            if pk is None:
                return False
            change.pks[(entity, key)] = pk
        where = self.records.compilers[change.registry].where(plan.node, entity)
        found = conn.execute(select(main.c.pk).where(and_(main.c.pk == pk, where))).first()
        return found is not None

    # ----------------------------------------------------------------------------- periodic

    def _queue(self, conn: Connection, sub: Subscription, item: dict[str, Any], now: float) -> None:
        conn.execute(
            insert(self.queue),
            {"sub_pk": sub.pk, "item": orjson.dumps(item).decode(), "created_at": now},
        )
        if sub.batch_pending:
            return
        when = sub.schedule.next_run(now)
        if when is None:
            return
        conn.execute(update(self.t).where(self.t.c.pk == sub.pk).values(batch_pending=True))
        sub.batch_pending = True
        self.outbox.enqueue(
            conn,
            "batch",
            registry=sub.registry,
            txn_pk=sub.pk,
            sender_id=sub.sender_id,
            target_url=sub.target_url,
            action="notify",
            delay=max(when - now, 0.0),
        )

    def run_batch(self, conn: Connection, sub_pk: int) -> int:
        """A periodic subscription's run: one notification with every event queued for it
        (in one transaction with the queue rows it takes); returns the events sent."""
        found = self.by_pks(conn, [sub_pk])
        if not found:
            return 0
        sub = found[0]
        rows = conn.execute(
            select(self.queue.c.pk, self.queue.c.item)
            .where(self.queue.c.sub_pk == sub_pk)
            .order_by(self.queue.c.pk)
        ).all()
        conn.execute(update(self.t).where(self.t.c.pk == sub_pk).values(batch_pending=False))
        if not rows or sub.status != SUBSCRIBED:
            return 0
        items = [orjson.loads(item) for _, item in rows]
        conn.execute(delete(self.queue).where(self.queue.c.pk.in_([pk for pk, _ in rows])))
        kinds = [sub.event_type]
        envelope = notify_envelope(
            sub.registry, sub.sender_id, sub.transaction_id, [sub.code], kinds, items
        )
        self.outbox.enqueue(
            conn,
            "deliver",
            registry=sub.registry,
            sender_id=sub.sender_id,
            target_url=sub.target_url,
            action="notify",
            payload=orjson.dumps(envelope).decode(),
        )
        return len(items)

    def pending_events(self, conn: Connection, sub_pk: int) -> int:
        return conn.execute(
            select(func.count()).select_from(self.queue).where(self.queue.c.sub_pk == sub_pk)
        ).scalar_one()


def notify_envelope(
    registry: str,
    receiver_id: str,
    transaction_id: str,
    codes: list[str],
    event_types: list[str],
    items: list[dict[str, Any]],
) -> dict[str, Any]:
    """A notification as queued: the envelope without `header.sender_id` (the worker adds the
    registry's id), marked for the worker to cut its records for the partner."""
    header = {
        "version": "1.0.0",
        "message_id": new_message_id(),
        "message_ts": format_ts(),
        "action": "notify",
        "status": "succ",
        "total_count": len(items),
        "completed_count": len(items),
        "receiver_id": receiver_id,
        "is_msg_encrypted": False,
        "meta": notify_meta(codes, transaction_id, event_types),
    }
    message = {"transaction_id": transaction_id, "notify_event": items}
    return {"header": header, "message": message, NOTIFY_KEY: {"registry": registry}}


def _key(entity: Any, record: dict[str, Any]) -> str | None:
    try:
        return str(entity.record_key(record))
    except (ValueError, KeyError):
        return None


def held_back(
    profile: RegistryProfile, sub: Subscription, queries: Any, today: Any, limits: Limits
) -> str | None:
    """Why the subscription's filter is no longer allowed by `queries` (the partner's
    `FieldAccess` for querying; None: every field), or None when it still is."""
    from ..standard.errors import ItemRejected
    from ..standard.fields import check_plan

    if queries is None or sub.filter is None:
        return None
    try:
        plan = bind_filter(profile, terms_of(profile, sub), today, limits, "filter")
        if plan is not None:
            check_plan(plan, queries, "subscribe_criteria", query="filter")
    except ItemRejected as exc:
        return exc.message
    return None


def terms_of(profile: RegistryProfile, sub: Subscription) -> SubscribeTerms:
    """The terms a stored subscription was made with (to bind its filter again)."""
    event = profile.event_type(sub.event_type)
    assert event is not None
    return SubscribeTerms(
        event,
        profile.entity(sub.entity),
        sub.filter_type,
        sub.filter,
        sub.schedule,
        sub.frequency,
        sub.locale,
        None,
    )


def _subscription(row: Any) -> Subscription:
    return Subscription(
        pk=row["pk"],
        code=row["code"],
        registry=row["registry"],
        sender_id=row["sender_id"],
        transaction_id=row["transaction_id"],
        reference_id=row["reference_id"],
        event_type=row["event_type"],
        entity=row["entity"],
        filter_type=row["filter_type"],
        filter=None if row["filter"] is None else orjson.loads(row["filter"]),
        frequency=None if row["frequency"] is None else orjson.loads(row["frequency"]),
        cron=row["cron"],
        start_at=row["start_at"],
        end_at=row["end_at"],
        target_url=row["target_url"],
        status=row["status"],
        locale=row["locale"],
        info=orjson.loads(row["info"]),
        batch_pending=bool(row["batch_pending"]),
        created_at=row["created_at"],
    )
