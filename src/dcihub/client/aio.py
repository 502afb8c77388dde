"""`AsyncRegistryClient`: the asyncio twin of `RegistryClient`, on `httpx.AsyncClient`.

    async with AsyncRegistryClient.from_demo("crvs") as crvs:
        result = await crvs.search(Q.id("UIN", "8462951730"))
        pending = await crvs.search_async(Q.attr("is_deceased") == True)
        later = await pending.wait(30)

The same operations with the same arguments and results; messages are built, sealed and
opened by the same `ClientCore`. The registry's JWKS is fetched with the async client (before
a verification that names an unknown kid, and before the first encryption).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
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

__all__ = ["AsyncRegistryClient"]

T = TypeVar("T")


class AsyncRegistryClient(ClientBase):
    """An asyncio client for one registry (see `RegistryClient` for each operation)."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        receiver: CallbackReceiver | None = None,
        http: httpx.AsyncClient | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(settings, receiver=receiver, **overrides)
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=self.settings.timeout)
        self._registry_keys = registry_keys(self.settings, self.http)
        self._token_lock = asyncio.Lock()
        self._attach_pending_receiver()

    @classmethod
    def from_demo(
        cls,
        registry: str,
        demo_json_path: str | Path = "dcihub-demo/demo.json",
        *,
        receiver: CallbackReceiver | None = None,
        **overrides: Any,
    ) -> AsyncRegistryClient:
        settings = ClientSettings.from_demo(registry, demo_json_path, **overrides)
        return cls(settings, receiver=receiver)

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncRegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- search ------------------------------------------------------------------------------------

    async def search(
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
        plan = self.core.plan_search(
            query,
            page_size=page_size,
            page_number=page_number,
            sort=sort,
            record_type=record_type,
            consent=consent,
            **options,
        )
        return await self._run(plan)

    async def search_async(self, query: Query, **options: Any) -> Pending[SearchResult]:
        plan = self.core.plan_search(query, sender_uri=self.callback_url("on-search"), **options)
        return await self._start(plan, "on-search")

    async def iter_records(
        self, query: Query, page_size: int = 100, **options: Any
    ) -> AsyncIterator[Record]:
        page, seen = 1, 0
        while True:
            result = await self.search(query, page_size=page_size, page_number=page, **options)
            for record in result.records:
                yield record
            seen += len(result.records)
            following = self.core.next_page(result, page, seen)
            if following is None:
                return
            page = following

    async def search_batch(
        self,
        queries: Mapping[str, Query] | Iterable[Query | tuple[str, Query]],
        **options: Any,
    ) -> BatchResult:
        return await self._run(self.core.plan_batch(queries, **options))

    # -- transaction status ----------------------------------------------------------------------

    async def txn_status(
        self,
        transaction_id: str | None = None,
        *,
        reference_ids: Iterable[str] | None = None,
        correlation_id: str | None = None,
        subscription_codes: Iterable[str] | None = None,
        txn_type: str = "search",
    ) -> TxnStatusResult:
        return await self._run(
            self.core.txn_status_plan(
                transaction_id,
                reference_ids=reference_ids,
                correlation_id=correlation_id,
                subscription_codes=subscription_codes,
                txn_type=txn_type,
            )
        )

    async def txn_status_async(
        self,
        transaction_id: str | None = None,
        *,
        reference_ids: Iterable[str] | None = None,
        correlation_id: str | None = None,
        subscription_codes: Iterable[str] | None = None,
        txn_type: str = "search",
    ) -> Pending[TxnStatusResult]:
        plan = self.core.txn_status_plan(
            transaction_id,
            reference_ids=reference_ids,
            correlation_id=correlation_id,
            subscription_codes=subscription_codes,
            txn_type=txn_type,
            sender_uri=self.callback_url("txn/on-status"),
        )
        return await self._start(plan, "txn/on-status")

    # -- subscriptions -----------------------------------------------------------------------------

    async def subscribe(
        self,
        query: Query,
        *,
        event_type: str,
        record_type: str | None = None,
        frequency: str | None = None,
        **options: Any,
    ) -> Pending[SubscribeResult]:
        plan = self.core.subscribe_plan(
            query,
            event_type=event_type,
            record_type=record_type,
            frequency=frequency,
            sender_uri=self.callback_url("on-subscribe"),
            **options,
        )
        return await self._start(plan, "on-subscribe")

    async def unsubscribe(self, codes: Iterable[str]) -> Pending[UnsubscribeResult]:
        plan = self.core.unsubscribe_plan(codes, sender_uri=self.callback_url("on-unsubscribe"))
        return await self._start(plan, "on-unsubscribe")

    # -- registry-specific calls -------------------------------------------------------------------

    async def call(self, path: str, message: Mapping[str, Any], **options: Any) -> CallResult:
        return await self._run(self.core.call_plan(path, message, **options))

    async def disabled(self, uin: str | Query) -> DisabledAnswer:
        return await self._run(self.core.plan_disabled(uin))

    async def disability_support(self, uin: str | Query) -> SearchResult:
        return await self._run(self.core.plan_dr_view("sync/get-disability-support", uin))

    async def disability_details(self, uin: str | Query) -> SearchResult:
        return await self._run(self.core.plan_dr_view("sync/get-disability-details", uin))

    async def enrolled(
        self, uin: str | Query, programme: str | None = None, *, response_entity: str | None = None
    ) -> EnrolledAnswer:
        return await self._run(self.core.plan_enrolled(uin, programme, response_entity))

    async def enrollment_updates(
        self, beneficiaries: Sequence[Mapping[str, Any]]
    ) -> EnrollmentUpdatesResult:
        return await self._run(self.core.plan_enrollment_updates(beneficiaries))

    async def check_enrollment(
        self, uin: str | Query, *, response_entity: str | None = None
    ) -> EnrolledAnswer:
        return await self._run(self.core.plan_check_enrollment(uin, response_entity))

    # -- the exchange ------------------------------------------------------------------------------

    async def _run(self, plan: Plan[T]) -> T:
        raw = await self._exchange(plan)
        if raw.signature is not None:
            await self._registry_keys.refresh_for(raw.kid)
        try:
            return self.core.open_reply(plan, raw, self._registry_keys.resolve)
        except SignatureVerificationError as exc:
            raise self._explain_keys(exc) from None

    async def _start(self, plan: Plan[T], callback: str) -> Pending[T]:
        waiter = self._waiter(plan, callback)
        try:
            raw = await self._exchange(plan)
        except BaseException:
            if self.receiver is not None:
                self.receiver.forget(plan.transaction_id)
            raise
        return self._pending(plan, raw, waiter)

    async def _exchange(self, plan: Plan[Any]) -> RawReply:
        key = await self._encryption_key() if self.settings.encrypt else None
        self.core.seal(plan, key)
        url = self.settings.url(plan.path)
        for attempt in (1, 2):
            headers = self._headers(await self._token(plan))
            try:
                response = await self.http.post(url, content=plan.body, headers=headers)
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

    async def _token(self, plan: Plan[Any]) -> str:
        token = self.tokens.current()
        if token is not None:
            return token
        async with self._token_lock:
            token = self.tokens.current()
            if token is not None:
                return token
            request = self.tokens.request()
            try:
                response = await self.http.post(
                    request.url, data=request.form, headers=request.headers
                )
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

    async def _encryption_key(self) -> AsymmetricKey | None:
        await self._registry_keys.refresh_for(None)
        key = self._registry_keys.encryption_key()
        if key is None:
            raise DecryptionError(
                "encrypt=True but no encryption key (use 'enc') is known for the registry"
                + (f": {self._registry_keys.last_error}" if self._registry_keys.last_error else "")
            )
        return key
