"""The Alembic migrations shipped in the package build exactly the tables the store uses."""

from __future__ import annotations

import datetime

import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL

from store_helpers import drop_store, unique_prefix
from tagrules import SQLStore
from tagrules.stores import HEAD_REVISION, current_revision, store_tables, upgrade


class TestMigrations:
    def test_migrated_schema_matches_the_tables(self, database_url: URL) -> None:
        """After `upgrade`, the database has the tables, columns and indexes of `store_tables`, at head."""
        prefix = unique_prefix()
        engine = sqlalchemy.create_engine(database_url)
        try:
            assert upgrade(database_url, prefix=prefix) == HEAD_REVISION
            assert upgrade(database_url, prefix=prefix) == HEAD_REVISION
            assert current_revision(engine, prefix) == HEAD_REVISION
            metadata = store_tables(prefix).metadata
            with engine.connect() as connection:
                context = MigrationContext.configure(
                    connection,
                    opts={
                        "include_name": lambda name, kind, parent: kind != "table" or name in metadata.tables,
                        "compare_type": False,
                    },
                )
                assert compare_metadata(context, metadata) == []
        finally:
            engine.dispose()
            drop_store(database_url, prefix)

    def test_prefixes_keep_stores_apart(self, database_url: URL) -> None:
        """Two prefixes in one database are two independent stores."""
        first, second = unique_prefix(), unique_prefix()
        stores = [SQLStore(database_url, prefix=p, migrate=True) for p in (first, second)]
        try:
            assert set(store_tables(first).metadata.tables) == {
                f"{first}{name}"
                for name in ("customers", "memberships", "history", "overrides", "outbox", "runs", "run_tags")
            }
            assert stores[0].members("vip") == stores[1].members("vip") == []
        finally:
            for store, prefix in zip(stores, (first, second), strict=True):
                store.close()
                drop_store(database_url, prefix)

    def test_upgrade_from_the_first_revision_keeps_the_data(self, database_url: URL) -> None:
        """A store at revision 0001 with tags upgrades to head with its data and gains run records."""
        from alembic import command

        from tagrules import Catalog, Tagger
        from tagrules.stores._database import _alembic_config

        prefix = unique_prefix()
        engine = sqlalchemy.create_engine(database_url)
        try:
            with engine.begin() as connection:
                command.upgrade(_alembic_config(connection, prefix), "0001")
            assert current_revision(engine, prefix) == "0001"
            with engine.begin() as connection:
                connection.execute(
                    store_tables(prefix).memberships.insert(),
                    [
                        {
                            "customer_id": "a",
                            "tag": "vip",
                            "source": "manual",
                            "since": datetime.datetime(2026, 1, 1),
                        }
                    ],
                )
            assert upgrade(database_url, prefix=prefix) == HEAD_REVISION
            store = SQLStore(database_url, prefix=prefix)
            try:
                assert [m.tag for m in store.memberships("a")] == ["vip"]
                catalog = Catalog(tags=[{"key": "big", "rule": "spend > 1"}], schema={"spend": "float"})
                Tagger(catalog, store).apply_many([("b", {"spend": 2.0})])
                assert [run.customers for run in store.runs()] == [1]
            finally:
                store.close()
        finally:
            engine.dispose()
            drop_store(database_url, prefix)
