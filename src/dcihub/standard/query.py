"""Search queries: from the wire forms of DIGEST §3 to one small syntax tree.

Three wire forms are read (and nothing is ever executed as text):

* `idtype-value` — `{"type": "UIN", "value": "847951632"}` (older: `identifier_type` /
  `identifier_value`);
* `expression` — an `ExpTemplate` whose `value.expression` holds a whitelisted Mongo-style
  document (`$and $or $not $eq $lt $lte $gt $gte $in`, DIGEST §6 #16), optionally with a
  `collection`; or the flat `{"dotted.path": {"eq": value}}` form of the DR / IBR calls; or a
  single `{attribute_name, operator, attribute_value}` expression (IBR sample);
* `predicate` — a list of `{seq_num, expression1, condition, expression2}` items: sorted by
  `seq_num`, each item is `e1 [cond e2]`, the items are AND-ed, and `not` means `e1 AND NOT e2`
  (DIGEST §6 #15). Older samples label such lists `expression`; they are read the same way.

Attribute names are kept as sent here; `standard.plan` binds them to a registry profile.
Every problem raises `ItemRejected(rjct.search_criteria.invalid)` naming the offending part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .codes import SearchReason
from .errors import ItemRejected

OPERATORS = ("eq", "lt", "le", "gt", "ge", "in")
_MONGO_OPS = {"$eq": "eq", "$lt": "lt", "$lte": "le", "$gt": "gt", "$gte": "ge", "$in": "in"}
_FLAT_OPS = {
    "eq": "eq",
    "lt": "lt",
    "le": "le",
    "gt": "gt",
    "ge": "ge",
    "in": "in",
    "lte": "le",
    "gte": "ge",
    **_MONGO_OPS,
}
MAX_NODES = 200  # conditions (and, or, not, comparisons) in one query
MAX_IN_VALUES = 1000  # values of one `in` list
MAX_DEPTH = 12  # nesting of $and / $or / $not in an expression


@dataclass(frozen=True, slots=True)
class Compare:
    attribute: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class IdentifierIs:
    id_type: str
    value: str


L = TypeVar("L", covariant=True)  # the leaves of a tree: query leaves here, bound ones in plan


@dataclass(frozen=True, slots=True)
class All(Generic[L]):
    parts: tuple[L | All[L] | AnyOf[L] | Not[L], ...]


@dataclass(frozen=True, slots=True)
class AnyOf(Generic[L]):
    parts: tuple[L | All[L] | AnyOf[L] | Not[L], ...]


@dataclass(frozen=True, slots=True)
class Not(Generic[L]):
    part: L | All[L] | AnyOf[L] | Not[L]


QueryLeaf = Compare | IdentifierIs
Node = QueryLeaf | All[QueryLeaf] | AnyOf[QueryLeaf] | Not[QueryLeaf]


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    node: Node
    collection: str | None = None


def invalid(message: str) -> ItemRejected:
    return ItemRejected(SearchReason.SEARCH_CRITERIA_INVALID, message)


def parse_query(query_type: str, query: Any, where: str = "search_criteria") -> ParsedQuery:
    """Parse a `query` according to its `query_type`."""
    kind = (query_type or "").strip().lower()
    if kind == "idtype-value":
        return ParsedQuery(parse_idtype_value(query, f"{where}.query"))
    if kind == "predicate":
        return ParsedQuery(parse_predicate_list(query, f"{where}.query"))
    if kind == "expression":
        return parse_expression(query, f"{where}.query")
    if kind == "graphql":
        raise invalid(
            f"{where}.query_type 'graphql' is not supported by this registry: free GraphQL is "
            "never executed; use 'expression' (Mongo-style subset) or 'predicate'"
        )
    raise invalid(
        f"{where}.query_type '{query_type}' is unknown; use one of idtype-value, expression, "
        "predicate"
    )


# ---------------------------------------------------------------------------------------------
# idtype-value


def parse_idtype_value(query: Any, where: str) -> IdentifierIs:
    if not isinstance(query, dict):
        raise invalid(f'{where} must be an object {{"type": ..., "value": ...}}')
    id_type = query.get("type", query.get("identifier_type"))
    value = query.get("value", query.get("identifier_value"))
    if not isinstance(id_type, str) or not id_type.strip():
        raise invalid(f"{where}.type must name an identifier type such as 'UIN'")
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise invalid(f"{where}.value must be a string (the identifier value)")
    text = str(value).strip()
    if not text:
        raise invalid(f"{where}.value must not be empty")
    if "\x00" in text:
        raise invalid(f"{where}.value contains a NUL character")
    if len(text) > 256:
        raise invalid(f"{where}.value is longer than 256 characters")
    return IdentifierIs(id_type.strip(), text)


# ---------------------------------------------------------------------------------------------
# predicate


def parse_predicate_list(query: Any, where: str) -> Node:
    if isinstance(query, dict) and "expression1" in query:
        query = [query]
    if isinstance(query, dict) and "attribute_name" in query:
        return parse_simple_expression(query, where)
    if not isinstance(query, list) or not query:
        raise invalid(f"{where} must be a non-empty list of predicates for query_type predicate")
    items = []
    for index, item in enumerate(query):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise invalid(f"{here} must be an object with expression1")
        items.append((_seq_num(item.get("seq_num"), here, index), index, item, here))
    items.sort(key=lambda t: (t[0], t[1]))
    parts: list[Node] = [_parse_predicate_item(item, here) for _, _, item, here in items]
    node: Node = parts[0] if len(parts) == 1 else All(tuple(parts))
    _check_size(node, where)
    return node


def _seq_num(value: Any, where: str, index: int) -> float:
    if value is None or value == "":
        return float(index)
    if isinstance(value, bool):
        raise invalid(f"{where}.seq_num must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise invalid(f"{where}.seq_num '{value}' is not a number") from None
    if not math.isfinite(number):
        raise invalid(f"{where}.seq_num '{value}' is not a finite number")
    return number


def _parse_predicate_item(item: dict[str, Any], where: str) -> Node:
    extra = sorted(
        k for k in item if k.startswith("expression") and k not in ("expression1", "expression2")
    )
    if extra:
        raise invalid(
            f"{where} has {', '.join(extra)}, which the standard does not define: a predicate "
            "item holds expression1 [condition expression2]; send further conditions as more "
            "items (they are AND-ed)"
        )
    if "expression1" not in item or item["expression1"] in (None, ""):
        raise invalid(f"{where}.expression1 is required")
    left = parse_simple_expression(item["expression1"], f"{where}.expression1")
    condition = item.get("condition")
    right_raw = item.get("expression2")
    if condition in (None, "") and right_raw in (None, ""):
        return left
    if right_raw in (None, ""):
        raise invalid(f"{where} has condition '{condition}' but no expression2")
    if condition in (None, ""):
        raise invalid(f"{where} has expression2 but no condition (and, or, not)")
    right = parse_simple_expression(right_raw, f"{where}.expression2")
    cond = str(condition).strip().lower()
    if cond == "and":
        return All((left, right))
    if cond == "or":
        return AnyOf((left, right))
    if cond == "not":
        return All((left, Not(right)))
    raise invalid(f"{where}.condition '{condition}' is unknown; use and, or, not")


def parse_simple_expression(expr: Any, where: str) -> Compare:
    if not isinstance(expr, dict):
        raise invalid(f"{where} must be an object with attribute_name, operator, attribute_value")
    name = expr.get("attribute_name")
    op = expr.get("operator")
    if not isinstance(name, str) or not name.strip():
        raise invalid(f"{where}.attribute_name is required")
    if not isinstance(op, str) or op.strip().lower() not in OPERATORS:
        raise invalid(f"{where}.operator '{op}' is not one of {', '.join(OPERATORS)}")
    if "attribute_value" not in expr:
        raise invalid(f"{where}.attribute_value is required")
    return Compare(name.strip(), op.strip().lower(), expr["attribute_value"])


# ---------------------------------------------------------------------------------------------
# expression


def parse_expression(query: Any, where: str) -> ParsedQuery:
    # Older samples label predicate lists as "expression".
    if isinstance(query, list):
        return ParsedQuery(parse_predicate_list(query, where))
    if not isinstance(query, dict) or not query:
        raise invalid(f"{where} must be an object for query_type expression")
    if "attribute_name" in query:
        return ParsedQuery(parse_simple_expression(query, where))
    if (
        "value" in query
        and isinstance(query.get("value"), dict)
        and set(query) <= {"type", "value", "@context", "@type"}
    ):
        return _parse_template(query, where)
    # Flat `{"dotted.path": {"eq": value}}` form (DR / IBR special calls), or a bare
    # Mongo-style document.
    return ParsedQuery(parse_mongo(query, where))


def _parse_template(query: dict[str, Any], where: str) -> ParsedQuery:
    value = query["value"]
    expression = value.get("expression", value)
    if not isinstance(expression, dict):
        raise invalid(
            f"{where}.value.expression must be a Mongo-style document; free query text is "
            "never executed"
        )
    collection = expression.get("collection")
    if "query" in expression:
        document = expression["query"]
    else:
        document = {k: v for k, v in expression.items() if k != "collection"}
    if not isinstance(document, dict) or not document:
        raise invalid(f"{where}.value.expression.query must be a non-empty object")
    if collection is not None and not isinstance(collection, str):
        raise invalid(f"{where}.value.expression.collection must be a string")
    node = parse_mongo(document, f"{where}.value.expression.query")
    return ParsedQuery(node, collection)


def parse_mongo(document: dict[str, Any], where: str) -> Node:
    node = _mongo_doc(document, where, depth=0)
    _check_size(node, where)
    return node


def _mongo_doc(document: Any, where: str, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise invalid(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(document, dict) or not document:
        raise invalid(f"{where} must be a non-empty object")
    parts: list[Node] = []
    for key, value in document.items():
        here = f"{where}.{key}"
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise invalid(f"{here} must be a non-empty list")
            children = tuple(
                _mongo_doc(child, f"{here}[{i}]", depth + 1) for i, child in enumerate(value)
            )
            parts.append(All(children) if key == "$and" else AnyOf(children))
        elif key == "$not":
            parts.append(Not(_mongo_doc(value, here, depth + 1)))
        elif key.startswith("$"):
            raise invalid(
                f"{here}: operator '{key}' is not supported; use $and $or $not at the top and "
                "$eq $lt $lte $gt $gte $in on fields"
            )
        else:
            parts.append(_mongo_field(key, value, here, depth + 1))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _mongo_field(name: str, spec: Any, where: str, depth: int) -> Node:
    if not name.strip():
        raise invalid(f"{where}: empty attribute name")
    if not isinstance(spec, dict):
        return Compare(name, "eq", spec)
    if not spec:
        raise invalid(f'{where} must hold an operator such as {{"$eq": value}}')
    parts: list[Node] = []
    for op, value in spec.items():
        if op == "$not":
            if depth > MAX_DEPTH:
                raise invalid(f"{where} nests $not more than {MAX_DEPTH} levels deep")
            parts.append(Not(_mongo_field(name, value, f"{where}.$not", depth + 1)))
            continue
        mapped = _FLAT_OPS.get(op)
        if mapped is None:
            raise invalid(
                f"{where}: operator '{op}' is not supported; use one of "
                "$eq $lt $lte $gt $gte $in (or eq lt le gt ge in)"
            )
        parts.append(Compare(name, mapped, value))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _check_size(node: Node, where: str) -> None:
    if count_nodes(node) > MAX_NODES:
        raise invalid(f"{where} has more than {MAX_NODES} conditions")
    for name, count in in_sizes(node):
        if count > MAX_IN_VALUES:
            raise invalid(
                f"{where}: operator 'in' on '{name}' has {count} values; it takes at "
                f"most {MAX_IN_VALUES}"
            )


def in_size(value: Any) -> int:
    """How many values an `in` operand holds (a list, or a comma-separated string)."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, str):
        return value.count(",") + 1
    return 1


def in_sizes(node: Node) -> list[tuple[str, int]]:
    if isinstance(node, Compare):
        return [(node.attribute, in_size(node.value))] if node.op == "in" else []
    if isinstance(node, IdentifierIs):
        return []
    if isinstance(node, Not):
        return in_sizes(node.part)
    return [size for part in node.parts for size in in_sizes(part)]


def count_terms(node: Node) -> int:
    """The work a query asks for: its conditions plus every value of its `in` lists."""
    return count_nodes(node) + sum(count for _, count in in_sizes(node))


def count_nodes(node: Node) -> int:
    if isinstance(node, All | AnyOf):
        return 1 + sum(count_nodes(p) for p in node.parts)
    if isinstance(node, Not):
        return 1 + count_nodes(node.part)
    return 1


def attributes_of(node: Node) -> list[str]:
    """Attribute names and identifier types mentioned in a query, in order of appearance."""
    if isinstance(node, Compare):
        return [node.attribute]
    if isinstance(node, IdentifierIs):
        return [node.id_type]
    if isinstance(node, Not):
        return attributes_of(node.part)
    out: list[str] = []
    for part in node.parts:
        out.extend(attributes_of(part))
    return out
