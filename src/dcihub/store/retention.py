"""Retention: what the store forgets, and when.

* `outbox` rows delivered (`done`, their payload already dropped) are deleted
  `retention.delivered_days` after delivery; given-up rows (`dead`, which keep their payload so
  that `dcihub deliveries --retry` can send them again) `retention.dead_days` after they were
  given up. Rows still to do (`pending`, `inflight`) are never purged.
* `transactions` (and their `txn_items`) that are finished (`succ`, `rjct`) are deleted
  `retention.transactions_days` after their last change — as long as txn/status promises to
  answer for them — unless a callback of theirs is still to be delivered. Work still to do
  (`rcvd`, `pdng`) is never purged.

Each call deletes at most `retention.batch` rows of each kind, in the caller's (short)
transaction, through the indexes `ix_outbox_status_updated` and `ix_transactions_updated`: a
purge never scans a table. The worker calls it every `retention.interval` seconds, again at once
while a batch was full; `dcihub store purge` runs it by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection, and_, delete, exists, select

from .outbox import DEAD, DONE, INFLIGHT, PENDING

if TYPE_CHECKING:
    from .database import Store

DAY = 86400.0
FINISHED = ("succ", "rjct")  # RequestStatus.SUCCESS, RequestStatus.REJECTED


class Policy(Protocol):
    """How long rows are kept (the `retention` settings)."""

    delivered_days: float
    dead_days: float
    transactions_days: float
    batch: int


@dataclass
class Purged:
    delivered: int = 0
    dead: int = 0
    transactions: int = 0
    full: bool = False  # a batch was full: there is more to purge

    @property
    def total(self) -> int:
        return self.delivered + self.dead + self.transactions

    def summary(self) -> str:
        return (
            f"{self.delivered} delivered and {self.dead} given-up outbox rows, "
            f"{self.transactions} transactions"
        )


def purge(store: Store, conn: Connection, settings: Policy, now: float | None = None) -> Purged:
    """One bounded purge in the caller's transaction."""
    now = time.time() if now is None else now
    outbox = store.schema.ops.outbox
    txns = store.schema.ops.transactions
    items = store.schema.ops.txn_items
    batch = settings.batch
    done = Purged()

    def old_rows(status: str, days: float) -> int:
        pks = (
            select(outbox.c.pk)
            .where(outbox.c.status == status, outbox.c.updated_at < now - days * DAY)
            .limit(batch)
        )
        result = conn.execute(delete(outbox).where(outbox.c.pk.in_(pks.scalar_subquery())))
        return result.rowcount or 0

    done.delivered = old_rows(DONE, settings.delivered_days)
    done.dead = old_rows(DEAD, settings.dead_days)

    active = exists().where(
        outbox.c.status.in_((PENDING, INFLIGHT)),
        outbox.c.kind != "batch",  # a batch row's txn_pk is a subscription
        outbox.c.txn_pk == txns.c.pk,
    )
    old = conn.execute(
        select(txns.c.pk)
        .where(
            and_(
                txns.c.updated_at < now - settings.transactions_days * DAY,
                txns.c.status.in_(FINISHED),
                ~active,
            )
        )
        .limit(batch)
    ).scalars()
    pks = list(old)
    if pks:
        conn.execute(delete(items).where(items.c.txn_pk.in_(pks)))
        conn.execute(delete(txns).where(txns.c.pk.in_(pks)))
    done.transactions = len(pks)
    done.full = batch in (done.delivered, done.dead, done.transactions)
    return done
