"""The change feed contract, over every store: positions, named consumers, at-least-once, purging,
the default consumer of pending_events/acknowledge, and runs without events."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy
from sqlalchemy.engine import URL

from store_helpers import catalog, drop_store, store, unique_prefix
from tagrules import Catalog, ChangeEvent, InvalidArgument, SQLStore, Tagger, TagStore

__all__ = ["store"]

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
BIG = Catalog(tags=[{"key": "big", "rule": "spend >= 100"}], schema={"spend": "float"})


def write(store: TagStore, customers: list[str], at: datetime.datetime = T0, on: bool = True) -> None:
    """One commit giving (or taking) the tag 'big' to each customer: one event per customer."""
    Tagger(BIG, store).apply_many([(c, {"spend": 150.0 if on else 1.0}) for c in customers], now=at)


def who(events: list[ChangeEvent]) -> list[str]:
    return [e.customer_id for e in events]


class TestConsumers:
    def test_positions_grow_in_feed_order(self, store: TagStore) -> None:
        """Events come by increasing position, each event's id being its position."""
        write(store, ["a", "b"])
        write(store, ["c"])
        events = store.events("email")
        assert who(events) == ["a", "b", "c"]
        positions = [e.position or 0 for e in events]
        assert positions == sorted(positions)
        assert len(set(positions)) == 3
        assert all(e.id == e.position for e in events)

    def test_a_new_consumer_starts_at_the_beginning_of_the_retained_feed(self, store: TagStore) -> None:
        """A consumer seen for the first time gets every event still retained, however old."""
        write(store, ["a", "b"])
        store.ack("email", store.events("email")[0].position or 0)
        assert store.purge_events() == 1  # 'a': the only consumer acknowledged it
        write(store, ["c"])
        assert who(store.events("sink")) == ["b", "c"]

    def test_consumers_are_independent(self, store: TagStore) -> None:
        """One consumer acknowledging never hides an event from another."""
        write(store, ["a", "b", "c"])
        email = store.events("email")
        assert who(store.events("sink")) == ["a", "b", "c"]
        store.ack("email", email[-1].position or 0)
        assert store.events("email") == []
        assert who(store.events("sink")) == ["a", "b", "c"]

    def test_delivery_is_at_least_once(self, store: TagStore) -> None:
        """The same events come again until they are acknowledged; the limit caps each read, and an
        acknowledgement moves the consumer on from there."""
        write(store, ["a", "b", "c"])
        first = store.events("email", limit=2)
        assert who(first) == ["a", "b"]
        assert store.events("email", limit=2) == first
        store.ack("email", first[0].position or 0)
        assert who(store.events("email", limit=2)) == ["b", "c"]
        store.ack("email", first[0].position or 0)  # repeated, and older ones, change nothing
        store.ack("email", 0)
        assert who(store.events("email")) == ["b", "c"]

    def test_an_acknowledgement_beyond_the_feed_is_refused(self, store: TagStore) -> None:
        """A position the feed has not given would skip events not yet written: refused."""
        write(store, ["a"])
        [event] = store.events("email")
        with pytest.raises(InvalidArgument, match="beyond the feed's last event"):
            store.ack("email", (event.position or 0) + 1)
        write(store, ["b"])
        assert who(store.events("email")) == ["a", "b"]

    def test_bad_names_limits_and_positions_are_refused(self, store: TagStore) -> None:
        """Consumer names are 1 to 64 characters of text; limits at least 1; positions at least 0."""
        for name in ("", "x" * 65, 7, "a\x00b"):
            with pytest.raises(InvalidArgument, match="consumer"):
                store.events(name)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="limit 0"):
            store.events("email", limit=0)
        with pytest.raises(InvalidArgument, match="position -1"):
            store.ack("email", -1)

    def test_forget_removes_the_customers_events_for_every_consumer(self, store: TagStore) -> None:
        """Erasing a customer takes its events out of the feed, whoever has not read them."""
        write(store, ["a", "b"])
        store.events("email")
        store.forget("a")
        assert who(store.events("email")) == who(store.events("sink")) == ["b"]


class TestPurge:
    def test_purge_keeps_what_a_consumer_has_not_acknowledged(self, store: TagStore) -> None:
        """Purging deletes only events every registered consumer acknowledged."""
        write(store, ["a", "b", "c"])
        email, sink = store.events("email"), store.events("sink")
        store.ack("email", email[2].position or 0)
        store.ack("sink", sink[0].position or 0)
        assert store.purge_events() == 1
        assert who(store.events("sink")) == ["b", "c"]
        assert store.events("email") == []
        assert who(store.events("late")) == ["b", "c"]

    def test_purge_before_a_time(self, store: TagStore) -> None:
        """With ``before``, only acknowledged events that happened before it go (naive is UTC)."""
        write(store, ["a"], at=T0)
        write(store, ["b"], at=T0 + datetime.timedelta(days=2))
        events = store.events("email")
        store.ack("email", events[-1].position or 0)
        assert store.purge_events(before=(T0 + datetime.timedelta(days=1)).replace(tzinfo=None)) == 1
        assert store.purge_events() == 1
        assert store.events("email") == []

    def test_with_no_consumer_everything_is_purged(self, store: TagStore) -> None:
        """No registered consumer holds anything back: every event (before ``before``) goes."""
        write(store, ["a", "b"])
        assert store.purge_events() == 2
        assert store.events("email") == []


class TestRegisteredConsumers:
    def test_consumers_are_listed_with_their_positions_and_pending_events(self, store: TagStore) -> None:
        """``consumers()`` lists every registered consumer by name: the position it acknowledged,
        the retained events after it (events written since included), and when it registered."""
        assert store.consumers() == []
        before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
        write(store, ["a", "b", "c"])
        email = store.events("email")
        store.ack("email", email[0].position or 0)
        store.ack("sink", 0)
        write(store, ["d"])
        found = store.consumers()
        assert [(c.name, c.position, c.pending) for c in found] == [
            ("email", email[0].position, 3),
            ("sink", 0, 4),
        ]
        after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
        assert all(before <= c.registered_at <= after for c in found)
        assert found[0].to_data() == {
            "consumer": "email",
            "position": email[0].position,
            "pending": 3,
            "registered_at": found[0].registered_at.isoformat().replace("+00:00", "Z"),
        }

    def test_a_dropped_consumer_no_longer_holds_events_back(self, store: TagStore) -> None:
        """Dropping a consumer that never acknowledged lets purging delete what the others did; its
        name read again starts at the beginning of what is retained; dropping twice says so."""
        write(store, ["a", "b"])
        email = store.events("email")
        store.events("gone")
        store.ack("email", email[-1].position or 0)
        assert store.purge_events() == 0
        assert store.drop_consumer("gone") is True
        assert store.drop_consumer("gone") is False
        assert [c.name for c in store.consumers()] == ["email"]
        assert store.purge_events() == 2
        write(store, ["c"])
        assert who(store.events("gone")) == ["c"]
        assert [c.name for c in store.consumers()] == ["email", "gone"]

    def test_bad_names_are_refused(self, store: TagStore) -> None:
        with pytest.raises(InvalidArgument, match="a consumer name is text of 1 to 64"):
            store.drop_consumer("")
        with pytest.raises(InvalidArgument, match="a consumer name is text of 1 to 64"):
            store.drop_consumer("x" * 65)


class TestDefaultConsumer:
    def test_pending_events_and_acknowledge_are_the_default_consumer(self, store: TagStore) -> None:
        """pending_events reads the 'default' consumer; acknowledge moves it and purges what every
        consumer acknowledged."""
        write(store, ["a", "b", "c"])
        pending = store.pending_events()
        assert pending == store.events("default")
        store.events("sink")  # registered, acknowledged nothing
        store.acknowledge(e.id for e in pending[:2] if e.id is not None)
        assert who(store.pending_events()) == ["c"]
        assert who(store.events("sink")) == ["a", "b", "c"]  # kept for it
        store.ack("sink", pending[1].position or 0)
        store.acknowledge([])  # purges what both acknowledged
        assert who(store.events("late")) == ["c"]

    def test_acknowledging_past_a_gap_delivers_again(self, store: TagStore) -> None:
        """An event not acknowledged stops the default consumer there: it and the ones after it come
        again (at least once, never lost)."""
        write(store, ["a", "b", "c"])
        pending = store.pending_events()
        store.acknowledge([pending[0].id or 0, pending[2].id or 0])
        assert who(store.pending_events()) == ["b", "c"]


class TestRunsWithoutEvents:
    def test_emit_events_false_writes_memberships_and_history_only(self, store: TagStore) -> None:
        """apply_many(emit_events=False) stores the tags and their history, no event, and the run
        record says so; a later run emits events again."""
        heard: list[object] = []
        tagger = Tagger(catalog(), store, listeners=[heard.append])
        report = tagger.apply_many([("a", {"spend": 2000.0, "orders": 4})], now=T0, emit_events=False)
        assert report.added == 4
        assert len(store.memberships("a")) == len(store.history("a")) == 4
        assert store.pending_events() == []
        assert heard == []
        [run] = store.runs()
        assert run.emit_events is False
        tagger.apply_many([("a", {"spend": 200.0, "orders": 1})], now=T0 + datetime.timedelta(days=1))
        assert [run.emit_events for run in store.runs()] == [False, True]
        assert {(e.tag, e.change) for e in store.pending_events()} == {
            ("spend_mid", "added"),
            ("spend_high", "removed"),
            ("frequent", "removed"),
            ("vip", "removed"),
            ("per_order_high", "removed"),
        }

    def test_retired_tags_close_without_events(self, store: TagStore) -> None:
        """The retired memberships a run without events closes emit no event either."""
        Tagger(catalog(), store).apply_many([("a", {"spend": 200.0, "orders": 1})], now=T0, emit_events=False)
        later = T0 + datetime.timedelta(days=1)
        Tagger(catalog(spend_mid="retired"), store).apply_many([], now=later, emit_events=False)
        assert store.tags("a") == frozenset()
        assert store.history("a")[0].reason == "retired"
        assert store.pending_events() == []


# -- server databases: transactions committing out of id order ----------------------------------


@pytest.fixture(params=["postgresql", "mysql"])
def server_store(request: pytest.FixtureRequest) -> Iterator[tuple[sqlalchemy.Engine, SQLStore]]:
    url: URL = request.getfixturevalue({"postgresql": "postgres_url", "mysql": "mysql_url"}[request.param])
    prefix = unique_prefix()
    engine = sqlalchemy.create_engine(url)
    store = SQLStore(engine, prefix=prefix, migrate=True)
    try:
        yield engine, store
    finally:
        store.close()
        engine.dispose()
        drop_store(url, prefix)


class TestLateCommits:
    def test_an_event_committed_after_a_later_id_is_still_delivered(
        self, server_store: tuple[sqlalchemy.Engine, SQLStore]
    ) -> None:
        """A transaction that took the lower outbox id but commits last is read at a higher position
        than everything acknowledged before it, so no consumer skips it."""
        engine, store = server_store
        tagger = Tagger(BIG, store)
        with engine.connect() as connection:
            tagger.apply("early", {"spend": 150.0}, now=T0, connection=connection)  # the lower id
            tagger.apply("late", {"spend": 150.0}, now=T0)  # a higher id, committed first
            [first] = store.events("email")
            assert first.customer_id == "late"
            store.ack("email", first.position or 0)
            connection.commit()
        [second] = store.events("email")
        assert second.customer_id == "early"
        assert (second.position or 0) > (first.position or 0)
        assert who(store.events("sink")) == ["late", "early"]

    def test_concurrent_writers_and_a_draining_consumer(
        self, server_store: tuple[sqlalchemy.Engine, SQLStore]
    ) -> None:
        """Writers committing in parallel while a consumer drains and acknowledges: every event is
        delivered, once, by increasing position."""
        _, store = server_store
        writers, each = 4, 15
        done = threading.Event()
        failures: list[BaseException] = []

        def writer(number: int) -> None:
            try:
                for index in range(each):
                    write(store, [f"w{number}-{index}"])
            except BaseException as error:  # reported by the test
                failures.append(error)

        delivered: list[tuple[int, str]] = []

        def drain() -> None:
            while True:
                finished = done.is_set()
                events = store.events("email", limit=7)
                for event in events:
                    delivered.append((event.position or 0, event.customer_id))
                if events:
                    store.ack("email", events[-1].position or 0)
                elif finished:
                    return

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
        consumer = threading.Thread(target=drain)
        consumer.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        consumer.join()
        assert failures == []
        positions = [position for position, _ in delivered]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        assert sorted(customer for _, customer in delivered) == sorted(
            f"w{n}-{i}" for n in range(writers) for i in range(each)
        )
