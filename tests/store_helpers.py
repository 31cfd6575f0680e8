"""Stores for the tests: each implementation in turn, each SQL store under its own table prefix.

The asyncio stores take part in the same contract suite: :class:`DrivenStore` drives an
:class:`~tagrules.AsyncSQLStore` from the suite's synchronous code on an event loop of its own, and
:func:`Tagger` gives such a store an :class:`~tagrules.AsyncTagger` driven the same way.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
import sqlalchemy
from sqlalchemy.engine import URL

import tagrules
from tagrules import AsyncSQLStore, AsyncTagger, Catalog, MemoryStore, SQLStore, TagDiff, TagStore
from tagrules.stores import (
    CatalogVersion,
    ChangeEvent,
    CustomerChange,
    CustomerState,
    Every,
    FeedConsumer,
    HistoryEntry,
    Membership,
    Override,
    RunRecord,
    Source,
    TagStatistics,
    TierFlow,
    store_tables,
)
from tagrules.stores.async_sql import wait
from tagrules.tagger import DEFAULT_CHUNK_SIZE, ApplyReport, EvaluateItem, Listener

T = TypeVar("T")
#: each database's asyncio driver, as the asyncio stores of the tests reach it
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "mysql": "mysql+asyncmy"}

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


class DrivenStore:
    """An :class:`~tagrules.AsyncSQLStore` driven from synchronous code: each method runs the store's
    coroutine to its end on the driver's event loop; called while that loop runs a call already (a
    listener reading the store), it awaits the coroutine in place."""

    def __init__(self, store: AsyncSQLStore) -> None:
        self.async_store = store
        self.loop = asyncio.new_event_loop()

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        if self.loop.is_running():
            return wait(call)
        return self.loop.run_until_complete(call)

    def load(self, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        return self.run(self.async_store.load(customer_ids))

    def commit(self, changes: Sequence[CustomerChange]) -> None:
        self.run(self.async_store.commit(changes))

    def memberships(self, customer_id: str) -> list[Membership]:
        return self.run(self.async_store.memberships(customer_id))

    def tags(self, customer_id: str) -> frozenset[str]:
        return self.run(self.async_store.tags(customer_id))

    def overrides(self, customer_id: str) -> list[Override]:
        return self.run(self.async_store.overrides(customer_id))

    def members(self, tag: str, as_of: datetime.datetime | None = None) -> list[str]:
        return self.run(self.async_store.members(tag, as_of))

    def tags_as_of(self, customer_id: str, as_of: datetime.datetime) -> frozenset[str]:
        return self.run(self.async_store.tags_as_of(customer_id, as_of))

    def history(self, customer_id: str) -> list[HistoryEntry]:
        return self.run(self.async_store.history(customer_id))

    def customers_holding(self, tags: Collection[str], source: Source = "computed") -> Iterator[str]:
        return iter(self.run(self.async_store.customers_holding(tags, source)))

    def held_tags(self, source: Source = "computed") -> frozenset[str]:
        return self.run(self.async_store.held_tags(source))

    def pending_events(self, limit: int = 1000) -> list[ChangeEvent]:
        return self.run(self.async_store.pending_events(limit))

    def acknowledge(self, event_ids: Iterable[int]) -> None:
        self.run(self.async_store.acknowledge(event_ids))

    def events(self, consumer: str, limit: int = 1000) -> list[ChangeEvent]:
        return self.run(self.async_store.events(consumer, limit))

    def ack(self, consumer: str, position: int) -> None:
        self.run(self.async_store.ack(consumer, position))

    def purge_events(self, before: datetime.datetime | None = None) -> int:
        return self.run(self.async_store.purge_events(before))

    def consumers(self) -> list[FeedConsumer]:
        return self.run(self.async_store.consumers())

    def drop_consumer(self, consumer: str) -> bool:
        return self.run(self.async_store.drop_consumer(consumer))

    def due(self, now: datetime.datetime) -> list[str]:
        return self.run(self.async_store.due(now))

    def expiring(self, tag: str, before: datetime.datetime) -> list[str]:
        return self.run(self.async_store.expiring(tag, before))

    def publish(self, version: CatalogVersion) -> bool:
        return self.run(self.async_store.publish(version))

    def versions(self) -> list[CatalogVersion]:
        return self.run(self.async_store.versions())

    def catalog_version(self, version: str) -> CatalogVersion | None:
        return self.run(self.async_store.catalog_version(version))

    def forget(self, customer_id: str) -> None:
        self.run(self.async_store.forget(customer_id))

    def record_run(self, record: RunRecord) -> None:
        self.run(self.async_store.record_run(record))

    def runs(
        self, since: datetime.datetime | None = None, until: datetime.datetime | None = None
    ) -> list[RunRecord]:
        return self.run(self.async_store.runs(since, until))

    def stats(
        self,
        tags: Collection[str] | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        every: Every = "week",
    ) -> TagStatistics:
        return self.run(self.async_store.stats(tags, since, until, every))

    def overlap(
        self, tags: Collection[str], as_of: datetime.datetime | None = None
    ) -> dict[tuple[str, str], int]:
        return self.run(self.async_store.overlap(tags, as_of))

    def flow(self, group: str, start: datetime.datetime, end: datetime.datetime) -> TierFlow:
        return self.run(self.async_store.flow(group, start, end))

    def close(self) -> None:
        self.run(self.async_store.close())

    def __enter__(self) -> DrivenStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DrivenTagger:
    """An :class:`~tagrules.AsyncTagger` driven from synchronous code, as :class:`DrivenStore` drives
    its store."""

    def __init__(self, catalog: Catalog, store: DrivenStore, *, listeners: Iterable[Listener] = ()) -> None:
        self.tagger = AsyncTagger(catalog, store.async_store, listeners=listeners)
        self.run = store.run

    def apply(
        self, customer_id: str, snapshot: Mapping[str, Any] | Any, now: datetime.datetime | None = None
    ) -> TagDiff:
        return self.run(self.tagger.apply(customer_id, snapshot, now))

    def apply_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any] | Any]],
        now: datetime.datetime | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        progress: Callable[[int], None] | None = None,
        evaluate: EvaluateItem | None = None,
    ) -> ApplyReport:
        call = self.tagger.apply_many(items, now, chunk_size, progress=progress, evaluate=evaluate)
        return self.run(call)

    def include(
        self, customer_id: str, tag: str, *, by: str, reason: str, now: datetime.datetime | None = None
    ) -> None:
        self.run(self.tagger.include(customer_id, tag, by=by, reason=reason, now=now))

    def exclude(
        self, customer_id: str, tag: str, *, by: str, reason: str, now: datetime.datetime | None = None
    ) -> None:
        self.run(self.tagger.exclude(customer_id, tag, by=by, reason=reason, now=now))

    def clear_override(self, customer_id: str, tag: str, *, now: datetime.datetime | None = None) -> None:
        self.run(self.tagger.clear_override(customer_id, tag, now=now))

    def flush(self) -> None:
        self.run(self.tagger.flush())


#: what :func:`Tagger` gives
AnyTagger = tagrules.Tagger | DrivenTagger


def Tagger(catalog: Catalog, store: TagStore, *, listeners: Iterable[Listener] = ()) -> AnyTagger:
    """The tagger of the contract suite: :class:`tagrules.Tagger` over ``store``, or for a
    :class:`DrivenStore` an :class:`~tagrules.AsyncTagger`, driven the same way."""
    if isinstance(store, DrivenStore):
        return DrivenTagger(catalog, store, listeners=listeners)
    return tagrules.Tagger(catalog, store, listeners=listeners)


def empty_store(url: URL, prefix: str) -> None:
    """Delete every row of the store with ``prefix``, keeping its tables."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            for table in reversed(store_tables(prefix).metadata.sorted_tables):
                connection.execute(table.delete())
    finally:
        engine.dispose()


# server database -> table prefixes of asyncio stores whose tables are set up and empty: emptying
# tables costs a server far less than creating and dropping them for every test
_SPARE_PREFIXES: dict[str, list[str]] = {}


@contextmanager
def fresh_store(kind: str, request: pytest.FixtureRequest) -> Iterator[TagStore]:
    """A new, empty store of ``kind`` (memory, sqlite, postgresql, mysql; ``-async`` after a database
    for its asyncio store, driven by a :class:`DrivenStore`), under its own table prefix; its tables
    are dropped afterwards."""
    if kind == "memory":
        yield MemoryStore()
        return
    database, _, mode = kind.partition("-")
    name = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[database]
    url: URL = request.getfixturevalue(name)
    prefix = unique_prefix()
    if mode == "async":
        spare = _SPARE_PREFIXES.setdefault(url.render_as_string(hide_password=False), [])
        if database != "sqlite" and spare:
            prefix = spare.pop()
        async_url = url.set(drivername=ASYNC_DRIVERS[database])
        driven = DrivenStore(AsyncSQLStore(async_url, prefix=prefix, migrate=True))
        try:
            driven.run(driven.async_store._sql_store())
            yield driven
        finally:
            driven.close()
            driven.loop.close()
            if database == "sqlite":
                drop_store(url, prefix)
            else:
                empty_store(url, prefix)
                spare.append(prefix)
        return
    sql = SQLStore(url, prefix=prefix, migrate=True)
    try:
        yield sql
    finally:
        sql.close()
        drop_store(url, prefix)


@pytest.fixture(
    params=["memory", "sqlite", "postgresql", "mysql", "sqlite-async", "postgresql-async", "mysql-async"]
)
def store(request: pytest.FixtureRequest) -> Iterator[TagStore]:
    """Every TagStore implementation in turn: in memory, SQLite, PostgreSQL, MariaDB, and the asyncio
    stores of the three databases (each driven from the suite's synchronous code)."""
    with fresh_store(request.param, request) as made:
        yield made
