"""A store over an application's own engine, and the store as a context manager."""

from __future__ import annotations

import datetime

import sqlalchemy
from sqlalchemy.engine import URL

from store_helpers import catalog, drop_store, unique_prefix
from tagrules import SQLStore, Tagger

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
MID = {"spend": 200.0, "orders": 1}


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
