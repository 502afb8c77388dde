"""Which record fields a partner may use: to receive, and to filter and sort on.

Fields are dotted paths into a registry's records, as in the partner file (`identifier`,
`name.given_name`); a path goes through lists and naming an object covers everything under it.
A partner may filter and sort only on the fields it may query, so that a query cannot reveal
what a reply would not show ("UIN = X and is_deceased = true" answers whether X is dead).

The bound search plan names the attributes it uses; a derived attribute counts as the field it
is computed from (`age` and sorting by age use `birth_date`, `is_deceased` uses `death_date`),
and an identifier condition uses the identifiers of its record type. A field of an embedded
record type (a household's members) is also covered by its path in the enclosing record
(`member_list.demographic_info.sex`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .codes import SearchReason
from .errors import ItemRejected
from .plan import Cond, IdCond, IdIn, SearchPlan
from .profiles.base import RegistryProfile
from .query import All, AnyOf, Not

__all__ = ["FieldAccess", "covers", "record_paths", "check_plan"]


def covers(allowed: Iterable[str], path: str) -> bool:
    """Whether `path` lies at or under one of the `allowed` paths."""
    return any(path == a or path.startswith(f"{a}.") for a in allowed if a)


def record_paths(profile: RegistryProfile, entity: str, path: str) -> list[str]:
    """`path` of an `entity` record, and the same value's path in each enclosing record."""
    out = [path]
    current = profile.entity(entity)
    while current.parent is not None and current.embedded_at:
        path = f"{current.embedded_at}.{path}"
        out.append(path)
        current = profile.entity(current.parent)
    return out


@dataclass(frozen=True)
class FieldAccess:
    """The fields of one registry's records a partner may use (for one purpose)."""

    profile: RegistryProfile
    paths: tuple[str, ...]
    setting: str = "fields"  # the partner file member that grants them (for messages)

    def allows(self, entity: str, path: str) -> bool:
        return any(covers(self.paths, p) for p in record_paths(self.profile, entity, path))

    def allows_any(self, entity: str, paths: Iterable[str]) -> bool:
        return any(self.allows(entity, p) for p in paths)

    def describe(self) -> str:
        shown = ", ".join(self.paths[:20]) + (", ..." if len(self.paths) > 20 else "")
        return shown or "none"


@dataclass(frozen=True, slots=True)
class FieldUse:
    """A use of a record field by a plan: `paths` are the field (any one of them suffices, as
    for the identifiers of a record type)."""

    kind: str  # filter | sort
    entity: str
    paths: tuple[str, ...]


def fields_used(profile: RegistryProfile, plan: SearchPlan) -> Iterator[FieldUse]:
    """Every field the plan filters or sorts on."""
    stack: list[object] = [plan.node]
    while stack:
        node = stack.pop()
        if isinstance(node, All | AnyOf):
            stack.extend(reversed(node.parts))
        elif isinstance(node, Not):
            stack.append(node.part)
        elif isinstance(node, Cond):
            yield FieldUse("filter", node.entity, (node.attribute.path,))
        elif isinstance(node, IdCond | IdIn):
            yield FieldUse("filter", node.entity, profile.entity(node.entity).identifier_paths)
    for key in plan.sort:
        if key.attribute is not None:
            yield FieldUse("sort", key.entity, (key.attribute.path,))
        else:
            yield FieldUse("sort", key.entity, profile.entity(key.entity).identifier_paths)


def check_plan(plan: SearchPlan, access: FieldAccess, where: str, query: str = "query") -> None:
    """Refuse a plan that filters or sorts on a field outside `access`: the filter with
    `rjct.search_criteria.invalid`, the sort with `rjct.sort.invalid`, naming the field.
    `query` names the member that holds the filter under `where` (a subscription's `filter`)."""
    for use in fields_used(access.profile, plan):
        if access.allows_any(use.entity, use.paths):
            continue
        field = use.paths[0] if len(use.paths) == 1 else " / ".join(use.paths)
        verb, code, part = (
            ("filters", SearchReason.SEARCH_CRITERIA_INVALID, query)
            if use.kind == "filter"
            else ("sorts", SearchReason.SORT_INVALID, "sort")
        )
        raise ItemRejected(
            code,
            f"{where}.{part} {verb} on the field '{field}' of {use.entity} records, which this "
            f"partner may not query (derived attributes such as age and is_deceased count as "
            f"the field they are computed from); it may query: {access.describe()} (the "
            f"partner's {access.setting})",
        )
