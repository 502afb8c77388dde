"""Query builders that produce exactly the wire shapes of the standard (DIGEST §3).

    Q.id("UIN", "8462951730")                   -> idtype-value {"type", "value"}
    Q.attr("birth_date") >= "1960-01-01"        -> predicate list (one item)
    (Q.attr("sex") == "female") & (Q.attr("age") >= 60)
                                                -> predicate list (items are AND-ed)
    (Q.attr("age") < 5) | (Q.attr("age") > 80)  -> one item `e1 or e2`
    (Q.attr("age") >= 60) & ~Q.attr("is_deceased").isin([True])
                                                -> one item `e1 not e2` (= e1 AND NOT e2)

A predicate list is a conjunction of items, each `e1 [and|or|not e2]` (DIGEST §6 #15). A
combination that does not fit — an `or` of three conditions, an `or` of `and`s, a `not` with
nothing to pair it with — is sent in the `expression` form instead: an ExpTemplate holding a
Mongo-style document (`$and $or $not $eq $lt $lte $gt $gte $in`), which dcihub reads (see
`dcihub.standard.query`). Values are sent as strings (DIGEST §6 #3: the contracts'
AttributeValue cannot hold a plain integer), booleans as booleans, `in` lists as lists.

Every query offers `criteria()`: the `{"query_type", "query"}` members of a search criteria
(or, as `filter_type` / `filter`, of subscribe criteria).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from dcihub.standard.codes import QueryType

__all__ = ["Q", "Query", "IdQuery", "RawQuery", "Expr", "Cond", "Attr", "wire_value"]

Op = Literal["eq", "lt", "le", "gt", "ge", "in"]
_MONGO = {"eq": "$eq", "lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte", "in": "$in"}
EXPRESSION_TYPE = "ns:org:QueryType:NoSql"


def wire_value(value: Any) -> Any:
    """A value as the standard carries it: strings, booleans as booleans, lists of those."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value != int(value) else str(int(value))
    if isinstance(value, list | tuple | set | frozenset):
        return [wire_value(v) for v in value]
    raise TypeError(
        f"a query value must be a string, number, date, boolean or a list of those, "
        f"not {type(value).__name__}"
    )


class Query:
    """Anything that can be sent as `query_type` + `query`."""

    def criteria(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class IdQuery(Query):
    """`idtype-value`: the record holding this identifier."""

    id_type: str
    value: str

    def criteria(self) -> dict[str, Any]:
        return {
            "query_type": QueryType.IDTYPE_VALUE.value,
            "query": {"type": self.id_type, "value": self.value},
        }


@dataclass(frozen=True)
class RawQuery(Query):
    """A query given in its wire form, sent as it is."""

    query_type: str
    query: Any

    def criteria(self) -> dict[str, Any]:
        return {"query_type": self.query_type, "query": self.query}


class Expr(Query):
    """A condition tree over attributes, combined with `&`, `|` and `~`."""

    def __and__(self, other: Expr) -> Expr:
        return And.of(self, _expr(other, "&"))

    def __or__(self, other: Expr) -> Expr:
        return Or((self, _expr(other, "|")))

    def __invert__(self) -> Expr:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a query condition has no truth value: combine conditions with & | ~ (not with "
            "'and', 'or', 'not' or a chained comparison such as a <= x <= b)"
        )

    def criteria(self) -> dict[str, Any]:
        items = predicate_items(self)
        if items is not None:
            return {"query_type": QueryType.PREDICATE.value, "query": items}
        return {
            "query_type": QueryType.EXPRESSION.value,
            "query": {"type": EXPRESSION_TYPE, "value": {"expression": {"query": mongo(self)}}},
        }

    def to_mongo(self) -> dict[str, Any]:
        """The Mongo-style document of this condition (the `expression` form's query)."""
        return mongo(self)


def _expr(value: Any, op: str) -> Expr:
    if not isinstance(value, Expr):
        raise TypeError(f"'{op}' combines query conditions, not {type(value).__name__}")
    return value


@dataclass(frozen=True, eq=False)
class Cond(Expr):
    attribute: str
    op: Op
    value: Any

    def expression(self) -> dict[str, Any]:
        return {
            "attribute_name": self.attribute,
            "operator": self.op,
            "attribute_value": wire_value(self.value),
        }


@dataclass(frozen=True, eq=False)
class And(Expr):
    parts: tuple[Expr, ...]

    @staticmethod
    def of(*parts: Expr) -> And:
        flat: list[Expr] = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, And) else (part,))
        return And(tuple(flat))


@dataclass(frozen=True, eq=False)
class Or(Expr):
    parts: tuple[Expr, ...]

    def __or__(self, other: Expr) -> Expr:
        return Or((*self.parts, _expr(other, "|")))


@dataclass(frozen=True, eq=False)
class Not(Expr):
    part: Expr

    def __invert__(self) -> Expr:
        return self.part


class Attr:
    """An attribute to compare: `Q.attr("birth_date") >= "1960-01-01"`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("an attribute name must be a non-empty string")
        self.name = name

    def _cond(self, op: Op, value: Any) -> Cond:
        if value is None:
            raise TypeError(
                f"cannot compare {self.name!r} with None; to ask whether a value is recorded, "
                "use an attribute such as is_deceased"
            )
        wire_value(value)  # refuse unsendable values now, with the attribute's name at hand
        return Cond(self.name, op, value)

    def __eq__(self, value: object) -> Cond:  # type: ignore[override]
        return self._cond("eq", value)

    def __ne__(self, value: object) -> Expr:  # type: ignore[override]
        return Not(self._cond("eq", value))

    def __lt__(self, value: Any) -> Cond:
        return self._cond("lt", value)

    def __le__(self, value: Any) -> Cond:
        return self._cond("le", value)

    def __gt__(self, value: Any) -> Cond:
        return self._cond("gt", value)

    def __ge__(self, value: Any) -> Cond:
        return self._cond("ge", value)

    def isin(self, values: Iterable[Any]) -> Cond:
        listed = list(values)
        if not listed:
            raise ValueError(f"{self.name}.isin() needs at least one value")
        return self._cond("in", listed)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Q.attr({self.name!r})"


class Q:
    """Entry points of the query builders."""

    @staticmethod
    def id(id_type: str, value: str | int) -> IdQuery:
        """The record holding identifier `value` of type `id_type` (e.g. UIN, BRN)."""
        if not isinstance(id_type, str) or not id_type.strip():
            raise ValueError("an identifier type must be a non-empty string such as 'UIN'")
        text = str(value).strip()
        if not text:
            raise ValueError("an identifier value must not be empty")
        return IdQuery(id_type.strip(), text)

    @staticmethod
    def attr(name: str) -> Attr:
        """An attribute of the registry's records (see the registry's documentation)."""
        return Attr(name)

    @staticmethod
    def raw(query_type: str, query: Any) -> RawQuery:
        """A query in its wire form, sent as given."""
        return RawQuery(query_type, query)

    @staticmethod
    def expression(document: dict[str, Any], collection: str | None = None) -> RawQuery:
        """A Mongo-style document sent in the `expression` form (ExpTemplate)."""
        expression: dict[str, Any] = {"query": document}
        if collection:
            expression["collection"] = collection
        return RawQuery(
            QueryType.EXPRESSION.value,
            {"type": EXPRESSION_TYPE, "value": {"expression": expression}},
        )

    @staticmethod
    def all(*conditions: Expr) -> Expr:
        """The conjunction of `conditions` (like `a & b & c`)."""
        if not conditions:
            raise ValueError("Q.all() needs at least one condition")
        return And.of(*conditions) if len(conditions) > 1 else conditions[0]


# ---------------------------------------------------------------------------------------------
# Wire forms


def predicate_items(expr: Expr) -> list[dict[str, Any]] | None:
    """The predicate list for `expr`, or None if it cannot be written as one."""
    conjuncts: Sequence[Expr] = expr.parts if isinstance(expr, And) else (expr,)
    plain = [c for c in conjuncts if isinstance(c, Cond)]
    items: list[dict[str, Any]] = []
    for part in conjuncts:
        if isinstance(part, Cond):
            items.append({"expression1": part.expression()})
        elif (
            isinstance(part, Or)
            and len(part.parts) == 2
            and all(isinstance(p, Cond) for p in part.parts)
        ):
            left, right = part.parts
            assert isinstance(left, Cond) and isinstance(right, Cond)
            items.append(
                {
                    "expression1": left.expression(),
                    "condition": "or",
                    "expression2": right.expression(),
                }
            )
        elif isinstance(part, Not) and isinstance(part.part, Cond) and plain:
            # `e1 not e2` means e1 AND NOT e2: pair it with a condition that is AND-ed anyway
            items.append(
                {
                    "expression1": plain[0].expression(),
                    "condition": "not",
                    "expression2": part.part.expression(),
                }
            )
        else:
            return None
    for seq, item in enumerate(items, start=1):
        item["seq_num"] = seq
    return [{"seq_num": i.pop("seq_num"), **i} for i in items]


def mongo(expr: Expr) -> dict[str, Any]:
    """The Mongo-style document of `expr` (`$and $or $not` and `$eq $lt $lte $gt $gte $in`)."""
    if isinstance(expr, Cond):
        return {expr.attribute: {_MONGO[expr.op]: wire_value(expr.value)}}
    if isinstance(expr, And):
        return {"$and": [mongo(p) for p in expr.parts]}
    if isinstance(expr, Or):
        return {"$or": [mongo(p) for p in expr.parts]}
    if isinstance(expr, Not):
        return {"$not": mongo(expr.part)}
    raise TypeError(f"not a query condition: {expr!r}")
