"""The asyncio API: AsyncSQLStore and AsyncTagger on aiosqlite, asyncpg and asyncmy.

The store contract runs over the asyncio stores in test_stores.py; these tests pin what only the
asyncio API has: its URLs and engines, awaited listeners, async iterables, the caller's
transaction, many tasks at once, and the timeouts of its drivers.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from store_helpers import ASYNC_DRIVERS, catalog, drop_store, unique_prefix
from tagrules import (
    AsyncSQLStore,
    AsyncTagger,
    ChangeEvent,
    ConcurrentUpdate,
    InvalidArgument,
    SQLStore,
    StoreError,
)
from tagrules.stores import CustomerChange
from tagrules.stores.async_sql import Turns
from tcp_proxy import PausableProxy, proxy_to

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
T1 = T0 + datetime.timedelta(days=1)
MID = {"spend": 200.0, "orders": 1}
RICH = {"spend": 2000.0, "orders": 4}
FAST = {"connect_timeout": "2", "statement_timeout": "1", "read_timeout": "3", "lock_timeout": "1"}


@pytest.fixture
def async_url(database_url: URL) -> Iterator[URL]:
    """Each database's asyncio URL, with a store set up under a prefix of its own (dropped after)."""
    prefix = unique_prefix()
    SQLStore(database_url, prefix=prefix, migrate=True).close()
    try:
        yield database_url.set(drivername=ASYNC_DRIVERS[database_url.get_backend_name()], query={"p": prefix})
    finally:
        drop_store(database_url, prefix)


def prefix_of(url: URL) -> tuple[URL, str]:
    prefix = url.query["p"]
    assert isinstance(prefix, str)
    return url.set(query={}), prefix


class TestURLsAndEngines:
    def test_a_sync_driver_is_refused_with_the_asyncio_one_named(self) -> None:
        """AsyncSQLStore refuses a URL of a synchronous driver, naming the asyncio driver to use."""
        with pytest.raises(StoreError, match=r"psycopg is not an asyncio driver; use postgresql\+asyncpg"):
            AsyncSQLStore("postgresql+psycopg://u@localhost/db")
        with pytest.raises(StoreError, match=r"use sqlite\+aiosqlite"):
            AsyncSQLStore("sqlite:///tags.db")

    def test_sqlstore_refuses_an_asyncio_driver(self) -> None:
        """SQLStore given an asyncio URL says to use AsyncSQLStore."""
        with pytest.raises(StoreError, match="asyncpg is an asyncio driver; use AsyncSQLStore"):
            SQLStore("postgresql+asyncpg://u@localhost/db")

    def test_a_sync_engine_is_refused(self) -> None:
        """AsyncSQLStore given a synchronous Engine says which store takes it."""
        engine = sqlalchemy.create_engine("sqlite://")
        with pytest.raises(StoreError, match="needs an AsyncEngine"):
            AsyncSQLStore(engine)  # type: ignore[arg-type]
        engine.dispose()

    def test_an_unreachable_database_is_a_store_error_on_entering(self) -> None:
        """A server that does not answer: StoreError when the store is entered, naming the store."""

        async def main() -> None:
            async with AsyncSQLStore("postgresql+asyncpg://u@127.0.0.1:1/db?connect_timeout=2"):
                pass

        with pytest.raises(StoreError, match=r"postgresql\+asyncpg://u@127.0.0.1:1/db.*reachable"):
            asyncio.run(main())

    def test_a_given_engine_is_used_and_left_open(self, async_url: URL) -> None:
        """AsyncSQLStore(engine) uses the application's AsyncEngine and never disposes of it."""
        url, prefix = prefix_of(async_url)

        async def main() -> frozenset[str]:
            engine = create_async_engine(url)
            try:
                async with AsyncSQLStore(engine, prefix=prefix) as store:
                    await AsyncTagger(catalog(), store).apply("a", MID, now=T0)
                async with engine.connect() as connection:
                    assert (await connection.execute(sqlalchemy.text("SELECT 1"))).scalar() == 1
                async with AsyncSQLStore(engine, prefix=prefix) as again:
                    return await again.tags("a")
            finally:
                await engine.dispose()

        assert asyncio.run(main()) == {"spend_mid"}


class TestListenersAndItems:
    def test_async_listeners_are_awaited_and_failures_counted(
        self, async_url: URL, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A coroutine-function listener is awaited after the commit; one that raises is logged and
        counted, and the others still hear every event."""
        url, prefix = prefix_of(async_url)
        heard: list[tuple[str, list[str]]] = []

        async def main() -> int:
            async with AsyncSQLStore(url, prefix=prefix) as store:

                async def record(event: ChangeEvent) -> None:
                    await asyncio.sleep(0)
                    heard.append((event.tag, sorted(await store.tags(event.customer_id))))

                async def broken(event: ChangeEvent) -> None:
                    raise RuntimeError("mail server down")

                tagger = AsyncTagger(catalog(), store, listeners=[broken, record])
                report = await tagger.apply_many([("a", MID)], now=T0)
                return report.listener_errors

        with caplog.at_level(logging.ERROR, logger="tagrules.listeners"):
            assert asyncio.run(main()) == 1
        assert heard == [("spend_mid", ["spend_mid"])]
        assert "mail server down" in caplog.text

    def test_apply_many_takes_an_async_iterable(self, async_url: URL) -> None:
        """apply_many reads an async generator's items as it goes, in chunks."""
        url, prefix = prefix_of(async_url)

        async def items() -> AsyncIterator[tuple[str, dict[str, float]]]:
            for number in range(25):
                await asyncio.sleep(0)
                yield f"c{number}", RICH if number % 5 == 0 else MID

        async def main() -> tuple[int, list[str], list[int]]:
            done: list[int] = []
            async with AsyncSQLStore(url, prefix=prefix) as store:
                tagger = AsyncTagger(catalog(), store)
                report = await tagger.apply_many(items(), now=T0, chunk_size=10, progress=done.append)
                return report.customers, await store.members("vip"), done

        assert asyncio.run(main()) == (25, ["c0", "c10", "c15", "c20", "c5"], [10, 20, 25])


class TestTurns:
    def test_waiters_get_turns_in_order_and_a_holder_goes_on(self) -> None:
        """Turns go to the waiting tasks in the order they came, never back to the task that just
        gave one up; a task holding a turn takes another without waiting."""
        order: list[str] = []

        async def main() -> None:
            turns = Turns(1)

            async def calls(name: str) -> None:
                for _ in range(2):
                    async with turns.turn(), turns.turn():
                        order.append(name)
                        await asyncio.sleep(0)

            await asyncio.gather(calls("a"), calls("b"), calls("c"))

        asyncio.run(main())
        assert order == ["a", "b", "c", "a", "b", "c"]

    def test_a_cancelled_waiter_passes_its_turn_on(self) -> None:
        """A task cancelled while it waits leaves the queue; the turn goes to the next task."""

        async def main() -> tuple[list[str], bool]:
            turns = Turns(1)
            got: list[str] = []

            async def hold() -> None:
                async with turns.turn():
                    await asyncio.sleep(0.05)

            async def take(name: str) -> None:
                async with turns.turn():
                    got.append(name)

            holder = asyncio.create_task(hold())
            await asyncio.sleep(0)
            doomed = asyncio.create_task(take("doomed"))
            later = asyncio.create_task(take("later"))
            await asyncio.sleep(0)
            doomed.cancel()
            await asyncio.gather(holder, later)
            return got, doomed.cancelled()

        assert asyncio.run(main()) == (["later"], True)


class TestCallersTransaction:
    def test_a_rollback_leaves_nothing_and_listeners_wait_for_the_commit(self, async_url: URL) -> None:
        """apply(..., connection=) writes in the caller's AsyncConnection: a rollback leaves no
        membership, history or event, and listeners hear a committed change only at after_commit."""
        url, prefix = prefix_of(async_url)
        heard: list[str] = []

        async def main() -> tuple[list[str], list[str], int]:
            engine = create_async_engine(url)
            try:
                async with AsyncSQLStore(engine, prefix=prefix) as store:
                    tagger = AsyncTagger(catalog(), store, listeners=[lambda e: heard.append(e.customer_id)])
                    async with engine.connect() as connection:
                        await tagger.apply("gone", MID, now=T0, connection=connection)
                        await connection.rollback()
                        await tagger.apply("kept", MID, now=T0, connection=connection)
                        with pytest.raises(InvalidArgument, match="still open"):
                            await tagger.after_commit(connection)
                        assert heard == []
                        await connection.commit()
                        await tagger.after_commit(connection)
                    gone = await store.history("gone")
                    assert gone == []
                    events = await store.pending_events()
                    return await store.members("spend_mid"), [e.customer_id for e in events], len(gone)
            finally:
                await engine.dispose()

        assert asyncio.run(main()) == (["kept"], ["kept"], 0)
        assert heard == ["kept"]


@pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)
class TestManyTasks:
    def test_fifty_tasks_lose_no_update(self, async_url: URL) -> None:
        """Fifty tasks of one tagger applying to the same five customers at once: each customer holds
        what its last applied snapshot says, and its events alternate added/removed."""
        url, prefix = prefix_of(async_url)

        async def main() -> None:
            async with AsyncSQLStore(url, prefix=prefix) as store:
                tagger = AsyncTagger(catalog(), store)
                moments = [T0 + datetime.timedelta(seconds=number) for number in range(50)]
                diffs = await asyncio.gather(
                    *(
                        tagger.apply(f"c{number % 5}", RICH if number % 2 else MID, now=moment)
                        for number, moment in enumerate(moments)
                    ),
                    return_exceptions=True,
                )
                assert any(not isinstance(diff, BaseException) for diff in diffs)
                for customer in range(5):
                    events = [
                        e for e in await store.pending_events(10_000) if e.customer_id == f"c{customer}"
                    ]
                    by_tag: dict[str, list[str]] = {}
                    for event in events:
                        by_tag.setdefault(event.tag, []).append(event.change)
                    held = await store.tags(f"c{customer}")
                    for tag, changes in by_tag.items():
                        assert changes == (["added", "removed"] * len(changes))[: len(changes)]
                        assert (tag in held) == (changes[-1] == "added")

        asyncio.run(main())


@pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)
class TestTimeouts:
    def test_the_lock_timeout_of_the_url_holds(self, async_url: URL, database_url: URL) -> None:
        """?lock_timeout= reaches the asyncio driver's sessions: a commit waiting on a row another
        transaction holds gives up after it, as ConcurrentUpdate (safe to run again)."""
        url, prefix = prefix_of(async_url)
        with SQLStore(database_url, prefix=prefix) as sync_store:
            sync_store.commit([CustomerChange("a", 0, T0)])
            engine = sqlalchemy.create_engine(database_url)
            try:
                with engine.begin() as holder:
                    holder.execute(sqlalchemy.text(f"UPDATE {prefix}customers SET version = version + 1"))

                    async def main() -> None:
                        async with AsyncSQLStore(
                            url.update_query_dict({"lock_timeout": "1"}), prefix=prefix
                        ) as store:
                            await store.commit([CustomerChange("a", 1, T1)])

                    with pytest.raises(ConcurrentUpdate, match="write changes"):
                        asyncio.run(main())
            finally:
                engine.dispose()

    def test_a_server_that_stops_answering_ends_in_one_line(self, async_url: URL, database_url: URL) -> None:
        """With the server's answers held back (a paused proxy), a read fails within ?read_timeout=
        with one StoreError line, and once the server answers again the store works."""
        url, prefix = prefix_of(async_url)

        async def main(proxy: PausableProxy) -> None:
            async with AsyncSQLStore(proxy.url(url, **FAST), prefix=prefix) as store:
                tagger = AsyncTagger(catalog(), store)
                await tagger.apply("c", MID, now=T0)
                proxy.pause()
                started = time.monotonic()
                with pytest.raises(StoreError, match="reachable") as raised:
                    await store.memberships("c")
                assert time.monotonic() - started < 30
                assert "\n" not in str(raised.value)
                proxy.resume()
                assert await store.tags("c") == {"spend_mid"}

        with proxy_to(database_url) as proxy:
            asyncio.run(main(proxy))
