"""The country at scale: drawn in independent blocks, streamed into a store in bounded memory,
the same whatever the number of worker processes, consistent across registries, and reused
by the demo without being generated again. Small blocks (hundreds of people) stand in for the
10,000-person blocks of a real build, so that several blocks are quick."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from rfc8785 import dumps as canonicalize
from sqlalchemy import select, text

from dcihub.population import load as population_load
from dcihub.population.generator import generate_country, plan_blocks
from dcihub.population.load import (
    BUILD_KEY,
    SAMPLES_KEY,
    PopulationError,
    generate_into,
    load_population,
    stored_population,
)
from dcihub.store import Store
from support import store_url_for

BLOCK = 250
PEOPLE = 600  # three blocks of 200
SEED = 77
AS_OF = date(2026, 1, 1)


def digest(value: object) -> str:
    return hashlib.sha256(canonicalize(value)).hexdigest()


@pytest.fixture(scope="module")
def blocked():
    return generate_country(PEOPLE, SEED, block_people=BLOCK)


def test_blocks_split_the_country_evenly() -> None:
    assert plan_blocks(10_000) == [(0, 10_000)]
    assert plan_blocks(1000, 400) == [(0, 334), (334, 333), (667, 333)]
    assert plan_blocks(PEOPLE, BLOCK) == [(0, 200), (200, 200), (400, 200)]
    plan = plan_blocks(1_000_001)
    assert sum(size for _, size in plan) == 1_000_001
    assert all(size <= 10_000 for _, size in plan)
    assert all(b[0] + b[1] == a[0] for b, a in zip(plan, plan[1:], strict=False))
    with pytest.raises(ValueError, match="positive"):
        plan_blocks(0)


def test_a_blocked_country_is_deterministic(blocked) -> None:
    again = generate_country(PEOPLE, SEED, block_people=BLOCK)
    for registry in blocked.registries:
        assert digest(blocked.records(registry)) == digest(again.records(registry)), registry
    other = generate_country(PEOPLE, SEED + 1, block_people=BLOCK)
    assert digest(other.records("crvs")) != digest(blocked.records("crvs"))


def test_the_first_block_is_the_country_of_its_size(blocked) -> None:
    alone = generate_country(200, SEED)
    assert blocked.crvs[:200] == alone.crvs
    assert blocked.samples() == alone.samples()


def test_identifiers_are_unique_across_blocks(blocked) -> None:
    for registry in blocked.registries:
        seen: Counter[tuple[str, str, str]] = Counter()
        for record in blocked.records(registry):
            for path in _identifier_lists(record):
                for ident in path:
                    seen[(ident["identifier_type"], ident["identifier_value"], record["@id"])] += 1
        per_value: dict[tuple[str, str], set[str]] = {}
        for (kind, value, rid), _ in seen.items():
            per_value.setdefault((kind, value), set()).add(rid)
        # a UIN names one person in each registry; register numbers are never reused
        for (kind, value), owners in per_value.items():
            if kind in ("BRN", "DRN", "PWDN", "FRN", "ESSRN"):
                assert len(owners) == 1, (registry, kind, value, owners)
    ids = [r["@id"] for r in blocked.crvs]
    assert len(set(ids)) == len(ids) == PEOPLE
    uins = [_uin(r) for r in blocked.crvs]
    assert len(set(uins)) == PEOPLE
    hhids = [g["group_identifier"][0]["identifier_value"] for g in blocked.social]
    assert len(set(hhids)) == len(hhids)
    marriages = Counter(
        i["identifier_value"]
        for r in blocked.crvs
        for i in r["identifier"]
        if i["identifier_type"] == "MRN"
    )
    assert marriages and max(marriages.values()) <= 2  # a marriage links two spouses


def _identifier_lists(record: dict[str, Any]) -> list[list[dict[str, str]]]:
    found = []
    for key in ("identifier", "group_identifier"):
        if key in record:
            found.append(record[key])
    for key in ("personal_details", "farmer_personal_details"):
        if key in record:
            found.append(record[key]["member_identifier"])
    return found


def _uin(record: dict[str, Any]) -> str:
    return next(
        i["identifier_value"] for i in record["identifier"] if i["identifier_type"] == "UIN"
    )


def _age(birth: str, at: date) -> int:
    b = date.fromisoformat(birth)
    return at.year - b.year - ((at.month, at.day) < (b.month, b.day))


def test_registries_agree_across_blocks(blocked) -> None:
    crvs = {_uin(r): r for r in blocked.crvs}
    for enrolment in blocked.ibr:
        for ident in enrolment["member"]["member_identifier"]:
            if ident["identifier_type"] == "UIN":
                assert ident["identifier_value"] in crvs
    dead = [r for r in crvs.values() if "death_date" in r]
    assert dead
    for person in dead:  # every death is a registered event
        assert any(i["identifier_type"] == "DRN" for i in person["identifier"])
        assert person["death_date"] >= person["birth_date"]
    for group in blocked.social:
        heads = [
            m
            for m in group["member_list"]
            if any(rel["relationship_type"] == "SELF" for rel in m["related_person"])
        ]
        assert len(heads) == 1, group["@id"]
        assert group["group_size"] == len(group["member_list"])
    assert blocked.ess
    for member in blocked.ess:
        uin = member["member_identifier"][0]["identifier_value"]
        person = crvs[uin]
        at = date.fromisoformat(person["death_date"]) if "death_date" in person else AS_OF
        assert 18 <= _age(person["birth_date"], at) <= 69, uin


# ---- memory does not grow with the number of people -----------------------------------------

_MEASURE = """
import sys, tracemalloc
from datetime import date
from dcihub.population.load import _staged_blocks
from dcihub.population.world import iso
from dcihub.standard.profiles import PROFILES

people = int(sys.argv[1])
profiles = [p for p in PROFILES.values() if p.builder]
today = date(2026, 1, 1).toordinal()
for day in range(today - 125 * 366, today + 366):  # the day -> ISO date cache, bounded by the
    iso(day)                                       # calendar, not by the number of people
tracemalloc.start()
for block in _staged_blocks(people, 5, date(2026, 1, 1), profiles, 1, 300):
    del block
print(tracemalloc.get_traced_memory()[1])
"""


def _peak(people: int) -> int:
    found = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(people)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(found.stdout.split()[-1])


def test_streaming_memory_does_not_grow_with_the_number_of_people() -> None:
    # five blocks of 300, then twenty: memory that grew with the people would be four times
    # larger; the peak varies a little with the largest block met (households differ)
    small, large = _peak(1500), _peak(6000)
    assert large < small * 1.5, (small, large)


# ---- loading into a store --------------------------------------------------------------------


@pytest.fixture
def url(backend, tmp_path):
    with store_url_for(backend, tmp_path) as found:
        yield found


def test_the_streamed_store_holds_the_country(url, blocked) -> None:
    store = Store(url)
    try:
        store.upgrade()
        population = load_population(
            store, PEOPLE, SEED, workers=1, block_people=BLOCK, defer_indexes=True
        )
        assert population.counts == {r: len(blocked.records(r)) for r in blocked.registries}
        with store.read() as conn:
            for registry in blocked.registries:
                profile = store.profiles[registry]
                entity = profile.top_entities[0].name
                assert store.records.count(conn, registry, entity) == len(blocked.records(registry))
            rows = store.records.lookup(conn, "crvs", "Person", "UIN", [_uin(blocked.crvs[-1])])
            (found,) = rows.values()
            assert json.loads(found[0][1]) == blocked.crvs[-1]
        stored = stored_population(store)
        assert stored is not None
        assert stored.samples() == blocked.samples()
        assert stored.places == blocked.places and stored.places
        assert json.loads(store.get_meta(BUILD_KEY) or "{}")["people"] == PEOPLE
        # indexes were dropped for the load and built again afterwards, then analysed
        assert store.status().changes == []
        with store.read() as conn:
            if store.dialect == "sqlite":
                stats = "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'crvs_person'"
            else:
                stats = (
                    "SELECT count(*) FROM pg_stats WHERE tablename = 'crvs_person' "
                    "AND schemaname = current_schema()"
                )
            assert conn.execute(text(stats)).scalar_one() > 0
    finally:
        store.dispose()


def _content(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with store.read() as conn:
        for tables in store.schema.entities.values():
            for table in tables.all:
                columns = [c for c in table.c if c.name != "updated_at"]
                rows = conn.execute(select(*columns).order_by(*columns)).all()
                out[table.name] = [tuple(r) for r in rows]
    return out


def test_workers_do_not_change_the_store(tmp_path) -> None:
    one, two = Store(f"sqlite:///{tmp_path}/one.db"), Store(f"sqlite:///{tmp_path}/two.db")
    try:
        one.upgrade()
        two.upgrade()
        load_population(one, PEOPLE, SEED, workers=1, block_people=BLOCK, defer_indexes=True)
        load_population(two, PEOPLE, SEED, workers=2, block_people=BLOCK)
        assert _content(one) == _content(two)
    finally:
        one.dispose()
        two.dispose()


def test_the_bulk_path_writes_what_the_record_path_writes(url) -> None:
    """The staged rows (executemany / COPY) equal what `RecordStore.bulk_load` writes."""
    small = generate_country(200, SEED)
    bulk = Store(url)
    try:
        bulk.upgrade()
        load_population(bulk, 200, SEED, workers=1)
        streamed = _content(bulk)
        bulk.drop_all()
        bulk.upgrade()
        population_load.load_country(bulk, small)
        assert _content(bulk) == streamed
    finally:
        bulk.dispose()


def test_a_store_with_other_records_is_refused_unless_replaced(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    try:
        population, built = generate_into(store, 200, 1)
        assert built and population.counts["crvs"] == 200
        again, built = generate_into(store, 200, 1)
        assert not built and again.samples() == population.samples()
        with pytest.raises(PopulationError, match="--replace"):
            generate_into(store, 300, 1)
        with store.read() as conn:  # nothing was lost
            assert store.records.count(conn, "crvs", "Person") == 200
        replaced, built = generate_into(store, 300, 1, replace=True)
        assert built and replaced.counts["crvs"] == 300
    finally:
        store.dispose()


def test_an_interrupted_build_is_started_over(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    try:
        generate_into(store, 200, 1)
        with store.begin() as conn:  # as if the process died before the build was complete
            conn.execute(text("DELETE FROM dcihub_meta WHERE key = :k"), {"k": BUILD_KEY})
        assert stored_population(store) is None
        population, built = population_load.ensure_population(store, 200, 1)
        assert built and population.counts["crvs"] == 200
    finally:
        store.dispose()


# ---- the demo restarts without generating ---------------------------------------------------


def test_the_demo_restarts_without_generating(tmp_path, monkeypatch) -> None:
    from dcihub.demo import prepare_demo

    first = prepare_demo(tmp_path, "127.0.0.1", 8799, 300)
    first.store.dispose()
    assert first.built_now

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the demo generated its population again")

    monkeypatch.setattr(population_load, "generate_blocks", never)
    monkeypatch.setattr(population_load, "_staged_blocks", never)
    again = prepare_demo(tmp_path, "127.0.0.1", 8799, 300)
    try:
        assert not again.built_now
        assert again.info["samples"] == first.info["samples"]
        assert again.info["people"] == 300
        assert json.loads(again.store.get_meta(SAMPLES_KEY) or "{}") == first.info["samples"]
    finally:
        again.store.dispose()


def test_the_demo_builds_on_postgresql(tmp_path) -> None:
    from dcihub.demo import prepare_demo
    from support import postgres_schema, require_postgres

    with postgres_schema(require_postgres()) as pg:
        setup = prepare_demo(tmp_path, "127.0.0.1", 8799, 100, store_url=pg)
        try:
            assert setup.built_now and setup.settings.store_url == pg
            assert setup.store.dialect == "postgresql"
            with setup.store.read() as conn:
                assert setup.store.records.count(conn, "crvs", "Person") == 100
            assert not (tmp_path / "demo.db").exists()
        finally:
            setup.store.dispose()


def test_store_files_are_private(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path}/p.db")
    try:
        generate_into(store, 100, 1)
    finally:
        store.dispose()
    assert (Path(tmp_path) / "p.db").stat().st_mode & 0o777 == 0o600


# ---- the commands ---------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from dcihub.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    assert "Traceback" not in result.output, result.output
    return result


def test_population_generate_and_store_stats(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/country.db"
    made = _cli("population", "generate", "--store", url, "--people", "500", "--seed", "3")
    assert made.exit_code == 0, made.output
    assert "generated 500 people (seed 3, as of 2026-01-01)" in made.output
    expected = generate_country(500, 3)
    assert f"crvs     {500:>12,} records" in made.output
    assert f"social   {len(expected.social):>12,} records" in made.output
    again = _cli("population", "generate", "--store", url, "--people", "500", "--seed", "3")
    assert again.exit_code == 0 and "nothing to do" in again.output
    other = _cli("population", "generate", "--store", url, "--people", "600", "--seed", "3")
    assert other.exit_code == 2 and "--replace" in other.output
    assert len(other.output.strip().splitlines()) == 1

    stats = _cli("store", "stats", "--store-url", url)
    assert stats.exit_code == 0, stats.output
    lines = {line.split()[1]: line.split() for line in stats.output.splitlines() if line.strip()}
    assert lines["crvs_person"][0] == "crvs" and lines["crvs_person"][2] == "500"
    assert lines["social_group"][2] == f"{len(expected.social):,}"
    assert lines["ibr_beneficiary"][2] == f"{len(expected.ibr):,}"
    assert lines["crvs_person"][3] != "-" and lines["crvs_person"][5] != "-"  # sizes known
    store = Store(url)
    try:
        with store.read() as conn:
            members = conn.execute(text("SELECT count(*) FROM social_member")).scalar_one()
    finally:
        store.dispose()
    assert lines["social_member"][2] == f"{members:,}"
    rows = [line.split() for line in stats.output.splitlines()[1:] if line.strip()]
    total = next(r for r in rows if r[0] == "total")
    listed = sum(int(r[2].replace(",", "")) for r in rows if r[0] != "total" and r[0] != "registry")
    assert int(total[1].replace(",", "")) == listed


def test_population_generate_reports_bad_input_in_one_line(tmp_path) -> None:
    bad_date = _cli(
        "population", "generate", "--store", f"sqlite:///{tmp_path}/a.db", "--as-of", "x"
    )
    assert bad_date.exit_code == 2 and "--as-of 'x' is not a date" in bad_date.output
    bad_url = _cli("population", "generate", "--store", "nosuch://x", "--people", "10")
    assert bad_url.exit_code == 2 and "is not a database URL" in bad_url.output
    assert len(bad_url.output.strip().splitlines()) == 1


# ---- search at scale: indexed predicates use indexes ----------------------------------------


def _plan_of(store: Store, registry: str, query: list[dict[str, Any]]) -> str:
    from sqlalchemy.dialects import postgresql

    from dcihub.standard.messages import SearchCriteria
    from dcihub.standard.plan import Limits, plan_search
    from dcihub.standard.query import parse_query

    profile = store.profiles[registry]
    criteria = SearchCriteria.model_validate(
        {"query_type": "predicate", "query": query, "pagination": {"page_size": 50}}
    )
    plan = plan_search(profile, criteria, parse_query("predicate", query), AS_OF, Limits())
    compiler = store.records.compilers[registry]
    main = store.schema.tables(registry, plan.entity.name).main
    sql = select(main.c.pk, main.c.record).where(compiler.where(plan.node, plan.entity.name))
    compiled = sql.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    with store.read() as conn:
        conn.execute(text("SET enable_seqscan = off"))  # a seq scan now means: no usable index
        rows = conn.execute(text(f"EXPLAIN (FORMAT JSON) {compiled}")).scalar_one()
    return json.dumps(rows)


def _item(seq: int, name: str, op: str, value: Any) -> dict[str, Any]:
    condition = {"attribute_name": name, "operator": op, "attribute_value": value}
    return {"seq_num": seq, "expression1": condition}


def test_indexed_predicates_use_indexes_on_postgresql() -> None:
    from support import postgres_schema, require_postgres

    with postgres_schema(require_postgres()) as pg:
        store = Store(pg)
        try:
            generate_into(store, 600, 2, workers=1)
            with store.begin() as conn:
                conn.execute(text("ANALYZE"))
            two = [
                _item(1, "sex", "eq", "female"),
                _item(2, "birth_date", "ge", "2000-01-01"),
            ]
            plan = _plan_of(store, "crvs", two)
            assert "Index" in plan, plan
            assert '"Seq Scan"' not in plan, plan
            crops = [_item(1, "crop_type", "eq", "1"), _item(2, "land_size", "gt", 2)]
            plan = _plan_of(store, "fr", crops)
            assert '"Seq Scan"' not in plan, plan
        finally:
            store.dispose()
        # and `dcihub store stats` reads PostgreSQL's sizes
        stats = _cli("store", "stats", "--store-url", pg)
        assert stats.exit_code == 0, stats.output
        row = next(line.split() for line in stats.output.splitlines() if " crvs_person " in line)
        assert row[2] == "600" and row[3] != "-" and row[5] != "-"


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["population", "--help"], "generate"),
        (["population", "generate", "--help"], "--replace"),
        (["store", "stats", "--help"], "pg_indexes_size"),
        (["demo", "--help"], "--store-url"),
    ],
)
def test_the_new_commands_have_help(command: list[str], says: str) -> None:
    result = _cli(*command)
    assert result.exit_code == 0, result.output
    assert "Usage: dcihub" in result.output and says in result.output


# ---- deliberate data-quality problems -------------------------------------------------------


def test_data_quality_problems_at_the_rate_asked(blocked) -> None:
    rate = 0.2
    noisy = generate_country(PEOPLE, SEED, block_people=BLOCK, quality=rate)
    assert noisy.crvs == blocked.crvs  # the reference register stays clean
    again = generate_country(PEOPLE, SEED, block_people=BLOCK, quality=rate)
    assert digest(noisy.records("social")) == digest(again.records("social"))
    typos = missing = duplicates = touched = total = 0
    for registry in blocked.registries:
        if registry == "crvs":
            continue
        clean = {r["@id"]: r for r in blocked.records(registry)}
        total += len(clean)
        for record in noisy.records(registry):
            if record["@id"].endswith("#dup"):
                original = clean[record["@id"].removesuffix("#dup")]
                assert _identifier_lists(record) == _identifier_lists(original)
                duplicates += 1
                touched += 1
                continue
            before = clean[record["@id"]]
            if record == before:
                continue
            touched += 1
            was, now = json.dumps(before), json.dumps(record)
            if now.count('"birth_date"') < was.count('"birth_date"'):
                missing += 1
            else:
                typos += 1
    assert typos and missing and duplicates
    assert 0.5 * rate < touched / total < 1.5 * rate, (touched, total)


def test_a_country_with_problems_loads_and_is_a_build_of_its_own(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path}/q.db")
    try:
        clean, _ = generate_into(store, 300, 4, workers=1)
        noisy, built = generate_into(store, 300, 4, replace=True, workers=1, quality=0.2)
        assert built and noisy.counts["crvs"] == clean.counts["crvs"] == 300
        assert sum(noisy.counts.values()) > sum(clean.counts.values())  # the duplicates
        with store.read() as conn:
            uins = conn.execute(
                text(
                    "SELECT id_value FROM dr_disabledperson_ids WHERE id_type = 'UIN' "
                    "GROUP BY id_value HAVING count(*) > 1"
                )
            ).all()
        assert uins  # a person registered twice: one UIN, two records
        _again, built = generate_into(store, 300, 4, workers=1, quality=0.2)
        assert not built
    finally:
        store.dispose()
