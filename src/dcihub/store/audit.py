"""The audit trail: every exchange, hash-chained.

Each row holds the canonical JSON of the audited facts (partner, action, ids, record ids
returned — never their content —, signature verdict, outcome, time) and
`hash = SHA-256(prev_hash || entry)`. The chain head (last seq and hash) is kept in
`dcihub_meta` and updated in the same database transaction, under a lock, so that many processes
can append without forking the chain. `verify` recomputes the chain and names every row that
was edited, deleted or inserted.

Rows are bounded whatever a caller sends: every text of an entry is cut to `MAX_TEXT`
characters (marked as cut), a value that should be text but is not is described, and an entry
that still cannot be serialised is replaced by a minimal one whose outcome says why. An
exchange is never left out of the trail because of what it carried.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, select

from .raw import RawInsert
from .schema import OperationalTables

log = logging.getLogger("dcihub.audit")

GENESIS = "0" * 64
HEAD_KEY = "audit.head"


@dataclass(slots=True)
class AuditEntry:
    """One exchange, as every writer records it: the request pipeline (direction `in`), the
    token endpoint (`in`, action `token`) and the delivery worker (`out`, one per attempt).

    Ids, verdicts and counts only: never record content, query values, tokens or secrets.
    Every entry has every field (None where it does not apply), so the trail has one shape.
    """

    direction: Literal["in", "out"]
    action: str  # the header action; `token`; the callback's action
    # ok | replay | err.* | rjct.* (inbound); delivered | will retry: … | gave up: … (outbound)
    outcome: str = "ok"
    ts: float = field(default_factory=time.time)
    partner: str | None = None  # the partner's sender_id (inbound: once its token verified)
    client_id: str | None = None  # the OAuth client id (as claimed, at the token endpoint)
    registry: str | None = None
    endpoint: str | None = None  # the path called (inbound) or the callback's path (outbound)
    status: int | None = None  # the HTTP status answered (inbound) or received (outbound)
    message_id: str | None = None
    claimed_sender: str | None = None  # header.sender_id as sent
    transaction_id: str | None = None
    correlation_id: str | None = None
    # `<profile>:<kid>`, unsigned, invalid, none, not verified (partner policy) (inbound)
    signature: str | None = None
    encrypted: bool | None = None  # whether the inbound message was encrypted
    records: list[str] | None = None  # `<record type>:<pk>` (or key) returned (inbound)
    records_sent: int | None = None  # how many records a callback carried (outbound)
    scope: str | None = None  # the scopes a token was issued with
    target_host: str | None = None  # the callback's host (outbound)
    attempt: int | None = None  # the delivery attempt (outbound)
    remote: str | None = None  # the caller's address (inbound)

    def content(self) -> dict[str, Any]:
        """The entry as the JSON object that is hashed and stored: every text bounded (see
        `bound_text`), so that no caller can make a large row."""
        out: dict[str, Any] = {}
        for name in _ENTRY_FIELDS:
            value = getattr(self, name)
            if name in _TEXT_FIELDS:
                value = bound_text(value, _TEXT_LIMITS.get(name, MAX_TEXT))
            elif name == "records" and value is not None:
                items = value if isinstance(value, list) else [value]
                value = [bound_text(v) for v in items]
            out[name] = value
        return out

    def minimal(self, why: str) -> AuditEntry:
        """A stand-in for this entry when it cannot be recorded whole: who, where and when,
        with the outcome saying why the rest is missing."""
        return AuditEntry(
            direction="out" if self.direction == "out" else "in",
            action=bound_text(self.action) or "?",
            outcome=f"{bound_text(self.outcome) or '?'} (the entry could not be recorded "
            f"whole: {why})",
            ts=self.ts if isinstance(self.ts, float) else time.time(),
            partner=bound_text(self.partner, _TEXT_LIMITS["partner"]),
            client_id=bound_text(self.client_id),
            registry=bound_text(self.registry, _TEXT_LIMITS["registry"]),
            endpoint=bound_text(self.endpoint),
            status=self.status if _is_int64(self.status) else None,
            message_id=bound_text(self.message_id),
            correlation_id=bound_text(self.correlation_id),
            remote=bound_text(self.remote),
        )


_ENTRY_FIELDS = tuple(f.name for f in fields(AuditEntry))
_TEXT_FIELDS = frozenset(
    {
        "action",
        "outcome",
        "partner",
        "client_id",
        "registry",
        "endpoint",
        "message_id",
        "claimed_sender",
        "transaction_id",
        "correlation_id",
        "signature",
        "scope",
        "target_host",
        "remote",
    }
)

MAX_TEXT = 200  # characters of one text in an audit entry (ids, sender ids, messages)
# texts that have a column of their own are cut to fit it; scopes are the node's own (and long)
_TEXT_LIMITS = {"partner": 100, "registry": 32, "scope": 2000}
_CUT = "…[cut from {} characters]"


def bound_text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """`value` as a text of at most `limit` characters: a longer text keeps its start and ends
    with a mark saying how long it was; a value that is not text is described (a caller may
    send a number, an object or an array where an id belongs)."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = f"(not a text: {_kind(value)})"
    if len(value) <= limit:
        return value
    mark = _CUT.format(len(value))
    return value[: max(limit - len(mark), 0)] + mark


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list | tuple):
        return "a JSON array"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value) if len(str(value)) <= 40 else "a number"
    return type(value).__name__


def _is_int64(value: Any) -> bool:
    return isinstance(value, int) and -(2**63) <= value < 2**63


def entry_bytes(entry: dict[str, Any]) -> bytes:
    """The canonical bytes of an entry (sorted keys), which the chain hashes."""
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)


def _recordable(entry: AuditEntry) -> tuple[dict[str, Any], bytes]:
    """The content and bytes of `entry`, or of its minimal stand-in if it cannot be
    serialised (e.g. a number beyond 64 bits): the exchange is recorded either way."""
    try:
        content = entry.content()
        return content, entry_bytes(content)
    except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
        log.error("audit entry not serialisable (%s); recording a minimal one", exc)
        content = entry.minimal(bound_text(str(exc), 80) or "").content()
        return content, entry_bytes(content)


def chain_hash(prev_hash: str, entry: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + entry).hexdigest()


@dataclass
class AuditRow:
    """A stored row; `entry` is what was stored (a dict: the row may have been edited)."""

    seq: int
    ts: float
    partner: str | None
    entry: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass
class Problem:
    seq: int
    kind: str  # edited | deleted | inserted | reordered | head
    message: str


class AuditLog:
    def __init__(self, ops: OperationalTables) -> None:
        self.t = ops.audit_log
        self.meta = ops.meta
        self._insert = RawInsert(self.t)

    # ----------------------------------------------------------------------------- append

    def append_many(self, conn: Connection, entries: Sequence[AuditEntry]) -> None:
        """Append entries to the chain inside the caller's transaction."""
        if not entries:
            return
        seq, prev = self._lock_head(conn)
        rows = []
        for entry in entries:
            seq += 1
            content, body = _recordable(entry)
            digest = chain_hash(prev, body)
            rows.append(
                {
                    "seq": seq,
                    "ts": content["ts"],
                    "partner": content["partner"],
                    "registry": content["registry"],
                    "entry": body.decode(),
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        self._insert.run(conn, rows)
        conn.execute(
            self.meta.update()
            .where(self.meta.c.key == HEAD_KEY)
            .values(value=orjson.dumps({"seq": seq, "hash": prev}).decode())
        )

    def _lock_head(self, conn: Connection) -> tuple[int, str]:
        meta = self.meta
        query = select(meta.c.value).where(meta.c.key == HEAD_KEY)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        else:
            # SQLite: take the write lock before reading the head (no other writer can append
            # between our read and our write).
            conn.execute(meta.update().where(meta.c.key == HEAD_KEY).values(value=meta.c.value))
        value = conn.execute(query).scalar()
        if value is None:
            conn.execute(
                meta.insert(),
                {"key": HEAD_KEY, "value": orjson.dumps({"seq": 0, "hash": GENESIS}).decode()},
            )
            return 0, GENESIS
        head = orjson.loads(value)
        return int(head["seq"]), str(head["hash"])

    def ensure_head(self, conn: Connection) -> None:
        if conn.execute(select(self.meta.c.key).where(self.meta.c.key == HEAD_KEY)).first():
            return
        conn.execute(
            self.meta.insert(),
            {"key": HEAD_KEY, "value": orjson.dumps({"seq": 0, "hash": GENESIS}).decode()},
        )

    # ----------------------------------------------------------------------------- read

    def rows(
        self,
        conn: Connection,
        partner: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditRow]:
        t = self.t
        query = select(t).order_by(t.c.seq)
        if partner:
            query = query.where(t.c.partner == partner)
        if since is not None:
            query = query.where(t.c.ts >= since)
        if limit:
            query = query.limit(limit)
        for r in conn.execute(query).mappings():
            yield AuditRow(
                r["seq"], r["ts"], r["partner"], orjson.loads(r["entry"]), r["prev_hash"], r["hash"]
            )

    def verify(self, conn: Connection) -> tuple[int, list[Problem]]:
        """Walk the whole chain; return (rows checked, problems)."""
        t = self.t
        problems: list[Problem] = []
        expected_seq = 1
        prev = GENESIS
        count = 0
        for r in conn.execute(select(t).order_by(t.c.seq)).mappings():
            count += 1
            seq = r["seq"]
            recomputed = chain_hash(r["prev_hash"], r["entry"].encode())
            if seq > expected_seq:
                problems.append(
                    Problem(seq, "deleted", f"rows {expected_seq}..{seq - 1} are missing (deleted)")
                )
            if r["prev_hash"] != prev:
                if seq == expected_seq:
                    problems.append(
                        Problem(
                            seq,
                            "inserted",
                            f"row {seq} does not follow row {seq - 1}: its prev_hash does not match "
                            "(a row was inserted or replaced before it)",
                        )
                    )
                prev = r["prev_hash"]
            if recomputed != r["hash"]:
                problems.append(
                    Problem(
                        seq, "edited", f"row {seq} was edited: its hash does not match its content"
                    )
                )
            else:
                entry = orjson.loads(r["entry"])
                if entry.get("partner") != r["partner"] or entry.get("registry") != r["registry"]:
                    problems.append(
                        Problem(
                            seq,
                            "edited",
                            f"row {seq} was edited: its partner/registry columns "
                            "differ from the hashed entry",
                        )
                    )
            prev = r["hash"]
            expected_seq = seq + 1
        head_value = conn.execute(
            select(self.meta.c.value).where(self.meta.c.key == HEAD_KEY)
        ).scalar()
        if head_value is not None:
            head = orjson.loads(head_value)
            if int(head["seq"]) >= expected_seq:
                problems.append(
                    Problem(
                        int(head["seq"]),
                        "deleted",
                        f"rows {expected_seq}..{head['seq']} at the end of the "
                        "trail are missing (deleted)",
                    )
                )
            elif int(head["seq"]) == expected_seq - 1 and head["hash"] != prev and count:
                problems.append(
                    Problem(
                        int(head["seq"]),
                        "head",
                        "the last row's hash differs from the recorded chain "
                        "head (the tail was rewritten)",
                    )
                )
            elif int(head["seq"]) < expected_seq - 1:
                problems.append(
                    Problem(
                        expected_seq - 1,
                        "inserted",
                        f"rows after {head['seq']} were appended outside dcihub",
                    )
                )
        return count, problems
