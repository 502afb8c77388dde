"""Subscriptions as code (pure): reading a subscribe item, frequencies, the identifiers a
filter is indexed by, and the notify messages a registry sends (DIGEST §2.9, §6 #13 #17 #18).

A subscription is bound to a registry profile like a search: its `filter` is parsed by the
same query engine (`query.parse_query`) and bound to the record type it notifies
(`plan.plan_search`); problems reject the item with `rjct.notify_types.invalid` (an unknown
event type) or `rjct.notify_details.invalid` (filter, record type, frequency), with a message
naming the problem. Nothing here touches a database or the network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from croniter import croniter

from .codes import SubscribeReason
from .errors import ItemRejected
from .messages import EventFrequency, SearchCriteria, SubscribeRequestItem
from .plan import Bound, IdCond, IdIn, Limits, SearchPlan, plan_search
from .profiles.base import Entity, EventType, RegistryProfile
from .query import All, AnyOf, parse_query

ANY_KEY = "*"  # the index key of a subscription that is not narrowed to identifiers
IMMEDIATE = "immediate"
# The words a frequency may be instead of a cron expression (DIGEST §6 #18), as cron.
WORDS = {"daily": "0 0 * * *", "weekly": "0 0 * * 0", "monthly": "0 0 1 * *"}
IMMEDIATE_WORDS = ("immediate", "immediately", "realtime", "real-time", "instant")


def details_invalid(message: str) -> ItemRejected:
    return ItemRejected(SubscribeReason.NOTIFY_DETAILS_INVALID, message)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a subscription's notifications go: at once (`cron` None) or in one batch at each
    time the cron expression names, from `start` until `end` (None: open-ended)."""

    cron: str | None
    start: float
    end: float | None

    @property
    def immediate(self) -> bool:
        return self.cron is None

    def active(self, at: float) -> bool:
        return self.start <= at and (self.end is None or at < self.end)

    def next_run(self, after: float) -> float | None:
        """The first run strictly after `after` (and not before the start), None past the end."""
        if self.cron is None:
            return after
        base = max(after, self.start - 1e-6)
        moment = datetime.fromtimestamp(base, UTC)
        found = croniter(self.cron, moment, second_at_beginning=True).get_next(datetime)
        when = float(found.timestamp())
        if self.end is not None and when >= self.end:
            return None
        return when


def cron_of(text: str, where: str) -> str | None:
    """The cron expression of a frequency (None: immediate), or ItemRejected naming why not.

    Accepted: 5-field cron (minute hour day month weekday), 6- and 7-field Quartz style (seconds
    first, then an optional year; `?` for "no specific value"), and the words daily, weekly,
    monthly (at midnight UTC; a week starts on Sunday) and immediate."""
    value = text.strip()
    lowered = value.lower()
    if not value or lowered in IMMEDIATE_WORDS:
        return None
    if lowered in WORDS:
        return WORDS[lowered]
    fields = value.split()
    if len(fields) not in (5, 6, 7) or not croniter.is_valid(value, second_at_beginning=True):
        raise details_invalid(
            f"{where} '{value[:80]}' is not a cron expression (5 fields 'minute hour day month "
            "weekday', or 6/7 fields with seconds first and an optional year, e.g. "
            "'0 0 0 5,15 * ? *') nor one of daily, weekly, monthly, immediate"
        )
    return value


def parse_schedule(frequency: EventFrequency | None, now: float, where: str) -> Schedule:
    """The schedule of a subscribe item's `frequency` (absent: immediate, from now on)."""
    if frequency is None:
        return Schedule(None, now, None)
    cron = cron_of(frequency.frequency or "", f"{where}.frequency")
    start = _moment(frequency.start_time, f"{where}.start_time") if frequency.start_time else now
    end = _moment(frequency.end_time, f"{where}.end_time") if frequency.end_time else None
    if end is not None and end <= start:
        raise details_invalid(f"{where}.end_time is not after {where}.start_time")
    if end is not None and end <= now:
        raise details_invalid(f"{where}.end_time has passed: the subscription would never notify")
    return Schedule(cron, start, end)


def _moment(value: str, where: str) -> float:
    from .envelope import parse_timestamp

    try:
        return parse_timestamp(value).timestamp()
    except ValueError as exc:
        raise details_invalid(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Reading one subscribe item


@dataclass(frozen=True)
class SubscribeTerms:
    """A subscribe item bound to a profile: what to notify, on which records, when."""

    event: EventType
    entity: Entity
    filter_type: str | None
    filter: Any
    schedule: Schedule
    frequency: dict[str, Any] | None
    locale: str | None
    authorize_purpose: str | None

    def dedupe_key(self, registry: str, sender_id: str) -> str:
        """What makes two subscriptions of one partner the same subscription."""
        doc = [
            registry,
            sender_id,
            self.event.name,
            self.entity.name,
            self.filter_type,
            self.filter,
            self.schedule.cron,
            self.schedule.start if self.frequency and self.frequency.get("start_time") else None,
            self.schedule.end,
        ]
        return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def read_terms(
    profile: RegistryProfile,
    item: SubscribeRequestItem,
    now: float,
    today: date,
    limits: Limits,
    where: str,
) -> SubscribeTerms:
    """Bind a subscribe item to the registry, or raise ItemRejected (rjct.notify_*)."""
    criteria = item.subscribe_criteria
    event = profile.event_type(criteria.reg_event_type)
    if event is None:
        raise ItemRejected(
            SubscribeReason.NOTIFY_TYPES_INVALID,
            f"{where}.subscribe_criteria.reg_event_type '{criteria.reg_event_type[:80]}' is not an "
            f"event of the {profile.title}; subscribe to one of: "
            + ", ".join(profile.reg_event_types),
        )
    entity = notify_entity(profile, event, criteria.notify_record_type, where)
    schedule = parse_schedule(criteria.frequency, now, f"{where}.subscribe_criteria.frequency")
    filter_type = criteria.filter_type or None
    term = SubscribeTerms(
        event,
        entity,
        filter_type,
        criteria.filter if criteria.filter not in (None, {}, []) else None,
        schedule,
        criteria.frequency.model_dump(exclude_none=True) if criteria.frequency else None,
        item.locale,
        criteria.authorize.purpose_code() if criteria.authorize else None,
    )
    bind_filter(profile, term, today, limits, f"{where}.subscribe_criteria.filter")
    return term


def notify_entity(
    profile: RegistryProfile, event: EventType, requested: str | None, where: str
) -> Entity:
    """The record type a subscription's notifications carry: the one the event is about, or
    the record holding it (a household for a new member)."""
    own = profile.entity(event.entity)
    if not requested:
        return own
    found = profile.find_entity(requested)
    holder = profile.parent(own)
    allowed = [own] + ([holder] if holder is not None else [])
    if found is None or found not in allowed:
        raise details_invalid(
            f"{where}.subscribe_criteria.notify_record_type '{requested[:80]}' is not what a "
            f"{event.name} event of the {profile.title} notifies; use "
            + " or ".join(e.name for e in allowed)
        )
    return found


def bind_filter(
    profile: RegistryProfile, term: SubscribeTerms, today: date, limits: Limits, where: str
) -> SearchPlan | None:
    """The filter as a search plan over the notified record type (None: every record), or
    ItemRejected (rjct.notify_details.invalid) naming the problem. Bound again at each match,
    so that an age in a filter is counted from the day of the event."""
    if term.filter is None:
        return None
    query_type = term.filter_type or _guess_type(term.filter)
    if query_type == "graphql":
        raise details_invalid(
            f"{where}: filter_type graphql is not supported here; use idtype-value, expression "
            "or predicate"
        )
    try:
        parsed = parse_query(query_type, term.filter, where)
        criteria = SearchCriteria(
            query_type=query_type, query=term.filter, reg_record_type=term.entity.name
        )
        plan = plan_search(profile, criteria, parsed, today, limits)
    except ItemRejected as exc:
        raise details_invalid(exc.message) from None
    if plan.entity.name != term.entity.name:
        raise details_invalid(
            f"{where} is a query on {plan.entity.name} records, but the subscription notifies "
            f"{term.entity.name} records"
        )
    return plan


def _guess_type(filter_: Any) -> str:
    if isinstance(filter_, list):
        return "predicate"
    if isinstance(filter_, dict) and set(filter_) <= {"type", "value"}:
        value = filter_.get("value")
        return "expression" if isinstance(value, dict) else "idtype-value"
    return "expression"


def index_keys(node: Bound | None) -> list[str]:
    """The index keys of a bound filter: the identifiers every matching record must carry
    (`UIN=123`), or `["*"]` when the filter does not narrow to identifiers."""
    keys = _keys(node) if node is not None else None
    return sorted(keys) if keys else [ANY_KEY]


def _keys(node: Bound) -> set[str] | None:
    if isinstance(node, IdCond):
        return {identifier_key(node.id_type, node.value)}
    if isinstance(node, IdIn):
        return {identifier_key(node.id_type, v) for v in node.values}
    if isinstance(node, All):
        for part in node.parts:
            found = _keys(part)
            if found:
                return found
        return None
    if isinstance(node, AnyOf):
        out: set[str] = set()
        for part in node.parts:
            found = _keys(part)
            if not found:
                return None
            out |= found
        return out
    return None


def identifier_key(id_type: str, value: str) -> str:
    return f"{id_type.upper()}={value}"[:300]


def is_identifier_only(node: Bound | None) -> bool:
    """Whether the index keys alone decide the filter (an identifier, or a list of them)."""
    if isinstance(node, IdCond | IdIn):
        return True
    if isinstance(node, AnyOf):
        return all(is_identifier_only(p) for p in node.parts)
    return False


# ---------------------------------------------------------------------------------------------
# What the registry answers and sends


def subscription_info(
    code: str,
    status: str,
    timestamp: str,
    profile: RegistryProfile,
    term: SubscribeTerms,
) -> dict[str, Any]:
    """`SubscriptionInfo` of an on-subscribe item (and of txn/status). An event the contract
    does not list is not named in it (the item's reference_id ties it to the request)."""
    info: dict[str, Any] = {
        "version": "1.0.0",
        "code": code,
        "status": status,
        "timestamp": timestamp,
        "reg_type": profile.reg_type,
    }
    if term.event.contract:
        info["reg_event_type"] = term.event.name
    info["notify_record_type"] = term.entity.name
    info["locale"] = term.locale or "eng"
    if term.frequency:
        info["frequency"] = term.frequency
    if term.filter is not None:
        if term.filter_type:
            info["filter_type"] = term.filter_type
        info["filter"] = term.filter
    return info


def notify_item(
    reference_id: str,
    timestamp: str,
    profile: RegistryProfile,
    event: EventType,
    entity: str,
    record: dict[str, Any],
    locale: str | None,
) -> dict[str, Any]:
    """One `notify_event` item: the record (one object, DIGEST §6 #8). `reg_event_type` is
    given when the contract lists the event (the others are named in header.meta)."""
    data: dict[str, Any] = {"version": "1.0.0", "reg_type": profile.reg_type}
    if event.contract:
        data["reg_event_type"] = event.name
    data["reg_record_type"] = entity
    data["reg_records"] = record
    return {
        "reference_id": reference_id,
        "timestamp": timestamp,
        "data": data,
        "locale": locale or "eng",
    }


def notify_meta(codes: list[str], transaction_id: str, event_types: list[str]) -> dict[str, Any]:
    """`header.meta` of a notification (DIGEST §6 #13): the subscription codes it answers, the
    subscribe transaction, and the event types it carries."""
    return {
        "subscription_codes": codes,
        "transaction_id": transaction_id,
        "reg_event_types": event_types,
    }
