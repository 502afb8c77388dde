"""Loading a generated country into a store (used by `dcihub demo` and by the tests)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date

from ..store import Store
from .generator import Country, generate_country

BUILD_KEY = "population.build"
LOCATIONS_KEY = "population.locations"


def build_signature(people: int, seed: int, as_of: date) -> str:
    return json.dumps({"people": people, "seed": seed, "as_of": as_of.isoformat()}, sort_keys=True)


def load_country(
    store: Store, country: Country, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Bulk-load every registry of `country` that the store serves (tables must be empty)."""
    counts: dict[str, int] = {}
    with store.begin() as conn:
        for registry in country.registries:
            if registry not in store.profiles:
                continue
            counts[registry] = store.records.bulk_load(conn, registry, country.records(registry))
            if progress is not None:
                progress(registry, counts[registry])
    store.set_meta(BUILD_KEY, build_signature(country.people, country.seed, country.as_of))
    store.set_meta(
        LOCATIONS_KEY, json.dumps({"places": places_of(country), "updated": time.time()})
    )
    store.checkpoint(truncate=True)
    return counts


def places_of(country: Country) -> list[dict[str, str | None]]:
    """Regions and their districts where the people of the country were born."""
    return country.places


def ensure_population(
    store: Store,
    people: int,
    seed: int,
    as_of: date = date(2026, 1, 1),
    progress: Callable[[str, int], None] | None = None,
) -> tuple[Country, bool]:
    """Build the population into the store unless the same build is already there.

    The store is upgraded in place first (the caller owns it: the demo, a benchmark, a test).
    Returns (country, built_now). The country is regenerated in memory either way (it is
    deterministic and fast) so that samples can be written."""
    store.upgrade()
    country = generate_country(people, seed, as_of, store.profiles.values())
    wanted = build_signature(people, seed, as_of)
    found = store.get_meta(BUILD_KEY)
    if found == wanted:
        return country, False
    if found is not None:  # another population (size, seed, date): start over
        store.drop_all()
        store.upgrade()
    load_country(store, country, progress)
    return country, True
