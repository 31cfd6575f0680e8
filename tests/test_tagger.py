"""The Tagger's own behaviour: reports, progress, chunking, listeners, retries."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Collection, Sequence

import pytest

from store_helpers import catalog
from tagrules import (
    ChangeEvent,
    ConcurrentUpdate,
    InvalidArgument,
    MemoryStore,
    StoreError,
    TagCounts,
    Tagger,
)
from tagrules.stores import CustomerChange, CustomerState

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
RICH = {"spend": 2000.0, "orders": 4}
MID = {"spend": 200.0, "orders": 1}
BROKEN = {"spend": 200.0, "orders": 0}


class Racing:
    """A store whose commits fail a given number of times first, as if another writer won the race."""

    def __init__(self, failures: int) -> None:
        self.inner = MemoryStore()
        self.failures = failures
        self.loads = 0

    def load(self, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        self.loads += 1
        return self.inner.load(customer_ids)

    def commit(self, changes: Sequence[CustomerChange]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConcurrentUpdate("another writer")
        self.inner.commit(changes)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class TestReport:
    def test_counts_per_tag(self) -> None:
        """The report counts customers and, per tag, members, added, removed and errors."""
        tagger = Tagger(catalog(), MemoryStore())
        tagger.apply_many([("a", RICH), ("b", MID)], now=T0)
        report = tagger.apply_many([("a", MID), ("b", MID), ("c", BROKEN)], now=T0)
        assert report.customers == 3
        assert report.tags["spend_mid"] == TagCounts(members=3, added=2, removed=0, errors=0)
        assert report.tags["vip"] == TagCounts(members=0, added=0, removed=1, errors=0)
        assert report.tags["per_order_high"].errors == 1
        assert report.tags["key_account"] == TagCounts()
        assert (report.added, report.removed, report.errors) == (2, 4, 1)

    def test_progress_after_each_chunk(self) -> None:
        """progress is called with the running count after each chunk."""
        seen: list[int] = []
        items = [(f"c{n}", MID) for n in range(5)]
        Tagger(catalog(), MemoryStore()).apply_many(items, now=T0, chunk_size=2, progress=seen.append)
        assert seen == [2, 4, 5]

    def test_chunk_size_must_be_positive(self) -> None:
        """A chunk size below 1 is refused."""
        with pytest.raises(ValueError, match="chunk_size"):
            Tagger(catalog(), MemoryStore()).apply_many([], chunk_size=0)


class TestRetries:
    def test_lost_race_is_retried_on_fresh_state(self) -> None:
        """A commit refused as concurrent is worked out again from a fresh read, and counted."""
        store = Racing(failures=2)
        report = Tagger(catalog(), store).apply_many([("a", RICH)], now=T0)  # type: ignore[arg-type]
        assert report.retries == 2
        assert store.loads == 3
        assert {m.tag for m in store.inner.memberships("a")} == {
            "spend_high",
            "frequent",
            "vip",
            "per_order_high",
        }

    def test_endless_races_give_up_with_a_store_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A customer that never stops changing ends in a StoreError, not a hang."""
        monkeypatch.setattr("tagrules.tagger.MAX_ATTEMPTS", 3)
        with pytest.raises(StoreError, match="gave up after 3 attempts"):
            Tagger(catalog(), Racing(failures=100)).apply("a", RICH, now=T0)  # type: ignore[arg-type]


class TestListeners:
    def test_a_raising_listener_cannot_break_a_run(self, caplog: pytest.LogCaptureFixture) -> None:
        """A listener that raises is logged and counted; the other listeners still hear every event,
        the run goes on to its last chunk, and the outbox keeps every event."""
        store = MemoryStore()
        heard: list[tuple[str, str]] = []

        def broken(event: ChangeEvent) -> None:
            raise RuntimeError("mail server down")

        tagger = Tagger(catalog(), store, listeners=[broken, lambda e: heard.append((e.customer_id, e.tag))])
        with caplog.at_level(logging.ERROR, logger="tagrules.listeners"):
            report = tagger.apply_many([("a", MID), ("b", MID), ("c", RICH)], now=T0, chunk_size=1)
        assert report.customers == 3
        assert report.listener_errors == 6
        assert sorted(heard) == sorted((e.customer_id, e.tag) for e in store.pending_events())
        assert len(heard) == 6
        assert [m.tag for m in store.memberships("c")] == ["frequent", "per_order_high", "spend_high", "vip"]
        failures = [r for r in caplog.records if r.name == "tagrules.listeners"]
        assert len(failures) == 6
        assert "mail server down" in caplog.text
        assert "broken" in failures[0].getMessage()

    def test_a_raising_listener_leaves_apply_committed(self) -> None:
        """apply returns normally after a listener raised; the change and its event are stored."""
        store = MemoryStore()

        def broken(event: object) -> None:
            raise RuntimeError("mail server down")

        assert Tagger(catalog(), store, listeners=[broken]).apply("a", MID, now=T0).added == {"spend_mid"}
        assert [m.tag for m in store.memberships("a")] == ["spend_mid"]
        assert len(store.pending_events()) == 1


class TestInputs:
    def test_include_of_an_unknown_tag_is_refused_with_a_suggestion(self) -> None:
        """include/exclude of a tag the catalog does not define is refused, naming the nearest key."""
        store = MemoryStore()
        tagger = Tagger(catalog(), store)
        with pytest.raises(InvalidArgument, match="defines no tag 'vpi'; did you mean 'vip'"):
            tagger.include("a", "vpi", by="ana", reason="typo", now=T0)
        with pytest.raises(InvalidArgument, match="allow_unknown=True"):
            tagger.exclude("a", "frequnt", by="ana", reason="typo", now=T0)
        assert store.overrides("a") == []

    def test_allow_unknown_keeps_a_tag_managed_elsewhere(self) -> None:
        """With allow_unknown=True a tag outside the catalog is held, and later evaluations keep it."""
        store = MemoryStore()
        tagger = Tagger(catalog(), store)
        tagger.include("a", "crm_segment", by="crm", reason="synced", now=T0, allow_unknown=True)
        tagger.exclude("a", "crm_blocked", by="crm", reason="synced", now=T0, allow_unknown=True)
        result = tagger.apply("a", MID, now=T0)
        assert result.added == {"spend_mid"}
        assert {m.tag: m.source for m in store.memberships("a")} == {
            "crm_segment": "manual",
            "spend_mid": "computed",
        }
