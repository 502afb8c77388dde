"""Per-partner rate limits of the DCI endpoints: requests per second and per UTC day.

A partner's limits are its `requests_per_second` / `requests_per_day` in the partner registry,
by default the node's `limits.partner_requests_per_second` / `partner_requests_per_day`.
A request past a limit is refused before its body is read, with HTTP 429, an ERR ack carrying
`err.request.too_many_requests` and a `Retry-After` header (seconds); a refused request counts
against neither limit.

* **Per second**: a token bucket per partner in each API process, holding at most one second
  of requests (at least one): a partner may send a burst of that many at once, then at the
  rate. With N API processes a partner may send N times its rate in all (documented in
  docs/security.md).
* **Per day**: counted in the store (`partner_usage`), one conditional upsert per admitted
  request in the request path's group commit, so the count is exact and shared by every API
  process on one store. The day is the UTC day; Retry-After then names the seconds to
  midnight UTC.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ..config import LimitSettings
from ..security.partners import Partner
from ..standard.codes import ErrorCode
from ..standard.errors import DCIError
from ..store import Store
from .committer import GroupCommitter

log = logging.getLogger("dcihub.ratelimit")


class RateLimited(DCIError):
    """A partner is past one of its rate limits: 429, with `Retry-After: retry_after`."""

    retry_after: int  # whole seconds, at least 1

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(ErrorCode.TOO_MANY_REQUESTS, message, 429)
        self.retry_after = max(1, math.ceil(retry_after))


class _Bucket:
    __slots__ = ("tokens", "at", "rate")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = max(1.0, rate)
        self.at = now


class RateLimiter:
    def __init__(
        self,
        limits: LimitSettings,
        store: Store,
        committer: GroupCommitter,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.limits = limits
        self.store = store
        self.committer = committer
        self.clock = clock
        self.wall = wall
        self._buckets: dict[str, _Bucket] = {}

    def per_second(self, partner: Partner) -> float | None:
        if partner.requests_per_second is not None:
            return float(partner.requests_per_second)
        return self.limits.partner_requests_per_second

    def per_day(self, partner: Partner) -> int | None:
        if partner.requests_per_day is not None:
            return partner.requests_per_day
        return self.limits.partner_requests_per_day

    async def admit(self, partner: Partner) -> None:
        """Count one request of `partner`, or raise `RateLimited`."""
        rate = self.per_second(partner)
        bucket = self._take(partner.sender_id, rate) if rate is not None else None
        daily = self.per_day(partner)
        if daily is None:
            return
        today = self.wall()
        day = today.strftime("%Y-%m-%d")
        sender = partner.sender_id
        usage = self.store.usage
        try:
            counted = await self.committer.submit(
                lambda conn: usage.admit(conn, sender, day, daily)
            )
        except Exception:
            log.exception("could not count a request of %s", sender)
            raise DCIError(
                ErrorCode.SERVICE_UNAVAILABLE,
                "the registry could not count the request against the partner's daily limit; "
                "nothing was done, send it again later",
                503,
            ) from None
        if counted is None:
            if bucket is not None:  # a refused request does not use the second's allowance
                bucket.tokens = min(bucket.tokens + 1, max(1.0, bucket.rate))
            midnight = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
            raise RateLimited(
                f"partner '{sender}' has sent the {daily} requests it may send per day "
                f"(UTC day {day}); send again after midnight UTC",
                (midnight - today).total_seconds(),
            )

    def _take(self, sender_id: str, rate: float) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(sender_id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[sender_id] = _Bucket(rate, now)
        capacity = max(1.0, rate)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            raise RateLimited(
                f"partner '{sender_id}' may send {rate:g} requests per second; this one is "
                "past it: send it again after Retry-After seconds",
                (1.0 - bucket.tokens) / rate,
            )
        bucket.tokens -= 1.0
        return bucket
