"""Shared test fixtures.

Reference material (specs, schemas, samples) is found at `../shared/dci` relative to the
project root, or at `$DCIHUB_SPEC_DIR`. Without it, tests that need it skip with a reason;
with `DCIHUB_REQUIRE_SPEC=1` (set by `.ci/run`) a missing spec fails instead.
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


@pytest.fixture(scope="session")
def spec_dir() -> Path:
    return require_spec_dir()
