"""Alembic's entry point for the tag store's migrations; run only through ``tagrules.stores.upgrade``.

The connection and the table prefix come in ``config.attributes``; each prefix keeps its own
version table, ``<prefix>alembic_version``, so several stores can share one database.
"""

from __future__ import annotations

from alembic import context


def run_migrations() -> None:
    config = context.config
    connection = config.attributes["connection"]
    prefix: str = config.attributes["table_prefix"]
    context.configure(
        connection=connection,
        version_table=f"{prefix}alembic_version",
        transactional_ddl=connection.dialect.name != "mysql",
    )
    with context.begin_transaction():
        context.run_migrations()


# Alembic runs this file; importing it elsewhere (doctest collection) does nothing.
if hasattr(context, "config"):
    run_migrations()
