"""Deterministic synthetic country: one fictional population seen by every DCI registry.

`generate_country(people, seed, as_of)` draws the world (`world.py`: the people, their lives,
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from dcihub.population.world import Record, Step, birthplaces, build_world, clone, requirements
from dcihub.standard.profiles import PROFILES
from dcihub.standard.profiles.base import RegistryProfile

__all__ = ["Country", "generate_country", "resolve_step", "build_order"]


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


def generate_country(
    people: int = 10_000,
    seed: int = 20260101,
    as_of: date = date(2026, 1, 1),
    profiles: Iterable[RegistryProfile] | None = None,
) -> Country:
    """Build the synthetic country (deterministic in `people`, `seed` and `as_of`) for the
    given registry profiles (default: every registered profile); profiles without a builder
    are left out.

    The cyclic garbage collector is paused while building: the records are acyclic trees,
    and with millions of live containers its full collections would make the build
    quadratic instead of linear.
    """
    if people < 1:
        raise ValueError("people must be positive")
    chosen = PROFILES.values() if profiles is None else profiles
    builders = {p.name: resolve_step(p.builder) for p in chosen if p.builder}
    collecting = gc.isenabled()
    gc.disable()
    try:
        world = build_world(people, seed, as_of)
        results: dict[Step, Any] = {}
        for step in build_order(builders.values()):
            results[step] = step(world)
        records = {name: results[builder] for name, builder in builders.items()}
        for name, found in records.items():
            if not isinstance(found, list):
                raise TypeError(f"the builder of {name!r} returned no list of records")
        samples = {name: found for name, found in world.samples.items() if name in records}
        return Country(seed, people, as_of, records, samples, birthplaces(world))
    finally:
        if collecting:
            gc.enable()


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
