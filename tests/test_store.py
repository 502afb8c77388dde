"""Store tests, on SQLite and on PostgreSQL: compiled SQL uses the declared indexes, search
results equal a Python evaluation of the same criteria, grouped child conditions, upsert, and
the outbox claim / lease / retry / give-up cycle (SKIP LOCKED on PostgreSQL)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import pytest
from sqlalchemy import event, select

import support
from dcihub.population.generator import generate_country
from dcihub.population.load import load_country
from dcihub.standard import codedirs
from dcihub.standard.plan import (
    ANY_ID,
    BAll,
    BAny,
    BNot,
    Bound,
    Cond,
    IdCond,
    IdIn,
    SearchPlan,
    SortKey,
    bind,
)
from dcihub.standard.profiles import PROFILES
from dcihub.standard.profiles.base import (
    Attribute,
    Entity,
    identifiers_of,
    to_bool,
    to_date,
    to_number,
    values_at,
)
from dcihub.standard.query import All, AnyOf, Compare, Node, Not
from dcihub.store import Store
from dcihub.store.outbox import DEAD, DONE, INFLIGHT, PENDING

TODAY = date(2026, 1, 1)
PEOPLE = 600
SEED = 11


@contextmanager
def fresh_store(backend: str, tmp_dir: Any) -> Iterator[Store]:
    with support.store_url_for(backend, tmp_dir) as url:
        store = Store(url)
        store.upgrade()
        try:
            yield store
        finally:
            store.dispose()


@pytest.fixture(scope="module")
def country():
    return generate_country(people=PEOPLE, seed=SEED, as_of=TODAY)


@pytest.fixture(scope="module")
def loaded(backend, country, tmp_path_factory):
    """A store holding a small generated country (read-only for the tests using it)."""
    with fresh_store(backend, tmp_path_factory.mktemp("loaded")) as store:
        load_country(store, country)
        yield store


@pytest.fixture()
def scratch(backend, tmp_path):
    """An empty store of its own (tests that write)."""
    with fresh_store(backend, tmp_path) as store:
        yield store


def whole(
    entity: Entity,
    node: Bound,
    sort: tuple[SortKey, ...] = (),
    page_size: int = 10**6,
    page_number: int = 1,
) -> SearchPlan:
    return SearchPlan(entity, node, sort, page_size, page_number)


def keys_of(entity: Entity, rows: list[tuple[int, str]]) -> list[str]:
    return [entity.record_key(orjson.loads(record)) for _, record in rows]


# ---------------------------------------------------------------------------------------------
# Compiled SQL uses the declared indexes


@contextmanager
def captured(store: Store) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def hook(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", hook)
    try:
        yield statements
    finally:
        event.remove(store.engine, "before_cursor_execute", hook)


def explain(store: Store, statement: str, parameters: Any) -> str:
    with store.begin() as conn:
        # the planners decide from real statistics; on PostgreSQL only this session's tables
        # (a bare ANALYZE takes every schema of the database, and deadlocks with another test
        # session analysing at the same time)
        if store.dialect == "sqlite":
            conn.exec_driver_sql("ANALYZE")
        else:
            names = ", ".join(f'"{t.name}"' for t in store.schema.metadata.sorted_tables)
            conn.exec_driver_sql(f"ANALYZE {names}")
        if store.dialect == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        # The test tables are tiny, so PostgreSQL would rightly prefer a sequential scan;
        # what is checked is that the compiled predicate CAN be answered from the index.
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        return "\n".join(str(row[0]) for row in rows)


def index_cases(country: Any) -> list[tuple[str, str, Compare | Node, tuple[str, ...]]]:
    uin = country.samples()["crvs"]["identifiers"][0]["value"]
    return [
        # (registry, entity, query, index names one of which the plan must use)
        (
            "crvs",
            "Person",
            Compare("UIN", "eq", uin),
            ("sqlite_autoindex_crvs_person_ids_1", "pk_crvs_person_ids"),
        ),
        (
            "crvs",
            "Person",
            All(
                (
                    Compare("birth_date", "gt", "1990-01-01"),
                    Compare("birth_date", "lt", "1991-01-01"),
                )
            ),
            ("ix_crvs_person_birth_date",),
        ),
        ("crvs", "Person", Compare("age", "eq", "30"), ("ix_crvs_person_birth_date",)),
        (
            "crvs",
            "Person",
            Compare("marriage_date", "gt", "2020-01-01"),
            ("ix_crvs_person_mv_date",),
        ),
        (
            "social",
            "Group",
            Compare("poverty_score", "lt", "1.5"),
            ("ix_social_group_poverty_score",),
        ),
        # a household with a member born in 1950: the members' birth_date index
        (
            "social",
            "Group",
            All(
                (
                    Compare("birth_date", "ge", "1950-01-01"),
                    Compare("birth_date", "lt", "1951-01-01"),
                )
            ),
            ("ix_social_member_birth_date",),
        ),
    ]


CASE_IDS = [
    "uin",
    "birth-date-range",
    "age",
    "multi-valued-date",
    "poverty-score",
    "child-birth-date",
]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_compiled_search_uses_the_declared_index(loaded, country, index):
    registry, entity_name, query, wanted = index_cases(country)[index]
    profile = PROFILES[registry]
    entity = profile.entity(entity_name)
    plan = whole(entity, bind(profile, entity, query, TODAY), page_size=10)
    with captured(loaded) as statements, loaded.read() as conn:
        result = loaded.records.search(conn, registry, plan)
    assert result.total_count > 0, "the case should match something"
    assert statements, "search ran no SQL"
    main = f"{registry}_{entity_name.lower()}"
    counted = False
    for statement, parameters in statements:
        text = explain(loaded, statement, parameters)
        uses_index = any(name in text for name in wanted)
        if "count(" in statement:  # the filter alone: must be answered from the index
            counted = True
            assert uses_index, f"{statement}\n-> {text}"
        else:
            # The page query (ORDER BY pk LIMIT n) may instead walk the primary key in order
            # and stop after n matches: a planner choice, not a scan of JSON.
            walks_pk = (
                f"SCAN {main}" in text
                and "TEMP B-TREE" not in text
                or f"Index Scan using {main}_pkey" in text
            )
            assert uses_index or walks_pk, f"{statement}\n-> {text}"
        if loaded.dialect == "postgresql":
            assert "Seq Scan" not in text, text
    assert counted


# ---------------------------------------------------------------------------------------------
# A Python evaluation of bound criteria (three-valued, like SQL)


@dataclass
class Rec:
    entity: Entity
    record: dict[str, Any]
    parent: Rec | None = None
    children: list[Rec] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.entity.record_key(self.record)


def python_value(attr: Attribute, raw: Any) -> Any:
    if attr.type == "code":
        text = str(raw).strip()
        return (codedirs.get(attr.code_dir).normalise(raw) if attr.code_dir else None) or text
    if attr.type == "text":
        return str(raw).strip().casefold()
    if attr.type in ("int", "float"):
        return to_number(raw, attr.type == "int")
    if attr.type == "date":
        return to_date(raw)
    return to_bool(raw)


def all_values(attr: Attribute, record: dict[str, Any]) -> list[Any]:
    out = [python_value(attr, raw) for raw in values_at(record, attr.path)]
    return [v for v in out if v is not None]


def single_value(attr: Attribute, record: dict[str, Any]) -> Any:
    found = all_values(attr, record)
    if attr.aggregate == "sum":
        return sum(found) if found else None
    return found[0] if found else None


def and3(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def or3(values: list[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def compare(op: str, left: Any, right: Any) -> bool:
    if op == "in":
        return left in right
    return {
        "eq": left == right,
        "lt": left < right,
        "le": left <= right,
        "gt": left > right,
        "ge": left >= right,
    }[op]


def leaf(node: Cond | IdCond | IdIn, rec: Rec) -> bool | None:
    if isinstance(node, IdCond | IdIn):
        wanted = (node.value,) if isinstance(node, IdCond) else node.values
        return any(
            value in wanted and (node.id_type in (ANY_ID, id_type))
            for id_type, value in identifiers_of(rec.record, rec.entity.identifier_paths)
        )
    attr = node.attribute
    wanted = node.value
    if attr.type == "text":
        wanted = tuple(v.casefold() for v in wanted) if node.op == "in" else wanted.casefold()
    if attr.multi:
        values = set(all_values(attr, rec.record))
        if node.op in ("present", "absent"):
            return bool(values) == (node.op == "present")
        return any(compare(node.op, v, wanted) for v in values)
    value = single_value(attr, rec.record)
    if node.op in ("present", "absent"):
        return (value is not None) == (node.op == "present")
    if isinstance(wanted, bool):
        return value is wanted  # SQL `IS true`: never unknown
    if value is None:
        return None
    return compare(node.op, value, wanted)


def related(rec: Rec, owner: str, test: Callable[[Rec], bool | None]) -> bool:
    if rec.parent is not None and rec.parent.entity.name == owner:
        candidates = [rec.parent]
    else:
        candidates = [c for c in rec.children if c.entity.name == owner]
    return any(test(c) is True for c in candidates)


def evaluate(node: Bound, rec: Rec) -> bool | None:
    if isinstance(node, BAll):
        results: list[bool | None] = []
        grouped: dict[str, list[Cond | IdCond | IdIn]] = {}
        for part in node.parts:
            if isinstance(part, Cond | IdCond | IdIn) and part.entity != rec.entity.name:
                grouped.setdefault(part.entity, []).append(part)
            else:
                results.append(evaluate(part, rec))
        for owner, leaves in grouped.items():  # one related record satisfies all of them
            results.append(related(rec, owner, lambda r, ls=leaves: and3([leaf(x, r) for x in ls])))
        return and3(results)
    if isinstance(node, BAny):
        return or3([evaluate(p, rec) for p in node.parts])
    if isinstance(node, BNot):
        inner = evaluate(node.part, rec)
        return None if inner is None else not inner
    if node.entity == rec.entity.name:
        return leaf(node, rec)
    return related(rec, node.entity, lambda r: leaf(node, r))


def records_of(country: Any, registry: str) -> dict[str, list[Rec]]:
    profile = PROFILES[registry]
    out: dict[str, list[Rec]] = {e.name: [] for e in profile.entities}

    def add(entity: Entity, record: dict[str, Any], parent: Rec | None) -> Rec:
        rec = Rec(entity, record, parent)
        out[entity.name].append(rec)
        for child in profile.children(entity):
            for sub in record.get(child.embedded_at or "") or []:
                rec.children.append(add(child, sub, rec))
        return rec

    top = profile.top_entities[0]
    for record in country.records(registry):
        add(top, record, None)
    return out


# ---------------------------------------------------------------------------------------------
# Random criteria from a fixed seed


ATTRIBUTES = {
    ("crvs", "Person"): [
        "sex",
        "birth_date",
        "age",
        "marital_status",
        "is_deceased",
        "death_date",
        "registration_date",
        "region_code",
        "surname",
        "marriage_date",
        "UIN",
        "BRN",
        "identifier",
    ],
    ("social", "Group"): [
        "poverty_score",
        "group_size",
        "group_type",
        "region_code",
        "HHID",
        "sex",
        "age",
        "marital_status",
        "is_disabled",
        "disability_type",
        "UIN",
        "education_level",
    ],
    ("social", "Member"): [
        "sex",
        "age",
        "birth_date",
        "marital_status",
        "is_disabled",
        "employment_status",
        "education_level",
        "disability_type",
        "poverty_score",
        "group_size",
        "HHID",
        "UIN",
    ],
    ("fr", "Farmer"): [
        "land_size",
        "crop_type",
        "irrigation",
        "farm_type",
        "sex",
        "age",
        "livestock_type",
        "UIN",
    ],
    ("dr", "DisabledPerson"): [
        "impairment_type",
        "disability_status",
        "age",
        "sex",
        "disability_status_level",
        "UIN",
    ],
    ("ibr", "Beneficiary"): [
        "programme_identifier",
        "enrollment_status",
        "enrollment_date",
        "benefit_type",
        "sex",
        "UIN",
    ],
}


class Generator:
    def __init__(
        self, rng: random.Random, registry: str, entity: str, recs: dict[str, list[Rec]]
    ) -> None:
        self.rng = rng
        self.profile = PROFILES[registry]
        self.entity = self.profile.entity(entity)
        self.recs = recs
        self.names = ATTRIBUTES[(registry, entity)]

    def owner_of(self, name: str) -> tuple[Entity, Attribute | None]:
        candidates = [self.entity]
        if self.profile.parent(self.entity):
            candidates.append(self.profile.parent(self.entity))
        candidates += self.profile.children(self.entity)
        for ent in candidates:
            attr = ent.attribute(name)
            if attr is not None:
                return ent, attr
        for ent in candidates:
            if ent.has_identifier(name) or ent.is_any_identifier(name):
                return ent, None
        raise AssertionError(name)

    def sample(self, name: str) -> Any:
        owner, attr = self.owner_of(name)
        for _ in range(50):
            rec = self.rng.choice(self.recs[owner.name])
            if attr is None:
                ids = identifiers_of(rec.record, owner.identifier_paths)
                ids = [v for t, v in ids if name.upper() in (t, "IDENTIFIER")]
                if ids:
                    return self.rng.choice(ids)
                continue
            source = owner.attribute(attr.source) if attr.derived else attr
            values = all_values(source, rec.record)
            if attr.derived == "age":
                if values:
                    born = values[0]
                    return (
                        TODAY.year - born.year - ((TODAY.month, TODAY.day) < (born.month, born.day))
                    )
                continue
            if attr.derived == "is_set":
                return self.rng.random() < 0.5
            if values:
                return self.rng.choice(values)
        return None

    def wire(self, value: Any, attr: Attribute | None) -> Any:
        if isinstance(value, date):
            return value.isoformat()
        if attr is not None and attr.type == "code" and attr.code_dir and self.rng.random() < 0.3:
            return codedirs.get(attr.code_dir).label(value) or value  # a label, not the code
        if attr is not None and attr.type == "text" and self.rng.random() < 0.5:
            return value.upper()  # text is compared without regard to case
        if isinstance(value, float) and self.rng.random() < 0.5:
            return str(value)
        return value

    def leaf(self) -> Node | None:
        name = self.rng.choice(self.names)
        _, attr = self.owner_of(name)
        value = self.sample(name)
        if value is None:
            return None
        if attr is None or attr.type in ("code", "text"):
            ops = ["eq", "in"]
        elif attr.type == "bool":
            ops = ["eq"]
        else:
            ops = ["eq", "lt", "le", "gt", "ge", "in"]
        op = self.rng.choice(ops)
        if op == "in":
            values = {value} | {self.sample(name) for _ in range(self.rng.randint(0, 2))}
            return Compare(name, "in", [self.wire(v, attr) for v in values if v is not None])
        return Compare(name, op, self.wire(value, attr))

    def node(self, depth: int = 0) -> Node:
        if depth < 3 and self.rng.random() < 0.45:
            kind = self.rng.choice(["and", "and", "or", "not"])
            if kind == "not":
                return Not(self.node(depth + 1))
            parts = tuple(self.node(depth + 1) for _ in range(self.rng.randint(2, 3)))
            return All(parts) if kind == "and" else AnyOf(parts)
        found = None
        while found is None:
            found = self.leaf()
        return found


@pytest.fixture(scope="module")
def python_records(country):
    return {
        registry: records_of(country, registry)
        for registry in ("crvs", "social", "fr", "dr", "ibr")
    }


@pytest.mark.parametrize(
    ("registry", "entity_name"), list(ATTRIBUTES), ids=[f"{r}-{e}" for r, e in ATTRIBUTES]
)
def test_search_equals_python_evaluation(loaded, python_records, registry, entity_name):
    recs = python_records[registry]
    generator = Generator(
        random.Random(f"{SEED}-{registry}-{entity_name}"), registry, entity_name, recs
    )
    profile, entity = generator.profile, generator.entity
    matched_any = 0
    with loaded.read() as conn:
        for _ in range(60):
            query = generator.node()
            node = bind(profile, entity, query, TODAY)
            expected = sorted(r.key for r in recs[entity.name] if evaluate(node, r) is True)
            result = loaded.records.search(conn, registry, whole(entity, node))
            got = sorted(keys_of(entity, result.rows))
            assert got == expected, f"{query}\n-> {node}"
            assert result.total_count == len(expected)
            matched_any += bool(expected) and len(expected) < len(recs[entity.name])
    assert matched_any >= 10, "the random criteria should mostly select something"


def test_identifier_lookup_equals_python(loaded, python_records):
    people = python_records["crvs"]["Person"]
    rng = random.Random(SEED)
    wanted = [
        rng.choice(identifiers_of(r.record, r.entity.identifier_paths))
        for r in rng.sample(people, 40)
    ]
    values = [v for _, v in wanted] + ["no-such-id"]
    with loaded.reader() as reader:
        hits = loaded.records.lookup(reader, "crvs", "Person", "UIN", values)
    for value in values:
        expected = [
            r.key
            for r in people
            if ("UIN", value) in identifiers_of(r.record, r.entity.identifier_paths)
        ]
        got = [r.key for r in people for _, rec in hits[value] if r.record == orjson.loads(rec)]
        assert got == expected, value


def test_sort_and_pages(loaded, python_records):
    """Pages of a sorted search partition the whole result in sort order; records without
    the sort value come last ascending and first descending on both stores."""
    profile = PROFILES["crvs"]
    entity = profile.entity("Person")
    node = bind(profile, entity, Compare("sex", "eq", "female"), TODAY)
    death = entity.attribute("death_date")
    for descending in (False, True):
        sort = (SortKey("Person", descending, attribute=death),)
        with loaded.read() as conn:
            full = loaded.records.search(conn, "crvs", whole(entity, node, sort)).rows
            pages: list[tuple[int, str]] = []
            for number in range(1, len(full) // 37 + 2):
                pages += loaded.records.search(
                    conn, "crvs", whole(entity, node, sort, 37, number)
                ).rows
        assert pages == full
        dates = [orjson.loads(r).get("death_date") for _, r in full]
        present = [d for d in dates if d]
        assert present and len(present) < len(dates)
        assert present == sorted(present, reverse=descending)
        missing_at = [i for i, d in enumerate(dates) if not d]
        if descending:
            assert missing_at == list(range(len(missing_at))), "NULLs first when descending"
        else:
            assert missing_at[0] == len(present), "NULLs last when ascending"


# ---------------------------------------------------------------------------------------------
# Grouped child conditions and upsert


def member(uin: str, sex: str, marital: str, birth: str = "1980-05-05") -> dict[str, Any]:
    return {
        "@type": "Member",
        "@id": f"social:member:{uin}",
        "member_identifier": [{"identifier_type": "UIN", "identifier_value": uin}],
        "demographic_info": {
            "sex": sex,
            "birth_date": birth,
            "name": {"surname": "Test", "given_name": uin},
        },
        "marital_status": marital,
    }


def household(hhid: str, *members: dict[str, Any], poverty: float = 2.0) -> dict[str, Any]:
    return {
        "@type": "Group",
        "@id": f"social:group:{hhid}",
        "group_identifier": [{"identifier_type": "HHID", "identifier_value": hhid}],
        "group_size": len(members),
        "poverty_score": poverty,
        "member_list": list(members),
    }


def group_keys(store: Store, query: Node) -> list[str]:
    profile = PROFILES["social"]
    group = profile.entity("Group")
    with store.read() as conn:
        result = store.records.search(
            conn, "social", whole(group, bind(profile, group, query, TODAY))
        )
    return sorted(keys_of(group, result.rows))


def test_grouped_child_conditions_mean_one_member_satisfies_all(scratch):
    with scratch.begin() as conn:
        # H-A: a married woman and a widowed man; H-B: a widowed woman.
        scratch.records.upsert(
            conn, "social", household("H-A", member("1", "female", "M"), member("2", "male", "W"))
        )
        scratch.records.upsert(conn, "social", household("H-B", member("3", "female", "W")))
    female, widowed = Compare("sex", "eq", "female"), Compare("marital_status", "eq", "W")
    assert group_keys(scratch, All((female, widowed))) == ["social:group:H-B"]
    # Kept apart (each in its own $or), the conditions may be met by different members.
    apart = All((AnyOf((female,)), AnyOf((widowed,))))
    assert group_keys(scratch, apart) == ["social:group:H-A", "social:group:H-B"]
    # Mixed with a household condition, the member conditions still stay together.
    poor = Compare("poverty_score", "lt", 5)
    assert group_keys(scratch, All((female, poor, widowed))) == ["social:group:H-B"]
    # NOT over a member condition: no member is widowed.
    assert group_keys(scratch, Not(widowed)) == []
    assert group_keys(scratch, Not(Compare("sex", "eq", "male"))) == ["social:group:H-B"]


def test_upsert_replaces_the_record_its_identifiers_and_members(scratch):
    profile = PROFILES["social"]
    group, member_entity = profile.entity("Group"), profile.entity("Member")
    first = household("H-1", member("11", "female", "S"), member("12", "male", "S"))
    with scratch.begin() as conn:
        assert scratch.records.upsert(conn, "social", first) == ("social:group:H-1", True)
        scratch.records.upsert(
            conn, "social", household("H-2", member("21", "male", "M"), poverty=5.0)
        )
    second = household("H-1", member("13", "female", "W"), poverty=9.5)
    second["group_identifier"].append({"identifier_type": "HHID", "identifier_value": "H-1b"})
    with scratch.begin() as conn:
        assert scratch.records.upsert(conn, "social", second) == ("social:group:H-1", False)
    with scratch.read() as conn:
        assert scratch.records.count(conn, "social", "Group") == 2
        assert scratch.records.count(conn, "social", "Member") == 2  # 13 and 21
        hits = scratch.records.lookup(conn, "social", "Member", "UIN", ["11", "12", "13"])
        assert hits["11"] == [] and hits["12"] == []
        ((pk, record),) = hits["13"]
        assert orjson.loads(record)["marital_status"] == "W"
        by_hhid = scratch.records.lookup(conn, "social", "Group", "HHID", ["H-1", "H-1b"])
        assert len(by_hhid["H-1"]) == len(by_hhid["H-1b"]) == 1
        assert orjson.loads(by_hhid["H-1"][0][1])["poverty_score"] == 9.5
    # The indexed columns follow the new version, old member values are gone.
    assert group_keys(scratch, Compare("poverty_score", "gt", 9)) == ["social:group:H-1"]
    assert group_keys(scratch, Compare("poverty_score", "lt", 3)) == []
    assert group_keys(scratch, Compare("marital_status", "eq", "S")) == []
    with scratch.read() as conn:
        node = bind(profile, member_entity, Compare("poverty_score", "gt", 9), TODAY)
        rows = scratch.records.search(conn, "social", whole(member_entity, node)).rows
    assert keys_of(member_entity, rows) == ["social:member:13"]
    assert group is not member_entity


def test_upsert_after_bulk_load_and_multi_values(scratch, country):
    """Upserting after a bulk load (explicit keys) must not collide with loaded keys, and
    multi-valued attributes follow the new version."""
    people = country.records("crvs")[:30]
    with scratch.begin() as conn:
        scratch.records.bulk_load(conn, "crvs", people)
    changed = dict(people[0])
    changed["marriage_date"] = ["2001-02-03"]
    new_person = dict(
        people[1],
        **{
            "@id": "crvs:person:new",
            "identifier": [{"identifier_type": "UIN", "identifier_value": "U-NEW"}],
        },
    )
    with scratch.begin() as conn:
        assert scratch.records.upsert(conn, "crvs", changed)[1] is False
        assert scratch.records.upsert(conn, "crvs", new_person)[1] is True
    profile = PROFILES["crvs"]
    person = profile.entity("Person")
    with scratch.read() as conn:
        assert scratch.records.count(conn, "crvs", "Person") == 31
        node = bind(profile, person, Compare("marriage_date", "eq", "2001-02-03"), TODAY)
        rows = scratch.records.search(conn, "crvs", whole(person, node)).rows
        assert keys_of(person, rows) == [changed["@id"]]
        assert scratch.records.lookup(conn, "crvs", "Person", "UIN", ["U-NEW"])["U-NEW"]


# ---------------------------------------------------------------------------------------------
# Outbox


def enqueue(store: Store, count: int, kind: str = "deliver") -> list[int]:
    with store.begin() as conn:
        return [
            store.outbox.enqueue(
                conn,
                kind,
                registry="crvs",
                target_url=f"http://x/{i}",
                action="on-search",
                payload=f'{{"n": {i}}}',
            )
            for i in range(count)
        ]


def statuses(store: Store) -> dict[int, str]:
    with store.read() as conn:
        return {r["pk"]: r["status"] for r in store.outbox.rows(conn)}


def test_claim_twice_returns_disjoint_rows(scratch):
    pks = enqueue(scratch, 5)
    first = scratch.outbox.claim(scratch.engine, limit=3)
    second = scratch.outbox.claim(scratch.engine, limit=3)
    assert len(first) == 3 and len(second) == 2
    assert {r.pk for r in first} | {r.pk for r in second} == set(pks)
    assert not {r.pk for r in first} & {r.pk for r in second}
    assert scratch.outbox.claim(scratch.engine) == []
    assert all(r.attempts == 1 and r.payload for r in first + second)
    assert set(statuses(scratch).values()) == {INFLIGHT}


def test_claim_respects_kinds_and_due_time(scratch):
    (deliver,) = enqueue(scratch, 1)
    (process,) = enqueue(scratch, 1, kind="process")
    with scratch.begin() as conn:
        later = scratch.outbox.enqueue(conn, "deliver", payload="{}", delay=30)
        due = scratch.outbox.next_due(conn)
    assert due is not None and due <= time.time()
    assert [r.pk for r in scratch.outbox.claim(scratch.engine, kinds=("process",))] == [process]
    assert [r.pk for r in scratch.outbox.claim(scratch.engine)] == [deliver]
    assert scratch.outbox.claim(scratch.engine) == []
    assert statuses(scratch)[later] == PENDING


def test_claim_per_target_leaves_a_full_target_for_later(scratch):
    """A worker working on many rows at once claims at most `per_key` rows per callback target
    (and per partner for async work), so a target's backlog never hides other rows."""
    from dcihub.store.outbox import target_key, work_key

    assert target_key("https://a.example:8443/dci/x?y") == "https://a.example:8443"
    assert target_key("http://b_1.example?q") == "http://b_1.example"
    assert work_key("process", "http://a/x", "p1") == "process:p1"

    def add(target: str, count: int, kind: str = "deliver", sender: str = "p1") -> list[int]:
        with scratch.begin() as conn:
            return [
                scratch.outbox.enqueue(
                    conn, kind, sender_id=sender, target_url=f"{target}/{i}", payload="{}"
                )
                for i in range(count)
            ]

    slow = add("http://slow_1.example:8000", 30)  # `_` is a LIKE wildcard: escaped
    fast = add("http://fast.example", 1)
    work = add("http://slow_1.example:8000", 3, kind="process")

    def claim(limit: int, busy: dict[str, int] | None = None) -> list[int]:
        with scratch.begin() as conn:
            rows = scratch.outbox.claim_on(conn, limit, per_key=2, busy=busy or {})
        return [r.pk for r in rows]

    assert claim(10) == sorted(slow[:2] + fast + work[:2])
    # slow is full (2 in work): its other 28 rows are skipped, the rows behind them are not
    other = add("http://slow_1.example:80000", 1)  # another port is another target
    later = add("http://later.example", 1)
    full = {"http://slow_1.example:8000": 2, "process:p1": 2}
    assert claim(10, full) == other + later
    assert claim(10, {**full, "http://slow_1.example:8000": 1}) == [slow[2]]
    assert claim(10) == sorted(slow[3:5] + work[2:])
    assert claim(1) == [slow[5]]


def test_expired_lease_is_reclaimed(scratch):
    (pk,) = enqueue(scratch, 1)
    (claimed,) = scratch.outbox.claim(scratch.engine, lease=1.0)
    assert scratch.outbox.claim(scratch.engine) == []  # still leased
    time.sleep(1.1)
    (again,) = scratch.outbox.claim(scratch.engine, lease=60)
    assert (again.pk, again.attempts) == (pk, 2)
    assert claimed.attempts == 1


def test_retry_then_give_up_then_done(scratch):
    a, b = enqueue(scratch, 2)
    scratch.outbox.claim(scratch.engine)
    with scratch.begin() as conn:
        scratch.outbox.retry(conn, a, "HTTP 503: try later", delay=1.0)
        scratch.outbox.give_up(conn, b, "HTTP 400: refused")
    assert scratch.outbox.claim(scratch.engine) == []  # a is not due yet, b is dead
    time.sleep(1.1)
    (retried,) = scratch.outbox.claim(scratch.engine)
    assert (retried.pk, retried.attempts) == (a, 2)
    with scratch.begin() as conn:
        scratch.outbox.complete(conn, a)
        rows = {r["pk"]: r for r in scratch.outbox.rows(conn)}
        counts = scratch.outbox.counts(conn)
        dead = scratch.outbox.rows(conn, DEAD)
    assert rows[a]["status"] == DONE and rows[a]["payload"] is None  # no personal data kept
    assert rows[a]["last_error"] is None
    assert rows[b]["status"] == DEAD and rows[b]["last_error"] == "HTTP 400: refused"
    assert rows[b]["payload"]  # kept for an operator to inspect
    assert counts == {DONE: 1, DEAD: 1}
    assert [r["pk"] for r in dead] == [b]
    time.sleep(0.05)
    assert scratch.outbox.claim(scratch.engine, lease=0.01) == []


def test_concurrent_claimers_share_the_queue(scratch):
    pks = set(enqueue(scratch, 120))
    claimed: list[list[int]] = [[], [], []]
    start = threading.Barrier(len(claimed))

    def claimer(index: int) -> None:
        start.wait()
        while True:
            rows = scratch.outbox.claim(scratch.engine, limit=7)
            if not rows:
                return
            claimed[index].extend(r.pk for r in rows)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(claimed))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every = [pk for part in claimed for pk in part]
    assert len(every) == len(set(every)), "a row was claimed twice"
    assert set(every) == pks


def test_skip_locked_claims_around_a_locked_row(backend, scratch):
    if backend != "postgres":
        pytest.skip("SKIP LOCKED is the PostgreSQL claim path")
    pks = enqueue(scratch, 6)
    locked = pks[:2]
    outbox = scratch.schema.ops.outbox
    result: dict[str, Any] = {}
    with scratch.engine.connect() as holder:
        transaction = holder.begin()
        # Another worker holds these rows (as in the middle of its own claim).
        holder.execute(select(outbox.c.pk).where(outbox.c.pk.in_(locked)).with_for_update())

        def claim() -> None:
            result["rows"] = scratch.outbox.claim(scratch.engine, limit=10)

        thread = threading.Thread(target=claim)
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive(), "claim blocked on a locked row instead of skipping it"
        transaction.rollback()
    assert sorted(r.pk for r in result["rows"]) == pks[2:]
    assert sorted(r.pk for r in scratch.outbox.claim(scratch.engine)) == locked


@pytest.mark.parametrize("flag", [True, False])
def test_multi_valued_flag(loaded, python_records, flag):
    """A yes/no attribute with several values per record (a farm irrigated or not) is stored
    as a number; comparing it used `IS true`, a type error on PostgreSQL."""
    profile = PROFILES["fr"]
    farmer = profile.entity("Farmer")
    node = bind(profile, farmer, Compare("irrigation", "eq", flag), TODAY)
    with loaded.read() as conn:
        rows = loaded.records.search(conn, "fr", whole(farmer, node)).rows
    expected = sorted(r.key for r in python_records["fr"]["Farmer"] if evaluate(node, r))
    assert expected, "the generated farms should include this case"
    assert sorted(keys_of(farmer, rows)) == expected
