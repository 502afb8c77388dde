"""Compile a bound search plan (`standard.plan`) into SQL over the indexed columns.

Only columns and tables the profile declares are ever referenced; values are always bound
parameters. A condition on a related entity becomes an `IN (SELECT ...)` over that entity's
table; inside one AND, conditions on the same related entity share one sub-query, so
"a household with a member who is female and widowed" means one member who is both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Boolean, ColumnElement, and_, false, func, not_, or_, select, true
from sqlalchemy.sql import operators

from ..standard.plan import ANY_ID, BAll, BAny, BNot, Bound, Cond, IdCond, IdIn, Leaf, SortKey
from ..standard.profiles.base import RegistryProfile
from .schema import EntityTables, Schema

_OPS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": operators.eq,
    "lt": operators.lt,
    "le": operators.le,
    "gt": operators.gt,
    "ge": operators.ge,
}


def mv_column(tables: EntityTables, attr_type: str) -> Any:
    if attr_type in ("int", "float", "bool"):
        return tables.mv.c.v_num
    if attr_type == "date":
        return tables.mv.c.v_date
    return tables.mv.c.v_text


def text_key(value: Any) -> Any:
    """Text attributes are stored case-folded so that comparisons ignore case."""
    return value.casefold() if isinstance(value, str) else value


class Compiler:
    def __init__(self, schema: Schema, registry: str, profile: RegistryProfile) -> None:
        self.schema = schema
        self.registry = registry
        self.profile = profile

    def tables(self, entity: str) -> EntityTables:
        return self.schema.tables(self.registry, entity)

    # -----------------------------------------------------------------------------------------

    def where(self, node: Bound, target: str) -> ColumnElement[bool]:
        if isinstance(node, BAll):
            return self._all(node, target)
        if isinstance(node, BAny):
            return or_(*(self.where(p, target) for p in node.parts))
        if isinstance(node, BNot):
            return not_(self.where(node.part, target))
        owner = node.entity
        if owner == target:
            return self.leaf(node)
        return self.related(target, owner, self.leaf(node))

    def _all(self, node: BAll, target: str) -> ColumnElement[bool]:
        clauses: list[ColumnElement[bool]] = []
        grouped: dict[str, list[ColumnElement[bool]]] = {}
        for part in node.parts:
            if isinstance(part, Cond | IdCond | IdIn) and part.entity != target:
                grouped.setdefault(part.entity, []).append(self.leaf(part))
            else:
                clauses.append(self.where(part, target))
        for owner, leaves in grouped.items():
            clauses.append(self.related(target, owner, and_(*leaves)))
        return and_(*clauses) if len(clauses) > 1 else clauses[0]

    def related(self, target: str, owner: str, inner: ColumnElement[bool]) -> ColumnElement[bool]:
        """`inner` is a condition over `owner`'s table; express it over `target`'s rows."""
        t = self.tables(target).main
        o = self.tables(owner).main
        target_entity = self.profile.entity(target)
        owner_entity = self.profile.entity(owner)
        if target_entity.parent == owner:
            return t.c.parent_pk.in_(select(o.c.pk).where(inner))
        if owner_entity.parent == target:
            return t.c.pk.in_(select(o.c.parent_pk).where(inner))
        raise AssertionError(f"no relation between {target} and {owner}")  # pragma: no cover

    def leaf(self, node: Leaf) -> ColumnElement[bool]:
        tables = self.tables(node.entity)
        main = tables.main
        if isinstance(node, IdCond | IdIn):
            ids = tables.ids
            # An `in` list is one bound list (expanded into parameters at execution), never
            # one sub-select per value.
            cond = (
                ids.c.id_value == node.value
                if isinstance(node, IdCond)
                else ids.c.id_value.in_(node.values)
            )
            if node.id_type != ANY_ID:
                cond = and_(ids.c.id_type == node.id_type, cond)
            return main.c.pk.in_(select(ids.c.pk).where(cond))
        attr = node.attribute
        if attr.multi:
            mv = tables.mv
            col = mv_column(tables, attr.type)
            has_attr = mv.c.attr == attr.name
            if node.op == "present":
                return main.c.pk.in_(select(mv.c.pk).where(has_attr))
            if node.op == "absent":
                return main.c.pk.not_in(select(mv.c.pk).where(has_attr))
            return main.c.pk.in_(select(mv.c.pk).where(has_attr, self._compare(col, node)))
        col = main.c[attr.column]
        if node.op == "present":
            return col.is_not(None)
        if node.op == "absent":
            return col.is_(None)
        return self._compare(col, node)

    @staticmethod
    def _compare(col: Any, node: Cond) -> ColumnElement[bool]:
        value = node.value
        is_text = node.attribute.type == "text"
        if node.op == "in":
            values = [text_key(v) for v in value] if is_text else list(value)
            return col.in_(values) if values else false()
        if is_text:
            value = text_key(value)
        if isinstance(value, bool):
            if not isinstance(col.type, Boolean):  # a multi-valued flag, stored in v_num
                return col == (1.0 if value else 0.0)
            return col.is_(true()) if value else col.is_(false())
        return _OPS[node.op](col, value)

    # -----------------------------------------------------------------------------------------

    def order_by(self, target: str, keys: tuple[SortKey, ...], dialect: str = "") -> list[Any]:
        """ORDER BY of a search page: the sort keys, then pk for a stable order.

        On SQLite the pk tie-breaker is written `pk + 0` when there are no sort keys: a bare
        `ORDER BY pk LIMIT n` makes SQLite walk the table in rowid order (no sort needed) and
        ignore the index of a selective WHERE; with the expression it uses the index and sorts
        the (few) matches."""
        tables = self.tables(target)
        main = tables.main
        out: list[Any] = []
        for key in keys:
            if key.id_type is not None:
                ids = tables.ids
                expr: Any = (
                    select(func.min(ids.c.id_value))
                    .where(ids.c.pk == main.c.pk, ids.c.id_type == key.id_type)
                    .scalar_subquery()
                )
            elif key.entity == target:
                assert key.attribute is not None
                expr = main.c[key.attribute.column]
            else:
                assert key.attribute is not None
                parent = self.tables(key.entity).main
                expr = (
                    select(parent.c[key.attribute.column])
                    .where(parent.c.pk == main.c.parent_pk)
                    .scalar_subquery()
                )
            # Records without the value come last ascending and first descending on every
            # store (PostgreSQL's default, which its indexes serve; SQLite's is the reverse).
            out.append(expr.desc().nulls_first() if key.descending else expr.asc().nulls_last())
        tie = (main.c.pk + 0) if dialect == "sqlite" and not keys else main.c.pk
        out.append(tie.asc())
        return out
