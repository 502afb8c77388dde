"""Small pure helpers for a profile's `events(before, after)`: what a change of one record
changed (a value set, a value added to a list, an embedded record added, gone or changed);
and for its record changes: who a registration is of."""

from __future__ import annotations

from datetime import date
from typing import Any

from .. import codedirs
from .base import ChangeContext, first_value, identifier_option, values_at


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


def registrant(ctx: ChangeContext, options: dict[str, str]) -> tuple[str, dict[str, Any], str]:
    """Who a registration (`dcihub record register ...`) is of: (UIN, `demographic_info`,
    `marital_status`). The person is `--id UIN=...` (a new UIN when not given); `--name`
    ("Given Surname"), `--sex` and `--birth-date` say who they are, and what is not given is
    taken from the civil register when this node serves it and holds the person."""
    uin = identifier_option(options, "id")[1] if options.get("id") else ctx.new_id("UIN")
    civil = ctx.lookup("crvs", "UIN", uin) or {}
    name: dict[str, Any] = dict(civil.get("name") or {})
    if options.get("name"):
        given, _, surname = options["name"].strip().partition(" ")
        name = {"given_name": given, **({"surname": surname.strip()} if surname else {})}
    sex = options.get("sex") or civil.get("sex")
    if options.get("sex") and codedirs.get("sex").normalise(options["sex"]) is None:
        raise ValueError(f"--sex {options['sex']!r}: one of male, female, other, unknown")
    sex = codedirs.get("sex").normalise(sex) or sex
    birth = options.get("birth_date") or civil.get("birth_date")
    missing = [
        flag
        for flag, value in (("--name", name), ("--sex", sex), ("--birth-date", birth))
        if not value
    ]
    if missing:
        raise ValueError(f"give {', '.join(missing)}: the node holds no civil record of UIN {uin}")
    if civil.get("death_date"):
        raise ValueError(f"UIN {uin} is registered as deceased in the civil register")
    birth = day_option(ctx, {"birth_date": str(birth)}, "birth_date")
    info: dict[str, Any] = {
        "identifier": [{"identifier_type": "UIN", "identifier_value": uin}],
        "name": name,
        "sex": sex,
        "birth_date": birth,
    }
    if civil.get("address"):
        info["address"] = civil["address"]
    return uin, info, str(civil.get("marital_status") or "S")


def day_option(ctx: ChangeContext, options: dict[str, str], name: str = "date") -> str:
    """The day an option names (YYYY-MM-DD; today when not given)."""
    text = options.get(name)
    if not text:
        return ctx.today().isoformat()
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')} {text!r}: give YYYY-MM-DD") from None


def registered_at(ctx: ChangeContext, options: dict[str, str]) -> str:
    """The registration timestamp: `--date` at midnight UTC, or now."""
    return f"{day_option(ctx, options)}T00:00:00Z" if options.get("date") else ctx.now()
