"""A tag store in a SQL database through SQLAlchemy's asyncio extension.

:class:`AsyncSQLStore` is :class:`~tagrules.SQLStore` on an asyncio engine (``sqlite+aiosqlite``,
``postgresql+asyncpg``, ``mysql+asyncmy``, ``mysql+aiomysql``). Each call runs the SQL store's own
code, with its statements, its error translation and its timeouts, in a greenlet, the bridge
SQLAlchemy's ``AsyncConnection.run_sync`` is built on: every wait on the database is an ``await``
on the event loop, and the store's SQL exists once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import inspect
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, final

import sqlalchemy.util
from sqlalchemy.engine import URL, Connection, Engine

from tagrules.errors import StoreError
from tagrules.stores._base import (
    CatalogVersion,
    ChangeEvent,
    CustomerChange,
    CustomerState,
    FeedConsumer,
    HistoryEntry,
    Membership,
    Override,
    Source,
)
from tagrules.stores._database import create_async_engine, describe
from tagrules.stores._runs import Every, RunRecord, TagStatistics, TierFlow
from tagrules.stores._tables import DEFAULT_PREFIX, check_prefix
from tagrules.stores.sql import SQLStore

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AsyncSQLStore", "Turns", "in_greenlet", "pause", "pulled", "settle", "sync_connection", "wait"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


async def in_greenlet(function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run the synchronous ``function`` so that each wait of its database calls awaits on the loop."""
    result: _T = await sqlalchemy.util.greenlet_spawn(functools.partial(function, *args, **kwargs))
    return result


def wait(awaitable: Awaitable[_T]) -> _T:
    """Inside :func:`in_greenlet`: the result of ``awaitable``, awaited on the event loop."""
    result: _T = sqlalchemy.util.await_only(awaitable)
    return result


def pause(seconds: float) -> None:
    """Inside :func:`in_greenlet`: sleep without holding up the event loop's other tasks."""
    wait(asyncio.sleep(seconds))


def settle(result: object) -> None:
    """Inside :func:`in_greenlet`: await a listener's result when it is awaitable (an ``async def``)."""
    if inspect.isawaitable(result):
        wait(result)


def pulled(items: AsyncIterable[_T]) -> Iterator[_T]:
    """Inside :func:`in_greenlet`: the items of an async iterable, pulled one by one."""
    iterator = aiter(items)
    while True:
        try:
            yield wait(anext(iterator))
        except StopAsyncIteration:
            return


def sync_connection(connection: AsyncConnection | None) -> Connection | None:
    """The synchronous face of a caller's connection, for the synchronous store's ``connection=``."""
    return None if connection is None else connection.sync_connection


class Turns:
    """Fair turns at a connection pool: calls of at most ``slots`` tasks at once, the others waiting
    in the order they came.

    The pool's own queue lets a task that has just given a connection back take it again at once,
    ahead of the tasks waiting for one, so that under more tasks than connections the first waiters
    waited for seconds. A task that holds a turn already (a listener reading the store during an
    apply) goes on without waiting for a second one.
    """

    def __init__(self, slots: int | None) -> None:
        self._free = slots
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._holders: set[asyncio.Task[Any]] = set()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if self._free is None or task is None or task in self._holders:
            yield
            return
        await self._acquire()
        self._holders.add(task)
        try:
            yield
        finally:
            self._holders.discard(task)
            self._release()

    async def _acquire(self) -> None:
        assert self._free is not None
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # the turn came with the cancellation: hand it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(future)
            raise

    def _release(self) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)  # straight to the next waiter: nobody can barge in
                return
        assert self._free is not None
        self._free += 1


def _pool_slots(engine: AsyncEngine) -> int | None:
    """How many connections the engine's pool opens at most; ``None`` where it sets no limit."""
    pool = engine.sync_engine.pool
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", 0)
    if not callable(size) or not isinstance(overflow, int) or overflow < 0:
        return None
    return max(1, int(size()) + overflow)


@final
class AsyncSQLStore:
    """A tag store in a SQL database, for asyncio: every method of :class:`~tagrules.SQLStore`, awaited.

    Args:
        url: a SQLAlchemy URL with an asyncio driver: ``sqlite+aiosqlite:///tagrules.db``,
            ``postgresql+asyncpg://user@host/db``, ``mysql+asyncmy://user@host/db``; or an
            application's own :class:`~sqlalchemy.ext.asyncio.AsyncEngine`, which the store uses and
            never disposes of. The timeouts of :class:`~tagrules.SQLStore` apply, set alike by URL
            query parameters (``?lock_timeout=5``).
        prefix: the start of every table name.
        migrate: create or upgrade the tables when they are missing or old (by default SQLite only).

    Raises:
        StoreError: a bad URL, a driver that is not an asyncio one or is not installed. The database
            is first reached when the store is entered (``async with``) or first used; an unreachable
            database or missing tables raise :class:`~tagrules.StoreError` then.

    The store is an async context manager: ``async with AsyncSQLStore(url) as store:`` checks the
    tables on entering and closes what the store opened at the end (``await store.close()``).
    Calls of many tasks take turns at the engine's pool in the order they came, as many at once as
    it opens connections. Evaluation stays synchronous: see :class:`~tagrules.AsyncTagger`.

    Examples:
        >>> import asyncio, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tags.db"
        >>> async def main() -> list[str]:
        ...     async with AsyncSQLStore(f"sqlite+aiosqlite:///{path}") as store:
        ...         return await store.members("vip")
        >>> asyncio.run(main())
        []
    """

    def __init__(
        self,
        url: str | URL | AsyncEngine,
        *,
        prefix: str = DEFAULT_PREFIX,
        migrate: bool | None = None,
    ) -> None:
        from sqlalchemy.ext.asyncio import AsyncEngine

        self.prefix = check_prefix(prefix)
        if isinstance(url, Engine):
            raise StoreError(
                f"{describe(url.url)}: AsyncSQLStore needs an AsyncEngine (create_async_engine); "
                "give this Engine to SQLStore"
            )
        self._owns_engine = not isinstance(url, AsyncEngine)
        self.engine: AsyncEngine = url if isinstance(url, AsyncEngine) else create_async_engine(url)
        self.url = self.engine.url
        self._migrate = migrate
        self._store: SQLStore | None = None
        self._opening: asyncio.Lock | None = None
        self._turns = Turns(_pool_slots(self.engine))

    def __repr__(self) -> str:
        return f"AsyncSQLStore({describe(self.url)!r}, prefix={self.prefix!r})"

    async def _sql_store(self) -> SQLStore:
        """The synchronous store this one drives, its tables checked (and migrated) on the first call.

        Its methods are for :func:`in_greenlet` only (called directly they fail: the engine is an
        asyncio one)."""
        if self._store is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._store is None:
                    self._store = await in_greenlet(self._open)
        return self._store

    def _open(self) -> SQLStore:
        store = SQLStore(self.engine.sync_engine, prefix=self.prefix, migrate=self._migrate)
        store._pause = pause
        return store

    async def _run(self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``function`` in :func:`in_greenlet`, in the calling task's turn at the connection pool."""
        async with self._turns.turn():
            return await in_greenlet(function, *args, **kwargs)

    async def _call(
        self, method: Callable[Concatenate[SQLStore, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        store = await self._sql_store()
        return await self._run(method, store, *args, **kwargs)

    # -- the TagStore methods, awaited -------------------------------------------------------------

    async def load(
        self, customer_ids: Collection[str], *, connection: AsyncConnection | None = None
    ) -> dict[str, CustomerState]:
        """The state of each known customer of ``customer_ids``; with ``connection``, read inside that
        (the caller's) transaction."""
        return await self._call(SQLStore.load, customer_ids, connection=sync_connection(connection))

    async def commit(
        self, changes: Sequence[CustomerChange], *, connection: AsyncConnection | None = None
    ) -> None:
        """Write every change in one transaction (with ``connection``, inside the caller's).

        Raises:
            ConcurrentUpdate: as :meth:`~tagrules.TagStore.commit` says; nothing was written.
        """
        await self._call(SQLStore.commit, changes, connection=sync_connection(connection))

    async def memberships(self, customer_id: str) -> list[Membership]:
        """The customer's current memberships, sorted by tag."""
        return await self._call(SQLStore.memberships, customer_id)

    async def tags(self, customer_id: str) -> frozenset[str]:
        """The keys of the tags the customer holds now (computed and manual)."""
        return await self._call(SQLStore.tags, customer_id)

    async def overrides(self, customer_id: str) -> list[Override]:
        """The customer's overrides, sorted by tag."""
        return await self._call(SQLStore.overrides, customer_id)

    async def members(self, tag: str, as_of: datetime.datetime | None = None) -> list[str]:
        """The sorted ids of the customers holding ``tag`` now, or at ``as_of``."""
        return await self._call(SQLStore.members, tag, as_of)

    async def tags_as_of(self, customer_id: str, as_of: datetime.datetime) -> frozenset[str]:
        """The tags the customer held at ``as_of``."""
        return await self._call(SQLStore.tags_as_of, customer_id, as_of)

    async def history(self, customer_id: str) -> list[HistoryEntry]:
        """Every membership period of the customer, by since, then tag."""
        return await self._call(SQLStore.history, customer_id)

    async def customers_holding(self, tags: Collection[str], source: Source = "computed") -> list[str]:
        """The sorted ids of the customers holding any of ``tags`` from ``source``."""
        return list(await self._call(SQLStore.customers_holding, tags, source))

    async def held_tags(self, source: Source = "computed") -> frozenset[str]:
        """Every tag some customer holds from ``source``."""
        return await self._call(SQLStore.held_tags, source)

    async def pending_events(self, limit: int = 1000) -> list[ChangeEvent]:
        """The oldest unacknowledged change events (with their ``id``), in outbox order."""
        return await self._call(SQLStore.pending_events, limit)

    async def acknowledge(self, event_ids: Iterable[int]) -> None:
        """Remove delivered events from the outbox; unknown ids are ignored."""
        await self._call(SQLStore.acknowledge, list(event_ids))

    async def events(self, consumer: str, limit: int = 1000) -> list[ChangeEvent]:
        """The next change events after ``consumer``'s acknowledged position, in feed order
        (:meth:`~tagrules.SQLStore.events`)."""
        return await self._call(SQLStore.events, consumer, limit)

    async def ack(self, consumer: str, position: int) -> None:
        """Move ``consumer``'s cursor to ``position`` (:meth:`~tagrules.SQLStore.ack`)."""
        await self._call(SQLStore.ack, consumer, position)

    async def purge_events(self, before: datetime.datetime | None = None) -> int:
        """Delete the events every registered consumer has acknowledged (older than ``before``, when
        given); the number deleted (:meth:`~tagrules.SQLStore.purge_events`)."""
        return await self._call(SQLStore.purge_events, before)

    async def consumers(self) -> list[FeedConsumer]:
        """The registered consumers of the feed (:meth:`~tagrules.SQLStore.consumers`)."""
        return await self._call(SQLStore.consumers)

    async def drop_consumer(self, consumer: str) -> bool:
        """Unregister ``consumer`` (:meth:`~tagrules.SQLStore.drop_consumer`)."""
        return await self._call(SQLStore.drop_consumer, consumer)

    async def due(self, now: datetime.datetime) -> list[str]:
        """The customers whose tags time alone has changed by ``now`` (:meth:`~tagrules.SQLStore.due`)."""
        return await self._call(SQLStore.due, now)

    async def expiring(self, tag: str, before: datetime.datetime) -> list[str]:
        """The holders of ``tag`` whose membership lapses by ``before`` unless their data changes
        (:meth:`~tagrules.SQLStore.expiring`)."""
        return await self._call(SQLStore.expiring, tag, before)

    async def publish(self, version: CatalogVersion) -> bool:
        """Keep a published catalog version (:meth:`~tagrules.SQLStore.publish`)."""
        return await self._call(SQLStore.publish, version)

    async def versions(self) -> list[CatalogVersion]:
        """Every published catalog version, oldest first (:meth:`~tagrules.SQLStore.versions`)."""
        return await self._call(SQLStore.versions)

    async def catalog_version(self, version: str) -> CatalogVersion | None:
        """The published version ``version`` (:meth:`~tagrules.SQLStore.catalog_version`)."""
        return await self._call(SQLStore.catalog_version, version)

    async def forget(self, customer_id: str) -> None:
        """Erase the customer: memberships, history, overrides and pending events (as
        :meth:`~tagrules.SQLStore.forget` does)."""
        await self._call(SQLStore.forget, customer_id)

    async def record_run(self, record: RunRecord, *, connection: AsyncConnection | None = None) -> None:
        """Keep a run record; with ``connection``, inside that (the caller's) transaction."""
        await self._call(SQLStore.record_run, record, connection=sync_connection(connection))

    async def runs(
        self, since: datetime.datetime | None = None, until: datetime.datetime | None = None
    ) -> list[RunRecord]:
        """The run records evaluated in ``[since, until)``, oldest first."""
        return await self._call(SQLStore.runs, since, until)

    async def stats(
        self,
        tags: Collection[str] | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        every: Every = "week",
    ) -> TagStatistics:
        """Tags over time, as :meth:`~tagrules.TagStore.stats` says."""
        return await self._call(SQLStore.stats, tags, since, until, every)

    async def overlap(
        self, tags: Collection[str], as_of: datetime.datetime | None = None
    ) -> dict[tuple[str, str], int]:
        """Customers holding both tags of each pair of ``tags``, now or at ``as_of``."""
        return await self._call(SQLStore.overlap, tags, as_of)

    async def flow(self, group: str, start: datetime.datetime, end: datetime.datetime) -> TierFlow:
        """Customers moving between the tiers of an exclusive group from ``start`` to ``end``."""
        return await self._call(SQLStore.flow, group, start, end)

    async def close(self) -> None:
        """Close the store's connections: dispose of the engine it made from a URL (an engine it was
        given stays the caller's)."""
        if self._owns_engine:
            await self.engine.dispose()

    async def __aenter__(self) -> AsyncSQLStore:
        try:
            await self._sql_store()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
