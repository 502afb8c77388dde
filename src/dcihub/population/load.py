"""Loading a synthetic country into a store (`dcihub demo`, `dcihub population generate`,
the benchmarks and the tests).

`load_population` streams the country block by block (`generator.generate_blocks`): each
block is generated and *staged* (turned into table rows, `store.bulk.stage`) -- in worker
processes when there are several cores -- and written by this process in one transaction per
block (`store.bulk.write_staged`: executemany on SQLite, COPY on PostgreSQL), in block order,
so the store's content does not depend on the number of workers. At most one block per worker
is in flight: memory does not grow with the number of people.

What the demo needs to restart without generating anything is kept in the store's meta table:
the build signature (people, seed, date; written last, so an interrupted build is noticed and
started over), the demo samples of each registry, and the location hierarchy served at
`/.well-known/locations.json`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Engine, Index, event
from sqlalchemy.pool import StaticPool

from ..standard.profiles import PROFILES
from ..standard.profiles.base import RegistryProfile
from ..store import Store
from ..store.bulk import Staged, stage, write_staged
from ..store.database import make_engine
from .generator import BLOCK_PEOPLE, Country, generate_blocks, plan_blocks
from .world import locations as location_places

BUILD_KEY = "population.build"
LOCATIONS_KEY = "population.locations"
SAMPLES_KEY = "population.samples"

DEFER_INDEXES_FROM = 50_000  # people: a smaller load keeps its indexes while it writes
CHECKPOINT_BLOCKS = 5  # SQLite: the WAL is checkpointed into the file after so many blocks
Progress = Callable[[int, int], None]  # (people loaded so far, people in all)


def build_signature(people: int, seed: int, as_of: date, quality: float = 0.0) -> str:
    found: dict[str, Any] = {"people": people, "seed": seed, "as_of": as_of.isoformat()}
    if quality:
        found["quality"] = quality
    return json.dumps(found, sort_keys=True)


@dataclass(frozen=True)
class Population:
    """A population in a store, as its meta table describes it: enough to serve the demo and
    write demo.json without generating anything."""

    people: int
    seed: int
    as_of: date
    _samples: dict[str, Any] = field(default_factory=dict, repr=False)
    places: list[dict[str, str | None]] = field(default_factory=list, repr=False)
    counts: dict[str, int] = field(default_factory=dict)  # records loaded now (empty: reused)

    def samples(self) -> dict[str, Any]:
        """Known-to-exist identifiers per registry, as {"type", "value"[, "programme"]}."""
        return json.loads(json.dumps(self._samples))


def load_country(
    store: Store, country: Country, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Bulk-load every registry of an in-memory `country` that the store serves (tests)."""
    counts: dict[str, int] = {}
    with store.begin() as conn:
        for registry in country.registries:
            if registry not in store.profiles:
                continue
            counts[registry] = store.records.bulk_load(conn, registry, country.records(registry))
            if progress is not None:
                progress(registry, counts[registry])
    _write_meta(store, country.people, country.seed, country.as_of, country.samples())
    store.set_meta(LOCATIONS_KEY, json.dumps({"places": country.places, "updated": time.time()}))
    store.checkpoint(truncate=True)
    return counts


def _write_meta(
    store: Store, people: int, seed: int, as_of: date, samples: dict, quality: float = 0.0
) -> None:
    store.set_meta(SAMPLES_KEY, json.dumps(samples, separators=(",", ":")))
    store.set_meta(BUILD_KEY, build_signature(people, seed, as_of, quality))


# ---- streaming --------------------------------------------------------------------------


@dataclass
class _StagedBlock:
    index: int
    people: int
    staged: dict[str, Staged]
    samples: dict[str, Any]
    districts: frozenset[int]


def _stage_block(
    people: int,
    seed: int,
    as_of: date,
    names: tuple[str, ...],
    index: int,
    block_people: int,
    quality: float = 0.0,
) -> _StagedBlock:
    """Generate and stage block `index` (runs in a worker process: names profiles by name)."""
    profiles = [PROFILES[n] for n in names]
    block = next(
        generate_blocks(
            people, seed, as_of, profiles, first=index, block_people=block_people, quality=quality
        )
    )
    by_name = {p.name: p for p in profiles}
    staged = {}
    for name in list(block.records):
        staged[name] = stage(by_name[name], block.records[name])
        block.records[name] = []  # each registry's records freed once staged
    return _StagedBlock(index, block.people, staged, block.samples, block.birth_districts)


def _staged_blocks(
    people: int,
    seed: int,
    as_of: date,
    profiles: list[RegistryProfile],
    workers: int,
    block_people: int,
    quality: float = 0.0,
) -> Iterator[_StagedBlock]:
    count = len(plan_blocks(people, block_people))
    names = tuple(p.name for p in profiles)
    portable = all(PROFILES.get(p.name) is p for p in profiles)
    if workers <= 1 or count == 1 or not portable:
        by_name = {p.name: p for p in profiles}
        blocks = generate_blocks(
            people, seed, as_of, profiles, block_people=block_people, quality=quality
        )
        for block in blocks:
            staged = {n: stage(by_name[n], recs) for n, recs in block.records.items()}
            yield _StagedBlock(
                block.index, block.people, staged, block.samples, block.birth_districts
            )
        return
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: list[Future[_StagedBlock]] = []
        submitted = 0
        while submitted < count or pending:
            while submitted < count and len(pending) < workers:
                pending.append(
                    pool.submit(
                        _stage_block,
                        people,
                        seed,
                        as_of,
                        names,
                        submitted,
                        block_people,
                        quality,
                    )
                )
                submitted += 1
            yield pending.pop(0).result()


def default_workers() -> int:
    """Worker processes that generate blocks: one per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def load_population(
    store: Store,
    people: int,
    seed: int,
    as_of: date = date(2026, 1, 1),
    progress: Progress | None = None,
    workers: int | None = None,
    block_people: int = BLOCK_PEOPLE,
    quality: float = 0.0,
    defer_indexes: bool | None = None,
) -> Population:
    """Stream a synthetic country into an empty store (see the module's docstring). The
    secondary indexes are dropped and built after the load when `defer_indexes` (default:
    from `DEFER_INDEXES_FROM` people on, below which maintaining them costs less than the
    hundred-odd statements that drop and build them)."""
    if people < 1:
        raise ValueError("people must be positive")
    profiles = [p for p in store.profiles.values() if p.builder]
    if workers is None:
        workers = default_workers()
    samples: dict[str, Any] = {}
    districts: set[int] = set()
    if progress is not None:
        progress(0, people)
    _check_empty(store, profiles)
    engine = _loading_engine(store)
    try:
        if defer_indexes is None:
            defer_indexes = people >= DEFER_INDEXES_FROM
        deferred = _drop_indexes(engine, store, profiles) if defer_indexes else []
        counts = _load_blocks(
            engine,
            store,
            block_people,
            workers,
            quality,
            people,
            seed,
            as_of,
            profiles,
            progress,
            samples,
            districts,
        )
        with engine.begin() as conn:
            for index in deferred:
                index.create(conn)
            # the planner's statistics, so that it picks the selective index of a predicate
            # (without them SQLite prefers any equality, e.g. sex, over a narrow date range)
            conn.exec_driver_sql("ANALYZE")
    finally:
        if engine is not store.engine:
            engine.dispose()
    places = location_places(districts)
    store.set_meta(LOCATIONS_KEY, json.dumps({"places": places, "updated": time.time()}))
    _write_meta(store, people, seed, as_of, samples, quality)
    store.checkpoint(truncate=True)
    return Population(people, seed, as_of, samples, places, counts)


def _loading_engine(store: Store) -> Engine:
    """Where the load writes. On SQLite, a connection of its own without memory-mapped I/O
    and with sorts spilling to temporary files (`mmap_size=0`, `temp_store=FILE`): the pages
    of a multi-gigabyte file mapped while indexes are built, and the sorts of those indexes
    held in memory, would make the loader's memory grow with the store."""
    if store.dialect != "sqlite":
        return store.engine
    engine = make_engine(store.url, poolclass=StaticPool)

    @event.listens_for(engine, "connect")
    def _bulk_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA mmap_size=0")
        cursor.execute("PRAGMA temp_store=FILE")
        cursor.close()

    return engine


def _load_blocks(
    engine: Engine,
    store: Store,
    block_people: int,
    workers: int,
    quality: float,
    people: int,
    seed: int,
    as_of: date,
    profiles: list[RegistryProfile],
    progress: Progress | None,
    samples: dict[str, Any],
    districts: set[int],
) -> dict[str, int]:
    counts: dict[str, int] = {}
    done = 0
    for block in _staged_blocks(people, seed, as_of, profiles, workers, block_people, quality):
        with engine.begin() as conn:
            for name, staged in block.staged.items():
                counts[name] = counts.get(name, 0) + write_staged(
                    conn, store.schema, store.profiles[name], staged
                )
        if store.dialect == "sqlite" and block.index % CHECKPOINT_BLOCKS == CHECKPOINT_BLOCKS - 1:
            with engine.connect() as conn:  # no reader yet: keeps the WAL small
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        if block.index == 0:
            samples.update(block.samples)
        districts |= block.districts
        done += block.people
        if progress is not None:
            progress(done, people)
    return counts


class PopulationError(Exception):
    """A population cannot be loaded into this store (the message says why)."""


def _check_empty(store: Store, profiles: list[RegistryProfile]) -> None:
    """A population is loaded only into empty registries that no subscription watches: it is
    written on the bulk path, which raises no change events."""
    with store.read() as conn:
        for profile in profiles:
            for entity in profile.top_entities:
                if store.records.count(conn, profile.name, entity.name):
                    raise PopulationError(
                        f"the {profile.name} registry of the store already holds records: a "
                        "synthetic population is loaded into an empty store"
                    )
            if store.subscriptions.any_active(conn, profile.name):
                raise PopulationError(
                    f"the {profile.name} registry of the store has subscriptions: a synthetic "
                    "population is loaded into a store nobody subscribes to yet"
                )


def _drop_indexes(engine: Engine, store: Store, profiles: list[RegistryProfile]) -> list[Index]:
    """Drop the secondary indexes of the (empty) record tables, to be built once the rows are
    in: sorting a million keys once is much faster than inserting them one by one into
    B-trees that outgrow the cache. Primary keys and the unique record keys stay."""
    dropped: list[Index] = []
    with engine.begin() as conn:
        for profile in profiles:
            for entity in profile.entities:
                for table in store.schema.tables(profile.name, entity.name).all:
                    for index in sorted(table.indexes, key=lambda i: str(i.name)):
                        index.drop(conn, checkfirst=True)
                        dropped.append(index)
    return dropped


def stored_population(store: Store) -> Population | None:
    """The population the store's meta table describes (None: no complete build)."""
    found = store.get_meta(BUILD_KEY)
    samples = store.get_meta(SAMPLES_KEY)
    if found is None or samples is None:
        return None
    build = json.loads(found)
    locations = store.get_meta(LOCATIONS_KEY)
    places = json.loads(locations)["places"] if locations else []
    return Population(
        int(build["people"]),
        int(build["seed"]),
        date.fromisoformat(build["as_of"]),
        json.loads(samples),
        places,
    )


def ensure_population(
    store: Store,
    people: int,
    seed: int,
    as_of: date = date(2026, 1, 1),
    progress: Progress | None = None,
    workers: int | None = None,
) -> tuple[Population, bool]:
    """Build the population into the store unless the same build is already there (the
    demo's store: anything else it holds -- another size, seed or date, or a build that was
    interrupted -- is dropped and rebuilt). See `generate_into`."""
    return generate_into(store, people, seed, as_of, True, progress, workers)


def generate_into(
    store: Store,
    people: int,
    seed: int,
    as_of: date = date(2026, 1, 1),
    replace: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    quality: float = 0.0,
) -> tuple[Population, bool]:
    """Build the population into the store unless the same build is already there.

    The store is upgraded in place first. Returns (population, built_now). A store that holds
    the same build is reused as it is -- nothing is generated: the samples and locations come
    from its meta table. A store holding anything else is emptied first with `replace`
    (every dcihub table dropped and made anew), else refused (`PopulationError`)."""
    store.upgrade()
    wanted = build_signature(people, seed, as_of, quality)
    if store.get_meta(BUILD_KEY) == wanted and store.get_meta(SAMPLES_KEY) is None:
        # built by a dcihub that kept no samples in the store: the samples are the first
        # block's, so that block alone is drawn again (once) to find them
        profiles = [p for p in store.profiles.values() if p.builder]
        first = next(generate_blocks(people, seed, as_of, profiles, quality=quality))
        store.set_meta(SAMPLES_KEY, json.dumps(first.samples, separators=(",", ":")))
    found = stored_population(store)
    if found is not None and store.get_meta(BUILD_KEY) == wanted:
        return found, False
    if found is not None or store.get_meta(BUILD_KEY) is not None or _has_records(store):
        if not replace:
            raise PopulationError(
                "the store already holds records (another population, or an import): give "
                "--replace to drop everything it holds and build anew, or another store"
            )
        store.drop_all()
        store.upgrade()
    return load_population(store, people, seed, as_of, progress, workers, quality=quality), True


def _has_records(store: Store) -> bool:
    with store.read() as conn:
        for name, profile in store.profiles.items():
            for entity in profile.top_entities:
                if store.records.count(conn, name, entity.name):
                    return True
    return False
