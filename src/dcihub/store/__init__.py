"""Store layer: SQLAlchemy Core over SQLite or PostgreSQL (records + search, transactions,
outbox, replay window, audit trail)."""

from .database import Store

__all__ = ["Store"]
