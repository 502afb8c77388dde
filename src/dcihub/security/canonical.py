"""RFC 8785 (JCS) canonical JSON bytes: what dcihub's default signature profile signs.

`envelope_bytes(header, message)` is the JCS form of `{"header": header, "message": message}`
(DIGEST §4.1 Choice). `rfc8785` is the reference implementation; because it is pure Python,
documents that orjson provably serialises identically take a fast path:

* orjson with sorted keys writes strings exactly as JCS does (same escapes: `\\b \\t \\n \\f
  \\r \\" \\\\` and lowercase `\\u00xx` for other control characters, everything else as
  raw UTF-8), `true`/`false`/`null` and integers alike;
* it differs on floats (`1.0` vs JCS `1`, exponent forms), on integers beyond 2^53 (JCS
  refuses them), and on key order when keys mix characters above U+FFFF with U+E000..U+FFFF
  (JCS orders by UTF-16 code units, orjson by code points).

So the fast path is taken only for trees of dict/list/str/int(|n| <= 2^53-1)/bool/None whose
keys are ASCII or below U+D800; anything else goes to `rfc8785`. Tests check the two agree
over randomly generated documents.
"""

from __future__ import annotations

from enum import StrEnum
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
        if _fast_path_safe(value):
            try:
                return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
            except (TypeError, orjson.JSONEncodeError):
                pass  # e.g. lone surrogates or depth > 254: let rfc8785 decide
        return rfc8785.dumps(value)
    except RecursionError as exc:
        raise CanonicalizationError("JSON value nested too deeply") from exc
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalizationError(f"value has no canonical JSON form: {exc}") from exc


_MIN_PLAIN = 1e-4
_MAX_PLAIN = 1e15


def _fast_path_safe(value: Any) -> bool:
    """True when orjson's sorted output is guaranteed to equal JCS for `value` (iterative)."""
    stack = [value]
    pop, push_all = stack.pop, stack.extend
    while stack:
        item = pop()
        t = type(item)
        if t is str or t is bool or item is None or isinstance(item, StrEnum):
            continue  # orjson writes a StrEnum as its value, as JCS does
        if t is dict:
            for key in item:
                if type(key) is not str or (not key.isascii() and max(key) >= "\ud800"):
                    return False
            push_all(item.values())
        elif t is list:
            push_all(item)
        elif t is int:
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return False
        elif t is float:
            # Both write the shortest round-trip digits in plain notation for non-integral
            # values of this magnitude (JS Number.toString = RFC 8785 §3.2.2.3; orjson's ryu);
            # integral floats (orjson "2.0", JCS "2") and exponent forms take the slow path.
            if not (_MIN_PLAIN <= abs(item) < _MAX_PLAIN) or item.is_integer():
                return False
        else:
            return False  # tuple, other subclasses, anything else
    return True
