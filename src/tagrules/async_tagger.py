"""The tagger for asyncio services: :class:`~tagrules.Tagger` over an :class:`~tagrules.AsyncSQLStore`.

:class:`AsyncTagger` runs the tagger's own code (its chunks, its optimistic concurrency with
retries, its run records and listeners) in the store's greenlet bridge, so that the database waits
and the pauses between retries are awaits, and each call's semantics are exactly the tagger's.
Evaluation stays synchronous: it is CPU work of microseconds per customer.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, final

from tagrules.catalog import Catalog
from tagrules.errors import InvalidArgument
from tagrules.evaluation import Evaluator, TagDiff
from tagrules.stores._base import CatalogVersion
from tagrules.stores.async_sql import AsyncSQLStore, pause, pulled, settle, sync_connection
from tagrules.tagger import DEFAULT_CHUNK_SIZE, ApplyReport, EvaluateItem, Listener, Tagger

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["AsyncTagger"]


@final
class AsyncTagger:
    """Evaluates a catalog on customers and keeps their tags in an :class:`~tagrules.AsyncSQLStore`.

    Every method is :class:`~tagrules.Tagger`'s, awaited, with the same arguments, results, errors and
    guarantees: a concurrent writer that wins the race makes the call read again and work its change
    out anew (no lost update, no event twice), ``apply_many`` writes one transaction per chunk and
    records its run, single ``apply`` calls add up in the day's run record, and listeners hear each
    event after its commit. Many tasks may share one tagger.

    Args:
        catalog: the catalog whose active tags are evaluated.
        store: where the tags are kept.
        listeners: called with each :class:`~tagrules.ChangeEvent` after its change is committed; a
            listener that is a coroutine function is awaited.
        evaluator: the evaluator to use (default: ``Evaluator(catalog)``, compiled).

    Examples:
        >>> import asyncio, tempfile, pathlib
        >>> from tagrules import AsyncSQLStore, Catalog
        >>> catalog = Catalog(tags=[{"key": "big", "rule": "spend >= 100"}], schema={"spend": "float"})
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tags.db"
        >>> async def main() -> list[str]:
        ...     async with AsyncSQLStore(f"sqlite+aiosqlite:///{path}") as store:
        ...         tagger = AsyncTagger(catalog, store)
        ...         diff = await tagger.apply("c1", {"spend": 150.0})
        ...         await tagger.flush()
        ...         return sorted(diff.added)
        >>> asyncio.run(main())
        ['big']
    """

    def __init__(
        self,
        catalog: Catalog,
        store: AsyncSQLStore,
        *,
        listeners: Iterable[Listener] = (),
        evaluator: Evaluator | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.listeners: list[Listener] = list(listeners)
        self.evaluator = evaluator if evaluator is not None else Evaluator(catalog)
        self._tagger: Tagger | None = None

    async def _sync(self) -> Tagger:
        if self._tagger is None:
            sql = await self.store._sql_store()
            if self._tagger is None:  # another task may have made it while this one awaited
                tagger = Tagger(self.catalog, sql, evaluator=self.evaluator)
                tagger.listeners = self.listeners  # one list: a listener added later is heard
                tagger._pause = pause
                tagger._settle = settle
                self._tagger = tagger
        return self._tagger

    async def apply(
        self,
        customer_id: str,
        snapshot: Mapping[str, Any] | Any,
        now: datetime.datetime | None = None,
        *,
        connection: AsyncConnection | None = None,
    ) -> TagDiff:
        """Evaluate one customer's snapshot and store the change atomically (:meth:`Tagger.apply
        <tagrules.Tagger.apply>`); with ``connection``, inside that open transaction of the caller's,
        whose events the listeners hear after :meth:`after_commit`."""
        tagger = await self._sync()
        return await self.store._run(
            tagger.apply, customer_id, snapshot, now, connection=sync_connection(connection)
        )

    async def apply_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any] | Any]]
        | AsyncIterable[tuple[str, Mapping[str, Any] | Any]],
        now: datetime.datetime | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        progress: Callable[[int], None] | None = None,
        evaluate: EvaluateItem | None = None,
        connection: AsyncConnection | None = None,
        emit_events: bool = True,
    ) -> ApplyReport:
        """Evaluate and store a stream of ``(customer_id, snapshot)`` pairs, one transaction per chunk
        (:meth:`Tagger.apply_many <tagrules.Tagger.apply_many>`); ``items`` may be an async iterable
        too (an async generator reading a queue or a cursor)."""
        tagger = await self._sync()
        stream = pulled(items) if isinstance(items, AsyncIterable) else items
        return await self.store._run(
            tagger.apply_many,
            stream,
            now,
            chunk_size,
            progress=progress,
            evaluate=evaluate,
            connection=sync_connection(connection),
            emit_events=emit_events,
        )

    async def include(
        self,
        customer_id: str,
        tag: str,
        *,
        by: str,
        reason: str,
        now: datetime.datetime | None = None,
        allow_unknown: bool = False,
    ) -> None:
        """Give the customer ``tag`` by a person's decision (:meth:`Tagger.include
        <tagrules.Tagger.include>`)."""
        tagger = await self._sync()
        await self.store._run(
            tagger.include, customer_id, tag, by=by, reason=reason, now=now, allow_unknown=allow_unknown
        )

    async def exclude(
        self,
        customer_id: str,
        tag: str,
        *,
        by: str,
        reason: str,
        now: datetime.datetime | None = None,
        allow_unknown: bool = False,
    ) -> None:
        """Keep ``tag`` away from the customer by a person's decision (:meth:`Tagger.exclude
        <tagrules.Tagger.exclude>`)."""
        tagger = await self._sync()
        await self.store._run(
            tagger.exclude, customer_id, tag, by=by, reason=reason, now=now, allow_unknown=allow_unknown
        )

    async def clear_override(
        self, customer_id: str, tag: str, *, now: datetime.datetime | None = None
    ) -> None:
        """Remove a person's decision about ``tag`` (:meth:`Tagger.clear_override
        <tagrules.Tagger.clear_override>`)."""
        tagger = await self._sync()
        await self.store._run(tagger.clear_override, customer_id, tag, now=now)

    async def forget(self, customer_id: str) -> None:
        """Erase the customer from the store: memberships, history, overrides and pending events
        (:meth:`SQLStore.forget <tagrules.SQLStore.forget>`)."""
        await self.store.forget(customer_id)

    async def retire(
        self, now: datetime.datetime | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> int:
        """Close every computed membership of a tag that is not active in the catalog; return how many
        customers changed (:meth:`Tagger.retire <tagrules.Tagger.retire>`)."""
        tagger = await self._sync()
        return await self.store._run(tagger.retire, now, chunk_size=chunk_size)

    async def publish(
        self, catalog: Catalog | None = None, *, by: str, note: str = "", now: datetime.datetime | None = None
    ) -> CatalogVersion:
        """Record a catalog's version in the store (:meth:`Tagger.publish <tagrules.Tagger.publish>`)."""
        tagger = await self._sync()
        return await self.store._run(tagger.publish, catalog, by=by, note=note, now=now)

    async def due(self, now: datetime.datetime | None = None) -> list[str]:
        """The customers whose tags time alone has changed by ``now`` (:meth:`Tagger.due
        <tagrules.Tagger.due>`)."""
        tagger = await self._sync()
        return await self.store._run(tagger.due, now)

    async def after_commit(self, connection: AsyncConnection) -> int:
        """Hand the events written through ``connection`` to the listeners once the caller committed
        (:meth:`Tagger.after_commit <tagrules.Tagger.after_commit>`); return how many listener calls
        raised.

        Raises:
            InvalidArgument: the connection's transaction is still open (commit it first).
        """
        synchronous = connection.sync_connection
        if synchronous is None:
            raise InvalidArgument("after_commit: the connection was never started (use it first)")
        tagger = await self._sync()
        return await self.store._run(tagger.after_commit, synchronous)

    async def flush(self) -> None:
        """Add the held counts of single-customer :meth:`apply` calls to the day's run record now
        (:meth:`Tagger.flush <tagrules.Tagger.flush>`): call it before the service stops."""
        if self._tagger is not None:
            await self.store._run(self._tagger.flush)
