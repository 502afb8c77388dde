"""`dcihub demo`'s set-up (without serving): every registry with a population builder is loaded,
and demo.json holds the samples of the generated country."""

from __future__ import annotations

import json

from dcihub.demo import DEFAULT_SEED, prepare_demo, write_demo_json
from dcihub.population.generator import generate_country
from dcihub.standard.profiles import PROFILES

PEOPLE = 400


def test_demo_loads_every_registry_and_writes_its_samples(tmp_path) -> None:
    setup = prepare_demo(tmp_path, "127.0.0.1", 8799, PEOPLE)
    try:
        assert setup.built_now
        expected = generate_country(PEOPLE, DEFAULT_SEED)
        built = [name for name, profile in PROFILES.items() if profile.builder]
        assert list(expected.registries) == built
        with setup.store.read() as conn:
            for name in built:
                entity = PROFILES[name].default_entity
                top = [e for e in PROFILES[name].top_entities if e.name == entity]
                if top:
                    assert setup.store.records.count(conn, name, entity) == len(
                        expected.records(name)
                    ), name
        info = json.loads(write_demo_json(tmp_path, setup.info).read_text("utf-8"))
        assert info["samples"] == expected.samples()
        assert set(info["samples"]) == set(built)
        assert set(info["registries"]) == set(PROFILES)
    finally:
        setup.store.dispose()
    again = prepare_demo(tmp_path, "127.0.0.1", 8799, PEOPLE)
    try:
        assert not again.built_now  # the same build is reused
        assert again.info["samples"] == expected.samples()
    finally:
        again.store.dispose()
