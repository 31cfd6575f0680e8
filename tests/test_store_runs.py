"""Run records and statistics, over every store: what runs recorded, tags over time, overlaps, tier flows."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store_helpers import AnyTagger, Tagger, catalog, fresh_store, store
from tagrules import Catalog, SQLStore, TagCounts, TagStore
from tagrules.stores import RunRecord

__all__ = ["store"]

UTC = datetime.timezone.utc
MONDAY = datetime.datetime(2026, 6, 1, tzinfo=UTC)  # a Monday
RICH = {"spend": 2000.0, "orders": 4}
MID = {"spend": 200.0, "orders": 1}
BROKE = {"spend": 10.0, "orders": 0}


def weekly(tagger: AnyTagger, weeks: list[dict[str, dict[str, Any]]]) -> None:
    for number, snapshots in enumerate(weeks):
        tagger.apply_many(snapshots.items(), now=MONDAY + datetime.timedelta(days=7 * number, hours=3))


class TestRunRecords:
    def test_apply_many_records_its_run(self, store: TagStore) -> None:
        """A run is recorded with its evaluation time, catalog version, customers and per-tag counts,
        equal to the report it returned."""
        tagger = Tagger(catalog(), store)
        moment = MONDAY + datetime.timedelta(hours=5)
        report = tagger.apply_many([("a", RICH), ("b", MID), ("c", BROKE)], now=moment)
        (run,) = store.runs()
        assert run.kind == "run"
        assert run.evaluated_at == moment
        assert run.catalog_version == catalog().version
        assert run.customers == 3
        assert dict(run.tags) == dict(report.tags)
        assert run.tags["per_order_high"] == TagCounts(members=1, added=1, removed=0, errors=1)
        assert run.groups == {"spend": ("spend_high", "spend_mid")}
        assert run.started_at <= run.finished_at

    def test_single_applies_accumulate_per_day(self, store: TagStore) -> None:
        """apply() calls of one day add up into one record, written by flush (or once the day changes)."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", RICH, now=MONDAY + datetime.timedelta(hours=1))
        tagger.apply("b", BROKE, now=MONDAY + datetime.timedelta(hours=2))
        assert store.runs() == []
        tagger.apply("a", MID, now=MONDAY + datetime.timedelta(days=1))  # a new day writes the first
        (first,) = store.runs()
        assert (first.kind, first.customers, first.evaluated_at) == ("day", 2, MONDAY)
        assert first.tags["spend_high"] == TagCounts(members=1, added=1)
        assert first.tags["per_order_high"].errors == 1
        tagger.flush()
        other = Tagger(catalog(), store)  # a second process adds to the same day's record
        other.apply("c", RICH, now=MONDAY + datetime.timedelta(days=1, hours=4))
        other.flush()
        days = store.runs()
        assert [(r.evaluated_at, r.customers) for r in days] == [
            (MONDAY, 2),
            (MONDAY + datetime.timedelta(days=1), 2),
        ]
        assert days[1].tags["spend_high"] == TagCounts(members=1, added=1, removed=1)

    def test_forget_leaves_runs(self, store: TagStore) -> None:
        """Runs hold counts, not customers: erasing a customer leaves them as they were."""
        tagger = Tagger(catalog(), store)
        tagger.apply_many([("a", RICH), ("b", MID)], now=MONDAY)
        before = store.runs()
        store.forget("a")
        assert store.runs() == before

    def test_runs_between(self, store: TagStore) -> None:
        """runs(since, until) keeps the runs evaluated in [since, until), oldest first."""
        tagger = Tagger(catalog(), store)
        weekly(tagger, [{"a": RICH}, {"a": MID}, {"a": BROKE}])
        found = store.runs(MONDAY + datetime.timedelta(days=7), MONDAY + datetime.timedelta(days=14))
        assert [r.evaluated_at for r in found] == [MONDAY + datetime.timedelta(days=7, hours=3)]


class TestStats:
    def test_weekly_members_added_removed_and_errors(self, store: TagStore) -> None:
        """Per week: members at the week's end, memberships begun and ended within it, error rate of
        its runs; weeks start on Monday."""
        tagger = Tagger(catalog(), store)
        weekly(
            tagger,
            [
                {"a": RICH, "b": MID, "c": BROKE},
                {"a": MID, "b": MID, "c": MID},
                {"a": RICH, "b": RICH, "c": MID},
            ],
        )
        stats = store.stats(
            tags=["spend_high", "spend_mid", "per_order_high"],
            every="week",
            until=MONDAY + datetime.timedelta(days=20),
        )
        assert stats.periods == tuple(MONDAY + datetime.timedelta(days=7 * n) for n in range(3))
        high, mid, per_order = (stats.tags[k] for k in ("spend_high", "spend_mid", "per_order_high"))
        assert high.members == (1, 0, 2)
        assert high.added == (1, 0, 2)
        assert high.removed == (0, 1, 0)
        assert mid.members == (1, 3, 1)
        assert per_order.error_rate == pytest.approx((1 / 3, 0.0, 0.0))
        assert high.error_rate == (0.0, 0.0, 0.0)

    def test_periods_are_named_by_their_start(self, store: TagStore) -> None:
        """Days start at 00:00 UTC, weeks on Monday, months on the 1st; a period without a run has no
        error rate."""
        tagger = Tagger(catalog(), store)
        tagger.apply_many([("a", RICH)], now=datetime.datetime(2026, 1, 30, 22, tzinfo=UTC))
        until = datetime.datetime(2026, 3, 2, tzinfo=UTC)
        months = store.stats(every="month", until=until)
        assert [p.isoformat() for p in months.periods] == [
            "2026-01-01T00:00:00+00:00",
            "2026-02-01T00:00:00+00:00",
            "2026-03-01T00:00:00+00:00",
        ]
        assert months.tags["vip"].members == (1, 1, 1)
        assert months.tags["vip"].error_rate == (0.0, None, None)
        weeks = store.stats(every="week", until=datetime.datetime(2026, 2, 2, tzinfo=UTC))
        assert [p.isoformat()[:10] for p in weeks.periods] == ["2026-01-26", "2026-02-02"]
        days = store.stats(
            every="day",
            since=datetime.datetime(2026, 1, 30, 12, tzinfo=UTC),
            until=datetime.datetime(2026, 1, 31, 1, tzinfo=UTC),
        )
        assert [p.isoformat()[:10] for p in days.periods] == ["2026-01-30", "2026-01-31"]
        assert days.to_data()["periods"] == ["2026-01-30T00:00:00Z", "2026-01-31T00:00:00Z"]

    def test_bad_ranges_are_refused(self, store: TagStore) -> None:
        """An end before the start and an unknown period length are refused with a message."""
        with pytest.raises(ValueError, match="before the start"):
            store.stats(since=MONDAY, until=MONDAY - datetime.timedelta(days=1))
        with pytest.raises(ValueError, match="unknown period"):
            store.stats(every="year")  # type: ignore[arg-type]


class TestOverlapAndFlow:
    def test_overlap_counts_pairs(self, store: TagStore) -> None:
        """Customers holding both tags, per pair, now and as of an earlier time; (a, a) is a's members."""
        tagger = Tagger(catalog(), store)
        weekly(tagger, [{"a": RICH, "b": MID, "c": RICH}, {"a": MID, "b": MID, "c": RICH}])
        now = store.overlap(["spend_high", "frequent", "vip", "spend_mid"])
        assert now == {
            ("frequent", "frequent"): 1,
            ("frequent", "spend_high"): 1,
            ("frequent", "vip"): 1,
            ("spend_high", "spend_high"): 1,
            ("spend_high", "vip"): 1,
            ("vip", "vip"): 1,
            ("spend_mid", "spend_mid"): 2,
        }
        earlier = store.overlap(["spend_high", "vip"], as_of=MONDAY + datetime.timedelta(days=1))
        assert earlier == {("spend_high", "spend_high"): 2, ("spend_high", "vip"): 2, ("vip", "vip"): 2}

    def test_overlap_of_more_tags_than_one_mask_holds(self, store: TagStore) -> None:
        """Over 70 tags (two masks of 62 in a SQL store), every pair's count is the customers whose tags
        hold both, now and as of the first run; pairs nobody holds are left out."""
        keys = [f"t{k:02d}" for k in range(70)]
        divisible = Catalog(
            [{"key": key, "rule": f"n % {k + 2} == 0"} for k, key in enumerate(keys)], {"n": "int"}
        )
        tagger = Tagger(divisible, store)
        first = {f"c{n:02d}": {"n": n} for n in range(1, 80)}
        second = {customer: {"n": snapshot["n"] + 1} for customer, snapshot in first.items()}
        weekly(tagger, [first, second])

        def expected(holdings: list[set[str]], asked: list[str]) -> dict[tuple[str, str], int]:
            counts: dict[tuple[str, str], int] = {}
            for held in holdings:
                mine = sorted(held & set(asked))
                for index, a in enumerate(mine):
                    for b in mine[index:]:
                        counts[a, b] = counts.get((a, b), 0) + 1
            return counts

        now = [set(store.tags(customer)) for customer in first]
        assert store.overlap(keys) == expected(now, keys)
        assert store.overlap(keys)[("t00", "t01")] == len([n for n in range(2, 81) if n % 6 == 0])
        then = [
            {key for k, key in enumerate(keys) if snapshot["n"] % (k + 2) == 0} for snapshot in first.values()
        ]
        as_of = MONDAY + datetime.timedelta(days=1)
        assert store.overlap(keys, as_of=as_of) == expected(then, keys)
        assert store.overlap(keys[60:66]) == expected(now, keys[60:66])
        assert store.overlap([]) == {}

    @pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
    def test_flows_of_many_groups_are_each_groups_flow(
        self, kind: str, request: pytest.FixtureRequest
    ) -> None:
        """``SQLStore.flows`` gives each group's :meth:`flow`, in the order asked, whether it counts the
        groups in one pass (PostgreSQL) or one by one; a group never recorded has no moves."""
        tiered = Catalog(
            [
                {"key": "spend_high", "rule": "spend >= 1000", "group": "spend", "priority": 2},
                {"key": "spend_mid", "rule": "spend >= 100", "group": "spend", "priority": 1},
                {"key": "many", "rule": "orders >= 3", "group": "orders", "priority": 2},
                {"key": "some", "rule": "orders >= 1", "group": "orders", "priority": 1},
                {"key": "frequent", "rule": "orders >= 2"},
            ],
            {"spend": "float", "orders": "int"},
        )
        with fresh_store(kind, request) as store:
            assert isinstance(store, SQLStore)
            weekly(
                Tagger(tiered, store),
                [{"a": RICH, "b": MID, "c": BROKE, "d": BROKE}, {"a": MID, "b": RICH, "c": MID, "d": RICH}],
            )
            start, end = MONDAY + datetime.timedelta(days=1), MONDAY + datetime.timedelta(days=8)
            found = store.flows(["spend", "orders", "nothing"], start, end)
            assert found == [store.flow(name, start, end) for name in ["spend", "orders", "nothing"]]
            assert found[0].moves == {
                "spend_high": {"spend_mid": 1},
                "spend_mid": {"spend_high": 1},
                "none": {"spend_mid": 1, "spend_high": 1},
            }
            assert found[1].moves["many"] == {"some": 1}
            assert found[2].moves == {}

    def test_flow_between_tiers(self, store: TagStore) -> None:
        """Customers by their tier at each instant, 'none' for no tier; no tier at both is not counted."""
        tagger = Tagger(catalog(), store)
        weekly(
            tagger,
            [{"a": RICH, "b": MID, "c": BROKE, "d": BROKE}, {"a": MID, "b": RICH, "c": MID, "d": BROKE}],
        )
        flow = store.flow("spend", MONDAY + datetime.timedelta(days=1), MONDAY + datetime.timedelta(days=8))
        assert flow.tiers == ("spend_high", "spend_mid")
        assert flow.moves == {
            "spend_high": {"spend_mid": 1},
            "spend_mid": {"spend_high": 1},
            "none": {"spend_mid": 1},
        }
        assert flow.to_data()["flow"] == {
            "none": {"spend_mid": 1},
            "spend_high": {"spend_mid": 1},
            "spend_mid": {"spend_high": 1},
        }

    def test_former_tiers_are_other(self, store: TagStore) -> None:
        """A tag that was a tier in an earlier run but is not one in the latest shows as 'other'."""
        tagger = Tagger(catalog(), store)
        tagger.apply_many([("a", RICH), ("b", MID)], now=MONDAY)
        data = catalog().to_data()
        for tag in data["tags"]:
            if tag["key"] == "spend_mid":
                del tag["group"], tag["priority"]
        later = Tagger(Catalog.from_data(data), store)
        later.apply_many([("a", MID), ("b", MID)], now=MONDAY + datetime.timedelta(days=7))
        flow = store.flow("spend", MONDAY + datetime.timedelta(days=1), MONDAY + datetime.timedelta(days=8))
        assert flow.tiers == ("spend_high",)
        assert flow.moves == {"spend_high": {"other": 1}, "other": {"other": 1}}

    def test_unknown_group_has_no_flow(self, store: TagStore) -> None:
        """A group no run recorded has no tiers and no moves."""
        flow = store.flow("nosuchgroup", MONDAY, MONDAY + datetime.timedelta(days=1))
        assert (flow.tiers, dict(flow.moves)) == ((), {})


# -- SQL against the replay of the history ---------------------------------------------------------

STEPS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=24 * 60),  # minutes after the previous run
        st.dictionaries(st.sampled_from("abcde"), st.sampled_from([RICH, MID, BROKE]), max_size=5),
    ),
    min_size=1,
    max_size=8,
)


class TestStatsAgainstHistory:
    @pytest.mark.parametrize("kind", ["memory", "sqlite", "postgresql", "mysql"])
    @pytest.mark.parametrize("every", ["day", "week"])
    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=STEPS, first=st.integers(min_value=0, max_value=6 * 24))
    def test_stats_equal_a_replay(
        self,
        kind: str,
        every: str,
        steps: list[tuple[int, dict[str, dict[str, Any]]]],
        first: int,
        request: pytest.FixtureRequest,
    ) -> None:
        """Members at each period's end are the members as of its last instant, added and removed the
        history periods that began and ended within it, the error rate errors over evaluations."""
        with fresh_store(kind, request) as store:
            tagger = Tagger(catalog(), store)
            moment = MONDAY + datetime.timedelta(hours=first)
            for minutes, snapshots in steps:
                moment += datetime.timedelta(minutes=minutes)
                tagger.apply_many(snapshots.items(), now=moment)
            stats = store.stats(every=every, since=MONDAY, until=moment)  # type: ignore[arg-type]
            step = datetime.timedelta(days=1 if every == "day" else 7)
            runs = store.runs()
            entries = [entry for customer in "abcde" for entry in store.history(customer)]
            for key, series in stats.tags.items():
                for index, start in enumerate(stats.periods):
                    end = start + step
                    last = end - datetime.timedelta(microseconds=1)
                    assert series.members[index] == len(store.members(key, as_of=last))
                    assert series.added[index] == sum(
                        e.tag == key and start <= e.since < end for e in entries
                    )
                    assert series.removed[index] == sum(
                        e.tag == key and e.until is not None and start <= e.until < end for e in entries
                    )
                    within = [r for r in runs if start <= r.evaluated_at < end and key in r.tags]
                    evaluations = sum(r.customers for r in within)
                    expected = sum(r.tags[key].errors for r in within) / evaluations if evaluations else None
                    assert series.error_rate[index] == expected


def test_run_record_merge_adds_counts() -> None:
    """Two day records of one id add their customers and counts; the later finish is kept."""
    first = RunRecord("day:x", "day", MONDAY, MONDAY, MONDAY, "v", 2, {"t": TagCounts(1, 1, 0, 0)}, {})
    later = MONDAY + datetime.timedelta(hours=1)
    second = RunRecord(
        "day:x", "day", later, later, MONDAY, "v", 3, {"t": TagCounts(2, 0, 1, 1)}, {"g": ("t",)}
    )
    merged = first.merged(second)
    assert (merged.customers, merged.finished_at, merged.groups) == (5, later, {"g": ("t",)})
    assert merged.tags["t"] == TagCounts(3, 1, 1, 1)
