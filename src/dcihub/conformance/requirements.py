"""The requirements the conformance kit checks, read from `requirements.toml` (one data file
in the package; docs/conformance.md is generated from it).

    from dcihub.conformance.requirements import load_requirements

    for requirement in load_requirements():
        print(requirement.id, requirement.tier, requirement.statement)
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dcihub.standard.profiles import PROFILES

__all__ = [
    "ACTORS",
    "TIERS",
    "Requirement",
    "RequirementsError",
    "load_requirements",
    "parse_requirements",
    "requirement",
]

TIERS = ("core", "security", "robustness")
ACTORS = ("server", "client")
_ID = re.compile(r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)*-[0-9]{3}")
_FIELDS = ("id", "tier", "actor", "statement", "spec", "registries")


class RequirementsError(ValueError):
    """The requirements file is malformed; the message names the entry and the member."""


@dataclass(frozen=True)
class Requirement:
    id: str
    tier: str
    actor: str
    statement: str
    spec: str
    registries: tuple[str, ...]  # the registries it applies to (every one for "all")

    def applies_to(self, registry: str) -> bool:
        return registry in self.registries


def parse_requirements(text: str, source: str = "requirements") -> tuple[Requirement, ...]:
    """Read and validate a requirements document (TOML with `[[requirement]]` entries)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RequirementsError(f"{source}: not valid TOML: {exc}") from None
    entries = document.get("requirement")
    if not isinstance(entries, list) or not entries:
        raise RequirementsError(f"{source}: no [[requirement]] entries")
    unknown_top = sorted(set(document) - {"requirement"})
    if unknown_top:
        raise RequirementsError(f"{source}: unknown top-level members {unknown_top}")
    seen: set[str] = set()
    parsed = []
    for index, entry in enumerate(entries, 1):
        requirement = _parse_entry(entry, f"{source}: requirement #{index}")
        if requirement.id in seen:
            raise RequirementsError(f"{source}: requirement id {requirement.id} appears twice")
        seen.add(requirement.id)
        parsed.append(requirement)
    return tuple(parsed)


def _parse_entry(entry: Any, where: str) -> Requirement:
    if not isinstance(entry, dict):
        raise RequirementsError(f"{where}: not a table")
    missing = [name for name in _FIELDS if name not in entry]
    if missing:
        raise RequirementsError(f"{where}: missing {', '.join(missing)}")
    extra = sorted(set(entry) - set(_FIELDS))
    if extra:
        raise RequirementsError(f"{where} ({entry.get('id')}): unknown members {extra}")
    rid = entry["id"]
    if not isinstance(rid, str) or not _ID.fullmatch(rid):
        raise RequirementsError(f"{where}: id {rid!r} is not of the form AREA-NAME-001")
    where = f"{where} ({rid})"
    for name in ("tier", "actor", "statement", "spec"):
        if not isinstance(entry[name], str) or not entry[name].strip():
            raise RequirementsError(f"{where}: {name} must be a non-empty string")
    if entry["tier"] not in TIERS:
        raise RequirementsError(f"{where}: tier {entry['tier']!r} is not one of {TIERS}")
    if entry["actor"] not in ACTORS:
        raise RequirementsError(f"{where}: actor {entry['actor']!r} is not one of {ACTORS}")
    if "\n" in entry["statement"]:
        raise RequirementsError(f"{where}: the statement must be one line")
    registries = entry["registries"]
    if registries == "all":
        names = tuple(PROFILES)
    elif (
        isinstance(registries, list) and registries and all(isinstance(r, str) for r in registries)
    ):
        unknown = [r for r in registries if r not in PROFILES]
        if unknown:
            raise RequirementsError(
                f"{where}: unknown registries {unknown}; known: {', '.join(PROFILES)}"
            )
        names = tuple(registries)
    else:
        raise RequirementsError(f'{where}: registries must be "all" or a list of names')
    return Requirement(
        rid, entry["tier"], entry["actor"], entry["statement"].strip(), entry["spec"].strip(), names
    )


@functools.cache
def load_requirements(path: str | None = None) -> tuple[Requirement, ...]:
    """The kit's requirements (the package's `requirements.toml`, or the file at `path`)."""
    if path is not None:
        return parse_requirements(Path(path).read_text(encoding="utf-8"), path)
    text = resources.files("dcihub.conformance").joinpath("requirements.toml").read_text("utf-8")
    return parse_requirements(text, "dcihub/conformance/requirements.toml")


def requirement(rid: str) -> Requirement:
    """The requirement `rid` (KeyError when there is none)."""
    for candidate in load_requirements():
        if candidate.id == rid:
            return candidate
    raise KeyError(rid)
