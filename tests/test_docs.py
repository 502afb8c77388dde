"""Docs that are generated from code stay in step with it."""

import subprocess
import sys

from specdir import PROJECT_ROOT


def test_registry_docs_match_the_profiles():
    result = subprocess.run(
        [sys.executable, "tools/gen_registry_docs.py", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
