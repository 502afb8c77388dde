"""Deterministic synthetic country: one fictional population seen by every DCI registry.

The country is drawn in independent blocks of at most `BLOCK_PEOPLE` people
(`generate_blocks`, one block in memory at a time; `generate_country` gathers them for small
countries and tests). For each block it draws the world (`world.py`: the people, their lives,
families, households and UINs) and runs the builder of each registry profile that names one
(`RegistryProfile.builder`, "package.module:function"): a function `build(world) -> records`
in that registry's own module of this package, which also records the registry's demo samples
on the world. Nothing here knows which registries exist.

A builder may need what other builders found (the Integrated Beneficiary Registry enrols the
people the Disability Registry assessed): it says so with `@requires(...)` (`world.py`), and
takes the facts the others `publish` from the world. Every step runs once, after the steps it
requires; each draws from its own random stream, so the order in which independent steps run
does not change the data, and neither does adding a registry.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from dcihub.population.quality import blemish
from dcihub.population.world import Record, Step, build_world, clone, locations, requirements
from dcihub.standard.profiles import PROFILES
from dcihub.standard.profiles.base import RegistryProfile

__all__ = [
    "Block",
    "Country",
    "generate_blocks",
    "generate_country",
    "plan_blocks",
    "resolve_step",
    "build_order",
]


@dataclass
class Country:
    """One synthetic country: the same people as seen by each registry that has a builder.

    `country.records(name)` are the records of the registry `name` (also readable as the
    attribute `country.<name>`), `country.samples()` the demo samples per registry.
    """

    seed: int
    people: int
    as_of: date
    _records: dict[str, list[Record]] = field(default_factory=dict, repr=False)
    _samples: dict[str, Any] = field(default_factory=dict, repr=False)
    places: list[dict[str, str | None]] = field(default_factory=list, repr=False)

    @property
    def registries(self) -> tuple[str, ...]:
        """The registries of the country, in the order their profiles were given."""
        return tuple(self._records)

    def records(self, registry: str) -> list[Record]:
        found = self._records.get(registry)
        if found is None:
            raise KeyError(
                f"unknown registry {registry!r}; expected one of {', '.join(self._records)}"
            )
        return found

    def samples(self) -> dict[str, Any]:
        """Known-to-exist identifiers per registry, as {"type", "value"[, "programme"]}."""
        return clone(self._samples)

    def __getattr__(self, name: str) -> list[Record]:
        records = self.__dict__.get("_records")
        if records is not None and name in records:
            return records[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")


BLOCK_PEOPLE = 10_000  # the largest block (the demo's default country is one block)


@dataclass(frozen=True)
class Block:
    """One block of the country: its index, first person (country-wide), size, the records
    of each registry, the registries' demo samples (the first block's only: the samples of a
    country are its first block's) and the districts its people were born in or live in."""

    index: int
    offset: int
    people: int
    records: dict[str, list[Record]]
    samples: dict[str, Any]
    birth_districts: frozenset[int]


def plan_blocks(people: int, block_people: int = BLOCK_PEOPLE) -> list[tuple[int, int]]:
    """(offset, size) of each block of a country of `people`: as few blocks as hold at most
    `block_people` each, of near-equal size (a country of up to `block_people` is one block)."""
    if people < 1:
        raise ValueError("people must be positive")
    count = -(-people // block_people)
    base, extra = divmod(people, count)
    plan, offset = [], 0
    for b in range(count):
        size = base + (1 if b < extra else 0)
        plan.append((offset, size))
        offset += size
    return plan


def generate_blocks(
    people: int = 10_000,
    seed: int = 20260101,
    as_of: date = date(2026, 1, 1),
    profiles: Iterable[RegistryProfile] | None = None,
    *,
    first: int = 0,
    block_people: int = BLOCK_PEOPLE,
    quality: float = 0.0,
) -> Iterator[Block]:
    """The country block by block (from block `first`), each drawn independently: a block is
    a community with its own families, marriages and households, from random streams seeded
    by (`seed`, block index); UINs are a country-wide permutation of the person index and
    register numbers are numbered country-wide (`World.serial`), so they stay unique. Only one
    block is in memory at a time: memory does not grow with `people`.

    The cyclic garbage collector is paused while a block is built: the records are acyclic
    trees, and its full collections would make the build quadratic instead of linear.

    With `quality` > 0, about that share of the records of every registry but the civil
    register get a deliberate data-quality problem (`quality.py`)."""
    chosen = list(PROFILES.values() if profiles is None else profiles)
    builders = {p.name: resolve_step(p.builder) for p in chosen if p.builder}
    order = build_order(builders.values())
    # a registry keying records by their content (not by @id) cannot hold a duplicate
    twins = {p.name: all(e.key is None for e in p.entities) for p in chosen if p.builder}
    for index, (offset, size) in enumerate(plan_blocks(people, block_people)):
        if index < first:
            continue
        collecting = gc.isenabled()
        gc.disable()
        try:
            world = build_world(size, seed, as_of, block=index, offset=offset)
            results: dict[Step, Any] = {}
            for step in order:
                results[step] = step(world)
            records = {name: results[builder] for name, builder in builders.items()}
            for name, found in records.items():
                if not isinstance(found, list):
                    raise TypeError(f"the builder of {name!r} returned no list of records")
            if quality > 0:
                records = {
                    name: blemish(name, found, quality, world.rng(f"quality:{name}"), twins[name])
                    for name, found in records.items()
                }
            samples = (
                {name: found for name, found in world.samples.items() if name in records}
                if index == 0
                else {}
            )
            districts = frozenset(world.birthplace) | frozenset(world.home)
            del world, results
        finally:
            if collecting:
                gc.enable()
        yield Block(index, offset, size, records, samples, districts)


def generate_country(
    people: int = 10_000,
    seed: int = 20260101,
    as_of: date = date(2026, 1, 1),
    profiles: Iterable[RegistryProfile] | None = None,
    block_people: int = BLOCK_PEOPLE,
    quality: float = 0.0,
) -> Country:
    """Build the whole synthetic country in memory (deterministic in `people`, `seed` and
    `as_of`) for the given registry profiles (default: every registered profile); profiles
    without a builder are left out. For tests and small countries: a large one is streamed
    block by block into a store (`generate_blocks`, `load.load_population`)."""
    if people < 1:
        raise ValueError("people must be positive")
    records: dict[str, list[Record]] = {}
    samples: dict[str, Any] = {}
    districts: set[int] = set()
    blocks = generate_blocks(
        people, seed, as_of, profiles, block_people=block_people, quality=quality
    )
    for block in blocks:
        for name, found in block.records.items():
            records.setdefault(name, []).extend(found)
        samples = samples or block.samples
        districts |= block.birth_districts
    return Country(seed, people, as_of, records, samples, locations(districts))


def resolve_step(ref: str) -> Step:
    """The function named by "package.module:function" (a profile's `builder`, or a step in
    `@requires`)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"a builder is named as 'package.module:function', not {ref!r}")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot find the population builder {ref!r}: {exc}") from exc
    if not callable(found):
        raise ValueError(f"the population builder {ref!r} is not a function")
    return found


def build_order(wanted: Iterable[Step]) -> list[Step]:
    """Every step `wanted` needs, each once, each after the steps it requires (depth first,
    in the order given); a cycle of requirements is an error naming it."""
    order: list[Step] = []
    done: set[Step] = set()
    path: list[Step] = []

    def visit(step: Step) -> None:
        if step in done:
            return
        if step in path:
            cycle = [*path[path.index(step) :], step]
            raise ValueError(
                "population builders require each other: " + " -> ".join(map(_name, cycle))
            )
        path.append(step)
        for ref in requirements(step):
            visit(resolve_step(ref))
        path.pop()
        done.add(step)
        order.append(step)

    for step in wanted:
        visit(step)
    return order


def _name(step: Callable[..., Any]) -> str:
    return f"{step.__module__}:{step.__qualname__}"
