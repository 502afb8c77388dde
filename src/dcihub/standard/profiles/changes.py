"""Small pure helpers for a profile's `events(before, after)`: what a change of one record
changed (a value set, a value added to a list, an embedded record added, gone or changed)."""

from __future__ import annotations

from typing import Any

from .base import first_value, values_at


def became_set(before: dict[str, Any] | None, after: dict[str, Any], path: str) -> bool:
    """`path` holds a value after the change and held none before."""
    return first_value(after, path) is not None and (
        before is None or first_value(before, path) is None
    )


def changed(before: dict[str, Any] | None, after: dict[str, Any], path: str) -> bool:
    """The value at `path` differs (a record that is new changes nothing)."""
    return before is not None and first_value(before, path) != first_value(after, path)


def added_values(before: dict[str, Any] | None, after: dict[str, Any], path: str) -> list[Any]:
    """Values at `path` (a list path) after the change that were not there before."""
    old = [] if before is None else list(values_at(before, path))
    return [v for v in values_at(after, path) if v not in old]


def embedded(record: dict[str, Any] | None, at: str) -> dict[str, dict[str, Any]]:
    """The records embedded at `at` (a list of objects), by their `@id`."""
    out: dict[str, dict[str, Any]] = {}
    for item in (record or {}).get(at) or []:
        if isinstance(item, dict) and isinstance(item.get("@id"), str):
            out[item["@id"]] = item
    return out
