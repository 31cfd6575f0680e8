"""The Alembic migrations shipped in the package build exactly the tables the store uses."""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL, Engine

from store_helpers import catalog, drop_store, unique_prefix
from tagrules import SQLStore, Tagger
from tagrules.stores import HEAD_REVISION, current_revision, store_tables, upgrade
from tagrules.stores._database import _alembic_config

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
T1 = T0 + datetime.timedelta(days=1)


#: columns later revisions added to the tables of revision 0001
_LATER_COLUMNS = {"position", "due_at", "lapses", "lapses_at", "catalog_version", "closed_version"}


def _rows(engine: Engine, prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of the tables of revision 0001 (their columns of revision 0001)."""
    t = store_tables(prefix)
    with engine.connect() as connection:
        return {
            table.name: sorted(
                tuple(row)
                for row in connection.execute(
                    sqlalchemy.select(*(column for column in table.c if column.name not in _LATER_COLUMNS))
                )
            )
            for table in (t.customers, t.memberships, t.history, t.overrides, t.outbox)
        }


def _store_0001(engine: Engine, prefix: str) -> None:
    """A store at revision 0001 holding two customers, 'Big' and 'a', with history and events."""
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection, prefix), "0001")
    t = store_tables(prefix)
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.insert(t.customers),
            [{"customer_id": c, "version": 1, "updated_at": T0} for c in ("Big", "a")],
        )
        held = [("Big", "vip"), ("a", "frequent")]
        connection.execute(
            sqlalchemy.insert(t.memberships),
            [
                {"customer_id": c, "tag": g, "source": "computed", "since": T0, "rule_version": "r1"}
                for c, g in held
            ],
        )
        connection.execute(
            sqlalchemy.insert(t.history),
            [
                {"customer_id": c, "tag": g, "source": "computed", "since": T0, "rule_version": "r1"}
                for c, g in held
            ],
        )
        connection.execute(
            sqlalchemy.insert(t.outbox),
            [{"customer_id": c, "tag": g, "change": "added", "at": T0, "reason": "rule"} for c, g in held],
        )


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

    def test_upgrade_of_a_0001_store_keeps_its_data_and_makes_keys_exact(self, database_url: URL) -> None:
        """Revision 0002 keeps every row of a store at 0001; afterwards ids differing only by case or
        trailing spaces are different customers (MariaDB), and event ids continue upwards (SQLite)."""
        prefix = unique_prefix()
        engine = sqlalchemy.create_engine(database_url)
        store = None
        try:
            _store_0001(engine, prefix)
            before = _rows(engine, prefix)
            assert upgrade(database_url, prefix=prefix) == HEAD_REVISION == "0006"
            assert _rows(engine, prefix) == before
            if engine.dialect.name == "mysql":
                with engine.connect() as connection:
                    collations = connection.execute(
                        sqlalchemy.text(
                            "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE :tables "
                            "AND DATA_TYPE = 'varchar' AND TABLE_NAME <> :version"
                        ),
                        {"tables": f"{prefix}%", "version": f"{prefix}alembic_version"},
                    ).all()
                # 18 of revision 0001's tables, 6 of revision 0003's, 1 of 0004's, 7 of 0005's
                assert len(collations) == 32
                assert {row[2] for row in collations} == {"utf8mb4_nopad_bin"}
            store = SQLStore(database_url, prefix=prefix)
            assert [m.tag for m in store.memberships("Big")] == ["vip"]
            assert store.history("big") == []
            assert store.memberships("a ") == []
            newest = max(event.id or 0 for event in store.pending_events())
            store.acknowledge([newest])
            Tagger(catalog(), store).apply("big", {"spend": 200.0, "orders": 1}, now=T1)
            Tagger(catalog(), store).apply("a ", {"spend": 200.0, "orders": 1}, now=T1)
            assert [m.tag for m in store.memberships("Big")] == ["vip"]
            assert [m.tag for m in store.memberships("a")] == ["frequent"]
            fresh = [event for event in store.pending_events() if event.customer_id in ("big", "a ")]
            assert len(fresh) == 2
            assert all((event.id or 0) > newest for event in fresh)
        finally:
            if store is not None:
                store.close()
            engine.dispose()
            drop_store(database_url, prefix)

    def test_prefixes_keep_stores_apart(self, database_url: URL) -> None:
        """Two prefixes in one database are two independent stores."""
        first, second = unique_prefix(), unique_prefix()
        stores = [SQLStore(database_url, prefix=p, migrate=True) for p in (first, second)]
        try:
            assert set(store_tables(first).metadata.tables) == {
                f"{first}{name}"
                for name in (
                    "customers",
                    "memberships",
                    "history",
                    "overrides",
                    "outbox",
                    "runs",
                    "run_tags",
                    "consumers",
                    "feed",
                    "versions",
                    "version_tags",
                )
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

    def test_events_pending_before_the_feed_are_delivered_after_it(self, database_url: URL) -> None:
        """Events in the outbox of a store at revision 0003 keep their ids as positions after the
        upgrade: the default consumer (pending_events) and a new consumer both get them, in order,
        before any new event, and nothing is purged until the default consumer acknowledges."""
        prefix = unique_prefix()
        engine = sqlalchemy.create_engine(database_url)
        store = None
        try:
            with engine.begin() as connection:
                command.upgrade(_alembic_config(connection, prefix), "0003")
            outbox = sqlalchemy.table(
                f"{prefix}outbox",
                *(sqlalchemy.column(name) for name in ("customer_id", "tag", "change", "at", "reason")),
            )
            with engine.begin() as connection:
                connection.execute(
                    sqlalchemy.insert(outbox),
                    [
                        {"customer_id": c, "tag": "vip", "change": "added", "at": T0, "reason": "rule"}
                        for c in ("x", "y", "z")
                    ],
                )
            assert upgrade(database_url, prefix=prefix) == HEAD_REVISION
            store = SQLStore(database_url, prefix=prefix)
            Tagger(catalog(), store).apply("new", {"spend": 200.0, "orders": 1}, now=T1)
            pending = store.pending_events()
            assert [e.customer_id for e in pending] == ["x", "y", "z", "new"]
            assert [e.customer_id for e in store.events("email")] == ["x", "y", "z", "new"]
            assert [e.position or 0 for e in pending] == sorted({e.position or 0 for e in pending})
            assert store.purge_events() == 0  # neither consumer has acknowledged
            store.ack("email", pending[-1].position or 0)
            assert store.purge_events() == 0  # the default consumer holds them
            store.acknowledge(e.id for e in pending[:2] if e.id is not None)
            assert [e.customer_id for e in store.pending_events()] == ["z", "new"]
            assert [e.customer_id for e in store.events("late")] == ["z", "new"]
        finally:
            if store is not None:
                store.close()
            engine.dispose()
            drop_store(database_url, prefix)

    def test_a_downgrade_keeps_what_the_default_consumer_has_not_acknowledged(
        self, database_url: URL
    ) -> None:
        """Back at revision 0003 (one consumer), the outbox holds exactly the events the default
        consumer had not acknowledged."""
        prefix = unique_prefix()
        engine = sqlalchemy.create_engine(database_url)
        try:
            upgrade(database_url, prefix=prefix)
            with SQLStore(database_url, prefix=prefix) as store:
                tagger = Tagger(catalog(), store)
                for customer in ("x", "y", "z"):
                    tagger.apply(customer, {"spend": 200.0, "orders": 1}, now=T0)
                pending = store.pending_events()
                store.events("email")  # another consumer holds every event back from purging
                store.acknowledge([pending[0].id or 0])
            with engine.begin() as connection:
                command.downgrade(_alembic_config(connection, prefix), "0003")
            assert current_revision(engine, prefix) == "0003"
            outbox = sqlalchemy.table(f"{prefix}outbox", sqlalchemy.column("customer_id"))
            with engine.connect() as connection:
                left = sorted(connection.execute(sqlalchemy.select(outbox.c.customer_id)).scalars())
            assert left == ["y", "z"]
        finally:
            engine.dispose()
            drop_store(database_url, prefix)
