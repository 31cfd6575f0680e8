"""The write paths agree: a PostgreSQL store written with ``COPY``, chunks read while the last one
commits, holds what one written the earlier way (an ``INSERT`` of unnested arrays, one chunk after the
other) holds: memberships, history, as-of answers and events, after any sequence of changes; and a
run stopped after a chunk leaves the chunks after it unwritten."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from store_helpers import catalog, drop_store, unique_prefix
from tagrules import SQLStore, Tagger

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
CUSTOMERS = ["a", "b", "c", "d"]
TAGS = ["vip", "spend_mid", "key_account", "frequent"]
SNAPSHOTS = [
    {"spend": 2000.0, "orders": 4},
    {"spend": 200.0, "orders": 1},
    {"spend": 10.0, "orders": 0},
    {"spend": 1500.0, "orders": 1},
    {"spend": 600.0, "orders": 5},
]

batch = st.tuples(
    st.just("batch"),
    st.lists(st.tuples(st.sampled_from(CUSTOMERS), st.sampled_from(range(len(SNAPSHOTS)))), min_size=1),
    st.integers(min_value=1, max_value=4),
)
override = st.tuples(
    st.sampled_from(["include", "exclude", "clear"]), st.sampled_from(CUSTOMERS), st.sampled_from(TAGS)
)
operation = st.one_of(batch, override, st.tuples(st.just("retire"), st.just(""), st.just("")))

_examples = itertools.count()


@pytest.fixture(scope="module")
def stores(postgres_url: URL) -> Iterator[tuple[SQLStore, SQLStore]]:
    """Two stores in one PostgreSQL database: every insert a ``COPY``, and every insert an array INSERT."""
    prefixes = [unique_prefix(), unique_prefix()]
    copying, inserting = (SQLStore(postgres_url, prefix=prefix, migrate=True) for prefix in prefixes)
    copying._copy_from = 1
    inserting._copy_from = None
    try:
        yield copying, inserting
    finally:
        for store, prefix in zip((copying, inserting), prefixes, strict=True):
            store.close()
            drop_store(postgres_url, prefix)


def perform(tagger: Tagger, step: tuple[Any, ...], ids: dict[str, str], now: datetime.datetime) -> None:
    kind, first, second = step
    if kind == "batch":
        items = [(ids[customer], SNAPSHOTS[snapshot]) for customer, snapshot in first]
        tagger.apply_many(items, now=now, chunk_size=second)
    elif kind == "retire":
        Tagger(catalog(vip="retired"), tagger.store).retire(now=now)
    elif kind == "include":
        tagger.include(ids[first], second, by="tester", reason="property", now=now)
    elif kind == "exclude":
        tagger.exclude(ids[first], second, by="tester", reason="property", now=now)
    else:
        tagger.clear_override(ids[first], second, now=now)


def contents(store: SQLStore, ids: list[str], moments: list[datetime.datetime]) -> dict[str, Any]:
    events = [event for event in store.pending_events(limit=1_000_000) if event.customer_id in ids]
    return {
        "memberships": [store.memberships(customer_id) for customer_id in ids],
        "history": [store.history(customer_id) for customer_id in ids],
        "as_of": [[store.tags_as_of(customer_id, moment) for customer_id in ids] for moment in moments],
        "members_as_of": [[store.members(tag, moment) for tag in TAGS] for moment in moments],
        "events": {
            customer_id: [(e.tag, e.change, e.at, e.reason) for e in events if e.customer_id == customer_id]
            for customer_id in ids
        },
    }


class TestWritePathsAgree:
    @settings(max_examples=25)
    @given(operations=st.lists(operation, min_size=1, max_size=12))
    def test_copy_and_array_inserts_write_the_same_stores(
        self, stores: tuple[SQLStore, SQLStore], operations: list[tuple[Any, ...]]
    ) -> None:
        """After any sequence of batches, overrides and retirements, the store written with ``COPY``
        holds the same memberships, history periods, as-of tags and members, and
        events (in order, per customer) as the store written with the array INSERT, chunk by chunk."""
        example = next(_examples)
        ids = {customer: f"e{example}-{customer}" for customer in CUSTOMERS}
        moments: list[datetime.datetime] = []
        for store in stores:
            tagger = Tagger(catalog(), store)
            for number, step in enumerate(operations):
                now = T0 + datetime.timedelta(minutes=number)
                perform(tagger, step, ids, now)
                if store is stores[0]:
                    moments.append(now)
        ordered = list(ids.values())
        copied, inserted = (contents(store, ordered, moments) for store in stores)
        # members() answers over every customer of the store: compare those of this example only
        for found in (copied, inserted):
            found["members_as_of"] = [
                [[c for c in members if c in ordered] for members in at_moment]
                for at_moment in found["members_as_of"]
            ]
        assert copied == inserted
