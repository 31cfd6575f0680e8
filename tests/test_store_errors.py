"""Database failures reach callers as StoreError with the driver's error kept as the cause."""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy.engine import URL

from store_helpers import catalog, drop_store, unique_prefix
from tagrules import SQLStore, StoreError, Tagger


class TestStoreErrors:
    def test_tables_dropped_under_a_running_store(self, database_url: URL) -> None:
        """Tables that vanish give a StoreError pointing at `tagrules db upgrade`, cause kept."""
        prefix = unique_prefix()
        store = SQLStore(database_url, prefix=prefix, migrate=True)
        tagger = Tagger(catalog(), store)
        try:
            drop_store(database_url, prefix)
            with pytest.raises(StoreError, match="tagrules db upgrade URL") as caught:
                tagger.apply("a", {"spend": 1.0, "orders": 1})
            assert isinstance(caught.value.__cause__, sqlalchemy.exc.DBAPIError)
            with pytest.raises(StoreError, match="tagrules db upgrade URL"):
                store.members("vip")
        finally:
            store.close()

    def test_unreachable_server(self) -> None:
        """A server that does not answer is a StoreError naming the URL without its password."""
        with pytest.raises(StoreError, match="is the database running and reachable") as caught:
            SQLStore("postgresql+psycopg://app:secret@127.0.0.1:1/crm")
        assert "secret" not in str(caught.value)
        assert "***" in str(caught.value)

    def test_bad_prefix(self, sqlite_url: URL) -> None:
        """A table prefix that is not a safe name is refused before anything is created."""
        with pytest.raises(ValueError, match="table prefix"):
            SQLStore(sqlite_url, prefix="drop table;")
