"""Recording an operator's change of registry data (`dcihub record`): the profile's
`RecordChange` says what the change writes; here it is given a `ChangeContext` over the store
and its records are upserted in one transaction, which raises their events (and so queues the
notifications of the subscriptions they match) like every other change path."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from ..standard.envelope import format_ts
from ..standard.profiles.base import ChangeContext, RegistryProfile
from .database import Store


class ChangeError(ValueError):
    """The change cannot be recorded as given; the message says why (one line)."""


@dataclass
class Recorded:
    keys: list[tuple[str, bool]]  # (record key, created)
    notifications: int  # outbox rows queued by the change (immediate notifications)


class StoreChangeContext(ChangeContext):
    def __init__(
        self, store: Store, conn: Connection, registry: str, rng: random.Random | None = None
    ) -> None:
        self.store = store
        self.conn = conn
        self.registry = registry
        self.profile: RegistryProfile = store.profiles[registry]
        self.random = rng or random.SystemRandom()

    def find(self, id_type: str, value: str) -> dict[str, Any] | None:
        return self._find(self.registry, id_type, value)

    def lookup(self, registry: str, id_type: str, value: str) -> dict[str, Any] | None:
        if registry not in self.store.profiles:
            return None
        return self._find(registry, id_type, value)

    def _find(self, registry: str, id_type: str, value: str) -> dict[str, Any] | None:
        records = self.store.records
        profile = self.store.profiles[registry]
        for entity in profile.entities:
            if not entity.has_identifier(id_type):
                continue
            tables = records.tables(registry, entity.name)
            row = self.conn.execute(
                select(tables.main.c.pk, tables.main.c.parent_pk, tables.main.c.record)
                .join(tables.ids, tables.ids.c.pk == tables.main.c.pk)
                .where(tables.ids.c.id_type == id_type.upper(), tables.ids.c.id_value == value)
                .limit(1)
            ).first()
            if row is None:
                continue
            while entity.parent is not None and row is not None:
                entity = profile.entity(entity.parent)
                main = records.tables(registry, entity.name).main
                row = self.conn.execute(
                    select(main.c.pk, main.c.parent_pk, main.c.record).where(
                        main.c.pk == row.parent_pk
                    )
                ).first()
            if row is not None:
                return dict(orjson.loads(row.record))
        return None

    def get(self, key: str) -> dict[str, Any] | None:
        return self.store.records.get(self.conn, self.registry, key)

    def today(self) -> date:
        return datetime.now(UTC).date()

    def now(self) -> str:
        return format_ts()

    def new_id(self, id_type: str) -> str:
        for _ in range(100):
            if id_type.upper() == "UIN":
                value = str(self.random.randrange(10**9, 10**10))
            else:
                value = f"{id_type.upper()}-{self.today().year}-{self.random.randrange(10**6):06d}"
            if self.find(id_type, value) is None:
                return value
        raise ChangeError(f"could not draw a new {id_type}")  # pragma: no cover


def record_change(
    store: Store,
    registry: str,
    name: str,
    options: dict[str, str],
    rng: random.Random | None = None,
) -> Recorded:
    """Record the change `name` of `registry` with `options`; ChangeError says what is wrong.
    New identifiers are drawn from `rng` (default: the system's random source)."""
    profile = store.profiles.get(registry)
    if profile is None:
        raise ChangeError(f"unknown registry {registry!r}; known: {', '.join(store.profiles)}")
    change = profile.record_change(name)
    if change is None:
        known = ", ".join(c.name for c in profile.record_changes) or "none"
        raise ChangeError(f"the {profile.title} records no change {name!r}; it records: {known}")
    outbox = store.schema.ops.outbox
    with store.begin() as conn:
        before = conn.execute(select(func.coalesce(func.max(outbox.c.pk), 0))).scalar_one()
        try:
            records = change.apply(StoreChangeContext(store, conn, registry, rng), options)
        except ValueError as exc:
            raise ChangeError(f"{name} {registry}: {exc}") from None
        keys = [store.records.upsert(conn, registry, record) for record in records]
        queued = conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.pk > before)
        ).scalar_one()
    return Recorded(keys, queued)
