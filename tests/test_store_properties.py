"""Random sequences of snapshots and overrides: the stores agree with a plain model of the rules, the
outbox replays to the memberships, and the history answers as-of questions like a replay does."""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store_helpers import catalog
from tagrules import Evaluator, MemoryStore, SQLStore, Tagger, TagStore

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
CUSTOMERS = ["a", "b", "c"]
TAGS = ["vip", "spend_mid", "key_account", "frequent"]
SNAPSHOTS = [
    {"spend": 2000.0, "orders": 4},
    {"spend": 200.0, "orders": 1},
    {"spend": 10.0, "orders": 0},
    {"spend": 1500.0, "orders": 1},
    {"spend": 600.0, "orders": 5},
]

operation = st.one_of(
    st.tuples(st.just("apply"), st.sampled_from(CUSTOMERS), st.sampled_from(range(len(SNAPSHOTS)))),
    st.tuples(
        st.sampled_from(["include", "exclude", "clear"]), st.sampled_from(CUSTOMERS), st.sampled_from(TAGS)
    ),
)


class Model:
    """What the stores should hold, worked out the simplest way."""

    def __init__(self) -> None:
        self.evaluator = Evaluator(catalog())
        self.computed: dict[str, set[str]] = {c: set() for c in CUSTOMERS}
        self.manual: dict[str, set[str]] = {c: set() for c in CUSTOMERS}
        self.excluded: dict[str, set[str]] = {c: set() for c in CUSTOMERS}

    def tags(self, customer: str) -> set[str]:
        return self.computed[customer] | self.manual[customer]

    def step(self, kind: str, customer: str, argument: Any, now: datetime.datetime) -> None:
        if kind == "apply":
            result = self.evaluator.evaluate(
                SNAPSHOTS[argument], now, self.manual[customer], suppressed=self.excluded[customer]
            )
            assigned = set(result.tags) - self.manual[customer]
            kept = {tag for tag in self.computed[customer] if tag in result.errors}
            self.computed[customer] = assigned | kept
        elif kind == "include":
            self.manual[customer].add(argument)
            self.computed[customer].discard(argument)
            self.excluded[customer].discard(argument)
        elif kind == "exclude":
            self.excluded[customer].add(argument)
            self.manual[customer].discard(argument)
            self.computed[customer].discard(argument)
        else:
            self.manual[customer].discard(argument)
            self.excluded[customer].discard(argument)


def perform(tagger: Tagger, kind: str, customer: str, argument: Any, now: datetime.datetime) -> None:
    if kind == "apply":
        tagger.apply(customer, SNAPSHOTS[argument], now=now)
    elif kind == "include":
        tagger.include(customer, argument, by="tester", reason="property", now=now)
    elif kind == "exclude":
        tagger.exclude(customer, argument, by="tester", reason="property", now=now)
    else:
        tagger.clear_override(customer, argument, now=now)


@contextmanager
def fresh(kind: str) -> Iterator[TagStore]:
    if kind == "memory":
        yield MemoryStore()
        return
    with tempfile.TemporaryDirectory() as directory:
        store = SQLStore(f"sqlite:///{Path(directory) / 'p.db'}")
        try:
            yield store
        finally:
            store.close()


class TestAgainstModel:
    @pytest.mark.parametrize("kind", ["memory", "sqlite"])
    @settings(max_examples=40)
    @given(operations=st.lists(operation, max_size=25))
    def test_store_equals_model_and_history_replays(
        self, kind: str, operations: list[tuple[str, str, Any]]
    ) -> None:
        """After any sequence, memberships equal the model's tags, the outbox replays to them, and the
        tags as of each step's time equal the model's tags after that step."""
        model = Model()
        seen: list[tuple[datetime.datetime, dict[str, set[str]]]] = []
        with fresh(kind) as store:
            tagger = Tagger(catalog(), store)
            for number, (kind_of_step, customer, argument) in enumerate(operations):
                now = T0 + datetime.timedelta(minutes=number)
                perform(tagger, kind_of_step, customer, argument, now)
                model.step(kind_of_step, customer, argument, now)
                seen.append((now, {c: model.tags(c) for c in CUSTOMERS}))
            replayed: dict[tuple[str, str], bool] = {}
            for event in store.pending_events(limit=100_000):
                assert replayed.get((event.customer_id, event.tag), False) == (event.change == "removed")
                replayed[event.customer_id, event.tag] = event.change == "added"
            for customer in CUSTOMERS:
                held = {m.tag for m in store.memberships(customer)}
                assert held == model.tags(customer)
                assert {m.tag for m in store.memberships(customer) if m.source == "manual"} == model.manual[
                    customer
                ]
                assert held == {tag for (c, tag), on in replayed.items() if c == customer and on}
            for moment, expected in seen:
                for customer in CUSTOMERS:
                    assert store.tags_as_of(customer, moment) == expected[customer]
