"""Which checks verify each requirement (`dcihub conform requirements --coverage`, and the
coverage column of docs/conformance.md)."""

from __future__ import annotations

from .checks import CHECKS

__all__ = ["coverage_map"]


def coverage_map() -> dict[str, list[str]]:
    """requirement id -> the names of the checks (server checks, client judges) verifying it."""
    from .client_kit import CLIENT_JUDGES

    covered: dict[str, list[str]] = {}
    for check in CHECKS:
        for rid in check.verifies:
            covered.setdefault(rid, []).append(check.name)
    for name, rids in CLIENT_JUDGES.items():
        for rid in rids:
            covered.setdefault(rid, []).append(name)
    return covered
