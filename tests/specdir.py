"""Where the DCI reference material is (`../shared/dci` or `$DCIHUB_SPEC_DIR`).

A module of its own (not conftest) so that test files anywhere under tests/ can import it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def find_spec_dir() -> Path | None:
    env = os.environ.get("DCIHUB_SPEC_DIR")
    candidate = Path(env) if env else PROJECT_ROOT.parent / "shared" / "dci"
    return candidate if (candidate / "spec").is_dir() else None


def require_spec_dir() -> Path:
    """Return the reference-material directory, or skip (fail under DCIHUB_REQUIRE_SPEC=1)."""
    found = find_spec_dir()
    if found is None:
        reason = (
            "DCI reference material not found (set DCIHUB_SPEC_DIR or place it at ../shared/dci)"
        )
        if os.environ.get("DCIHUB_REQUIRE_SPEC") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found
