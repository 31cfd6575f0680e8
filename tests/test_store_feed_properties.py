"""Random interleavings of writes, reads, acknowledgements and purges by several consumers: every
store's change feed answers as a plain model of the contract does."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from store_helpers import fresh_store
from tagrules import Catalog, MemoryStore, SQLStore, Tagger, TagStore

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
BIG = Catalog(tags=[{"key": "big", "rule": "spend >= 100"}], schema={"spend": "float"})
CUSTOMERS = ["a", "b", "c", "d"]
CONSUMERS = ["email", "sink", "audit"]

step = st.one_of(
    st.tuples(st.just("write"), st.lists(st.sampled_from(CUSTOMERS), unique=True, min_size=1), st.booleans()),
    st.tuples(st.just("events"), st.sampled_from(CONSUMERS), st.integers(1, 4)),
    st.tuples(st.just("ack"), st.sampled_from(CONSUMERS), st.integers(0, 20)),
    st.tuples(st.just("purge"), st.none() | st.integers(0, 30), st.none()),
    st.tuples(st.just("pending"), st.integers(1, 4), st.none()),
    st.tuples(st.just("acknowledge"), st.lists(st.booleans(), max_size=4), st.none()),
)

Key = tuple[str, str, str, datetime.datetime]


@dataclass
class Model:
    """The feed as the contract describes it: events numbered in commit order, a cursor per
    registered consumer, purging below the lowest cursor."""

    held: set[str] = field(default_factory=set)
    retained: list[tuple[int, Key]] = field(default_factory=list)
    written: int = 0
    cursors: dict[str, int] = field(default_factory=dict)

    def write(self, customers: list[str], on: bool, at: datetime.datetime) -> None:
        for customer in customers:
            if (customer in self.held) != on:
                self.written += 1
                self.retained.append((self.written, (customer, "big", "added" if on else "removed", at)))
                (self.held.add if on else self.held.discard)(customer)

    def events(self, consumer: str, limit: int) -> list[tuple[int, Key]]:
        after = self.cursors.setdefault(consumer, 0)
        return [(number, key) for number, key in self.retained if number > after][:limit]

    def ack(self, consumer: str, number: int) -> None:
        self.cursors[consumer] = max(self.cursors.get(consumer, 0), number)

    def purge(self, before: datetime.datetime | None) -> int:
        upto = min(self.cursors.values(), default=None)
        kept = [
            (number, key)
            for number, key in self.retained
            if not ((upto is None or number <= upto) and (before is None or key[3] < before))
        ]
        gone = len(self.retained) - len(kept)
        self.retained = kept
        return gone


def _clear(store: SQLStore) -> None:
    t = store.tables
    # a test resets its store between examples
    with store._engine.begin() as connection:
        for table in (t.outbox, t.consumers, t.customers, t.memberships, t.history, t.runs, t.run_tags):
            connection.execute(sqlalchemy.delete(table))


@pytest.fixture(params=["memory", "sqlite", "postgresql", "mysql"])
def kind_and_store(request: pytest.FixtureRequest) -> Iterator[tuple[str, TagStore]]:
    with fresh_store(request.param, request) as made:
        yield request.param, made


class TestFeedAgainstModel:
    @settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=st.lists(step, max_size=30))
    @example(  # the default consumer acknowledging past a gap, then a purge with three consumers
        steps=[
            ("write", ["a", "b", "c"], True),
            ("pending", 3, None),
            ("acknowledge", [True, False, True], None),
            ("events", "email", 2),
            ("ack", "email", 1),
            ("write", ["a"], False),
            ("purge", None, None),
            ("events", "sink", 4),
        ]
    )
    def test_feed_equals_model(
        self, kind_and_store: tuple[str, TagStore], steps: list[tuple[str, Any, Any]]
    ) -> None:
        """Each read returns the model's next events for that consumer, at positions that only grow
        and never change; purges delete as many events as the model's."""
        kind, store = kind_and_store
        if kind == "memory":
            store = MemoryStore()
        else:
            assert isinstance(store, SQLStore)
            _clear(store)
        model = Model()
        positions: dict[int, int] = {}  # the model's event number -> its position in the store
        seen: dict[str, list[int]] = {}  # consumer -> numbers of the events it was given
        last_pending: list[int] = []
        tagger = Tagger(BIG, store)
        for index, (kind_of_step, first, second) in enumerate(steps):
            at = T0 + datetime.timedelta(minutes=index)
            if kind_of_step == "write":
                # in id order: the memory store writes a commit's changes as given, SQL stores by id
                first = sorted(first)
                tagger.apply_many([(c, {"spend": 150.0 if second else 1.0}) for c in first], now=at)
                model.write(first, second, at)
            elif kind_of_step in ("events", "pending"):
                consumer, limit = (first, second) if kind_of_step == "events" else ("default", first)
                got = (
                    store.events(consumer, limit) if kind_of_step == "events" else store.pending_events(limit)
                )
                expected = model.events(consumer, limit)
                assert [(e.customer_id, e.tag, e.change, e.at) for e in got] == [key for _, key in expected]
                for event, (number, _) in zip(got, expected, strict=True):
                    assert event.position is not None
                    assert positions.setdefault(number, event.position) == event.position
                assert sorted(positions.values()) == [positions[n] for n in sorted(positions)]
                seen.setdefault(consumer, []).extend(number for number, _ in expected)
                if kind_of_step == "pending":
                    last_pending = [number for number, _ in expected]
            elif kind_of_step == "ack":
                given_to = seen.get(first, [])
                number = given_to[second % len(given_to)] if given_to else 0
                store.ack(first, positions.get(number, 0))
                model.ack(first, number)
            elif kind_of_step == "purge":
                before = None if first is None else T0 + datetime.timedelta(minutes=first)
                assert store.purge_events(before=before) == model.purge(before)
            else:
                chosen = [n for n, keep in zip(last_pending, first, strict=False) if keep]
                store.acknowledge(positions[n] for n in chosen)
                after = model.cursors.setdefault("default", 0)
                for number, _ in [(n, k) for n, k in model.retained if n > after]:
                    if number not in chosen:
                        break
                    model.ack("default", number)
                model.purge(None)
        for consumer in [*CONSUMERS, "default", "new"]:
            assert [(e.customer_id, e.change) for e in store.events(consumer, 1000)] == [
                key[::2][:2] for _, key in model.events(consumer, 1000)
            ]
