"""The Alembic environment of the store's operational tables (`env.py`, `versions/`).

dcihub configures Alembic in code (`dcihub.store.migrate.alembic_config`); there is no
alembic.ini. Registry tables are not in these revisions: they are derived from the registry
profiles and reconciled by `dcihub.store.migrate` after the revisions ran.
"""
