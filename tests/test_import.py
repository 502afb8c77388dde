"""`dcihub import`: a country's own CSV, JSON Lines or SQL rows, mapped into registry records by a
mapping file, validated (rejects report), committed in resumable batches or all or nothing,
idempotent on re-import, raising the change events of what changed; on SQLite and PostgreSQL,
and end to end through a real server."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from dcihub.cli import app
from dcihub.config import load_settings
from dcihub.population.importer import (
    MappingError,
    Options,
    Summary,
    load_mapping,
    open_source,
    run_import,
)
from dcihub.standard.profiles import PROFILES
from dcihub.standard.subscriptions import Schedule, SubscribeTerms
from dcihub.store import Store
from dcihub.store.subscriptions import NewSubscription
from support import (
    DCIClient,
    LiveServer,
    expr,
    free_port,
    idtype,
    pred,
    predicate,
    provision,
    store_url_for,
)

DCIHUB = Path(sys.executable).with_name("dcihub")

CRVS_MAP = """\
registry = "crvs"

[source]
delimiter = ";"
encoding = "latin-1"

[record]
date_formats = ["%d/%m/%Y"]

[[identifiers]]
column = "NIN"
type = "UIN"

[[fields]]
column = "Nom"
to = "surname"
required = true

[[fields]]
column = "Prenom"
to = "given_name"

[[fields]]
column = "Sexe"
to = "sex"
codes = { M = "male", F = "female" }
required = true

[[fields]]
column = "DateNaiss"
to = "birth_date"

[[fields]]
column = "Deces"
to = "death_date"

[[fields]]
column = "Region"
to = "address[].region_code"

[[fields]]
to = "address[].country_code"
value = "SN"
raw = true
"""

HEADER = "NIN;Nom;Prenom;Sexe;DateNaiss;Deces;Region\n"
PEOPLE = [
    "1000000001;Diallo;Aminata;F;12/03/1985;;DK",
    "1000000002;Ndiaye;Moussa;M;01/07/1990;;TH",
    "1000000003;Fall;Awa;X;31/02/1970;;DK",
    ";Sow;Ibou;M;01/01/2000;;DK",
    "1000000005;Ba;Hélène;F;1975-05-05;;SL",
]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


@pytest.fixture
def store(backend, tmp_path):
    with store_url_for(backend, tmp_path) as url:
        made = Store(url)
        made.upgrade()
        yield made
        made.dispose()


def do_import(
    store: Store | None,
    registry: str,
    mapping: Path,
    source: str,
    **options: Any,
) -> Summary:
    plan = load_mapping(mapping, registry, PROFILES[registry])
    options.setdefault("rejects", mapping.parent / "rejects.csv")
    progress = options.pop("progress", None)
    return run_import(store, plan, open_source(plan, source, None), Options(**options), progress)


def records(store: Store, registry: str) -> dict[str, dict[str, Any]]:
    top = PROFILES[registry].top_entities[0]
    main = store.records.tables(registry, top.name).main
    with store.read() as conn:
        return {
            k: orjson.loads(r) for k, r in conn.execute(select(main.c.record_key, main.c.record))
        }


def notifications(store: Store) -> int:
    outbox = store.schema.ops.outbox
    with store.read() as conn:
        return conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.action == "notify")
        ).scalar_one()


def subscribe_all(store: Store, registry: str, event: str) -> None:
    """A real immediate subscription to every `event` of `registry` (no filter)."""
    profile = PROFILES[registry]
    etype = profile.event_type(event)
    assert etype is not None
    terms = SubscribeTerms(
        etype, profile.entity(etype.entity), None, None, Schedule(None, 0, None), None, None, None
    )
    new = NewSubscription(
        f"sub-{registry}-{event}",
        registry,
        "spmis.test",
        f"txn-{event}",
        "ref-1",
        terms,
        "http://127.0.0.1:9/notify",
        {},
        ["*"],
    )
    with store.begin() as conn:
        store.subscriptions.create(conn, [new])


def rejects_of(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------
# a country's own CSV


def test_a_csv_with_own_columns_imports_with_a_clear_rejects_report(store, tmp_path):
    mapping = write(tmp_path / "crvs.toml", CRVS_MAP)
    people = write(tmp_path / "people.csv", HEADER + "\n".join(PEOPLE) + "\n", "latin-1")
    summary = do_import(store, "crvs", mapping, str(people))
    assert (summary.rows_read, summary.created, summary.rows_rejected) == (5, 3, 2)
    stored = records(store, "crvs")
    assert set(stored) == {f"crvs:person:100000000{i}" for i in (1, 2, 5)}
    aminata = stored["crvs:person:1000000001"]
    assert aminata["identifier"] == [{"identifier_type": "UIN", "identifier_value": "1000000001"}]
    assert aminata["name"] == {"surname": "Diallo", "given_name": "Aminata"}
    assert (aminata["sex"], aminata["birth_date"]) == ("female", "1985-03-12")
    assert aminata["address"] == [{"region_code": "DK", "country_code": "SN"}]
    assert "death_date" not in aminata
    assert stored["crvs:person:1000000005"]["name"]["given_name"] == "Hélène"  # latin-1 read
    found = rejects_of(tmp_path / "rejects.csv")
    assert [(r["line"], r["column"], r["field"], r["value"]) for r in found] == [
        ("4", "Sexe", "sex", "X"),
        ("4", "DateNaiss", "birth_date", "31/02/1970"),
        ("5", "NIN", "UIN", ""),
    ]
    assert {r["file"] for r in found} == {str(people)}
    assert "not a code of sex" in found[0]["reason"]
    assert "not a date (%d/%m/%Y or YYYY-MM-DD)" in found[1]["reason"]
    assert "required but empty" in found[2]["reason"]


def test_reimport_updates_instead_of_duplicating_and_raises_events_of_changes_only(store, tmp_path):
    mapping = write(tmp_path / "crvs.toml", CRVS_MAP)
    good = [PEOPLE[0], PEOPLE[1], PEOPLE[4]]
    people = write(tmp_path / "people.csv", HEADER + "\n".join(good) + "\n", "latin-1")
    subscribe_all(store, "crvs", "LiveBirth")
    subscribe_all(store, "crvs", "Death")
    first = do_import(store, "crvs", mapping, str(people))
    assert (first.created, first.updated, first.unchanged) == (3, 0, 0)
    assert notifications(store) == 3  # a registration (LiveBirth) for each new person
    again = do_import(store, "crvs", mapping, str(people))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert notifications(store) == 3  # nothing changed, nothing raised
    changed = [PEOPLE[0].replace(";;DK", ";02/02/2026;DK"), PEOPLE[1].replace("Moussa", "Mamadou")]
    write(tmp_path / "people.csv", HEADER + "\n".join([*changed, PEOPLE[4]]) + "\n", "latin-1")
    third = do_import(store, "crvs", mapping, str(people))
    assert (third.created, third.updated, third.unchanged) == (0, 2, 1)
    stored = records(store, "crvs")
    assert len(stored) == 3
    assert stored["crvs:person:1000000001"]["death_date"] == "2026-02-02"
    assert stored["crvs:person:1000000002"]["name"]["given_name"] == "Mamadou"
    assert notifications(store) == 4  # the death; a changed name raises no CRVS event
    with store.read() as conn:  # identifiers were replaced, not added twice
        ids = store.records.tables("crvs", "Person").ids
        assert conn.execute(select(func.count()).select_from(ids)).scalar_one() == 3


def test_an_import_matches_stored_records_by_identifier_whatever_their_key(store, tmp_path):
    existing = {
        "@type": "Person",
        "@id": "crvs:person:0000042",
        "identifier": [{"identifier_type": "UIN", "identifier_value": "1000000001"}],
        "name": {"surname": "Old"},
        "sex": "female",
    }
    with store.begin() as conn:
        store.records.upsert(conn, "crvs", existing)
    mapping = write(tmp_path / "crvs.toml", CRVS_MAP)
    people = write(tmp_path / "people.csv", HEADER + PEOPLE[0] + "\n", "latin-1")
    summary = do_import(store, "crvs", mapping, str(people))
    assert (summary.created, summary.updated) == (0, 1)
    stored = records(store, "crvs")
    assert list(stored) == ["crvs:person:0000042"]
    assert stored["crvs:person:0000042"]["name"]["surname"] == "Diallo"


# ---------------------------------------------------------------------------------------------
# batches, resume, all or nothing, dry run


def many_people(count: int, bad: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    rows = []
    for i in range(1, count + 1):
        sex = "Q" if i in bad else "MF"[i % 2]
        rows.append(f"{2000000000 + i};Name{i};Given{i};{sex};01/01/1980;;DK")
    return HEADER + "\n".join(rows) + "\n"


def test_an_interrupted_import_resumes_after_its_last_committed_batch(store, tmp_path):
    mapping = write(tmp_path / "crvs.toml", CRVS_MAP)
    people = write(tmp_path / "people.csv", many_people(11, bad={3}), "latin-1")

    def interrupt(summary: Summary, _position: int | None) -> None:
        if summary.batches >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        do_import(store, "crvs", mapping, str(people), batch_size=3, progress=interrupt)
    # whole batches of three records were committed: the two seen, and the one in flight
    # when the interruption came, if it was (batches are written while the next is read)
    committed = len(records(store, "crvs"))
    assert committed in (6, 9)
    resumed = do_import(store, "crvs", mapping, str(people), batch_size=3, resume=True)
    assert resumed.rows_skipped == committed + 1  # the committed records and rejected row 3
    assert (resumed.created, resumed.unchanged) == (10 - committed, 0)
    assert resumed.rows_read == 11 - resumed.rows_skipped
    assert len(records(store, "crvs")) == 10
    report = rejects_of(tmp_path / "rejects.csv")  # kept from the first run, appended to
    assert [(r["line"], r["field"]) for r in report] == [("4", "sex")]
    # the import finished: a new --resume starts from the beginning (nothing is skipped)
    again = do_import(store, "crvs", mapping, str(people), batch_size=3, resume=True)
    assert (again.rows_skipped, again.unchanged, again.created) == (0, 10, 0)


def test_all_or_nothing_commits_nothing_when_a_row_is_rejected(store, tmp_path):
    mapping = write(tmp_path / "crvs.toml", CRVS_MAP)
    people = write(tmp_path / "people.csv", many_people(7, bad={6}), "latin-1")
    summary = do_import(store, "crvs", mapping, str(people), batch_size=2, all_or_nothing=True)
    assert not summary.committed and summary.rows_rejected == 1
    assert records(store, "crvs") == {}
    write(tmp_path / "people.csv", many_people(7), "latin-1")
    summary = do_import(store, "crvs", mapping, str(people), batch_size=2, all_or_nothing=True)
    assert summary.committed and summary.created == 7
    assert len(records(store, "crvs")) == 7


def test_a_dry_run_validates_and_counts_without_writing(store, tmp_path):
    mapping = write(tmp_path / "crvs.toml", CRVS_MAP)
    people = write(tmp_path / "people.csv", many_people(4, bad={2}), "latin-1")
    dry = do_import(store, "crvs", mapping, str(people), dry_run=True)
    assert (dry.created, dry.rows_rejected) == (3, 1)
    assert records(store, "crvs") == {}
    assert len(rejects_of(tmp_path / "rejects.csv")) == 1
    no_store = do_import(None, "crvs", mapping, str(people), dry_run=True)
    assert (no_store.created, no_store.rows_rejected) == (3, 1)


# ---------------------------------------------------------------------------------------------
# households


SOCIAL_MAP = """\
registry = "social"
entity = "Member"

[group]
key = "menage"
sorted = {sorted}
size = "group_size"

[[group.identifiers]]
column = "menage"
type = "HHID"

[[group.fields]]
column = "pmt"
to = "poverty_score"

[[group.fields]]
to = "poverty_score_type"
value = "PMT"

[[identifiers]]
column = "nin"
type = "UIN"

[[fields]]
column = "nom"
to = "surname"

[[fields]]
column = "sexe"
to = "sex"
codes = {{ H = "male", F = "female" }}

[[fields]]
column = "etat_civil"
to = "marital_status"
codes = {{ marie = "M", celibataire = "S", veuf = "W" }}
"""

HOUSEHOLDS = """\
menage,nin,nom,sexe,etat_civil,pmt
HH-1,3000000001,Diop,H,marie,0.31
HH-2,3000000003,Sarr,F,veuf,0.72
HH-1,3000000002,Diop,F,marie,0.31
HH-3,3000000004,Kane,H,divorce,0.50
HH-3,3000000005,Kane,F,marie,0.50
HH-4,3000000006,Gaye,F,celibataire,0.40
HH-4,3000000007,Gaye,H,celibataire,0.45
"""


@pytest.mark.parametrize("is_sorted", [False, True])
def test_rows_sharing_a_household_key_become_one_household(store, tmp_path, is_sorted):
    mapping = write(tmp_path / "sr.toml", SOCIAL_MAP.format(sorted=str(is_sorted).lower()))
    text = HOUSEHOLDS
    if is_sorted:  # the same rows, sorted by household; HH-2 comes back later: not adjacent
        lines = text.splitlines()
        text = "\n".join([lines[0], lines[1], lines[3], lines[2], *lines[4:], lines[2]]) + "\n"
    source = write(tmp_path / "households.csv", text)
    subscribe_all(store, "social", "REGISTER")
    summary = do_import(store, "social", mapping, str(source))
    stored = records(store, "social")
    assert sorted(stored) == ["social:group:HH-1", "social:group:HH-2"]
    hh1 = stored["social:group:HH-1"]
    assert hh1["group_identifier"] == [{"identifier_type": "HHID", "identifier_value": "HH-1"}]
    assert (hh1["group_size"], hh1["poverty_score"], hh1["poverty_score_type"]) == (2, 0.31, "PMT")
    members = hh1["member_list"]
    assert [m["@id"] for m in members] == ["social:member:3000000001", "social:member:3000000002"]
    assert members[1]["demographic_info"]["sex"] == "female"
    assert members[1]["demographic_info"]["identifier"] == members[1]["member_identifier"]
    assert members[0]["marital_status"] == "M"
    assert summary.created == 2 and notifications(store) == 2
    report = rejects_of(tmp_path / "rejects.csv")
    by_line = {(r["line"], r["field"]): r["reason"] for r in report}
    # HH-3: one member's code is unknown, so the household is rejected whole
    assert "not a code of marital_status" in by_line[("5", "marital_status")]
    assert "household HH-3 is rejected" in by_line[("6", "")]
    # HH-4: the household's own fields differ between its rows
    assert "differ from line 7" in by_line[("8", "poverty_score")]
    if is_sorted:
        assert any("not sorted by the key" in r["reason"] for r in report)
    assert summary.records_rejected == (3 if is_sorted else 2)
    with store.read() as conn:  # members are searchable rows of their own
        assert store.records.count(conn, "social", "Member") == 3


def test_a_new_member_updates_the_household_and_raises_its_event(store, tmp_path):
    mapping = write(tmp_path / "sr.toml", SOCIAL_MAP.format(sorted="false"))
    base = "menage,nin,nom,sexe,etat_civil,pmt\nHH-1,3000000001,Diop,H,marie,0.31\n"
    source = write(tmp_path / "households.csv", base)
    do_import(store, "social", mapping, str(source))
    subscribe_all(store, "social", "NewHouseHoldMember")
    write(tmp_path / "households.csv", base + "HH-1,3000000009,Diop,F,marie,0.31\n")
    summary = do_import(store, "social", mapping, str(source))
    assert (summary.created, summary.updated) == (0, 1)
    assert records(store, "social")["social:group:HH-1"]["group_size"] == 2
    assert notifications(store) == 1
    with store.read() as conn:
        assert store.records.count(conn, "social", "Member") == 2


# ---------------------------------------------------------------------------------------------
# JSON Lines and SQL sources

JSONL_MAP = """\
[[identifiers]]
column = "ids.nin"
type = "UIN"

[[fields]]
column = "name.last"
to = "surname"

[[fields]]
column = "sex"
to = "sex"

[[fields]]
column = "born"
to = "birth_date"

[[fields]]
column = "marriages"
to = "marriage_date"
"""


def test_json_lines_with_nested_columns_and_lists(store, tmp_path):
    mapping = write(tmp_path / "map.toml", JSONL_MAP)
    lines = [
        {
            "ids": {"nin": "4000000001"},
            "name": {"last": "Faye"},
            "sex": "female",
            "born": "1990-01-02",
            "marriages": ["2010-05-05", "2015-06-06"],
        },
        "not json",
        {"ids": {"nin": 4000000002}, "name": {"last": "Sy"}, "sex": "Male", "born": "1991-01-02"},
    ]
    text = "\n".join(x if isinstance(x, str) else orjson.dumps(x).decode() for x in lines)
    source = write(tmp_path / "people.jsonl", text + "\n")
    summary = do_import(store, "crvs", mapping, str(source))
    assert (summary.created, summary.rows_rejected) == (2, 1)
    stored = records(store, "crvs")
    assert stored["crvs:person:4000000001"]["marriage_date"] == ["2010-05-05", "2015-06-06"]
    assert stored["crvs:person:4000000002"]["sex"] == "male"
    assert rejects_of(tmp_path / "rejects.csv")[0]["line"] == "2"


def test_a_sql_query_on_another_database_is_streamed_in(store, tmp_path):
    legacy = tmp_path / "legacy.db"
    with sqlite3.connect(legacy) as db:
        db.execute("CREATE TABLE citizens (nin TEXT, surname TEXT, gender TEXT, dob TEXT)")
        db.executemany(
            "INSERT INTO citizens VALUES (?, ?, ?, ?)",
            [(f"50000000{i:02d}", f"S{i}", "F" if i % 2 else "M", "2001-01-01") for i in range(25)],
        )
    mapping = write(
        tmp_path / "map.toml",
        '[source]\nquery = "SELECT nin, surname, gender, dob FROM citizens ORDER BY nin"\n'
        '[[identifiers]]\ncolumn = "nin"\ntype = "UIN"\n'
        '[[fields]]\ncolumn = "surname"\nto = "surname"\n'
        '[[fields]]\ncolumn = "gender"\nto = "sex"\ncodes = { F = "female", M = "male" }\n'
        '[[fields]]\ncolumn = "dob"\nto = "birth_date"\n',
    )
    summary = do_import(store, "crvs", mapping, f"sqlite:///{legacy}", batch_size=10)
    assert (summary.rows_read, summary.created, summary.batches) == (25, 25, 3)
    assert records(store, "crvs")["crvs:person:5000000003"]["sex"] == "female"


# ---------------------------------------------------------------------------------------------
# mistakes are one clear line


def cli(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ('[[fields]\ncolumn = "a"', "not valid TOML"),
        ('colour = "blue"\n', "colour: unknown key"),
        (
            '[[identifiers]]\ncolumn = "NIN"\ntype = "UIN"\n[[fields]]\ncolumn = "Nom"\nto = "nme"\n',
            ":6: fields[0].to: unknown field path 'nme' of Person records",
        ),
        (
            '[[identifiers]]\ncolumn = "NIN"\ntype = "HHID"\n',
            "identifiers[0].type: Person records have no identifier type 'HHID'",
        ),
        (
            '[[identifiers]]\ncolumn = "NIN"\ntype = "UIN"\n[[fields]]\ncolumn = "Sexe"\nto = "sex"\ncodes = { M = "man" }\n',
            "fields[0].codes.M: 'man' is not a code of sex",
        ),
        (
            '[[identifiers]]\ncolumn = "NIN"\ntype = "UIN"\n[[fields]]\ncolumn = "Sex"\nto = "sex"\n',
            "reads column(s) 'Sex', which",
        ),
        ('registry = "social"\n', "the mapping is for 'social', the import is into 'crvs'"),
    ],
)
def test_a_bad_mapping_is_one_line_naming_the_key(tmp_path, mapping, message):
    write(tmp_path / "map.toml", mapping)
    write(tmp_path / "people.csv", "NIN,Nom,Sexe\n1,A,M\n")
    url = f"sqlite:///{tmp_path}/s.db"
    result = cli(
        "import", "crvs", tmp_path / "people.csv", "-m", tmp_path / "map.toml", "--store-url", url
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_errors_and_summary(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    mapping = write(tmp_path / "crvs.toml", CRVS_MAP)
    missing = cli("import", "crvs", tmp_path / "nope.csv", "-m", mapping, "--store-url", url)
    assert missing.exit_code == 2 and "no file" in missing.output
    unknown = cli("import", "ccc", tmp_path / "nope.csv", "-m", mapping, "--store-url", url)
    assert unknown.exit_code == 2 and "unknown registry 'ccc'" in unknown.output
    no_mapping = cli(
        "import", "crvs", tmp_path / "x.csv", "-m", tmp_path / "no.toml", "--store-url", url
    )
    assert no_mapping.exit_code == 2 and "no mapping file" in no_mapping.output
    people = write(tmp_path / "people.csv", HEADER + "\n".join(PEOPLE) + "\n", "latin-1")
    done = cli("import", "crvs", people, "-m", mapping, "--store-url", url)
    assert done.exit_code == 1, done.output  # rows were rejected
    assert "rows read      5" in done.output and "created        3" in done.output
    assert (
        f"rejected       2 rows (2 records); report: {tmp_path}/people.rejects.csv" in done.output
    )
    assert (tmp_path / "people.rejects.csv").exists()
    write(tmp_path / "good.csv", HEADER + PEOPLE[0] + "\n", "latin-1")
    again = cli("import", "crvs", tmp_path / "good.csv", "-m", mapping, "--store-url", url)
    assert again.exit_code == 0 and "unchanged      1" in again.output
    resumed = cli(
        "import", "crvs", tmp_path / "good.csv", "-m", mapping, "--store-url", url, "--resume"
    )
    assert resumed.exit_code == 0 and "unchanged      1" in resumed.stdout
    assert "no interrupted import of this source and mapping to resume" in resumed.output


# ---------------------------------------------------------------------------------------------
# end to end: a freshly imported store answers signed searches


def test_dcihub_serve_on_a_freshly_imported_store_finds_the_imported_people(backend, tmp_path):
    with store_url_for(backend, tmp_path) as url:
        port = free_port()
        config = write(
            tmp_path / "dcihub.yaml",
            yaml.safe_dump(
                {
                    "store_url": url,
                    "node_id": "dcihub.import-test",
                    "base_url": f"http://127.0.0.1:{port}",
                    "registries": ["crvs"],
                }
            ),
        )
        mapping = write(tmp_path / "crvs.toml", CRVS_MAP)
        people = write(tmp_path / "people.csv", HEADER + "\n".join(PEOPLE) + "\n", "latin-1")
        result = cli("import", "crvs", people, "-m", mapping, "--config", config)
        assert result.exit_code == 1 and "created        3" in result.output
        settings = load_settings(config)
        partner = provision(settings)
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(DCIHUB), "serve", "--config", str(config), "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        store = Store(url)
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{settings.base_url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            running = LiveServer(settings.base_url, settings, store, None, None, None, partner)
            client = DCIClient(running, partner)
            found = client.records("crvs", idtype("UIN", "1000000002"))
            assert [r["name"]["given_name"] for r in found] == ["Moussa"]
            women = client.records("crvs", predicate(pred(1, expr("sex", "eq", "female"))))
            assert sorted(r["name"]["surname"] for r in women) == ["Ba", "Diallo"]
        finally:
            process.terminate()
            process.wait(timeout=10)
            store.dispose()


def test_load_mapping_rejects_grouping_a_registry_without_embedded_records(tmp_path):
    path = write(tmp_path / "m.toml", '[group]\nkey = "k"\n')
    with pytest.raises(MappingError, match="embeds no records"):
        load_mapping(path, "crvs", PROFILES["crvs"])


def test_a_file_in_another_encoding_than_declared_stops_with_one_line(tmp_path):
    mapping = write(tmp_path / "crvs.toml", CRVS_MAP.replace('encoding = "latin-1"\n', ""))
    people = write(tmp_path / "people.csv", HEADER + "\n".join(PEOPLE) + "\n", "latin-1")
    url = f"sqlite:///{tmp_path}/s.db"
    result = cli("import", "crvs", people, "-m", mapping, "--store-url", url)
    assert result.exit_code == 2
    assert "cannot be read as utf-8" in result.output and "set source.encoding" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_headerless_tab_file_with_key_template_defaults_and_split_values(store, tmp_path):
    mapping = write(
        tmp_path / "map.toml",
        '[source]\ndelimiter = "\\t"\nheader = false\ncolumns = ["id", "sex", "weddings", "brn"]\n'
        '[record]\nid = "crvs:citizen:{id}"\ntype = "CRVSPerson"\n'
        '[[identifiers]]\ncolumn = "id"\ntype = "NID"\n'
        '[[identifiers]]\ncolumn = "brn"\ntype = "BRN"\nrequired = false\n'
        '[[fields]]\ncolumn = "sex"\nto = "gender"\ndefault = "unknown"\n'
        '[[fields]]\ncolumn = "weddings"\nto = "marriage_date"\nsplit = "|"\nformat = "%Y%m%d"\n',
    )
    source = write(tmp_path / "people.tsv", "7001\tFemale\t20100505|20150606\tB-1\n7002\t\t\t\n")
    summary = do_import(store, "crvs", mapping, str(source))
    assert (summary.created, summary.rows_rejected) == (2, 0)
    stored = records(store, "crvs")
    first, second = stored["crvs:citizen:7001"], stored["crvs:citizen:7002"]
    assert first["@type"] == "CRVSPerson"
    assert first["identifier"] == [
        {"identifier_type": "UIN", "identifier_value": "7001"},
        {"identifier_type": "BRN", "identifier_value": "B-1"},
    ]
    assert first["marriage_date"] == ["2010-05-05", "2015-06-06"]
    assert (first["sex"], second["sex"], "marriage_date" in second) == ("female", "unknown", False)
    assert second["identifier"] == [{"identifier_type": "UIN", "identifier_value": "7002"}]
