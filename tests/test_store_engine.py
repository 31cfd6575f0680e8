"""A store over an application's own engine, and the store as a context manager."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import NamedTuple

import pytest
import sqlalchemy
from sqlalchemy.engine import URL

from store_helpers import catalog, drop_store, unique_prefix
from tagrules import ChangeEvent, InvalidArgument, MemoryStore, SQLStore, Tagger

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
MID = {"spend": 200.0, "orders": 1}
RICH = {"spend": 2000.0, "orders": 4}


class TestGivenEngine:
    def test_a_store_uses_a_given_engine_and_leaves_it_open(self, database_url: URL) -> None:
        """SQLStore(engine) works like SQLStore(url); closing the store (or leaving its with block)
        does not dispose of the caller's engine, which stays usable."""
        prefix = unique_prefix()
        engine = sqlalchemy.create_engine(database_url)
        try:
            with SQLStore(engine, prefix=prefix, migrate=True) as store:
                assert store.url == engine.url
                Tagger(catalog(), store).apply("a", MID, now=T0)
            with engine.connect() as connection:
                assert connection.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
            pool = engine.pool
            assert isinstance(pool, sqlalchemy.pool.QueuePool)
            assert pool.checkedin() >= 1  # the pooled connection survived the store's close
            with SQLStore(engine, prefix=prefix) as again:
                assert again.tags("a") == {"spend_mid"}
        finally:
            engine.dispose()
            drop_store(database_url, prefix)

    def test_a_store_made_from_a_url_closes_its_engine(self, sqlite_url: URL) -> None:
        """with SQLStore(url): the engine the store made is disposed of at the end of the block."""
        with SQLStore(sqlite_url) as store:
            Tagger(catalog(), store).apply("a", MID, now=T0)
            pool = store._engine.pool
            assert isinstance(pool, sqlalchemy.pool.QueuePool)
            assert pool.checkedin() == 1
        assert pool.checkedin() == 0


class Listened(NamedTuple):
    engine: sqlalchemy.Engine
    store: SQLStore
    tagger: Tagger
    heard: list[ChangeEvent]


@pytest.fixture
def listened(database_url: URL) -> Iterator[Listened]:
    """An application's engine, a store over it, and a tagger whose listener records what it hears."""
    prefix = unique_prefix()
    engine = sqlalchemy.create_engine(database_url)
    heard: list[ChangeEvent] = []
    try:
        store = SQLStore(engine, prefix=prefix, migrate=True)
        yield Listened(engine, store, Tagger(catalog(), store, listeners=[heard.append]), heard)
    finally:
        engine.dispose()
        drop_store(database_url, prefix)


class TestCallersTransaction:
    def test_changes_commit_with_the_callers_transaction(self, listened: Listened) -> None:
        """apply(..., connection=conn) writes inside the caller's transaction: nothing is visible
        before the caller commits, listeners hear nothing until after_commit, then everything."""
        engine, store, tagger, heard = listened
        with engine.connect() as connection:
            result = tagger.apply("a", MID, now=T0, connection=connection)
            report = tagger.apply_many([("b", MID), ("c", RICH)], now=T0, connection=connection)
            assert result.added == {"spend_mid"}
            assert report.customers == 2
            assert store.memberships("a") == []  # another connection sees nothing yet
            assert heard == []
            with pytest.raises(InvalidArgument, match="commit it first"):
                tagger.after_commit(connection)
            connection.commit()
            assert tagger.after_commit(connection) == 0
        assert sorted((e.customer_id, e.tag) for e in heard) == sorted(
            (e.customer_id, e.tag) for e in store.pending_events()
        )
        assert store.tags("a") == {"spend_mid"}
        assert store.tags("c") == {"spend_high", "frequent", "vip", "per_order_high"}

    def test_a_rollback_leaves_nothing(self, listened: Listened) -> None:
        """When the caller rolls back, no membership, history period or event remains, and the
        listeners never hear the events."""
        engine, store, tagger, heard = listened
        tagger.include("a", "vip", by="ana", reason="x", now=T0)  # committed before, stays
        with engine.connect() as connection:
            tagger.apply_many([("a", MID), ("b", RICH)], now=T0, connection=connection)
            assert store.load(["b"], connection=connection)["b"].computed
            connection.rollback()
            assert tagger.after_commit(connection) == 0
        assert [(e.customer_id, e.tag) for e in heard] == [("a", "vip")]  # the include's only
        assert store.memberships("b") == []
        assert store.history("b") == []
        assert [m.tag for m in store.memberships("a")] == ["vip"]
        assert [(e.customer_id, e.tag, e.reason) for e in store.pending_events()] == [("a", "vip", "manual")]

    def test_a_memory_store_has_no_transaction_to_join(self) -> None:
        """connection= needs a SQLStore."""
        engine = sqlalchemy.create_engine("sqlite://")
        with engine.connect() as connection, pytest.raises(InvalidArgument, match="needs a SQLStore"):
            Tagger(catalog(), MemoryStore()).apply("a", MID, now=T0, connection=connection)
        engine.dispose()
