"""Alembic environment: runs the revisions on the connection `dcihub.store.migrate` hands over
(in `config.attributes["connection"]`, inside its upgrade transaction and lock).

Only the operational tables are Alembic's (`target_metadata`); the registry tables, derived
from the profiles, are left out of autogenerate so that a new revision never touches them.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import MetaData

from dcihub.store.schema import operational_tables

config = context.config
target_metadata = MetaData()
operational_tables(target_metadata)
OPERATIONAL = set(target_metadata.tables)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    return type_ != "table" or name in OPERATIONAL


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None or context.is_offline_mode():
        raise RuntimeError(
            "dcihub runs its revisions through `dcihub store upgrade` "
            "(dcihub.store.migrate), on a live connection"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=include_name,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER on SQLite: copy and move
    )
    with context.begin_transaction():  # joins the caller's transaction
        context.run_migrations()


run_migrations()
