"""`RegistryClient`: a synchronous client for one DCI registry, on `httpx.Client`.

    from dcihub.client import Q, RegistryClient

    with RegistryClient.from_demo("crvs", demo_json_path="dcihub-demo/demo.json") as crvs:
        person = crvs.search(Q.id("UIN", "8462951730")).first

Every message is built, encrypted (when `encrypt=True`) and signed, and every reply verified
and decrypted, by the shared `ClientCore`; this class only moves bytes, tokens and keys. One
`httpx.Client` (one pool of keep-alive connections) serves every call; a client is safe to use
from several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from dcihub.security.keys import AsymmetricKey

from .base import ClientBase
from .core import Plan
from .envelopes import RawReply
from .errors import (
    DCIClientError,
    DecryptionError,
    RequestTimeout,
    SignatureVerificationError,
    TransportError,
)
from .keys import registry_keys
from .pending import Pending
from .query import Query
from .receiver import CallbackReceiver
from .results import (
    BatchResult,
    CallResult,
    DisabledAnswer,
    EnrolledAnswer,
    EnrollmentUpdatesResult,
    Record,
    SearchResult,
    SubscribeResult,
    TxnStatusResult,
    UnsubscribeResult,
)
from .settings import ClientSettings

__all__ = ["RegistryClient"]

T = TypeVar("T")
JSON = "application/json"


class RegistryClient(ClientBase):
    """A synchronous client for one registry (see the module doc and docs/client.md)."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        receiver: CallbackReceiver | None = None,
        http: httpx.Client | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(settings, receiver=receiver, **overrides)
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=self.settings.timeout)
        self._registry_keys = registry_keys(self.settings, self.http)
        self._token_lock = threading.Lock()
        self._attach_pending_receiver()

    @classmethod
    def from_demo(
        cls,
        registry: str,
        demo_json_path: str | Path = "dcihub-demo/demo.json",
        *,
        receiver: CallbackReceiver | None = None,
        **overrides: Any,
    ) -> RegistryClient:
        """A client for `registry` of a running `dcihub demo` (its demo.json)."""
        settings = ClientSettings.from_demo(registry, demo_json_path, **overrides)
        return cls(settings, receiver=receiver)

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- search ------------------------------------------------------------------------------------

    def search(
        self,
        query: Query,
        *,
        page_size: int | None = None,
        page_number: int = 1,
        sort: Any = None,
        record_type: str | None = None,
        consent: Any = None,
        **options: Any,
    ) -> SearchResult:
        """One synchronous search (`sync/search`). Options: `reg_type`, `response_entity`,
        `authorize`, `locale`, `reference_id`. A rejected item raises RejectedError."""
        plan = self.core.plan_search(
            query,
            page_size=page_size,
            page_number=page_number,
            sort=sort,
            record_type=record_type,
            consent=consent,
            **options,
        )
        return self._run(plan)

    def search_async(self, query: Query, **options: Any) -> Pending[SearchResult]:
        """An asynchronous search (`search`): returns once the registry acknowledged it; the
        result comes with the on-search callback to the client's receiver."""
        plan = self.core.plan_search(query, sender_uri=self.callback_url("on-search"), **options)
        return self._start(plan, "on-search")

    def iter_records(self, query: Query, page_size: int = 100, **options: Any) -> Iterator[Record]:
        """Every record matching `query`, page after page."""
        page, seen = 1, 0
        while True:
            result = self.search(query, page_size=page_size, page_number=page, **options)
            yield from result.records
            seen += len(result.records)
            following = self.core.next_page(result, page, seen)
            if following is None:
                return
            page = following

    def search_batch(
        self,
        queries: Mapping[str, Query] | Iterable[Query | tuple[str, Query]],
        **options: Any,
    ) -> BatchResult:
        """One message with one item per query (a mapping or (reference_id, query) pairs name
        the items); results by reference_id. Rejected items do not raise: see `.rejected`."""
        return self._run(self.core.plan_batch(queries, **options))

    # -- transaction status ----------------------------------------------------------------------

    def txn_status(
        self,
        transaction_id: str | None = None,
        *,
        reference_ids: Iterable[str] | None = None,
        correlation_id: str | None = None,
        subscription_codes: Iterable[str] | None = None,
        txn_type: str = "search",
    ) -> TxnStatusResult:
        """Where a transaction stands (`sync/txn/status`), found by exactly one of its
        transaction_id, its items' reference_ids or the registry's correlation_id."""
        return self._run(
            self.core.txn_status_plan(
                transaction_id,
                reference_ids=reference_ids,
                correlation_id=correlation_id,
                subscription_codes=subscription_codes,
                txn_type=txn_type,
            )
        )

    def txn_status_async(
        self,
        transaction_id: str | None = None,
        *,
        reference_ids: Iterable[str] | None = None,
        correlation_id: str | None = None,
        subscription_codes: Iterable[str] | None = None,
        txn_type: str = "search",
    ) -> Pending[TxnStatusResult]:
        """`txn/status`: the answer comes with the txn/on-status callback."""
        plan = self.core.txn_status_plan(
            transaction_id,
            reference_ids=reference_ids,
            correlation_id=correlation_id,
            subscription_codes=subscription_codes,
            txn_type=txn_type,
            sender_uri=self.callback_url("txn/on-status"),
        )
        return self._start(plan, "txn/on-status")

    # -- subscriptions -----------------------------------------------------------------------------

    def subscribe(
        self,
        query: Query,
        *,
        event_type: str,
        record_type: str | None = None,
        frequency: str | None = None,
        **options: Any,
    ) -> Pending[SubscribeResult]:
        """Subscribe to events (`subscribe`); the subscription codes come with on-subscribe,
        the events later with `notify` (the receiver's `on_notify`). Options: `start_time`,
        `end_time`, `reg_type`, `authorize`."""
        plan = self.core.subscribe_plan(
            query,
            event_type=event_type,
            record_type=record_type,
            frequency=frequency,
            sender_uri=self.callback_url("on-subscribe"),
            **options,
        )
        return self._start(plan, "on-subscribe")

    def unsubscribe(self, codes: Iterable[str]) -> Pending[UnsubscribeResult]:
        """End subscriptions (`unsubscribe`); the outcome comes with on-unsubscribe."""
        plan = self.core.unsubscribe_plan(codes, sender_uri=self.callback_url("on-unsubscribe"))
        return self._start(plan, "on-unsubscribe")

    # -- registry-specific calls -------------------------------------------------------------------

    def call(self, path: str, message: Mapping[str, Any], **options: Any) -> CallResult:
        """Any registry-specific sync call (e.g. `sync/disabled`) with its message body
        (`transaction_id` is added when missing). For a path the registry's dcihub profile
        does not declare, give `action=` (and `reply_action=`, `header="callback"`)."""
        return self._run(self.core.call_plan(path, message, **options))

    def disabled(self, uin: str | Query) -> DisabledAnswer:
        """DR `sync/disabled`: is this person registered as disabled? (truthy when yes)"""
        return self._run(self.core.plan_disabled(uin))

    def disability_support(self, uin: str | Query) -> SearchResult:
        """DR `sync/get-disability-support` (each record: `{"disability_support": [...]}`)."""
        return self._run(self.core.plan_dr_view("sync/get-disability-support", uin))

    def disability_details(self, uin: str | Query) -> SearchResult:
        """DR `sync/get-disability-details` (each record holds `disability_details`)."""
        return self._run(self.core.plan_dr_view("sync/get-disability-details", uin))

    def enrolled(
        self, uin: str | Query, programme: str | None = None, *, response_entity: str | None = None
    ) -> EnrolledAnswer:
        """IBR `sync/enrolled`: is this person enrolled (in `programme`)? (truthy when yes)"""
        return self._run(self.core.plan_enrolled(uin, programme, response_entity))

    def enrollment_updates(
        self, beneficiaries: Sequence[Mapping[str, Any]]
    ) -> EnrollmentUpdatesResult:
        """IBR `sync/enrollment/updates`: report enrolments and status changes."""
        return self._run(self.core.plan_enrollment_updates(beneficiaries))

    def check_enrollment(
        self, uin: str | Query, *, response_entity: str | None = None
    ) -> EnrolledAnswer:
        """ESS `sync/check-enrollment`: the person's enrolment status (Active, ...)."""
        return self._run(self.core.plan_check_enrollment(uin, response_entity))

    # -- the exchange ------------------------------------------------------------------------------

    def _run(self, plan: Plan[T]) -> T:
        raw = self._exchange(plan)
        try:
            return self.core.open_reply(plan, raw, self._registry_keys.resolve)
        except SignatureVerificationError as exc:
            raise self._explain_keys(exc) from None

    def _start(self, plan: Plan[T], callback: str) -> Pending[T]:
        waiter = self._waiter(plan, callback)
        try:
            raw = self._exchange(plan)
        except BaseException:
            if self.receiver is not None:
                self.receiver.forget(plan.transaction_id)
            raise
        return self._pending(plan, raw, waiter)

    def _exchange(self, plan: Plan[Any]) -> RawReply:
        self.core.seal(plan, self._encryption_key() if self.settings.encrypt else None)
        url = self.settings.url(plan.path)
        for attempt in (1, 2):
            headers = self._headers(self._token(plan))
            try:
                response = self.http.post(url, content=plan.body, headers=headers)
            except httpx.TimeoutException:
                raise plan.error(
                    RequestTimeout(
                        f"no answer from {url} within {self.settings.timeout:g} s", url=url
                    )
                ) from None
            except httpx.HTTPError as exc:
                raise plan.error(
                    TransportError(f"cannot reach the registry at {url}: {exc}", url=url)
                ) from None
            if response.status_code == 401 and self.tokens.can_refresh:
                if attempt == 1:
                    self.tokens.invalidate()
                    continue
                raise self._refused_token(plan, response)
            return self.core.parse_reply(plan, response.status_code, response.content)
        raise AssertionError("unreachable")  # pragma: no cover

    def _token(self, plan: Plan[Any]) -> str:
        token = self.tokens.current()
        if token is not None:
            return token
        with self._token_lock:
            token = self.tokens.current()
            if token is not None:
                return token
            request = self.tokens.request()
            try:
                response = self.http.post(request.url, data=request.form, headers=request.headers)
            except httpx.TimeoutException:
                raise plan.error(
                    RequestTimeout(
                        f"no answer from the token endpoint {request.url}", url=request.url
                    )
                ) from None
            except httpx.HTTPError as exc:
                raise plan.error(
                    TransportError(
                        f"cannot reach the token endpoint {request.url}: {exc}", url=request.url
                    )
                ) from None
            try:
                return self.tokens.accept(response.status_code, response.content)
            except DCIClientError as exc:
                raise plan.error(exc) from None

    def _encryption_key(self) -> AsymmetricKey | None:
        key = self._registry_keys.encryption_key()
        if key is None:
            raise DecryptionError(
                "encrypt=True but no encryption key (use 'enc') is known for the registry"
                + (f": {self._registry_keys.last_error}" if self._registry_keys.last_error else "")
            )
        return key
