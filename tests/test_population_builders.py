"""How the synthetic country is assembled: one builder per registry profile, run in the order
their `@requires` declare, and nothing outside the profiles and the builders naming a registry."""

from __future__ import annotations

import dataclasses
import io
import json
import tokenize
from datetime import date
from pathlib import Path

import pytest

from dcihub.population.generator import build_order, generate_country, resolve_step
from dcihub.population.world import Record, World, build_world, requires
from dcihub.standard.profiles import PROFILES

SRC = Path(__file__).resolve().parent.parent / "src" / "dcihub"
HERE = __name__

# ---- steps of a made-up registry, referred to as "<this module>:<function>" --------------

RAN: list[str] = []


@dataclasses.dataclass(frozen=True)
class Tally:
    adults: int


@requires()
def count_adults(w: World) -> None:
    RAN.append("count_adults")
    w.publish(Tally(sum(w.age(i) >= 18 for i in range(w.n))))


@requires(f"{HERE}:count_adults", "dcihub.population.crvs:build")
def build_tally(w: World) -> list[Record]:
    RAN.append("build_tally")
    w.samples["tally"] = {"identifiers": w.uins(lambda i: w.age(i) >= 18, limit=1)}
    return [{"@id": "tally:1", "adults": w.fact(Tally).adults}]


@requires(f"{HERE}:cycle_b")
def cycle_a(w: World) -> None:
    pass


@requires(f"{HERE}:cycle_a")
def cycle_b(w: World) -> None:
    pass


@requires()
def needs_a_fact_nobody_published(w: World) -> list[Record]:
    w.fact(Tally)
    return []


@requires()
def returns_no_records(w: World) -> None:
    pass


def tally_profile(builder: str = f"{HERE}:build_tally"):
    return dataclasses.replace(PROFILES["crvs"], name="tally", builder=builder)


# ---- ordering -------------------------------------------------------------------------------


def test_steps_run_once_each_after_what_they_require() -> None:
    tally, crvs = resolve_step(f"{HERE}:build_tally"), resolve_step("dcihub.population.crvs:build")
    order = build_order([tally, crvs, tally])
    assert order == [resolve_step(f"{HERE}:count_adults"), crvs, tally]


def test_every_profile_builder_resolves_with_its_requirements() -> None:
    builders = [resolve_step(p.builder) for p in PROFILES.values() if p.builder]
    order = build_order(builders)
    assert set(builders) <= set(order)
    for position, step in enumerate(order):
        for ref in getattr(step, "requires", ()):
            assert order.index(resolve_step(ref)) < position, (step, ref)


def test_a_cycle_of_requirements_is_named() -> None:
    with pytest.raises(
        ValueError, match=r"require each other: .*cycle_a -> .*cycle_b -> .*cycle_a"
    ):
        build_order([resolve_step(f"{HERE}:cycle_a")])


@pytest.mark.parametrize(
    "ref",
    ["dcihub.population.crvs", "dcihub.population.crvs:nope", "no_such_module_x:build", ":build"],
)
def test_a_bad_builder_reference_is_refused(ref: str) -> None:
    with pytest.raises(ValueError, match="builder"):
        resolve_step(ref)


# ---- the country ----------------------------------------------------------------------------


def test_a_new_registry_is_one_profile_and_one_builder() -> None:
    RAN.clear()
    country = generate_country(400, seed=5, profiles=[tally_profile(), PROFILES["dr"]])
    assert country.registries == ("tally", "dr")
    assert RAN == ["count_adults", "build_tally"]
    (record,) = country.records("tally")
    world = build_world(400, 5, date(2026, 1, 1))
    assert record["adults"] == sum(world.age(i) >= 18 for i in range(world.n))
    assert set(country.samples()) == {"tally", "dr"}  # crvs ran as a step, not as a registry
    assert country.tally == country.records("tally")


def test_a_subset_of_registries_gives_the_same_records() -> None:
    full = generate_country(800, seed=11)
    only = generate_country(800, seed=11, profiles=[PROFILES["ibr"], PROFILES["crvs"]])
    assert only.registries == ("ibr", "crvs")
    for registry in only.registries:
        assert json.dumps(only.records(registry)) == json.dumps(full.records(registry))
    assert only.samples() == {k: v for k, v in full.samples().items() if k in only.registries}


def test_a_profile_without_builder_is_left_out() -> None:
    country = generate_country(
        200, seed=1, profiles=[dataclasses.replace(PROFILES["dr"], builder=None)]
    )
    assert country.registries == ()
    with pytest.raises(KeyError):
        country.records("dr")


def test_a_missing_fact_says_which_requirement_is_missing() -> None:
    profile = tally_profile(f"{HERE}:needs_a_fact_nobody_published")
    with pytest.raises(LookupError, match=r"no Tally has been published.*@requires"):
        generate_country(50, seed=1, profiles=[profile])


def test_a_builder_must_return_records() -> None:
    with pytest.raises(TypeError, match="'tally' returned no list of records"):
        generate_country(50, seed=1, profiles=[tally_profile(f"{HERE}:returns_no_records")])


# ---- no registry named outside its profile and its builder ----------------------------------

NEUTRAL = [
    "population/generator.py",
    "population/world.py",
    "population/load.py",
    "population/names.py",
    "demo.py",
]


@pytest.mark.parametrize("path", NEUTRAL)
def test_the_assembly_names_no_registry(path: str) -> None:
    names = set(PROFILES)
    source = (SRC / path).read_text("utf-8")
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.string in names:
            found.append((token.start[0], token.string))
        elif token.type == tokenize.STRING:
            text = token.string.strip("\"'rbfu")
            if text in names or any(f'"{n}"' in token.string for n in names):
                found.append((token.start[0], token.string))
    assert not found, f"{path} names registries: {found}"
