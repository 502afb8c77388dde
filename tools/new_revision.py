"""Start a new revision of the operational tables:

    .venv/bin/python tools/new_revision.py "what changes"

Alembic compares a scratch store at the current head with `store/schema.py`'s operational
tables and writes `src/dcihub/store/migrations/versions/NNNN_<what_changes>.py` with what
differs. Read it and finish it by hand: a revision is frozen (it spells its columns out and
never imports `store/schema.py`), moves data where needed, and has no downgrade. Then run
`tests/test_migrations.py`, which checks that revisions and code agree. Registry tables need
no revision: they follow the profiles.
"""

from __future__ import annotations

import sys
import tempfile

from alembic import command

from dcihub.store import Store
from dcihub.store.migrate import alembic_config, head_revision


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].strip():
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(f"sqlite:///{scratch}/scratch.db")
        store.upgrade()
        with store.engine.begin() as conn:
            number = f"{int(head_revision()) + 1:04d}"
            command.revision(alembic_config(conn), argv[1], autogenerate=True, rev_id=number)
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
