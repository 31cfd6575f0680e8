"""PostgreSQL table statistics of a SQL store: refreshed by the store after bulk inserts into its
tables, not after a few rows more in tables whose statistics already count many."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy
from sqlalchemy.engine import URL, Engine

from store_helpers import drop_store, unique_prefix
from tagrules import Catalog, SQLStore, Tagger
from tagrules.stores._database import FIRST_ANALYZE, analyze_threshold

#: every customer holds all ten tags
CATALOG = Catalog.from_data(
    {"schema": {"spend": "float"}, "tags": [{"key": f"t{i}", "rule": "spend >= 0"} for i in range(10)]}
)


@pytest.fixture
def engine(postgres_url: URL) -> Iterator[Engine]:
    engine = sqlalchemy.create_engine(postgres_url)
    yield engine
    engine.dispose()


def analyzed(engine: Engine, table: str) -> int:
    """How many times ``table`` was analyzed (autovacuum is off for the tables of these tests)."""
    with engine.connect() as connection:
        count = connection.execute(
            sqlalchemy.text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = :name"),
            {"name": table},
        ).scalar_one()
    return int(count)


def test_the_threshold_is_the_rows_the_statistics_counted(engine: Engine) -> None:
    name = f"{unique_prefix()}numbers"
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE TABLE {name} (n integer)"))
    try:
        with engine.begin() as connection:
            assert analyze_threshold(connection, name) == FIRST_ANALYZE
            connection.execute(sqlalchemy.text(f"INSERT INTO {name} SELECT generate_series(1, 30000)"))
            connection.execute(sqlalchemy.text(f"ANALYZE {name}"))
            assert analyze_threshold(connection, name) == 30_000
            connection.execute(sqlalchemy.text(f"DELETE FROM {name} WHERE n > 100"))
            connection.execute(sqlalchemy.text(f"ANALYZE {name}"))
            assert analyze_threshold(connection, name) == FIRST_ANALYZE
            assert analyze_threshold(connection, f"{name}_missing") == FIRST_ANALYZE
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP TABLE {name}"))


def test_the_store_analyzes_once_it_inserted_as_many_as_counted(engine: Engine, postgres_url: URL) -> None:
    prefix = unique_prefix()
    store = SQLStore(postgres_url, prefix=prefix, migrate=True)
    memberships = f"{prefix}memberships"
    try:
        with engine.begin() as connection:
            for table in ("customers", "memberships", "history"):
                connection.execute(
                    sqlalchemy.text(f"ALTER TABLE {prefix}{table} SET (autovacuum_enabled = false)")
                )
            # 40,000 memberships already there, counted by the statistics
            connection.execute(
                sqlalchemy.text(
                    f"INSERT INTO {memberships} (customer_id, tag, source, since) "
                    "SELECT 'old' || g, 't0', 'computed', now() FROM generate_series(1, 40000) AS g"
                )
            )
            connection.execute(sqlalchemy.text(f"ANALYZE {memberships}"))
        before = analyzed(engine, memberships)
        tagger = Tagger(CATALOG, store)
        # 22,000 rows inserted (2,000 customers, 20,000 memberships): more than a new table's first
        # rows, fewer than the 40,000 counted
        tagger.apply_many(((f"a{i}", {"spend": 1.0}) for i in range(2000)), chunk_size=500)
        assert analyzed(engine, memberships) == before
        # 41,800 in all: the table's statistics are now worth refreshing
        tagger.apply_many(((f"b{i}", {"spend": 1.0}) for i in range(1800)), chunk_size=500)
        assert analyzed(engine, memberships) == before + 1
    finally:
        store.close()
        drop_store(postgres_url, prefix)
