"""Data minimisation: keep only the fields of a record a partner may receive.

`allowed_paths` are dotted paths (`name.given_name`, `identifier.identifier_type`); a path
goes through lists, applying to every element, and naming an object keeps it whole. `None`
means "everything" and returns the record itself without copying (the common, fast case).
Allowed paths are compiled once into a tree and cached.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["minimise"]

_Tree = dict[str, "_Tree | None"]  # None = keep this subtree whole


@lru_cache(maxsize=256)
def _compile(paths: tuple[str, ...]) -> _Tree:
    tree: _Tree = {}
    for path in paths:
        node = tree
        parts = [p for p in path.split(".") if p]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part in node and node[part] is None:
                break  # an ancestor is already kept whole
            if last:
                node[part] = None
            else:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                node = child
    return tree


def _apply(value: Any, tree: _Tree) -> Any:
    if isinstance(value, list):
        return [_apply(item, tree) for item in value if isinstance(item, dict | list)]
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key not in value:
            continue
        item = value[key]
        if sub is None:
            out[key] = item
        elif isinstance(item, dict | list):
            out[key] = _apply(item, sub)
        # a scalar where the path expects an object: nothing below it to keep
    return out


def minimise(record: dict[str, Any], allowed_paths: list[str] | None) -> dict[str, Any]:
    """A copy of `record` with only `allowed_paths`; `record` itself when paths is None."""
    if allowed_paths is None:
        return record
    result: dict[str, Any] = _apply(record, _compile(tuple(allowed_paths)))
    return result
