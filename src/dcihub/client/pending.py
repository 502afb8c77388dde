"""Asynchronous requests awaiting their callback.

`Pending` is what `search_async`, `txn_status_async`, `subscribe` and `unsubscribe` return once
the registry has acknowledged the request: `pending.result(timeout)` blocks (sync code),
`await pending` or `await pending.wait(timeout)` awaits (asyncio). The callback receiver
completes it when the matching callback (same `transaction_id`) arrives, verified and
decrypted; a rejection in the callback becomes the exception the pending raises.

Completion is thread-safe: the receiver may run in another thread (`serve`) or on the same
event loop (mounted in the programme's app).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dcihub.security.partners import JwksResolver

from .errors import CallbackTimeout, DCIClientError
from .results import Ack

__all__ = ["Pending", "Waiter", "Waiters"]

T = TypeVar("T")


@dataclass
class Waiter:
    """What the receiver needs to complete one pending request."""

    transaction_id: str
    message_id: str
    callback: str  # the receiver path that answers it, e.g. "on-search"
    read: Callable[[Any], Any]  # Opened -> result
    resolver: JwksResolver | None
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class Waiters:
    """Outstanding requests by transaction_id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Waiter] = {}

    def add(self, waiter: Waiter) -> None:
        with self._lock:
            self._items[waiter.transaction_id] = waiter

    def get(self, transaction_id: str | None) -> Waiter | None:
        if not transaction_id:
            return None
        with self._lock:
            return self._items.get(transaction_id)

    def pop(self, transaction_id: str) -> Waiter | None:
        with self._lock:
            return self._items.pop(transaction_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class Pending(Generic[T]):
    """An acknowledged asynchronous request; its result comes with the callback."""

    def __init__(
        self,
        waiter: Waiter | None,
        ack: Ack,
        transaction_id: str,
        message_id: str,
        forget: Callable[[str], object] | None = None,
    ) -> None:
        self._waiter = waiter
        self.ack = ack
        self.transaction_id = transaction_id
        self.message_id = message_id
        self._forget = forget

    @property
    def correlation_id(self) -> str | None:
        return self.ack.correlation_id

    def done(self) -> bool:
        return self._waiter is not None and self._waiter.future.done()

    def result(self, timeout: float | None = 60.0) -> T:
        """The callback's result (blocks up to `timeout` seconds; raises CallbackTimeout)."""
        future = self._future()
        try:
            value: T = future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise self._timeout(timeout) from None
        return value

    async def wait(self, timeout: float | None = 60.0) -> T:
        """The callback's result, awaited (raises CallbackTimeout after `timeout` seconds)."""
        future = asyncio.wrap_future(self._future())
        try:
            value: T = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise self._timeout(timeout) from None
        return value

    def __await__(self) -> Generator[Any, None, T]:
        return self.wait(None).__await__()

    def cancel(self) -> None:
        """Stop waiting (a callback arriving later is answered as unexpected)."""
        if self._forget is not None:
            self._forget(self.transaction_id)
        if self._waiter is not None:
            self._waiter.future.cancel()

    def _future(self) -> concurrent.futures.Future[Any]:
        if self._waiter is None:
            raise DCIClientError(
                "this client has no callback receiver in this process: the callback goes to "
                "the callback_url given, and only a receiver there can read it",
                transaction_id=self.transaction_id,
                message_id=self.message_id,
            )
        return self._waiter.future

    def _timeout(self, timeout: float | None) -> CallbackTimeout:
        return CallbackTimeout(
            f"no callback within {timeout:g} s (the registry acknowledged the request with "
            f"correlation_id {self.correlation_id}; txn_status tells where it stands)",
            transaction_id=self.transaction_id,
            message_id=self.message_id,
        )

    def __repr__(self) -> str:
        state = "done" if self.done() else "waiting"
        return f"Pending({self.transaction_id}, {state})"
