"""Registry-specific calls, declared by profiles and answered through a narrow context.

A profile lists its special endpoints (DR `sync/disabled`, IBR `sync/enrolled`, ESS
`sync/check-enrollment`, …) as `SpecialEndpoint` values: path, actions, request model, the
scope a partner needs, and the handler itself, bound by reference. A handler is plain code over
a `CallContext`: it asks the context to match records (the same query engine as search, held to
the fields the partner may query), to shape records for the partner (minimisation) and tell
which fields it may see (so that its messages name nothing else), to keep records written with
the reply, and to record the transaction for txn/status. The server provides the context; the
handler never sees HTTP, SQL or a thread. It runs in a worker thread, so it may block on the context's calls.

Errors a caller can cause are raised as `DCIError` (whole message) in the standard's terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from .codes import RequestStatus


@dataclass(frozen=True, slots=True)
class Matched:
    """Records that matched a call's criteria (at most the context's cap)."""

    entity: str
    records: list[dict[str, Any]]
    pks: list[int]
    total_count: int
    page_size: int

    @property
    def refs(self) -> list[str]:
        """`<entity>:<pk>` of each record (what the audit trail names)."""
        return [f"{self.entity}:{pk}" for pk in self.pks]


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item of a call's transaction record, served again by txn/status."""

    reference_id: str
    status: str = RequestStatus.SUCCESS.value
    reason_code: str | None = None
    reason_message: str | None = None
    result: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CallReply:
    """What a handler answers: the response message and its header's action and counts."""

    action: str
    message: dict[str, Any]
    count: int = 1


class CallContext(Protocol):
    """What a special call may do (implemented by the server for one inbound message)."""

    @property
    def registry(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def reg_type(self) -> str: ...

    @property
    def default_entity(self) -> str: ...

    @property
    def correlation_id(self) -> str: ...

    @property
    def header_total_count(self) -> int | None: ...

    @property
    def max_batch_items(self) -> int: ...

    def now(self) -> str:
        """The registry's current time, as a timestamp of the standard."""
        ...

    def match(
        self,
        query_type: str,
        query: Any,
        where: str,
        response_entity: str | None = None,
        max_matches: int = 100,
    ) -> Matched:
        """Records matching a query (any query type of search, bound to the profile), or a
        `DCIError` naming the problem (also when more than `max_matches` match)."""
        ...

    def shape(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        """The record cut to what the calling partner may receive."""
        ...

    def may_see(self, entity: str, path: str) -> bool:
        """Whether the calling partner may receive the field at `path` (dotted) of `entity`
        records: a handler names in its messages only what the partner may see."""
        ...

    def existing_keys(self, entity: str, keys: list[str]) -> set[str]:
        """Which of these record keys the registry holds already."""
        ...

    def known_values(self, entity: str, attribute: str, values: list[str]) -> set[str]:
        """Which of these values of `attribute` (of `entity` records) the registry accepts in
        what it is sent: those configured for it (`registries.<name>.known_values`), or, when
        none are, those its records hold already (compared as the store indexes them)."""
        ...

    def store_records(self, records: list[dict[str, Any]]) -> None:
        """Create or replace these records, written in the same commit as the reply."""
        ...

    def record(
        self, transaction_id: str, txn_type: str, items: list[ItemResult], action: str | None = None
    ) -> None:
        """Keep the transaction (for txn/status), committed before the reply is sent."""
        ...

    def touched(self, refs: list[str]) -> None:
        """Name the records this call read or wrote (the audit trail keeps the names)."""
        ...


CallHandler = Callable[[CallContext, Any], CallReply]


@dataclass(frozen=True)
class SpecialEndpoint:
    """A registry-specific synchronous call of a registry's contract."""

    path: str  # after /registry/, e.g. "sync/disabled"
    handler: CallHandler
    request_model: type[BaseModel]
    request_action: str
    response_action: str
    header: Literal["request", "callback"] = "request"
    scope: str = ""  # the token scope action it needs (default: request_action)
    summary: str = ""
    example: dict[str, Any] = field(default_factory=dict)  # a message body that works

    @property
    def name(self) -> str:
        """A stable identifier (OpenAPI operation ids, metrics): the path with `_`."""
        return self.path.replace("/", "_").replace("-", "_")

    @property
    def scope_action(self) -> str:
        return self.scope or self.request_action
