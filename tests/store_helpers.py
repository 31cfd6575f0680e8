"""Stores for the tests: each implementation in turn, each SQL store under its own table prefix."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.engine import URL

from tagrules import Catalog, MemoryStore, SQLStore, TagStore
from tagrules.stores import store_tables

SCHEMA = {"spend": "float", "orders": "int"}
TAGS: list[dict[str, Any]] = [
    {"key": "spend_high", "rule": "spend >= 1000", "group": "spend", "priority": 2},
    {"key": "spend_mid", "rule": "spend >= 100", "group": "spend", "priority": 1},
    {"key": "frequent", "rule": "orders >= 3"},
    {"key": "per_order_high", "rule": "spend / orders >= 500"},
    {"key": "vip", "rule": "'spend_high' in tags and 'frequent' in tags"},
    {"key": "key_account", "rule": "false", "description": "given by people only"},
    {"key": "key_account_vip", "rule": "'key_account' in tags"},
]


def catalog(**changes: str) -> Catalog:
    """The test catalog; ``changes`` maps tag keys to a new status (``retired``, ``draft``)."""
    tags = [{**tag, "status": changes[tag["key"]]} if tag["key"] in changes else tag for tag in TAGS]
    return Catalog.from_data({"schema": SCHEMA, "tags": tags})


def unique_prefix() -> str:
    """A table prefix no other test uses, for tests sharing a session's server database."""
    return f"t{secrets.token_hex(4)}_"


def drop_store(url: URL, prefix: str) -> None:
    """Drop the tables of the store with ``prefix``."""
    engine = sqlalchemy.create_engine(url)
    try:
        store_tables(prefix).metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {prefix}alembic_version"))
    finally:
        engine.dispose()


@pytest.fixture
def sql_store(database_url: URL) -> Iterator[SQLStore]:
    """A fresh SQL store on each database: a SQLite file, PostgreSQL, MariaDB."""
    prefix = unique_prefix()
    store = SQLStore(database_url, prefix=prefix, migrate=True)
    try:
        yield store
    finally:
        store.close()
        drop_store(database_url, prefix)


@contextmanager
def fresh_store(kind: str, request: pytest.FixtureRequest) -> Iterator[TagStore]:
    """A new, empty store of ``kind`` (memory, sqlite, postgresql, mysql), under its own table prefix;
    its tables are dropped afterwards."""
    if kind == "memory":
        yield MemoryStore()
        return
    name = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[kind]
    url: URL = request.getfixturevalue(name)
    prefix = unique_prefix()
    sql = SQLStore(url, prefix=prefix, migrate=True)
    try:
        yield sql
    finally:
        sql.close()
        drop_store(url, prefix)


@pytest.fixture(params=["memory", "sqlite", "postgresql", "mysql"])
def store(request: pytest.FixtureRequest) -> Iterator[TagStore]:
    """Every TagStore implementation in turn: in memory, SQLite, PostgreSQL, MariaDB."""
    with fresh_store(request.param, request) as made:
        yield made
