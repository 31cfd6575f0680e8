"""The TagStore contract, run over every implementation: memory, SQLite, PostgreSQL, MariaDB."""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable, Collection
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store_helpers import Tagger, catalog, store
from tagrules import (
    ChangeEvent,
    ConcurrentUpdate,
    HistoryEntry,
    InvalidArgument,
    Membership,
    StaleSnapshot,
    TagStore,
)
from tagrules.stores import CustomerChange, CustomerState

__all__ = ["store"]

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
T1 = T0 + datetime.timedelta(days=1)
T2 = T0 + datetime.timedelta(days=2)
RICH = {"spend": 2000.0, "orders": 4}
MID = {"spend": 200.0, "orders": 1}
POOR = {"spend": 10.0, "orders": 0}


def changes(store: TagStore) -> list[tuple[str, str, str, str]]:
    return [(e.customer_id, e.tag, e.change, e.reason) for e in store.pending_events(10_000)]


class TestMemberships:
    def test_is_a_tag_store(self, store: TagStore) -> None:
        """Each implementation satisfies the TagStore protocol."""
        assert isinstance(store, TagStore)

    def test_apply_stores_memberships_history_and_events(self, store: TagStore) -> None:
        """Applying a snapshot stores each assigned tag as a computed membership, opens its history
        period, and puts one 'added' event per tag in the outbox."""
        tagger = Tagger(catalog(), store)
        result = tagger.apply("c1", RICH, now=T0)
        assert result.added == {"spend_high", "frequent", "vip", "per_order_high"}
        assert [m.tag for m in store.memberships("c1")] == ["frequent", "per_order_high", "spend_high", "vip"]
        membership = store.memberships("c1")[0]
        assert membership == Membership("c1", "frequent", "computed", T0, catalog()["frequent"].rule_version)
        assert store.history("c1")[0] == HistoryEntry(
            "c1", "frequent", "computed", T0, None, membership.rule_version, catalog_version=catalog().version
        )
        assert sorted(changes(store)) == [
            ("c1", tag, "added", "rule") for tag in ["frequent", "per_order_high", "spend_high", "vip"]
        ]

    def test_repeated_apply_writes_nothing(self, store: TagStore) -> None:
        """The same snapshot again changes nothing and emits no event."""
        tagger = Tagger(catalog(), store)
        tagger.apply("c1", RICH, now=T0)
        before = store.pending_events()
        assert not tagger.apply("c1", RICH, now=T1).changed
        assert store.pending_events() == before
        assert all(m.since == T0 for m in store.memberships("c1"))

    def test_removal_closes_history(self, store: TagStore) -> None:
        """A tag whose rule turns false is removed, its period closed with reason 'rule'."""
        tagger = Tagger(catalog(), store)
        tagger.apply("c1", RICH, now=T0)
        result = tagger.apply("c1", MID, now=T1)
        assert result.removed == {"spend_high", "frequent", "vip", "per_order_high"}
        assert result.added == {"spend_mid"}
        assert [m.tag for m in store.memberships("c1")] == ["spend_mid"]
        closed = [e for e in store.history("c1") if e.tag == "vip"]
        assert [(e.since, e.until, e.reason) for e in closed] == [(T0, T1, "rule")]
        assert ("c1", "vip", "removed", "rule") in changes(store)

    def test_failed_rule_keeps_previous_state(self, store: TagStore) -> None:
        """A tag whose rule fails is neither added nor removed."""
        tagger = Tagger(catalog(), store)
        tagger.apply("c1", {"spend": 2000.0, "orders": 1}, now=T0)
        assert "per_order_high" in {m.tag for m in store.memberships("c1")}
        result = tagger.apply("c1", {"spend": 2000.0, "orders": 0}, now=T1)
        assert "per_order_high" in result.errors
        assert "per_order_high" in {m.tag for m in store.memberships("c1")}

    def test_times_round_trip_in_utc(self, store: TagStore) -> None:
        """Times come back aware, in UTC, with their microseconds."""
        moment = datetime.datetime(
            2026, 6, 1, 8, 30, 15, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=8))
        )
        Tagger(catalog(), store).apply("c1", MID, now=moment)
        since = store.memberships("c1")[0].since
        assert since == moment
        assert since.utcoffset() == datetime.timedelta(0)


class TestQueries:
    def test_members_now_and_as_of(self, store: TagStore) -> None:
        """Members of a tag now, and as of an earlier time from the history."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", RICH, now=T0)
        tagger.apply("b", RICH, now=T1)
        tagger.apply("a", POOR, now=T2)
        assert store.members("vip") == ["b"]
        assert store.members("vip", as_of=T0) == ["a"]
        assert store.members("vip", as_of=T1) == ["a", "b"]
        assert store.members("vip", as_of=T2) == ["b"]
        assert store.members("vip", as_of=T0 - datetime.timedelta(seconds=1)) == []

    def test_tags_as_of(self, store: TagStore) -> None:
        """A customer's tags at a time are the history periods covering it."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", RICH, now=T0)
        tagger.apply("a", MID, now=T1)
        assert store.tags_as_of("a", T0) == {"spend_high", "frequent", "vip", "per_order_high"}
        assert store.tags_as_of("a", T1) == {"spend_mid"}
        assert store.tags_as_of("nobody", T1) == frozenset()

    def test_tags_are_the_current_keys(self, store: TagStore) -> None:
        """store.tags gives the keys the customer holds now, computed and manual."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", RICH, now=T0)
        tagger.include("a", "key_account", by="ana", reason="signed", now=T1)
        assert store.tags("a") == {"spend_high", "frequent", "vip", "per_order_high", "key_account"}
        tagger.apply("a", MID, now=T2)
        assert store.tags("a") == {"spend_mid", "key_account", "key_account_vip"}
        assert store.tags("nobody") == frozenset()

    def test_a_store_is_a_context_manager(self, store: TagStore) -> None:
        """with store: gives the store itself and closes it at the end."""
        with store as same:
            assert same is store
            Tagger(catalog(), same).apply("a", MID, now=T0)

    def test_unknown_customer(self, store: TagStore) -> None:
        """A customer the store never saw has nothing."""
        assert store.memberships("x") == []
        assert store.history("x") == []
        assert store.overrides("x") == []
        assert store.load(["x"]) == {}


def open_periods_are_ordered(store: TagStore, customer_ids: Collection[str]) -> None:
    for customer_id in customer_ids:
        for entry in store.history(customer_id):
            assert entry.until is None or entry.since <= entry.until, entry


class Interleaved:
    """A real store on which another writer commits right after the tagger's first read, as a
    concurrent run would."""

    def __init__(self, inner: TagStore, meanwhile: Callable[[], object]) -> None:
        self.inner = inner
        self.meanwhile: Callable[[], object] | None = meanwhile

    def load(self, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        states = self.inner.load(customer_ids)
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return states

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TestTimeNeverRunsBackwards:
    def test_an_older_evaluation_is_refused(self, store: TagStore) -> None:
        """apply at June 3 then at June 1: StaleSnapshot, and nothing of the older one is written."""
        tagger = Tagger(catalog(), store)
        tagger.apply("c", RICH, now=T2)
        before = (store.memberships("c"), store.history("c"), store.pending_events())
        with pytest.raises(StaleSnapshot, match="older than its last stored change") as raised:
            tagger.apply("c", MID, now=T0)
        assert (raised.value.customer_id, raised.value.at, raised.value.last) == ("c", T0, T2)
        assert (store.memberships("c"), store.history("c"), store.pending_events()) == before

    def test_the_same_instant_is_written(self, store: TagStore) -> None:
        """An evaluation at exactly the time of the last change is applied (a re-run after a failure)."""
        tagger = Tagger(catalog(), store)
        tagger.apply("c", RICH, now=T1)
        assert tagger.apply("c", MID, now=T1).added == {"spend_mid"}
        assert [m.tag for m in store.memberships("c")] == ["spend_mid"]
        open_periods_are_ordered(store, ["c"])

    def test_a_later_evaluation_after_an_unchanged_one_is_written(self, store: TagStore) -> None:
        """Only stored changes count: an older evaluation that changed nothing does not block."""
        tagger = Tagger(catalog(), store)
        tagger.apply("c", RICH, now=T0)
        tagger.apply("c", MID, now=T2)
        with pytest.raises(StaleSnapshot):
            tagger.apply("c", MID, now=T1)

    def test_apply_many_skips_and_counts_stale_customers(self, store: TagStore) -> None:
        """A run older than some customers' last change writes the others and counts the stale ones."""
        tagger = Tagger(catalog(), store)
        tagger.apply("late", RICH, now=T2)
        report = tagger.apply_many([("late", MID), ("fresh", MID)], now=T0)
        assert report.stale == 1
        assert report.customers == 2
        assert report.tags["spend_mid"].members == 1
        assert [m.tag for m in store.memberships("late")] != ["spend_mid"]
        assert [m.tag for m in store.memberships("fresh")] == ["spend_mid"]
        open_periods_are_ordered(store, ["late", "fresh"])

    def test_an_older_override_is_refused(self, store: TagStore) -> None:
        """A person's decision dated before the customer's last change is refused too."""
        tagger = Tagger(catalog(), store)
        tagger.apply("c", RICH, now=T2)
        with pytest.raises(StaleSnapshot):
            tagger.include("c", "vip", by="ana", reason="x", now=T0)
        with pytest.raises(StaleSnapshot):
            tagger.exclude("c", "vip", by="ana", reason="x", now=T1)
        assert store.overrides("c") == []
        open_periods_are_ordered(store, ["c"])

    def test_the_store_refuses_an_older_change_inside_its_transaction(self, store: TagStore) -> None:
        """commit itself refuses a change older than the stored one, even at the current version."""
        tagger = Tagger(catalog(), store)
        tagger.apply("c", RICH, now=T2)
        state = store.load(["c"])["c"]
        assert state.changed_at == T2
        older = CustomerChange("c", state.version, T0, removed=(("vip", "rule"),))
        with pytest.raises(ConcurrentUpdate):
            store.commit([older])
        assert "vip" in {m.tag for m in store.memberships("c")}
        store.commit([CustomerChange("c", state.version, T2, removed=(("vip", "rule"),))])
        assert "vip" not in {m.tag for m in store.memberships("c")}

    def test_a_later_change_committed_meanwhile_wins(self, store: TagStore) -> None:
        """A later evaluation committed by another writer between the tagger's read and its write:
        the older one is refused (apply) or counted stale (apply_many), never written."""
        other = Tagger(catalog(), store)
        raced = Tagger(catalog(), cast(TagStore, Interleaved(store, lambda: other.apply("c", MID, now=T2))))
        with pytest.raises(StaleSnapshot):
            raced.apply("c", RICH, now=T1)
        assert [m.tag for m in store.memberships("c")] == ["spend_mid"]
        other.apply("d", MID, now=T0)
        raced = Tagger(catalog(), cast(TagStore, Interleaved(store, lambda: other.apply("d", POOR, now=T2))))
        report = raced.apply_many([("d", RICH)], now=T1)
        assert (report.stale, report.retries) == (1, 1)
        assert store.memberships("d") == []
        open_periods_are_ordered(store, ["c", "d"])

    @settings(
        max_examples=15,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        steps=st.lists(
            st.tuples(
                st.sampled_from(["a", "b"]),
                st.sampled_from([RICH, MID, POOR]),
                st.integers(min_value=0, max_value=4),
            ),
            min_size=1,
            max_size=12,
        )
    )
    def test_no_period_ever_ends_before_it_starts(
        self, store: TagStore, steps: list[tuple[str, dict[str, Any], int]]
    ) -> None:
        """Random applies at random times: an evaluation is refused exactly when it is older than the
        customer's last stored change, and no history period has until < since."""
        run = secrets.token_hex(4)
        tagger = Tagger(catalog(), store)
        last_change: dict[str, datetime.datetime] = {}
        for customer, snapshot, hours in steps:
            customer_id = f"{run}-{customer}"
            now = T0 + datetime.timedelta(hours=hours)
            older = customer_id in last_change and now < last_change[customer_id]
            try:
                result = tagger.apply(customer_id, snapshot, now=now)
            except StaleSnapshot:
                assert older
                continue
            assert not older
            if result.changed:
                last_change[customer_id] = now
        open_periods_are_ordered(store, [f"{run}-a", f"{run}-b"])


class TestIdsAndTimes:
    def test_ids_are_text_in_every_store(self, store: TagStore) -> None:
        """An int id is refused alike by every store and by the tagger; '7' is the customer 7."""
        tagger = Tagger(catalog(), store)
        tagger.apply("7", MID, now=T0)
        bad: Any = 7
        for call in (
            lambda: store.memberships(bad),
            lambda: store.history(bad),
            lambda: store.overrides(bad),
            lambda: store.tags_as_of(bad, T0),
            lambda: store.load([bad]),
            lambda: store.forget(bad),
            lambda: store.commit([CustomerChange(bad, 0, T0)]),
            lambda: tagger.apply(bad, MID, now=T0),
            lambda: tagger.apply_many([(bad, MID)], now=T0),
        ):
            with pytest.raises(InvalidArgument, match="must be text, not int 7"):
                call()
        assert [m.tag for m in store.memberships("7")] == ["spend_mid"]

    def test_every_store_holds_the_same_ids(self, store: TagStore) -> None:
        """An id of 191 characters is held by every store; one of 192, or holding NUL or a lone
        surrogate, is refused alike by every store and by the tagger (as the command line refuses it)."""
        tagger = Tagger(catalog(), store)
        longest = "x" * 191
        tagger.apply(longest, MID, now=T0)
        assert [m.tag for m in store.memberships(longest)] == ["spend_mid"]
        for bad, problem in (("x" * 192, "192 characters long"), ("a\x00b", "NUL"), ("a\ud800", "surrogate")):
            calls: list[Callable[[str], object]] = [
                lambda customer: tagger.apply(customer, MID, now=T0),
                store.memberships,
                store.forget,
            ]
            for call in calls:
                with pytest.raises(InvalidArgument, match=problem):
                    call(bad)

    def test_empty_ids_are_refused(self, store: TagStore) -> None:
        """An empty customer id is refused by apply, apply_many, include, exclude and forget."""
        tagger = Tagger(catalog(), store)
        for call in (
            lambda: tagger.apply("", MID, now=T0),
            lambda: tagger.apply_many([("ok", MID), ("", MID)], now=T0, chunk_size=1),
            lambda: tagger.include("", "vip", by="ana", reason="x", now=T0),
            lambda: tagger.exclude("", "vip", by="ana", reason="x", now=T0),
            lambda: tagger.clear_override("", "vip", now=T0),
            lambda: store.forget(""),
        ):
            with pytest.raises(InvalidArgument, match="must not be empty"):
                call()
        assert [m.tag for m in store.memberships("ok")] == ["spend_mid"]  # the chunk before stays

    def test_a_naive_as_of_is_utc(self, store: TagStore) -> None:
        """members, tags_as_of and HistoryEntry.covers read a naive as_of as UTC, in every store."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", RICH, now=T0)
        tagger.apply("a", MID, now=T1)
        naive = (T0 + datetime.timedelta(hours=1)).replace(tzinfo=None)
        assert store.members("vip", as_of=naive) == ["a"]
        assert store.tags_as_of("a", naive) == store.tags_as_of("a", T0)
        assert [e.tag for e in store.history("a") if e.covers(naive)] == sorted(store.tags_as_of("a", T0))
        assert store.members("vip", as_of=T1.replace(tzinfo=None)) == []


class TestOutbox:
    def test_acknowledged_events_leave_the_outbox(self, store: TagStore) -> None:
        """Pending events come in outbox order with ids; acknowledged ones are gone, others stay."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", MID, now=T0)
        tagger.apply("b", RICH, now=T0)
        events = store.pending_events()
        ids = [event.id for event in events if event.id is not None]
        assert len(ids) == len(events)
        assert ids == sorted(ids)
        assert events[0] == ChangeEvent("a", "spend_mid", "added", T0, "rule", ids[0])
        store.acknowledge(ids[:2])
        assert store.pending_events() == events[2:]
        assert store.pending_events(limit=1) == events[2:3]

    def test_event_ids_are_never_reused(self, store: TagStore) -> None:
        """After the newest event is acknowledged (deleted), a new event gets a higher id, so a repeated
        acknowledgement (at-least-once delivery) never deletes a newer, undelivered event."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", MID, now=T0)
        [first] = store.pending_events()
        assert first.id is not None
        store.acknowledge([first.id])
        tagger.apply("b", MID, now=T1)
        [second] = store.pending_events()
        assert second.id is not None
        assert second.id > first.id
        store.acknowledge([first.id])
        assert store.pending_events() == [second]

    def test_listeners_see_committed_changes(self, store: TagStore) -> None:
        """Listeners get each change event once its change is committed."""
        seen: list[ChangeEvent] = []

        def listener(event: ChangeEvent) -> None:
            assert event.tag in {m.tag for m in store.memberships(event.customer_id)}
            seen.append(event)

        Tagger(catalog(), store, listeners=[listener]).apply("a", MID, now=T0)
        assert [(e.customer_id, e.tag, e.change) for e in seen] == [("a", "spend_mid", "added")]


class TestOverrides:
    def test_included_tag_is_held_and_seen_by_rules(self, store: TagStore) -> None:
        """A manual tag is held whatever the rules say, and rules see it in `tags`."""
        tagger = Tagger(catalog(), store)
        tagger.include("a", "key_account", by="ann", reason="signed a frame contract", now=T0)
        tagger.apply("a", POOR, now=T1)
        held = {m.tag: m.source for m in store.memberships("a")}
        assert held == {"key_account": "manual", "key_account_vip": "computed"}
        [override] = store.overrides("a")
        assert (override.kind, override.by, override.reason) == ("include", "ann", "signed a frame contract")
        assert ("a", "key_account", "added", "manual") in changes(store)

    def test_rules_never_remove_a_manual_tag(self, store: TagStore) -> None:
        """A tag the rules assigned becomes manual when included, and stays when the rule turns false."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", MID, now=T0)
        tagger.include("a", "spend_mid", by="ann", reason="agreed tier", now=T1)
        assert {m.tag: m.source for m in store.memberships("a")} == {"spend_mid": "manual"}
        tagger.apply("a", POOR, now=T2)
        assert {m.tag: m.source for m in store.memberships("a")} == {"spend_mid": "manual"}
        assert [(c, t, ch) for c, t, ch, _ in changes(store)] == [("a", "spend_mid", "added")]

    def test_excluded_tag_is_removed_and_never_assigned(self, store: TagStore) -> None:
        """An exclusion removes a held tag at once, and rules do not assign it again."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", RICH, now=T0)
        tagger.exclude("a", "vip", by="bob", reason="staff account", now=T1)
        assert "vip" not in {m.tag for m in store.memberships("a")}
        assert ("a", "vip", "removed", "manual") in changes(store)
        assert not tagger.apply("a", RICH, now=T2).changed
        assert "vip" not in {m.tag for m in store.memberships("a")}

    def test_excluding_a_tier_assigns_the_next_one(self, store: TagStore) -> None:
        """In an exclusive group, the next matching tier is assigned instead of the excluded one."""
        tagger = Tagger(catalog(), store)
        tagger.exclude("a", "spend_high", by="bob", reason="disputed orders", now=T0)
        tagger.apply("a", RICH, now=T1)
        assert "spend_mid" in {m.tag for m in store.memberships("a")}

    def test_clearing_overrides_gives_the_tag_back_to_the_rules(self, store: TagStore) -> None:
        """Clearing an inclusion removes the manual tag; clearing an exclusion lets the rules assign it."""
        tagger = Tagger(catalog(), store)
        tagger.include("a", "key_account", by="ann", reason="x", now=T0)
        tagger.exclude("a", "vip", by="ann", reason="y", now=T0)
        tagger.clear_override("a", "key_account", now=T1)
        tagger.clear_override("a", "vip", now=T1)
        tagger.clear_override("a", "never_set", now=T1)
        assert store.overrides("a") == []
        assert store.memberships("a") == []
        tagger.apply("a", RICH, now=T2)
        assert "vip" in {m.tag for m in store.memberships("a")}

    def test_bad_tag_key(self, store: TagStore) -> None:
        """An override needs a tag key."""
        with pytest.raises(ValueError, match="not a tag key"):
            Tagger(catalog(), store).include("a", "Key Account", by="ann", reason="x")


class TestRetirement:
    def test_retired_tags_are_closed_for_every_customer(self, store: TagStore) -> None:
        """Computed memberships of a retired tag are closed with reason 'retired' on the next run,
        also for customers the run does not include."""
        Tagger(catalog(), store).apply_many([("a", RICH), ("b", RICH)], now=T0)
        report = Tagger(catalog(vip="retired"), store).apply_many([("a", RICH)], now=T1)
        assert report.tags["vip"].removed == 2
        assert store.members("vip") == []
        assert ("b", "vip", "removed", "retired") in changes(store)
        [period] = [e for e in store.history("b") if e.tag == "vip"]
        assert (period.until, period.reason) == (T1, "retired")

    def test_removed_tags_are_closed(self, store: TagStore) -> None:
        """A tag gone from the catalog is closed like a retired one, by apply too."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", RICH, now=T0)
        smaller = catalog()
        data = smaller.to_data()
        data["tags"] = [tag for tag in data["tags"] if tag["key"] != "per_order_high"]
        result = Tagger(type(smaller).from_data(data), store).apply("a", RICH, now=T1)
        assert result.removed == {"per_order_high"}
        assert ("a", "per_order_high", "removed", "retired") in changes(store)


class TestForget:
    def test_forget_erases_everything_of_one_customer(self, store: TagStore) -> None:
        """Memberships, history, overrides and pending events of the customer go; others stay."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", RICH, now=T0)
        tagger.include("a", "key_account", by="ann", reason="x", now=T0)
        tagger.apply("b", MID, now=T0)
        store.forget("a")
        assert store.memberships("a") == []
        assert store.history("a") == []
        assert store.overrides("a") == []
        assert {e.customer_id for e in store.pending_events()} == {"b"}
        assert store.members("spend_mid") == ["b"]
        assert tagger.apply("a", RICH, now=T1).added


class TestExactKeys:
    """Ids and tag keys that differ only by case or by trailing spaces are different keys."""

    PAIRS = [("Big", "big"), ("a", "a "), ("x", "X ")]

    def test_apply_history_and_memberships_keep_them_apart(self, store: TagStore) -> None:
        """Each id of a pair has its own memberships, history, state and events."""
        tagger = Tagger(catalog(), store)
        for first, second in self.PAIRS:
            tagger.apply(first, RICH, now=T0)
            assert store.memberships(second) == []
            assert store.history(second) == []
            assert store.load([second]) == {}
            tagger.apply(second, MID, now=T1)
            assert [m.tag for m in store.memberships(first)] == [
                "frequent",
                "per_order_high",
                "spend_high",
                "vip",
            ]
            assert [m.customer_id for m in store.memberships(second)] == [second]
            assert [m.tag for m in store.memberships(second)] == ["spend_mid"]
            assert {e.customer_id for e in store.history(second)} == {second}
            assert set(store.load([first, second])) == {first, second}
        assert sorted(store.members("spend_mid")) == sorted(second for _, second in self.PAIRS)
        assert {e.customer_id for e in store.pending_events(10_000)} == {
            id for pair in self.PAIRS for id in pair
        }

    def test_forget_reaches_only_the_exact_id(self, store: TagStore) -> None:
        """Forgetting one id of a pair leaves the other whole."""
        tagger = Tagger(catalog(), store)
        for first, second in self.PAIRS:
            tagger.apply(first, RICH, now=T0)
            tagger.include(first, "key_account", by="ann", reason="x", now=T0)
            kept = (store.memberships(first), store.history(first), store.overrides(first))
            assert len(kept[0]) == len(kept[1]) == 5
            assert len(kept[2]) == 1
            store.forget(second)
            assert (store.memberships(first), store.history(first), store.overrides(first)) == kept
        assert {e.customer_id for e in store.pending_events(10_000)} == {first for first, _ in self.PAIRS}

    def test_tag_keys_compare_exactly(self, store: TagStore) -> None:
        """Tag keys are exact too: a held tag is not found under another spelling."""
        Tagger(catalog(), store).apply("a", RICH, now=T0)
        assert store.members("VIP") == []
        assert store.members("vip ") == []
        assert store.members("vip") == ["a"]


class TestConcurrency:
    def test_stale_version_is_refused(self, store: TagStore) -> None:
        """A change worked out from an old version writes nothing and raises ConcurrentUpdate."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", MID, now=T0)
        stale = store.load(["a"])["a"]
        tagger.apply("a", RICH, now=T1)
        before = store.pending_events()
        change = CustomerChange("a", stale.version, T2, removed=(("spend_high", "rule"),))
        with pytest.raises(ConcurrentUpdate):
            store.commit([change])
        assert store.pending_events() == before

    def test_new_customer_written_twice_is_refused(self, store: TagStore) -> None:
        """Two writers creating the same customer: the second one fails and writes nothing."""
        first = CustomerChange("n", 0, T0, events=(ChangeEvent("n", "x", "added", T0, "rule"),))
        store.commit([first])
        with pytest.raises(ConcurrentUpdate):
            store.commit([first])
        assert len(store.pending_events()) == 1

    def test_same_customer_twice_in_a_batch(self, store: TagStore) -> None:
        """A customer appearing twice in apply_many: the later snapshot applies after the earlier, and
        the report counts the customer once, with the tags it holds at the end."""
        report = Tagger(catalog(), store).apply_many([("a", RICH), ("a", MID)], now=T0, chunk_size=10)
        assert report.customers == 1
        assert [m.tag for m in store.memberships("a")] == ["spend_mid"]
        assert report.tags["spend_mid"].members == 1
        assert report.tags["vip"].members == 0
        assert (report.tags["vip"].added, report.tags["vip"].removed) == (1, 1)
