"""What a registry profile declares, and the generic helpers every profile shares.

A profile is data: the registry's `reg_type`, its record types (entities), for each entity the
identifier types it answers and the searchable attributes (name, type, path in the record), and
the special endpoints the registry's contract adds. Everything else in dcihub is generic over
profiles: adding a registry means adding a profile module.

Entities can be nested: a Social Registry `Member` lives inside a `Group` record
(`member_list`). A query on one entity may name attributes of its parent (a member's household
poverty score) or of its children (a household with a widowed member); the store compiles those
into sub-queries over indexed columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any, Literal, Protocol

from ..calls import SpecialEndpoint

AttrType = Literal["text", "code", "int", "float", "date", "bool"]


@dataclass(frozen=True, slots=True)
class Attribute:
    """A searchable attribute.

    `path` is the dotted path of the value inside the entity's record; a path may pass through
    lists (every element is visited). `multi` attributes can hold several values per record and
    are stored in a side table. `derived` attributes have no column of their own: `age` is
    computed at query time from `birth_date`, `is_deceased` from `death_date`.
    """

    name: str
    type: AttrType
    path: str
    aliases: tuple[str, ...] = ()
    code_dir: str | None = None
    multi: bool = False
    derived: Literal["age", "is_set"] | None = None
    aggregate: Literal["first", "sum"] = "first"  # how a single column reads a list path
    source: str | None = None  # attribute a derived attribute is computed from
    description: str = ""

    @property
    def stored(self) -> bool:
        return self.derived is None

    @property
    def column(self) -> str:
        return f"a_{self.name}"


@dataclass(frozen=True, slots=True)
class Entity:
    """A record type a registry returns (`reg_record_type`)."""

    name: str
    attributes: tuple[Attribute, ...]
    identifier_paths: tuple[str, ...]
    identifier_types: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    any_identifier_names: tuple[str, ...] = ()  # names that match a value of any identifier
    parent: str | None = None
    embedded_at: str | None = None  # list in the parent record holding these records
    key: Callable[[dict[str, Any]], str] | None = None
    description: str = ""

    def attribute(self, name: str) -> Attribute | None:
        return self._lookup().get(name.lower())

    def _lookup(self) -> dict[str, Attribute]:
        cache = _LOOKUPS.get(id(self))
        if cache is None:
            cache = {}
            for attr in self.attributes:
                for key in (attr.name, attr.path, *attr.aliases):
                    cache.setdefault(key.lower(), attr)
            _LOOKUPS[id(self)] = cache
        return cache

    def has_identifier(self, id_type: str) -> bool:
        return id_type.upper() in _upper_set(self.identifier_types)

    def is_any_identifier(self, name: str) -> bool:
        lowered = name.lower()
        return any(
            lowered == n.lower() for n in (*self.any_identifier_names, *self.identifier_paths)
        )

    def record_key(self, record: dict[str, Any]) -> str:
        if self.key is not None:
            return self.key(record)
        key = record.get("@id")
        if not isinstance(key, str) or not key:
            raise ValueError(f"a {self.name} record has no '@id'")
        return key


_LOOKUPS: dict[int, dict[str, Attribute]] = {}
_UPPER: dict[tuple[str, ...], frozenset[str]] = {}


def _upper_set(names: tuple[str, ...]) -> frozenset[str]:
    found = _UPPER.get(names)
    if found is None:
        found = _UPPER[names] = frozenset(n.upper() for n in names)
    return found


# The generic DCI endpoints a registry may serve (paths after /registry/). Every registry serves
# search; most also serve txn/status (the DR contract has none); every contract has subscribe
# and unsubscribe (the registry then POSTs `notify` to its subscribers).
SEARCH_ENDPOINTS = ("search", "sync/search")
TXN_STATUS_ENDPOINTS = ("txn/status", "sync/txn/status")
SUBSCRIBE_ENDPOINTS = ("subscribe", "unsubscribe")
GENERIC_ENDPOINTS = SEARCH_ENDPOINTS + TXN_STATUS_ENDPOINTS + SUBSCRIBE_ENDPOINTS


@dataclass(frozen=True, slots=True)
class EventType:
    """A registry event a partner may subscribe to (`reg_event_type`).

    `entity` is the record type the event is about (the record a notification carries, or the
    record that holds it); `contract` says whether the registry's contract lists the name in
    its notify `reg_event_type` enum: a name it does not list is sent in `header.meta` only,
    so that every notification validates against the contract."""

    name: str
    entity: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    contract: bool = True

    def matches(self, name: str) -> bool:
        wanted = event_key(name)
        return wanted == event_key(self.name) or wanted in (event_key(a) for a in self.aliases)


@dataclass(frozen=True, slots=True)
class Event:
    """What one change of registry data raised: its type and the record it is about (as it is
    after the change; `entity` names its record type)."""

    type: str
    entity: str
    record: dict[str, Any]


def event_key(name: str) -> str:
    """`spdci-common:RegistryEventType:LiveBirth`, `live_birth`, `LIVEBIRTH` -> `livebirth`
    (DIGEST §6 #9: the text after the last `:`, case and `_`/`-`/space ignored)."""
    text = name.rsplit(":", 1)[-1].strip().lower()
    return "".join(c for c in text if c not in "_- ")


# What a profile says a change raised: (record before, record after) -> events. Either may be
# None (a new record; a record removed).
EventsOf = Callable[[dict[str, Any] | None, dict[str, Any] | None], list[Event]]


class ChangeContext(Protocol):
    """What an operator's record change may ask of the store (`dcihub record`)."""

    def find(self, id_type: str, value: str) -> dict[str, Any] | None:
        """The top-level record that holds this identifier (None: there is none)."""
        ...

    def get(self, key: str) -> dict[str, Any] | None:
        """The top-level record with this key (None: there is none)."""
        ...

    def lookup(self, registry: str, id_type: str, value: str) -> dict[str, Any] | None:
        """The top-level record of another registry this node serves that holds this
        identifier (None: the node does not serve it, or it holds no such record)."""
        ...

    def today(self) -> date: ...

    def now(self) -> str:
        """The current time as a timestamp of the standard."""
        ...

    def new_id(self, id_type: str) -> str:
        """A new identifier value of `id_type` that no record holds."""
        ...


@dataclass(frozen=True)
class RecordChange:
    """A change of registry data an operator may record (`dcihub record NAME REGISTRY`): a
    pure function of the options given (`id`, `mother`, `household`, `status`, `date` ...) that
    returns the top-level records to write, or raises ValueError saying what is missing."""

    name: str
    summary: str
    apply: Callable[[ChangeContext, dict[str, str]], list[dict[str, Any]]]
    options: tuple[str, ...] = ()


def option(options: dict[str, str], name: str) -> str:
    """A required option of a record change (ValueError naming it when absent)."""
    value = options.get(name)
    if not value:
        raise ValueError(f"give --{name.replace('_', '-')}")
    return value


def identifier_option(options: dict[str, str], name: str) -> tuple[str, str]:
    """An option `TYPE=VALUE` (`--id UIN=123`) as (type, value)."""
    text = option(options, name)
    id_type, sep, value = text.partition("=")
    if not sep or not id_type or not value:
        raise ValueError(f"--{name} {text!r}: give TYPE=VALUE, e.g. UIN=1234567890")
    return canonical_id_type(id_type), value.strip()


def found(ctx: ChangeContext, options: dict[str, str], name: str, title: str) -> dict[str, Any]:
    """The record an identifier option names (ValueError when the registry has none)."""
    id_type, value = identifier_option(options, name)
    record = ctx.find(id_type, value)
    if record is None:
        raise ValueError(f"the {title} holds no record with {id_type} {value}")
    return record


@dataclass(frozen=True)
class RegistryProfile:
    """Everything particular to one registry; the rest of dcihub is generic over profiles.

    `generic_endpoints` names the generic DCI endpoints it serves (from `GENERIC_ENDPOINTS`),
    `special_endpoints` its registry-specific calls with their handlers, `builder` its demo
    population, `contract` the file name of its OpenAPI contract in the DCI reference material.
    """

    name: str
    title: str
    reg_type: str
    entities: tuple[Entity, ...]
    default_entity: str
    txn_types: tuple[str, ...] = ("search", "subscribe", "unsubscribe")
    # The events partners may subscribe to, and the pure function that tells which of them a
    # change of one top-level record raised (None: no change raises any).
    event_types: tuple[EventType, ...] = ()
    events: EventsOf | None = None
    # the changes an operator may record with `dcihub record`
    record_changes: tuple[RecordChange, ...] = ()
    special_endpoints: tuple[SpecialEndpoint, ...] = ()
    generic_endpoints: tuple[str, ...] = GENERIC_ENDPOINTS
    contract: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    # The function that builds this registry's demo records from the synthetic population, as
    # "package.module:function" (population/ sits above standard/, so the reference is resolved
    # when the demo is built); None: the registry has no demo population.
    builder: str | None = None

    def __post_init__(self) -> None:
        unknown = [e for e in self.generic_endpoints if e not in GENERIC_ENDPOINTS]
        if unknown:
            raise ValueError(f"profile {self.name!r}: unknown generic endpoints {unknown}")
        paths = [*self.generic_endpoints, *(s.path for s in self.special_endpoints)]
        if len(set(paths)) != len(paths):
            raise ValueError(f"profile {self.name!r}: an endpoint path is declared twice")
        self.entity(self.default_entity)  # KeyError names a default entity that is missing
        for event in self.event_types:
            self.entity(event.entity)  # KeyError names an event's entity that is missing

    @property
    def has_txn_status(self) -> bool:
        return "sync/txn/status" in self.generic_endpoints

    @property
    def has_subscriptions(self) -> bool:
        return "subscribe" in self.generic_endpoints

    @property
    def reg_event_types(self) -> tuple[str, ...]:
        """The names of the events partners may subscribe to."""
        return tuple(e.name for e in self.event_types)

    def event_type(self, name: str) -> EventType | None:
        """The event type `name` stands for (namespaced, snake or camel case alike)."""
        for event in self.event_types:
            if event.matches(name):
                return event
        return None

    def record_change(self, name: str) -> RecordChange | None:
        """The operator's record change called `name` (`dcihub record NAME ...`)."""
        for change in self.record_changes:
            if change.name == name:
                return change
        return None

    def changes(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Event]:
        """The events a change of one top-level record raises (declared events only)."""
        if self.events is None or before == after:
            return []
        return [e for e in self.events(before, after) if self.event_type(e.type) is not None]

    def special(self, path: str) -> SpecialEndpoint | None:
        for endpoint in self.special_endpoints:
            if endpoint.path == path:
                return endpoint
        return None

    def entity(self, name: str) -> Entity:
        for ent in self.entities:
            if ent.name == name:
                return ent
        raise KeyError(name)

    def find_entity(self, name: str) -> Entity | None:
        wanted = normalise_type_name(name)
        for ent in self.entities:
            if wanted == ent.name.lower() or wanted in (a.lower() for a in ent.aliases):
                return ent
        return None

    def children(self, entity: Entity) -> list[Entity]:
        return [e for e in self.entities if e.parent == entity.name]

    def parent(self, entity: Entity) -> Entity | None:
        return self.entity(entity.parent) if entity.parent else None

    @property
    def top_entities(self) -> list[Entity]:
        return [e for e in self.entities if e.parent is None]

    def identifier_types(self) -> list[str]:
        seen: list[str] = []
        for ent in self.entities:
            for t in ent.identifier_types:
                if t not in seen:
                    seen.append(t)
        return seen


def normalise_type_name(name: str) -> str:
    """`spdci-extensions-dci:Person` -> `person` (DIGEST §6 #9)."""
    return name.rsplit(":", 1)[-1].strip().lower()


# ---------------------------------------------------------------------------------------------
# Reading values out of records


def values_at(record: Any, path: str) -> Iterator[Any]:
    """Every value found at a dotted path, walking through lists."""
    found: list[Any] = []
    _collect(record, _parts(path), 0, found)
    return iter(found)


@cache
def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _collect(node: Any, parts: tuple[str, ...], index: int, out: list[Any]) -> None:
    # iterative along dicts, recursive only into lists (records are read by the million)
    end = len(parts)
    while True:
        if isinstance(node, list):
            for element in node:
                _collect(element, parts, index, out)
            return
        if index == end:
            if node is not None and node != "":
                out.append(node)
            return
        if not isinstance(node, dict):
            return
        node = node.get(parts[index])
        if node is None:
            return
        index += 1


def first_value(record: Any, path: str) -> Any:
    for value in values_at(record, path):
        return value
    return None


# Identifier-type spellings seen in the field for the national id (DIGEST §6 #21, #24).
IDENTIFIER_TYPE_ALIASES = {"NID": "UIN", "NATIONALID": "UIN", "NATIONAL_ID": "UIN"}


def canonical_id_type(id_type: str) -> str:
    upper = id_type.strip().upper()
    return IDENTIFIER_TYPE_ALIASES.get(upper, upper)


def identifiers_of(record: dict[str, Any], paths: tuple[str, ...]) -> list[tuple[str, str]]:
    """(type, value) pairs of every Identifier object found at the entity's identifier paths."""
    out: list[tuple[str, str]] = []
    for path in paths:
        for ident in values_at(record, path):
            if not isinstance(ident, dict):
                continue
            id_type = ident.get("identifier_type")
            value = ident.get("identifier_value")
            if isinstance(id_type, str) and value not in (None, ""):
                pair = (canonical_id_type(id_type), str(value))
                if pair not in out:
                    out.append(pair)
    return out


def to_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        text = value.strip()
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            pass
        for fmt in ("%d.%m.%Y", "%d/%m/%Y"):
            try:
                return datetime.strptime(text[:10], fmt).date()
            except ValueError:
                continue
    return None


def to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value) if value in (0, 1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "y", "1"):
            return True
        if text in ("false", "no", "n", "0"):
            return False
    return None


def to_number(value: Any, integral: bool) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if integral:
            return int(value) if float(value).is_integer() else None
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return None
        if integral:
            return int(number) if number.is_integer() else None
        return number
    return None
