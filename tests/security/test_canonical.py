"""JCS canonicalisation: the orjson fast path must give exactly rfc8785's bytes."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import rfc8785

from dcihub.security import canonical
from dcihub.security.canonical import CanonicalizationError, canonicalize, envelope_bytes

# characters chosen to hit every escaping and ordering rule
_CHARS = (
    list("abcXYZ019 _-.:/\\\"'")
    + ["\x00", "\x01", "\x08", "\t", "\n", "\x0c", "\r", "\x1f", "\x7f", "\x80", "\xa0"]
    + ["é", "ß", "Ω", "€", "\u2028", "\u2029", "漢", "\ud7ff", "\ue000", "\uffee", "\uffff"]
    + ["😀", "\U00010000", "\U0010ffff"]
)


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 8)))


def _number(rng: random.Random) -> Any:
    choice = rng.randint(0, 7)
    if choice == 0:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if choice == 1:
        return rng.randint(-1000, 1000)
    if choice == 2:
        return rng.uniform(-1e6, 1e6)
    if choice == 3:
        return rng.choice([0.0, -0.0, 1.0, 0.1, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 1e16])
    if choice == 4:
        return float(rng.randint(-(10**6), 10**6))
    if choice == 5:
        return rng.random() * 10 ** rng.randint(-30, 30)
    if choice == 6:
        return rng.choice([True, False, None])
    return rng.choice([0, -1, 2**53 - 1, -(2**53 - 1)])


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 5 if depth < 4 else 2)
    if kind == 0:
        return _text(rng)
    if kind in (1, 2):
        return _number(rng)
    if kind == 3:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


@pytest.mark.parametrize("seed", range(40))
def test_matches_rfc8785_on_random_documents(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        doc = {"header": _value(rng), "message": _value(rng)}
        assert canonicalize(doc) == rfc8785.dumps(doc)


@pytest.mark.parametrize("seed", range(10))
def test_fast_path_is_taken_and_exact_for_float_free_documents(seed: int) -> None:
    rng = random.Random(1000 + seed)

    def strip_floats(v: Any) -> Any:
        if isinstance(v, float):
            return int(v) if math.isfinite(v) and abs(v) < 2**53 else 0
        if isinstance(v, list):
            return [strip_floats(x) for x in v]
        if isinstance(v, dict):
            return {k: strip_floats(x) for k, x in v.items()}
        return v

    for _ in range(50):
        doc = strip_floats({"header": _value(rng), "message": _value(rng)})
        if any(max(k, default="a") >= "\ud800" for k in _keys(doc)):
            continue
        assert canonical._fast_path_safe(doc)
        assert canonicalize(doc) == rfc8785.dumps(doc)


def _keys(v: Any) -> list[str]:
    if isinstance(v, dict):
        return list(v) + [k for x in v.values() for k in _keys(x)]
    if isinstance(v, list):
        return [k for x in v for k in _keys(x)]
    return []


def test_key_order_is_utf16_not_code_point() -> None:
    doc = {"\ue000": 1, "😀": 2, "a": 3}
    assert not canonical._fast_path_safe(doc)
    assert canonicalize(doc) == rfc8785.dumps(doc)
    assert canonicalize(doc).index("😀".encode()) < canonicalize(doc).index("\ue000".encode())


@pytest.mark.parametrize(
    "value,expected",
    [(1.0, b"1"), (0.1, b"0.1"), (1e21, b"1e+21"), (1e-7, b"1e-7"), (-0.0, b"0")],
)
def test_numbers_use_ecmascript_form(value: float, expected: bytes) -> None:
    assert canonicalize(value) == expected


def test_unsafe_values_are_refused() -> None:
    for bad in (2**53, float("nan"), float("inf"), "\ud800", {1: "int key"}):
        with pytest.raises(CanonicalizationError):
            canonicalize(bad)


def test_envelope_bytes(header: dict[str, Any], message: dict[str, Any]) -> None:
    data = envelope_bytes(header, message)
    assert data == rfc8785.dumps({"header": header, "message": message})
    assert data.startswith(b'{"header":{"action":"search"')
    assert envelope_bytes(header, None) == rfc8785.dumps({"header": header})
    assert 1500 < len(data) < 2600


def test_fast_path_takes_plain_floats_and_str_enums_exactly() -> None:
    """Records carry decimals (poverty scores, land sizes) and replies carry StrEnum statuses:
    both stay on the fast path and still equal RFC 8785."""
    from enum import StrEnum

    class Status(StrEnum):
        SUCCESS = "succ"

    rng = random.Random(7)
    for _ in range(20000):
        x = rng.choice([-1, 1]) * 10 ** rng.uniform(-4, 15) * rng.random()
        if x == 0 or x.is_integer() or not 1e-4 <= abs(x) < 1e15:
            continue
        doc = {"score": x, "status": Status.SUCCESS, "n": [1, 2.5]}
        assert canonical._fast_path_safe(doc)
        assert canonicalize(doc) == rfc8785.dumps(doc)
    for slow in (2.0, -0.0, 1e15, 1e21, 1e-7):
        assert not canonical._fast_path_safe({"x": slow})
        assert canonicalize({"x": slow}) == rfc8785.dumps({"x": slow})
    for _ in range(20000):  # whatever path is taken, the bytes are the RFC 8785 ones
        x = rng.choice([-1, 1]) * 10 ** rng.uniform(-30, 30) * rng.random()
        assert canonicalize({"v": x, "k": [x, str(x)]}) == rfc8785.dumps({"v": x, "k": [x, str(x)]})
