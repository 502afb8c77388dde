"""`dcihub conform client`: a strict simulated registry that judges a programme's client."""

from __future__ import annotations

__all__ = ["CLIENT_JUDGES"]

# judge name -> the client requirements it verifies
CLIENT_JUDGES: dict[str, tuple[str, ...]] = {}
