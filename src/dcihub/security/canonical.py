"""RFC 8785 (JCS) canonical JSON bytes: what dcihub's default signature profile signs.

`envelope_bytes(header, message)` is the JCS form of `{"header": header, "message": message}`
(DIGEST §4.1 Choice). `rfc8785` is the reference implementation; because it is pure Python,
orjson (sorted keys) writes the bytes first and they are used whenever they provably equal JCS:

* orjson writes strings exactly as JCS does (same escapes: `\\b \\t \\n \\f \\r \\" \\\\` and
  lowercase `\\u00xx` for other control characters, everything else as raw UTF-8),
  `true`/`false`/`null` and integers alike;
* numbers: a float orjson writes in plain notation (no exponent) has the same shortest
  round-trip digits JCS (ECMAScript `Number.toString`) writes, except an integral float
  (`2.0` vs JCS `2`, `-0.0` vs `0`); exponent forms may differ; integers beyond 2^53 are not
  allowed by JCS;
* key order differs only when keys hold characters from U+E000 up (JCS orders by UTF-16 code
  units, orjson by code points).

So the output is scanned (at C speed: regular expressions over the bytes, strings blanked
out): it is used unless it holds a byte from 0xEE up (U+E000 and above, anywhere), an exponent
or an integral float, or an integer of 16 digits or more beyond 2^53; then `rfc8785` decides.
Tests check the two agree over randomly generated documents.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import rfc8785

__all__ = ["canonicalize", "envelope_bytes", "envelope_document", "CanonicalizationError"]

_MAX_SAFE_INT = 2**53 - 1


class CanonicalizationError(ValueError):
    """The value has no canonical JSON form (e.g. NaN, huge integer, lone surrogate)."""


def envelope_document(header: Any, message: Any) -> dict[str, Any]:
    """The signed document: `{"header", "message"}`, or `{"header"}` when there is no message
    (on-search/notify/txn-on-status bodies may omit `message`)."""
    if message is None:
        return {"header": header}
    return {"header": header, "message": message}


def envelope_bytes(header: Any, message: Any) -> bytes:
    """JCS bytes of `envelope_document(header, message)`."""
    return canonicalize(envelope_document(header, message))


def canonicalize(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value."""
    try:
        try:
            fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            fast = None  # e.g. lone surrogates or depth > 254: let rfc8785 decide
        if fast is not None and _bytes_are_canonical(fast, value):
            return fast
        return rfc8785.dumps(value)
    except RecursionError as exc:
        raise CanonicalizationError("JSON value nested too deeply") from exc
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalizationError(f"value has no canonical JSON form: {exc}") from exc


_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NUMBERS = re.compile(rb"-?[0-9][0-9.eE+-]*")
_HIGH = re.compile(rb"[\xee-\xff]")


def _bytes_are_canonical(out: bytes, value: Any) -> bool:
    """Whether orjson's sorted output `out` is already the RFC 8785 form (see module doc)."""
    if _HIGH.search(out) and _high_key(out):
        return False
    rest = _STRINGS.sub(b'""', out)
    if b"null" in rest and not _all_finite(value):
        return False  # orjson writes NaN and infinities as null; JCS refuses them
    for match in _NUMBERS.finditer(rest):
        token = match.group()
        if b"e" in token or b"E" in token:
            return False
        if b"." in token:
            if token.endswith(b".0"):
                return False
        elif len(token.lstrip(b"-")) >= 16 and abs(int(token)) > _MAX_SAFE_INT:
            return False
    return True


def _all_finite(value: Any) -> bool:
    """No NaN or infinite float anywhere in `value` (walked only when the output has a null)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                return False
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return True


def _high_key(out: bytes) -> bool:
    """Whether some object key holds a byte from 0xEE up (a string followed by ':')."""
    for match in _STRINGS.finditer(out):
        if _HIGH.search(match.group()) and out[match.end() : match.end() + 1] == b":":
            return True
    return False


def _fast_path_safe(value: Any) -> bool:
    """Whether `value` takes the fast path (used by tests)."""
    try:
        return _bytes_are_canonical(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), value)
    except (TypeError, orjson.JSONEncodeError):
        return False
