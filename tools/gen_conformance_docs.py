"""Write docs/conformance.md from the conformance kit's requirements file and checks.

python tools/gen_conformance_docs.py          # rewrite docs/conformance.md
python tools/gen_conformance_docs.py --check  # exit 1 if docs/conformance.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dcihub.conformance.docs import render

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "conformance.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text("utf-8") != text:
            print(f"{TARGET} is stale: run python tools/gen_conformance_docs.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, "utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
