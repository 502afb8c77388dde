"""Deliberate data-quality problems, so that matching and validation can be tested.

`blemish(registry, records, rate, rng)` gives about `rate` of a registry's records one problem
each, drawn evenly from three kinds seen in real registries:

* **typo** -- a name as another office typed it: one surname or given name (of the record's
  person, or of one member of a household) with two neighbouring letters swapped, a letter
  dropped or a letter doubled;
* **missing birth date** -- one person (or member) of the record without `birth_date`;
* **duplicate registration** -- the record registered a second time: the same content and
  identifiers (the same UIN, the same register number), under other record ids (`@id` +
  `#dup`, for the record and the members embedded in it).

The civil register (`crvs`) is the reference the others are matched against and is left clean.
The problems are drawn from the block's own random stream (`quality:<registry>`), so they are
as deterministic as the rest of the country; with `rate` 0 nothing changes (the default: the
demo and the pinned digests are of the clean country).
"""

from __future__ import annotations

import random
from typing import Any

from dcihub.population.world import Record, clone

__all__ = ["REFERENCE", "blemish"]

REFERENCE = frozenset({"crvs"})  # registries left clean


def _people(node: Any, found: list[dict[str, Any]]) -> None:
    """Every dict holding a name or a birth date (a person, a member's demographic info)."""
    if isinstance(node, dict):
        if "birth_date" in node or "surname" in node.get("name", {}):
            found.append(node)
        for value in node.values():
            if isinstance(value, dict | list):
                _people(value, found)
    elif isinstance(node, list):
        for value in node:
            _people(value, found)


def _rename(node: Any) -> None:
    """Every record id in `node` (the record's, its embedded members') + "#dup"."""
    if isinstance(node, dict):
        if isinstance(node.get("@id"), str):
            node["@id"] += "#dup"
        for value in node.values():
            if isinstance(value, dict | list):
                _rename(value)
    elif isinstance(node, list):
        for value in node:
            _rename(value)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word + word[-1:]
    at = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # neighbours swapped
        return word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]
    if kind == 1:  # a letter dropped
        return word[:at] + word[at + 1 :]
    return word[: at + 1] + word[at] + word[at + 1 :]  # a letter doubled


def blemish(
    registry: str,
    records: list[Record],
    rate: float,
    rng: random.Random,
    duplicates: bool = True,
) -> list[Record]:
    """The records with their problems (a new list; the records themselves are changed in
    place, duplicates are copies). Without `duplicates` (a registry whose records are keyed by
    their content, as an IBR enrolment by programme and holder: a second registration is the
    same record) the third kind is a missing birth date too."""
    if rate <= 0 or registry in REFERENCE:
        return records
    out: list[Record] = []
    for record in records:
        out.append(record)
        if rng.random() >= rate:
            continue
        kind = rng.randrange(3)
        if kind == 2 and duplicates and isinstance(record.get("@id"), str):
            twin = clone(record)
            _rename(twin)
            out.append(twin)
            continue
        people: list[dict[str, Any]] = []
        _people(record, people)
        if not people:
            continue
        person = people[rng.randrange(len(people))]
        if kind == 0 and isinstance(person.get("name"), dict):
            name = person["name"]
            part = "surname" if rng.random() < 0.5 else "given_name"
            if isinstance(name.get(part), str):
                name[part] = _typo(name[part], rng)
        else:
            person.pop("birth_date", None)
    return out
