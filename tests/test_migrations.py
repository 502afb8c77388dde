"""The store evolves in place: Alembic revisions for the operational tables, a profile-driven
reconciliation for the registry tables (`dcihub.store.migrate`), `dcihub store status` and
`dcihub store upgrade`, and `serve` / `worker` refusing a store that is behind.

Every case runs on SQLite (a file) and on PostgreSQL (a schema of its own).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect, select, text
from typer.testing import CliRunner

import support
from dcihub.cli import app
from dcihub.population.generator import generate_country
from dcihub.population.load import load_country
from dcihub.standard.profiles import PROFILES
from dcihub.standard.profiles.base import Attribute, Entity, RegistryProfile
from dcihub.store import Store
from dcihub.store.database import make_engine
from dcihub.store.migrate import (
    LOCK_CLASS,
    StoreBehind,
    head_revision,
)
from dcihub.store.records import explode
from dcihub.store.schema import build_schema
from legacy_v2 import make_legacy_store

DCIHUB = Path(sys.executable).with_name("dcihub")


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty store URL (nothing is created until something writes)."""
    with support.store_url_for(backend, tmp_path) as made:
        yield made


@pytest.fixture(scope="module")
def small_country() -> Any:
    return generate_country(people=120, seed=7)


def dcihub(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command, in a process of its own."""
    return subprocess.run(
        [str(DCIHUB), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250"},
    )


def cli(*args: str | Path) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})
    assert "Traceback" not in result.output, result.output
    return result


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


def schema_diff(url: str, metadata: MetaData) -> list[Any]:
    """Alembic's differences between the database and `metadata` (empty: they agree)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but Alembic's), in a stable order."""
    engine = make_engine(url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as conn:
            for name in inspect(conn).get_table_names():
                if name == "alembic_version":
                    continue
                table = Table(name, MetaData(), autoload_with=conn)
                out[name] = sorted((tuple(r) for r in conn.execute(select(table))), key=repr)
    finally:
        engine.dispose()
    return out


@contextmanager
def profiles_changed(**changes: RegistryProfile | None) -> Iterator[None]:
    """Registry profiles added, replaced (a profile) or removed (None) for one test."""
    saved = dict(PROFILES)
    try:
        for name, profile in changes.items():
            if profile is None:
                PROFILES.pop(name, None)
            else:
                PROFILES[name] = profile
        yield
    finally:
        PROFILES.clear()
        PROFILES.update(saved)


def populated(url: str, country: Any) -> None:
    """A store made by this dcihub, at head, holding `country`."""
    store = Store(url)
    store.upgrade()
    load_country(store, country)
    store.dispose()


# =============================================================================================
# (a) revisions and profiles agree with the code's tables


def test_an_empty_store_upgraded_to_head_matches_every_table_of_the_code(url: str) -> None:
    store = Store(url)
    before = store.status()
    assert before.state == "empty" and before.behind
    report = store.upgrade()
    assert report.after.revision == head_revision() and not report.after.behind
    store.dispose()
    assert schema_diff(url, build_schema(PROFILES).metadata) == []


def test_the_agreement_check_fails_on_an_operational_change_without_a_revision(url: str) -> None:
    Store(url).upgrade()
    schema = build_schema(PROFILES)
    schema.ops.outbox.append_column(Column("priority", Integer, nullable=True))
    diff = schema_diff(url, schema.metadata)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "outbox", "priority")]


def test_a_changed_operational_table_is_not_patched_by_the_registry_reconciliation(
    url: str,
) -> None:
    """Operational tables belong to revisions: the reconciliation never adds to them."""
    store = Store(url)
    store.upgrade()
    store.schema.ops.outbox.append_column(Column("priority", Integer, nullable=True))
    assert not store.status().behind  # nothing for the reconciliation to do
    store.dispose()


# =============================================================================================
# (b) a store made before migrations is stamped, upgraded in place, and loses no row


def test_a_store_made_before_migrations_is_upgraded_by_the_cli_and_keeps_every_row(
    url: str, country: Any
) -> None:
    make_legacy_store(url, country)
    before = dump(url)
    for table in ("transactions", "txn_items", "outbox", "seen_messages", "audit_log"):
        assert before[table], table
    for registry in PROFILES:
        for entity in PROFILES[registry].entities:
            assert before[f"{registry}_{entity.name.lower()}"], (registry, entity.name)

    done = dcihub("store", "upgrade", "--store-url", url)
    assert done.returncode == 0, done.stderr
    assert (
        "recognised a store made before migrations (schema version 2): stamped at revision 0001"
        in done.stdout
    )
    assert "applied revision 0002" in done.stdout and "applied revision 0003" in done.stdout
    assert "applied revision 0004: subscriptions" in done.stdout
    assert "applied revision 0005: outbox.claimed_by" in done.stdout
    assert "applied revision 0006: partner_usage" in done.stdout
    assert "created" not in done.stdout  # nothing was missing: no table, column or index made
    assert done.stderr == ""

    after = dump(url)
    for table, rows in before.items():
        if table in ("seen_messages", "outbox"):
            # revision 0003 added seen_messages.request_digest, 0005 outbox.claimed_by: empty
            assert [r[:-1] for r in after[table]] == rows, table
            assert all(r[-1] is None for r in after[table])
        elif table != "dcihub_meta":
            assert after[table] == rows, table
    meta_before, meta_after = dict(before["dcihub_meta"]), dict(after["dcihub_meta"])
    assert meta_before.pop("schema.version") == "2"
    assert meta_after["schema.version"] == "3"
    assert meta_before.items() <= meta_after.items()  # audit head, population build, ...

    assert schema_diff(url, build_schema(PROFILES).metadata) == []
    store = Store(url)
    assert not store.status().behind
    with store.read() as conn:
        assert store.audit.verify(conn) == (5, [])
        uin = country.samples()["crvs"]["identifiers"][0]["value"]
        (hit,) = store.records.lookup(conn, "crvs", "Person", "UIN", [uin])[uin]
    assert uin in hit[1]
    store.dispose()

    again = dcihub("store", "upgrade", "--store-url", url)
    assert again.returncode == 0, again.stderr
    assert f"is up to date (revision {head_revision()}); nothing to do" in again.stdout
    assert dump(url) == after  # an up-to-date store is left as it is


def test_a_store_of_another_schema_version_or_a_newer_revision_is_refused(url: str) -> None:
    make_legacy_store(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE dcihub_meta SET value = '1' WHERE key = 'schema.version'"))
    result = dcihub("store", "upgrade", "--store-url", url)
    assert result.returncode == 2
    assert "has schema version 1 and no revision record" in one_error_line(result.stderr)

    Store(url).dispose()
    with engine.begin() as conn:
        conn.execute(text("UPDATE dcihub_meta SET value = '2' WHERE key = 'schema.version'"))
    Store(url).upgrade()
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for command in ("status", "upgrade"):
        result = dcihub("store", command, "--store-url", url)
        assert result.returncode == 2
        line = one_error_line(result.stderr)
        assert "is at revision 9999, which this dcihub does not know" in line


# =============================================================================================
# (c) profiles that change after the store was made


THING = Entity(
    name="Thing",
    attributes=(Attribute("colour", "code", "colour"),),
    identifier_paths=("identifier",),
    identifier_types=("TID",),
)
TOY = RegistryProfile(
    name="toy",
    title="Toy Registry",
    reg_type="ns:org:RegistryType:Toy",
    entities=(THING,),
    default_entity="Thing",
)
# the same registry later: two attributes more (one multi-valued), identifiers also read from
# `aliases`, and an entity embedded in each Thing
THING_2 = replace(
    THING,
    attributes=(
        *THING.attributes,
        Attribute("size", "int", "size"),
        Attribute("tag", "text", "tags", multi=True),
    ),
    identifier_paths=("identifier", "aliases"),
)
PART = Entity(
    name="Part",
    attributes=(Attribute("weight", "float", "weight"),),
    identifier_paths=(),
    identifier_types=(),
    parent="Thing",
    embedded_at="parts",
    key=lambda record: record["part_id"],
)
TOY_2 = replace(TOY, entities=(THING_2, PART))


def toy_record(n: int) -> dict[str, Any]:
    return {
        "@id": f"toy:{n}",
        "identifier": [{"identifier_type": "TID", "identifier_value": f"T{n}"}],
        "aliases": [{"identifier_type": "TID", "identifier_value": f"A{n}"}],
        "colour": "red" if n % 2 else "blue",
        "size": n,
        "tags": ["Small", "round"] if n % 2 else ["Large"],
        "parts": [{"part_id": f"p{n}-{k}", "weight": k * 1.5} for k in range(n % 3)],
    }


def test_a_registry_added_later_gets_its_tables_on_upgrade(url: str) -> None:
    Store(url).upgrade()
    with profiles_changed(toy=TOY):
        store = Store(url)
        found = store.status()
        assert found.behind and found.revisions == []
        assert found.changes == [
            "create table toy_thing",
            "create table toy_thing_ids",
            "create table toy_thing_mv",
        ]
        report = store.upgrade()
        assert report.done == [
            "created table toy_thing",
            "created table toy_thing_ids",
            "created table toy_thing_mv",
        ]
        assert not report.after.behind
        with store.begin() as conn:
            store.records.upsert(conn, "toy", toy_record(1))
        with store.read() as conn:
            assert list(store.records.lookup(conn, "toy", "Thing", "TID", ["T1"])["T1"])
        store.dispose()
        assert schema_diff(url, build_schema(PROFILES).metadata) == []


def test_a_changed_profile_is_reconciled_and_filled_from_the_stored_records(url: str) -> None:
    with profiles_changed(toy=TOY):
        store = Store(url)
        store.upgrade()
        with store.begin() as conn:
            for n in range(1, 8):
                store.records.upsert(conn, "toy", toy_record(n))
        store.dispose()
    with profiles_changed(toy=TOY_2):
        store = Store(url)
        found = store.status()
        assert found.behind
        assert found.changes == [
            "create table toy_part",
            "create table toy_part_ids",
            "create table toy_part_mv",
            "add column toy_thing.a_size",
            "create index ix_toy_thing_size on toy_thing",
            "re-index toy_thing from its records: 2 attributes (size, tag); identifiers; "
            "embedded Part",
        ]
        report = store.upgrade()
        assert "re-indexed toy_thing: 7 records" in report.done
        assert not report.after.behind
        with store.read() as conn:
            thing = store.schema.tables("toy", "Thing")
            sizes = dict(conn.execute(select(thing.main.c.record_key, thing.main.c.a_size)).all())
            assert sizes == {f"toy:{n}": n for n in range(1, 8)}
            tags = conn.execute(
                select(thing.mv.c.v_text).where(thing.mv.c.attr == "tag", thing.mv.c.pk == 1)
            )
            assert sorted(tags.scalars()) == ["round", "small"]  # text is stored case-folded
            assert store.records.lookup(conn, "toy", "Thing", "TID", ["A3"])["A3"]  # aliases
            part = store.schema.tables("toy", "Part").main
            parts = conn.execute(select(part.c.record_key, part.c.parent_pk, part.c.a_weight))
            assert sorted(parts.all()) == [
                ("p1-0", 1, 0.0),
                ("p2-0", 2, 0.0),
                ("p2-1", 2, 1.5),
                ("p4-0", 4, 0.0),
                ("p5-0", 5, 0.0),
                ("p5-1", 5, 1.5),
                ("p7-0", 7, 0.0),
            ]
        assert "ix_toy_thing_size" in {
            i["name"] for i in inspect(store.engine).get_indexes("toy_thing")
        }
        store.dispose()
        assert schema_diff(url, build_schema(PROFILES).metadata) == []

    with profiles_changed(toy=TOY):  # the attributes and the entity go away again
        store = Store(url)
        found = store.status()
        # nothing is dropped; the identifiers are read from `identifier` alone again
        assert found.changes == ["re-index toy_thing from its records: identifiers"]
        assert (
            "column toy_thing.a_size is no longer in the profiles: kept (nothing is dropped "
            "automatically)" in found.notes
        )
        assert (
            "attribute tag of toy Thing is no longer in the profile: its stored values are kept"
            in found.notes
        )
        store.upgrade()
        with store.read() as conn:
            assert store.records.lookup(conn, "toy", "Thing", "TID", ["A3", "T3"]) == {
                "A3": [],
                "T3": [(3, orjson.dumps(toy_record(3)).decode())],
            }
        assert not store.status().behind
        store.dispose()
        assert {"toy_part", "toy_part_ids", "toy_part_mv"} <= set(dump(url))


NEW_CRVS_ATTRIBUTES = (
    Attribute("address_line", "text", "address.address_line_1"),
    Attribute("id_type", "code", "identifier.identifier_type", multi=True),
)


def test_an_attribute_added_to_a_registry_profile_is_back_filled_from_the_records(
    url: str, small_country: Any
) -> None:
    populated(url, small_country)
    crvs = PROFILES["crvs"]
    person = crvs.entity("Person")
    person_2 = replace(person, attributes=(*person.attributes, *NEW_CRVS_ATTRIBUTES))
    crvs_2 = replace(crvs, entities=(person_2,))
    with profiles_changed(crvs=crvs_2):
        result = cli("store", "status", "--store-url", url)
        assert result.exit_code == 1, result.output
        assert "add column crvs_person.a_address_line" in result.stdout
        assert "re-index crvs_person from its records: 2 attributes (address_line, id_type)" in (
            result.stdout
        )
        result = cli("store", "upgrade", "--store-url", url)
        assert result.exit_code == 0, result.output
        assert "added column crvs_person.a_address_line" in result.stdout
        assert f"re-indexed crvs_person: {small_country.people} records" in result.stdout
        assert "created index ix_crvs_person_address_line" in result.stdout

        store = Store(url)
        tables = store.schema.tables("crvs", "Person")
        with store.read() as conn:
            rows = conn.execute(
                select(tables.main.c.pk, tables.main.c.record, tables.main.c.a_address_line)
            ).all()
            id_types: dict[int, set[str]] = {}
            for pk, value in conn.execute(
                select(tables.mv.c.pk, tables.mv.c.v_text).where(tables.mv.c.attr == "id_type")
            ):
                id_types.setdefault(pk, set()).add(value)
        assert len(rows) == small_country.people
        for pk, raw, address_line in rows:
            expected = explode(crvs_2, person_2, orjson.loads(raw))
            assert address_line == expected.columns["a_address_line"]
            assert id_types.get(pk, set()) == {v for n, v, _ in expected.mv if n == "id_type"}
        assert any(line for _, _, line in rows) and id_types
        store.dispose()
        assert schema_diff(url, build_schema(PROFILES).metadata) == []
    assert not Store(url).status().behind  # the column stays when the attribute goes again


# =============================================================================================
# (d) store status


def test_store_status_says_behind_then_up_to_date(url: str, tmp_path: Path) -> None:
    make_legacy_store(url)
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"store_url": url}))
    result = cli("store", "status", "--config", config)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == (
        "revision  none: made before migrations (schema version 2), to be stamped at 0001"
    )
    assert lines[2] == f"head      {head_revision()}"
    assert lines[3] == (
        "state     behind: made before migrations (schema version 2); 5 revisions to apply"
    )
    assert lines[5].startswith("  revision 0002: schema.version 3")
    assert lines[6].startswith("  revision 0003: seen_messages.request_digest")
    assert lines[7].startswith("  revision 0004: subscriptions")
    assert lines[8].startswith("  revision 0005: outbox.claimed_by")
    assert lines[9].startswith("  revision 0006: partner_usage")
    assert f"`dcihub store upgrade --config {config}` applies them" in result.stderr

    assert cli("store", "upgrade", "--config", config).exit_code == 0
    result = cli("store", "status", "--config", config)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        f"revision  {head_revision()}",
        f"head      {head_revision()}",
        "state     up to date",
    ]


def test_store_status_of_an_empty_store_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    result = cli("store", "status", "--store-url", f"sqlite:///{path}")
    assert result.exit_code == 1
    assert "revision  none (an empty store)" in result.stdout
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no configuration: pass --config FILE"),
        (("--store-url", "nonsense"), "store_url 'nonsense' is not a database URL"),
        (
            ("--store-url", "postgresql+psycopg://nobody@127.0.0.1:1/none"),
            "postgresql+psycopg://nobody@127.0.0.1:1/none",
        ),
    ],
)
def test_store_commands_explain_a_mistake_in_one_line(
    args: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no demo next to it
    monkeypatch.delenv("DCIHUB_CONFIG", raising=False)
    for command in ("status", "upgrade"):
        result = cli("store", command, *args)
        assert result.exit_code == 2, result.output
        assert message in one_error_line(result.stderr)


def test_store_url_wins_over_the_configuration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'given.db'}"
    result = cli("store", "upgrade", "--config", tmp_path / "absent.yaml", "--store-url", url)
    assert result.exit_code == 0, result.output
    assert not Store(url).status().behind


# =============================================================================================
# (e) serve and worker on a store that is behind; auto-upgrade; one upgrader at a time


def node_config(tmp_path: Path, url: str, port: int, **extra: Any) -> Path:
    config = tmp_path / "node.yaml"
    settings = {
        "store_url": url,
        "base_url": f"http://127.0.0.1:{port}",
        "registries": ["crvs"],
        **extra,
    }
    config.write_text(yaml.safe_dump(settings))
    return config


def test_serve_and_worker_refuse_a_store_that_is_behind_in_one_line(
    url: str, tmp_path: Path
) -> None:
    make_legacy_store(url)
    port = support.free_port()
    config = node_config(tmp_path, url, port)
    for command in (["serve", "--port", str(port)], ["worker"]):
        result = dcihub(command[0], "--config", str(config), *command[1:])
        assert result.returncode == 2, result.stderr
        line = one_error_line(result.stderr)
        assert "is behind this dcihub (made before migrations (schema version 2)" in line
        assert f"run `dcihub store upgrade --config {config}` first" in line
    assert Store(url).status().state == "legacy"  # untouched


def test_serve_with_auto_upgrade_upgrades_the_store_and_serves(url: str, tmp_path: Path) -> None:
    make_legacy_store(url)
    port = support.free_port()
    config = node_config(tmp_path, url, port, store_auto_upgrade=True)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(DCIHUB), "serve", "--config", str(config), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=20)
    text_ = log.read_text()
    assert "store upgraded: recognised a store made before migrations" in text_
    assert "store upgraded: applied revision 0002" in text_
    assert not Store(url).status().behind


def test_prepare_creates_an_empty_store_and_refuses_one_that_is_behind(url: str) -> None:
    store = Store(url)
    assert store.prepare().before.state == "empty"  # the first start: created at head
    assert store.prepare() is None  # up to date: nothing to do
    store.dispose()

    with profiles_changed(toy=TOY):
        store = Store(url)
        with pytest.raises(StoreBehind) as behind:
            store.prepare()
        assert "1 revision" not in str(behind.value)
        assert "3 registry-table changes pending" in str(behind.value)
        report = store.prepare(auto_upgrade=True)
        assert report is not None and "created table toy_thing" in report.done
        store.dispose()


def test_the_demo_upgrades_its_own_store_instead_of_rebuilding_it(
    tmp_path: Path, small_country: Any
) -> None:
    from dcihub.demo import prepare_demo

    make_legacy_store(f"sqlite:///{tmp_path / 'demo.db'}", small_country)
    before = dump(f"sqlite:///{tmp_path / 'demo.db'}")
    setup = prepare_demo(tmp_path, "127.0.0.1", 8000, small_country.people, small_country.seed)
    assert not setup.built_now
    assert setup.upgraded[0].startswith("recognised a store made before migrations")
    after = dump(f"sqlite:///{tmp_path / 'demo.db'}")
    assert after["crvs_person"] == before["crvs_person"]
    assert after["audit_log"] == before["audit_log"]
    setup.store.dispose()


def test_two_processes_upgrading_at_once_do_not_collide(url: str, backend: str) -> None:
    """Both wait on the upgrade lock; the first to get it upgrades, the second finds nothing
    left to do. On PostgreSQL the test holds the lock until both are seen waiting for it."""
    holder = make_engine(url) if backend == "postgres" else None
    conn = holder.connect() if holder is not None else None
    if conn is not None:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:cls, hashtext(current_schema()))"),
            {"cls": LOCK_CLASS},
        )
    processes = [
        subprocess.Popen(
            [str(DCIHUB), "store", "upgrade", "--store-url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        if conn is not None:
            deadline = time.monotonic() + 60
            while _waiting_upgraders(holder) < 2:
                assert all(p.poll() is None for p in processes)
                assert time.monotonic() < deadline, "the upgraders never waited for the lock"
                time.sleep(0.1)
            conn.commit()  # releases the lock
        outputs = [p.communicate(timeout=120) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
        if conn is not None:
            conn.close()
            holder.dispose()  # type: ignore[union-attr]
    assert [p.returncode for p in processes] == [0, 0], outputs
    upgraded = [out for out, _ in outputs if "applied revision 0001" in out]
    idle = [out for out, _ in outputs if "nothing to do" in out]
    assert len(upgraded) == 1 and len(idle) == 1, outputs
    assert schema_diff(url, build_schema(PROFILES).metadata) == []


def _waiting_upgraders(engine: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = :cls AND objid = (hashtext(current_schema())::bigint & 4294967295)"
            ),
            {"cls": LOCK_CLASS},
        ).scalar_one()
