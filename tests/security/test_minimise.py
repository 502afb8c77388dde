"""Data minimisation by dotted field paths."""

from __future__ import annotations

import copy

from dcihub.security.minimise import minimise

RECORD = {
    "identifier": [
        {"identifier_type": "UIN", "identifier_value": "1234"},
        {"identifier_type": "BRN", "identifier_value": "B-9"},
    ],
    "name": {"given_name": "Amina", "surname": "Okafor", "prefix": "Ms"},
    "birth_date": "1990-04-01",
    "sex": "female",
    "address": [{"locality": "North", "geo": {"lat": 1.5, "lon": 2.5}}],
    "income": 1200,
}


def test_none_returns_the_record_itself() -> None:
    assert minimise(RECORD, None) is RECORD


def test_keeps_only_allowed_paths_through_lists() -> None:
    before = copy.deepcopy(RECORD)
    result = minimise(
        RECORD, ["identifier.identifier_type", "name.given_name", "birth_date", "address.geo.lat"]
    )
    assert result == {
        "identifier": [{"identifier_type": "UIN"}, {"identifier_type": "BRN"}],
        "name": {"given_name": "Amina"},
        "birth_date": "1990-04-01",
        "address": [{"geo": {"lat": 1.5}}],
    }
    assert RECORD == before  # the input is not modified


def test_naming_an_object_keeps_it_whole_in_any_order() -> None:
    expected = {"name": RECORD["name"]}
    assert minimise(RECORD, ["name", "name.given_name"]) == expected
    assert minimise(RECORD, ["name.given_name", "name"]) == expected


def test_missing_paths_and_paths_below_scalars_are_ignored() -> None:
    assert minimise(RECORD, ["nope", "income.currency", "sex.code"]) == {}
    assert minimise(RECORD, []) == {}
    assert minimise({"a": [1, {"b": 2}]}, ["a.b"]) == {"a": [{"b": 2}]}
