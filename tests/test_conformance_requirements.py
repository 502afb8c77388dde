"""The conformance kit's requirements file and its loader."""

from __future__ import annotations

import pytest

from dcihub.conformance.requirements import (
    ACTORS,
    TIERS,
    RequirementsError,
    load_requirements,
    parse_requirements,
    requirement,
)
from dcihub.standard.profiles import PROFILES

ENTRY = """
[[requirement]]
id = "{id}"
tier = "{tier}"
actor = "server"
statement = "A rule."
spec = "A section"
registries = {registries}
"""


def doc(**fields: str) -> str:
    values = {"id": "SEARCH-SYNC-001", "tier": "core", "registries": '"all"', **fields}
    return ENTRY.format(**values)


def test_the_packaged_requirements_load_and_are_well_formed():
    requirements = load_requirements()
    assert len(requirements) >= 40
    ids = [r.id for r in requirements]
    assert len(ids) == len(set(ids))
    assert {r.tier for r in requirements} == set(TIERS)
    assert {r.actor for r in requirements} == set(ACTORS)
    for r in requirements:
        assert r.statement and "\n" not in r.statement
        assert set(r.registries) <= set(PROFILES)
    assert requirement("SEARCH-SYNC-001").registries == tuple(PROFILES)
    assert requirement("TXN-SYNC-001").registries == ("social", "crvs", "fr", "ibr", "ess")
    with pytest.raises(KeyError):
        requirement("NOPE-001")


def test_a_duplicate_id_is_refused():
    with pytest.raises(RequirementsError, match="SEARCH-SYNC-001 appears twice"):
        parse_requirements(doc() + doc())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tier": "gold"}, "tier 'gold' is not one of"),
        ({"id": "search-1"}, "is not of the form"),
        ({"registries": '["social", "xr"]'}, r"unknown registries \['xr'\]"),
        ({"registries": "3"}, "registries must be"),
    ],
)
def test_a_malformed_entry_is_refused_naming_it(fields, message):
    with pytest.raises(RequirementsError, match=message):
        parse_requirements(doc(**fields))


def test_missing_and_unknown_members_are_named():
    with pytest.raises(RequirementsError, match="missing spec"):
        parse_requirements(doc().replace('spec = "A section"\n', ""))
    with pytest.raises(RequirementsError, match=r"unknown members \['colour'\]"):
        parse_requirements(doc() + 'colour = "red"\n')
    with pytest.raises(RequirementsError, match="not valid TOML"):
        parse_requirements("[[requirement]\n")
    with pytest.raises(RequirementsError, match="no \\[\\[requirement\\]\\] entries"):
        parse_requirements("")
