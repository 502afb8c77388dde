"""What the load generators send: a `RequestSet` (one URL path, fixed headers, many bodies) and
the DCI sync-search envelopes of the speed benchmark.

A body may hold `UNIQUE` (the placeholder) any number of times: the load generators replace it
with a token unique to each request they send, so that `header.message_id` and `transaction_id`
never repeat even when a run sends more requests than there are bodies. A body without the
placeholder is sent as it is (e.g. a signed body, whose bytes must not change): give as many of
them as the run will send, or the server sees replays.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

UNIQUE = "@@UNIQUE@@"
BENCH_SENDER = "spmis.bench"


@dataclass(frozen=True)
class RequestSet:
    path: str  # e.g. /crvs/registry/sync/search
    bodies: Sequence[bytes]
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


@dataclass(frozen=True)
class RequestFiles:
    """A RequestSet on disk, as wrk's Lua script and the open-loop generator read it."""

    path: str
    bodies: Path  # one body per line
    headers: Path  # one "Name: value" per line


def write_request_set(requests: RequestSet, directory: Path, name: str) -> RequestFiles:
    directory.mkdir(parents=True, exist_ok=True)
    bodies = directory / f"{name}.bodies"
    headers = directory / f"{name}.headers"
    with bodies.open("wb") as out:
        for body in requests.bodies:
            if b"\n" in body or b"\r" in body:
                raise ValueError("request bodies must be one line each (no raw newlines)")
            out.write(body + b"\n")
    headers.write_text("".join(f"{k}: {v}\n" for k, v in requests.headers.items()))
    return RequestFiles(requests.path, bodies, headers)


def materialise(body: bytes, token: str | None = None) -> bytes:
    """The body as one request sends it (for senders in this process)."""
    return body.replace(UNIQUE.encode(), (token or uuid.uuid4().hex).encode())


# ---------------------------------------------------------------------------------------------
# DCI sync search, `idtype-value` lookups


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def lookup_item(id_type: str, value: str, reference_id: str) -> dict[str, Any]:
    return {
        "reference_id": reference_id,
        "timestamp": _now(),
        "search_criteria": {
            "version": "1.0.0",
            "query_type": "idtype-value",
            "query": {"type": id_type, "value": value},
        },
        "locale": "eng",
    }


def search_envelope(
    items: list[dict[str, Any]], message_id: str, transaction_id: str, sender_id: str = BENCH_SENDER
) -> dict[str, Any]:
    return {
        "header": {
            "version": "1.0.0",
            "message_id": message_id,
            "message_ts": _now(),
            "action": "search",
            "sender_id": sender_id,
            "total_count": len(items),
            "is_msg_encrypted": False,
        },
        "message": {"transaction_id": transaction_id, "search_request": items},
    }


def uin_lookups(
    registry: str, uins: Iterable[str], count: int, sender_id: str = BENCH_SENDER
) -> RequestSet:
    """`count` sync searches, each one `idtype-value` UIN lookup of a different person (cycling
    through `uins` only if there are fewer of them than `count`)."""
    pool = list(uins)
    if not pool:
        raise ValueError("no UINs to look up")
    run = uuid.uuid4().hex[:8]
    bodies = []
    for i in range(count):
        item = lookup_item("UIN", pool[i % len(pool)], f"r-{i}")
        envelope = search_envelope(
            [item], f"m-{run}-{i}-{UNIQUE}", f"t-{run}-{i}-{UNIQUE}", sender_id
        )
        bodies.append(orjson.dumps(envelope))
    return RequestSet(f"/{registry}/registry/sync/search", bodies)


def batch_lookup(registry: str, uins: Sequence[str], sender_id: str = BENCH_SENDER) -> RequestSet:
    """One sync search holding one `idtype-value` UIN lookup per UIN."""
    items = [lookup_item("UIN", uin, f"r-{i}") for i, uin in enumerate(uins)]
    envelope = search_envelope(items, f"m-batch-{UNIQUE}", f"t-batch-{UNIQUE}", sender_id)
    return RequestSet(f"/{registry}/registry/sync/search", [orjson.dumps(envelope)])
