"""The demo's stream of life events (`dcihub demo --events-per-minute N`): plausible events,
recorded through the operator's write path, deterministic given the seed; and the demo
itself playing them while a programme subscribed with `dcihub subscribe` is notified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import httpx
import pytest

from dcihub.population.life import LifeStream
from dcihub.store import Store
from support import free_port

DCIHUB = [sys.executable, "-m", "dcihub.cli"]
TODAY = date(2026, 3, 1)


@pytest.fixture(scope="module")
def country():
    from dcihub.population.generator import generate_country

    return generate_country(people=400, seed=12)


def loaded(path: Path, country) -> Store:
    from dcihub.population.load import load_country

    store = Store(f"sqlite:///{path}")
    store.upgrade()
    load_country(store, country)
    return store


def play(store: Store, seed: int, n: int) -> list[tuple[str, str, list]]:
    stream = LifeStream(store, seed, 600, today=lambda: TODAY)
    events = [stream.step() for _ in range(n)]
    return [
        (e.kind, e.summary, [(s.registry, s.change, s.options, s.keys) for s in e.steps])
        for e in events
        if e is not None
    ]


def test_the_stream_is_deterministic_given_the_seed(country, tmp_path) -> None:
    one, two, three = (loaded(tmp_path / f"{n}.db", country) for n in "abc")
    try:
        first = play(one, 5, 40)
        assert len(first) == 40
        assert first == play(two, 5, 40)
        assert first != play(three, 6, 40)
    finally:
        for store in (one, two, three):
            store.dispose()


def test_the_events_are_plausible_and_recorded(country, tmp_path) -> None:
    store = loaded(tmp_path / "life.db", country)
    try:
        stream = LifeStream(store, 9, 600, today=lambda: TODAY)
        events = [e for _ in range(120) if (e := stream.step()) is not None]
        kinds = Counter(e.kind for e in events)
        assert {"death", "birth", "marriage", "employment", "enrolment-status"} <= set(kinds)
        with store.read() as conn:
            for event in events:
                for step in event.steps:
                    for key in step.keys:
                        assert store.records.get(conn, step.registry, key) is not None
                if event.kind == "death":
                    (person_key,) = event.steps[0].keys
                    person = store.records.get(conn, "crvs", person_key)
                    assert person["death_date"]
                    assert person["birth_date"] < "2008-03-01"  # adults (mostly the old)
                    # the deceased's active IBR enrolments end: Deceased
                    for step in event.steps[1:]:
                        assert (step.registry, step.options["status"]) == ("ibr", "2")
                if event.kind == "birth":
                    child = store.records.get(conn, "crvs", event.steps[0].keys[0])
                    mother = event.steps[0].options["mother"].split("=")[1]
                    assert child["parent1_identifier"]["identifier_value"] == mother
                    if "father" in event.steps[0].options:
                        assert (
                            child["parent2_identifier"]["identifier_value"]
                            == (event.steps[0].options["father"].split("=")[1])
                        )
                    for step in event.steps[1:]:  # the newborn joins the mother's household
                        assert step.change == "member-join"
                        group = store.records.get(conn, "social", step.keys[0])
                        uins = [
                            m["member_identifier"][0]["identifier_value"]
                            for m in group["member_list"]
                        ]
                        assert child["identifier"][0]["identifier_value"] in uins
                if event.kind == "marriage":
                    for key in event.steps[0].keys:
                        assert store.records.get(conn, "crvs", key)["marital_status"] == "M"
        births = [e for e in events if e.kind == "birth"]
        assert any("father" in e.steps[0].options for e in births)  # married mothers
        assert stream.count == len(events)
    finally:
        store.dispose()


def test_a_stream_needs_a_registry_with_events(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path}/empty.db")
    try:
        with pytest.raises(ValueError, match="events per minute"):
            LifeStream(store, 1, 0)
        with pytest.raises(ValueError, match="no registry with life events"):
            LifeStream(store, 1, 60, registries=["nope"])
    finally:
        store.dispose()


def test_the_demo_plays_life_events_to_a_subscriber(tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCIHUB_")}
    env.update(COLUMNS="200", DCIHUB_PROFILES=str(tmp_path / "no-profiles.toml"))
    demo = subprocess.Popen(
        [*DCIHUB, "demo", "--port", str(port), "--people", "300", "--log-level", "warning"]
        + ["--events-per-minute", "600"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if demo.poll() is not None or time.monotonic() > deadline:
                demo.kill()
                raise AssertionError(f"the demo did not start: {demo.stdout.read()}")  # type: ignore[union-attr]
            time.sleep(0.2)
        # a programme follows deaths with the client CLI, as docs/subscriptions.md shows
        follow = subprocess.run(
            [*DCIHUB, "subscribe", "crvs", "--event", "death", "--where", "is_deceased = true"]
            + ["--follow", "--count", "2", "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert follow.returncode == 0, follow.stdout + follow.stderr
        lines = [json.loads(line) for line in follow.stdout.splitlines()]
        assert lines[0]["callback"] == "on-subscribe" and len(lines[0]["codes"]) == 1
        notices = [line for line in lines if line["callback"] == "notify"]
        assert len(notices) == 2
        for notice in notices:
            assert notice["subscription_codes"] == lines[0]["codes"]
            (event,) = notice["events"]
            assert event["reg_event_type"] == "Death"
            assert event["records"][0]["death_date"]
    finally:
        demo.terminate()
        out, _ = demo.communicate(timeout=30)
    assert "life events: 600 a minute" in out
