"""Binding a parsed query to a registry profile: the search plan the store compiles to SQL.

Binding resolves every attribute name against the profile (own attributes of the entity
searched, then its parent's, then its children's), coerces each value to the attribute's type
(codes may be sent as their code or their label), rewrites derived attributes (`age` becomes
a range on `birth_date` relative to `today`; `is_deceased` becomes "death_date is set"), and
checks sort and pagination. Unknown attributes, operators or values are refused with the
item reason code of the standard and a message naming the offending part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from . import codedirs
from .codes import SearchReason
from .errors import ItemRejected
from .messages import SearchCriteria
from .profiles.base import (
    Attribute,
    Entity,
    RegistryProfile,
    canonical_id_type,
    to_bool,
    to_date,
    to_number,
)
from .query import (
    MAX_IN_VALUES,
    All,
    AnyOf,
    Compare,
    IdentifierIs,
    Node,
    Not,
    ParsedQuery,
    count_terms,
)


@dataclass(frozen=True, slots=True)
class Cond:
    """A comparison on a stored attribute of `entity` (`op` may also be present / absent)."""

    entity: str
    attribute: Attribute
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class IdCond:
    entity: str
    id_type: str
    value: str


@dataclass(frozen=True, slots=True)
class IdIn:
    """An identifier of `id_type` that is one of `values` (compiled to ONE bound list)."""

    entity: str
    id_type: str
    values: tuple[str, ...]


Leaf = Cond | IdCond | IdIn

# A bound tree reuses the query tree's connectives; only its leaves differ (Cond, IdCond, IdIn).
BAll = All
BAny = AnyOf
BNot = Not

Bound = Leaf | All[Leaf] | AnyOf[Leaf] | Not[Leaf]


@dataclass(frozen=True, slots=True)
class SortKey:
    entity: str
    descending: bool
    attribute: Attribute | None = None
    id_type: str | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    default_page_size: int = 100
    max_page_size: int = 1000
    max_total_records: int | None = None
    # The work one message may ask for: conditions plus every value of every `in` list, over
    # all the items of the message (a single query is held to it too).
    max_query_terms: int = 10_000


@dataclass(frozen=True, slots=True)
class SearchPlan:
    entity: Entity
    node: Bound
    sort: tuple[SortKey, ...]
    page_size: int
    page_number: int

    @property
    def offset(self) -> int:
        return (self.page_number - 1) * self.page_size


def invalid(message: str) -> ItemRejected:
    return ItemRejected(SearchReason.SEARCH_CRITERIA_INVALID, message)


INT32_MAX = 2**31 - 1
MAX_NUMBER = 2**53  # larger numbers overflow SQLite integers and lose float precision


# ---------------------------------------------------------------------------------------------


def plan_search(
    profile: RegistryProfile,
    criteria: SearchCriteria,
    parsed: ParsedQuery,
    today: date,
    limits: Limits,
) -> SearchPlan:
    terms = count_terms(parsed.node)
    if terms > limits.max_query_terms:
        raise invalid(
            f"the query has {terms} terms (conditions plus the values of 'in' lists); this "
            f"registry answers at most {limits.max_query_terms} in one message"
        )
    entity = choose_entity(profile, criteria, parsed)
    node = bind(profile, entity, parsed.node, today)
    sort = bind_sort(profile, entity, criteria)
    page_size, page_number = bind_pagination(criteria, limits)
    return SearchPlan(entity, node, sort, page_size, page_number)


def choose_entity(
    profile: RegistryProfile, criteria: SearchCriteria, parsed: ParsedQuery
) -> Entity:
    """Which record type to return: response_entity, else the expression's collection, else the
    entity owning the identifier type searched, else the registry's default."""
    for source, name in (
        ("search_criteria.response_entity", criteria.response_entity),
        ("query collection", parsed.collection),
    ):
        if name:
            found = profile.find_entity(name)
            if found is None:
                names = ", ".join(e.name for e in profile.entities)
                raise invalid(
                    f"{source} '{name}' is not a record type of the {profile.title}; "
                    f"use one of: {names}"
                )
            return found
    record_type = criteria.reg_record_type
    if record_type:
        found = profile.find_entity(record_type)
        if found is not None:
            return found
    if isinstance(parsed.node, IdentifierIs):
        wanted = parsed.node.id_type
        for ent in profile.entities:
            if ent.has_identifier(wanted):
                return ent
    return profile.entity(profile.default_entity)


def resolve_attribute(
    profile: RegistryProfile, entity: Entity, name: str
) -> tuple[Entity, Attribute] | None:
    attr = entity.attribute(name)
    if attr is not None:
        return entity, attr
    parent = profile.parent(entity)
    if parent is not None:
        attr = parent.attribute(name)
        if attr is not None:
            return parent, attr
    for child in profile.children(entity):
        attr = child.attribute(name)
        if attr is not None:
            return child, attr
    return None


def resolve_identifier(profile: RegistryProfile, entity: Entity, id_type: str) -> Entity | None:
    id_type = canonical_id_type(id_type)
    candidates = [entity]
    parent = profile.parent(entity)
    if parent is not None:
        candidates.append(parent)
    candidates.extend(profile.children(entity))
    for ent in candidates:
        if ent.has_identifier(id_type):
            return ent
    return None


def searchable_names(profile: RegistryProfile, entity: Entity) -> list[str]:
    names = [a.name for a in entity.attributes]
    parent = profile.parent(entity)
    related = ([parent] if parent else []) + profile.children(entity)
    for other in related:
        names.extend(a.name for a in other.attributes if a.name not in names)
    return names


def bind(profile: RegistryProfile, entity: Entity, node: Node, today: date) -> Bound:
    if isinstance(node, All):
        return BAll(tuple(bind(profile, entity, p, today) for p in node.parts))
    if isinstance(node, AnyOf):
        return BAny(tuple(bind(profile, entity, p, today) for p in node.parts))
    if isinstance(node, Not):
        return BNot(bind(profile, entity, node.part, today))
    if isinstance(node, IdentifierIs):
        return bind_identifier(profile, entity, node.id_type, node.value)
    return bind_compare(profile, entity, node, today)


def bind_identifier(profile: RegistryProfile, entity: Entity, id_type: str, value: str) -> IdCond:
    owner = resolve_identifier(profile, entity, id_type)
    if owner is None:
        known = ", ".join(profile.identifier_types())
        raise invalid(
            f"identifier type '{id_type}' is not known to the {profile.title}; it answers: {known}"
        )
    return IdCond(owner.name, canonical_id_type(id_type), value)


def bind_compare(profile: RegistryProfile, entity: Entity, cmp: Compare, today: date) -> Bound:
    # An identifier type may be used as an attribute name ({"attribute_name": "UIN", ...}).
    resolved = resolve_attribute(profile, entity, cmp.attribute)
    if resolved is None:
        id_owner = resolve_identifier(profile, entity, cmp.attribute)
        if id_owner is not None:
            return _identifier_compare(id_owner, canonical_id_type(cmp.attribute), cmp)
        if entity.is_any_identifier(cmp.attribute):
            return _identifier_compare(entity, ANY_ID, cmp)
        names = ", ".join(searchable_names(profile, entity))
        raise invalid(
            f"attribute '{cmp.attribute}' is not searchable on {entity.name} records of the "
            f"{profile.title}; searchable attributes: {names}; identifier types: "
            f"{', '.join(profile.identifier_types())}"
        )
    owner, attr = resolved
    if attr.derived == "age":
        source = owner.attribute(attr.source or "birth_date")
        assert source is not None, f"profile error: {attr.name} has no source attribute"
        return _bind_age(owner, source, cmp, today)
    if attr.derived == "is_set":
        source = owner.attribute(attr.source or "")
        assert source is not None, f"profile error: {attr.name} has no source attribute"
        return _bind_is_set(owner, attr, source, cmp)
    if cmp.op == "in":
        values = tuple(
            dict.fromkeys(
                coerce(attr, v, cmp.attribute) for v in in_values(cmp.value, cmp.attribute)
            )
        )
        return Cond(owner.name, attr, "in", values)
    if attr.type in ("bool",) and cmp.op != "eq":
        raise invalid(f"attribute '{cmp.attribute}' is true/false; only 'eq' applies to it")
    return Cond(owner.name, attr, cmp.op, coerce(attr, cmp.value, cmp.attribute))


ANY_ID = "*"  # IdCond.id_type matching a value of any identifier type


def _identifier_compare(owner: Entity, id_type: str, cmp: Compare) -> Bound:
    if cmp.op == "eq":
        return IdCond(owner.name, id_type, _id_text(cmp.value, cmp.attribute))
    if cmp.op == "in":
        values = in_values(cmp.value, cmp.attribute)
        texts = tuple(dict.fromkeys(_id_text(v, cmp.attribute) for v in values))
        return IdIn(owner.name, id_type, texts)
    raise invalid(
        f"identifier '{cmp.attribute}' can only be compared with 'eq' or 'in', not '{cmp.op}'"
    )


def _id_text(value: Any, name: str) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise invalid(f"the value of identifier '{name}' must be a string")
    if isinstance(value, str) and "\x00" in value:
        raise invalid(f"the value of identifier '{name}' contains a NUL character")
    return str(value).strip()


def in_values(value: Any, name: str) -> list[Any]:
    """`in` takes an array; as the schema's AttributeValue has no array, a comma-separated
    string is accepted too."""
    if isinstance(value, list):
        values = value
    elif isinstance(value, str):
        values = [v.strip() for v in value.split(",") if v.strip()]
    else:
        raise invalid(
            f"operator 'in' on '{name}' needs a list of values or a comma-separated string"
        )
    if not values:
        raise invalid(f"operator 'in' on '{name}' needs at least one value")
    if len(values) > MAX_IN_VALUES:
        raise invalid(f"operator 'in' on '{name}' takes at most {MAX_IN_VALUES} values")
    return values


def coerce(attr: Attribute, value: Any, name: str) -> Any:
    """Convert a value sent on the wire to the attribute's type, or refuse it."""
    if isinstance(value, dict | list) or value is None:
        raise invalid(f"the value of '{name}' must be a single {describe_type(attr)}")
    if isinstance(value, str) and "\x00" in value:
        raise invalid(f"the value of '{name}' contains a NUL character")
    result: Any
    if attr.type == "code":
        result = _coerce_code(attr, value, name)
    elif attr.type == "text":
        result = str(value).strip() if not isinstance(value, bool) else None
    elif attr.type in ("int", "float"):
        result = to_number(value, attr.type == "int")
        if result is not None and not (math.isfinite(result) and abs(result) <= MAX_NUMBER):
            raise invalid(
                f"'{value}' is out of range for '{name}' (a finite number of at most "
                f"{MAX_NUMBER:.0e} in size)"
            )
    elif attr.type == "date":
        result = to_date(value)
    elif attr.type == "bool":
        result = to_bool(value)
    else:  # pragma: no cover - profiles only use the types above
        result = None
    if result is None:
        raise invalid(f"'{value}' is not a valid {describe_type(attr)} for '{name}'")
    return result


def _coerce_code(attr: Attribute, value: Any, name: str) -> str:
    if attr.code_dir is None:
        return str(value).strip()
    directory = codedirs.get(attr.code_dir)
    code = directory.normalise(value)
    if code is None:
        allowed = ", ".join(f"{c} ({label})" for c, label in directory.codes.items())
        raise invalid(
            f"'{value}' is not a code of {attr.code_dir} for '{name}'; use one of: {allowed}"
        )
    return code


def describe_type(attr: Attribute) -> str:
    return {
        "text": "text value",
        "code": f"code of {attr.code_dir}" if attr.code_dir else "code",
        "int": "whole number",
        "float": "number",
        "date": "date (YYYY-MM-DD)",
        "bool": "true/false value",
    }[attr.type]


def _bind_is_set(owner: Entity, attr: Attribute, source: Attribute, cmp: Compare) -> Bound:
    if cmp.op != "eq":
        raise invalid(f"attribute '{cmp.attribute}' is true/false; only 'eq' applies to it")
    flag = to_bool(cmp.value)
    if flag is None:
        raise invalid(f"'{cmp.value}' is not true or false for '{cmp.attribute}'")
    return Cond(owner.name, source, "present" if flag else "absent", None)


def _bind_age(owner: Entity, birth: Attribute, cmp: Compare, today: date) -> Bound:
    """age is whole years at `today`; rewrite as a range on birth_date (index friendly)."""

    def years(n: int) -> int:
        if n < 0 or n > 200:
            raise invalid(f"age {n} is out of range (0-200)")
        return n

    def born(op: str, on: date) -> Cond:
        return Cond(owner.name, birth, op, on)

    def age_eq(n: int) -> Bound:
        # age == n  <=>  today-(n+1)y < birth_date <= today-n y
        return BAll((born("gt", shift_years(today, n + 1)), born("le", shift_years(today, n))))

    if cmp.op == "in":  # at most 201 distinct ages: a short OR
        values = dict.fromkeys(
            _age_value(v, cmp.attribute) for v in in_values(cmp.value, cmp.attribute)
        )
        return BAny(tuple(age_eq(years(v)) for v in values))
    n = years(_age_value(cmp.value, cmp.attribute))
    if cmp.op == "eq":
        return age_eq(n)
    if cmp.op == "lt":  # younger than n: born after today - n years
        return born("gt", shift_years(today, n))
    if cmp.op == "le":
        return born("gt", shift_years(today, n + 1))
    if cmp.op == "ge":  # at least n: born on or before today - n years
        return born("le", shift_years(today, n))
    if cmp.op == "gt":
        return born("le", shift_years(today, n + 1))
    raise invalid(f"operator '{cmp.op}' does not apply to age")  # pragma: no cover


def _age_value(value: Any, name: str) -> int:
    number = to_number(value, integral=True)
    if number is None:
        raise invalid(f"'{value}' is not a whole number of years for '{name}'")
    return int(number)


def shift_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a non-leap year
        return day.replace(year=day.year - years, day=28)


def bind_sort(
    profile: RegistryProfile, entity: Entity, criteria: SearchCriteria
) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for index, item in enumerate(criteria.sort or []):
        name = item.attribute_name
        descending = item.sort_order == "desc"
        resolved = resolve_attribute(profile, entity, name)
        if resolved is not None:
            owner, attr = resolved
            if attr.derived == "age":
                source = owner.attribute(attr.source or "birth_date")
                # Older first when sorting age ascending means birth_date descending.
                if (
                    source is not None
                    and source.stored
                    and not source.multi
                    and (owner.name == entity.name or owner.name == entity.parent)
                ):
                    keys.append(SortKey(owner.name, not descending, attribute=source))
                    continue
            elif (
                attr.stored
                and not attr.multi
                and (owner.name == entity.name or owner.name == entity.parent)
            ):
                keys.append(SortKey(owner.name, descending, attribute=attr))
                continue
        elif entity.has_identifier(name):
            keys.append(SortKey(entity.name, descending, id_type=canonical_id_type(name)))
            continue
        sortable = [a.name for a in entity.attributes if not a.multi and a.derived != "is_set"]
        raise ItemRejected(
            SearchReason.SORT_INVALID,
            f"search_criteria.sort[{index}].attribute_name '{name}' cannot be sorted on for "
            f"{entity.name} records; sortable: {', '.join(sortable + list(entity.identifier_types))}",
        )
    return tuple(keys)


def bind_pagination(criteria: SearchCriteria, limits: Limits) -> tuple[int, int]:
    page = criteria.pagination
    if page is None:
        return limits.default_page_size, 1
    if page.page_size < 1:
        raise ItemRejected(
            SearchReason.PAGINATION_INVALID,
            f"search_criteria.pagination.page_size is {page.page_size}; it must be at least 1",
        )
    if page.page_size > limits.max_page_size:
        raise ItemRejected(
            SearchReason.PAGINATION_INVALID,
            f"search_criteria.pagination.page_size {page.page_size} exceeds this registry's "
            f"maximum of {limits.max_page_size}",
        )
    if page.page_number < 1:
        raise ItemRejected(
            SearchReason.PAGINATION_INVALID,
            f"search_criteria.pagination.page_number is {page.page_number}; pages count from 1",
        )
    if page.page_number > INT32_MAX:
        raise ItemRejected(
            SearchReason.PAGINATION_INVALID,
            f"search_criteria.pagination.page_number {page.page_number} exceeds {INT32_MAX} "
            "(pagination numbers are int32)",
        )
    return page.page_size, page.page_number
