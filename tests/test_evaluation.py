"""Evaluation: tiers, dependencies, manual and suppressed tags, time, and the error policy."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import pytest
from pydantic import BaseModel

from tagrules import Catalog, Evaluator, InvalidArgument, SnapshotError

UTC = datetime.timezone.utc

SCHEMA = {
    "spend_365d": "float",
    "orders_30d": "int",
    "orders_365d": "int",
    "age": "int | None",
    "last_order_at": "datetime | None",
    "registered_at": "datetime",
}

TAGS: list[dict[str, Any]] = [
    {"key": "spend_high", "rule": "spend_365d >= 100000", "group": "spend", "priority": 3},
    {"key": "spend_mid", "rule": "spend_365d >= 30000", "group": "spend", "priority": 2},
    {"key": "spend_low", "rule": "spend_365d < 30000", "group": "spend", "priority": 1},
    {"key": "freq_high", "rule": "orders_30d >= 3"},
    {"key": "vip", "rule": "'spend_high' in tags and 'freq_high' in tags"},
    {"key": "avg_order_high", "rule": "spend_365d / orders_365d >= 1000"},
    {"key": "big_average_vip", "rule": "'avg_order_high' in tags and 'vip' in tags"},
    {"key": "recent", "rule": "(last_order_at ?? registered_at) >= $now - t'P90D'"},
    {"key": "registered_today", "rule": "registered_at >= $today"},
    {"key": "adult", "rule": "(age ?? 0) >= 18"},
]


def snapshot(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "spend_365d": 150000.0,
        "orders_30d": 4,
        "orders_365d": 40,
        "age": 30,
        "last_order_at": "2026-05-20T00:00:00Z",
        "registered_at": "2020-01-01T00:00:00Z",
    }
    base.update(overrides)
    return base


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator(Catalog(TAGS, SCHEMA))


class TestAssignment:
    def test_tiers_and_dependencies(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """The highest matching tier wins its group, and dependents see it in 'tags'."""
        result = evaluator.evaluate(snapshot(), now=now)
        assert result.tags == {
            "spend_high",
            "freq_high",
            "vip",
            "avg_order_high",
            "big_average_vip",
            "recent",
            "adult",
        }
        assert not result.errors

    def test_lower_tier(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A mid spender gets spend_mid only, and VIP does not follow."""
        result = evaluator.evaluate(snapshot(spend_365d=50000.0), now=now)
        assert {"spend_mid", "freq_high"} <= result.tags
        assert not result.tags & {"spend_high", "spend_low", "vip"}

    def test_manual_tags_are_seen_by_rules(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A manual tag given by the caller counts in 'tags' but is not reported as computed."""
        result = evaluator.evaluate(snapshot(orders_30d=0), now=now, tags={"freq_high"})
        assert "vip" in result.tags
        assert "freq_high" not in result.tags

    def test_suppressed_tags(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A suppressed tag is never assigned, dependents do not see it, and the next tier wins."""
        result = evaluator.evaluate(snapshot(), now=now, suppressed={"spend_high"})
        assert "spend_high" not in result.tags
        assert "vip" not in result.tags
        assert "spend_mid" in result.tags

    def test_pydantic_snapshot(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A pydantic model instance is a snapshot like a dict."""

        class Snapshot(BaseModel):
            spend_365d: float
            orders_30d: int
            orders_365d: int
            age: int | None
            last_order_at: datetime.datetime | None
            registered_at: datetime.datetime

        model = Snapshot.model_validate(snapshot())
        assert evaluator.evaluate(model, now=now).tags == evaluator.evaluate(snapshot(), now=now).tags


class TestTime:
    def test_now_drives_windows(self, evaluator: Evaluator) -> None:
        """$now moves with the evaluation time: the same snapshot stops being recent."""
        early = evaluator.evaluate(snapshot(), now=datetime.datetime(2026, 6, 1, tzinfo=UTC))
        late = evaluator.evaluate(snapshot(), now=datetime.datetime(2026, 12, 1, tzinfo=UTC))
        assert "recent" in early.tags
        assert "recent" not in late.tags

    def test_window_boundary(self, evaluator: Evaluator) -> None:
        """Exactly 90 days ago is still inside a '>= $now - 90 days' window."""
        now = datetime.datetime(2026, 8, 18, tzinfo=UTC)
        assert "recent" in evaluator.evaluate(snapshot(last_order_at="2026-05-20T00:00:00Z"), now=now).tags
        later = now + datetime.timedelta(microseconds=1)
        assert (
            "recent" not in evaluator.evaluate(snapshot(last_order_at="2026-05-20T00:00:00Z"), now=later).tags
        )

    def test_naive_now_is_utc(self, evaluator: Evaluator) -> None:
        """A naive now is taken as UTC."""
        result = evaluator.evaluate(snapshot(), now=datetime.datetime(2026, 6, 1))
        assert result.now == datetime.datetime(2026, 6, 1, tzinfo=UTC)

    def test_today_is_midnight_of_now(self, evaluator: Evaluator) -> None:
        """$today is the start of the evaluation day."""
        now = datetime.datetime(2026, 6, 1, 15, tzinfo=UTC)
        assert (
            "registered_today"
            in evaluator.evaluate(snapshot(registered_at="2026-06-01T00:00:00Z"), now=now).tags
        )
        assert (
            "registered_today"
            not in evaluator.evaluate(snapshot(registered_at="2026-05-31T23:59:59Z"), now=now).tags
        )

    def test_default_now_is_current_utc(self, evaluator: Evaluator) -> None:
        """Without now, the current UTC time is used."""
        before = datetime.datetime.now(UTC)
        result = evaluator.evaluate(snapshot())
        assert before <= result.now <= datetime.datetime.now(UTC)

    @pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "interpreted"])
    def test_a_day_is_24_real_hours_across_a_dst_change(self, compiled: bool) -> None:
        """A now in a zone with daylight saving is converted to UTC before rules see it, so
        '$now - t'PT24H'' is 24 real hours even on the day clocks go forward."""
        catalog = Catalog(
            tags=[{"key": "seen_today", "rule": "seen >= $now - t'PT24H'"}], schema={"seen": "datetime"}
        )
        evaluator = Evaluator(catalog, compiled=compiled)
        berlin = zoneinfo.ZoneInfo("Europe/Berlin")
        now = datetime.datetime(2026, 3, 29, 12, tzinfo=berlin)  # 10:00 UTC, clocks went forward at 2:00
        inside = datetime.datetime(2026, 3, 28, 10, 30, tzinfo=UTC)  # 23.5 real hours before
        outside = datetime.datetime(2026, 3, 28, 9, 30, tzinfo=UTC)  # 24.5 real hours before
        result = evaluator.evaluate({"seen": inside}, now=now)
        assert result.now == datetime.datetime(2026, 3, 29, 10, tzinfo=UTC)
        assert result.now.tzinfo is UTC
        assert "seen_today" in result.tags
        assert "seen_today" not in evaluator.evaluate({"seen": outside}, now=now).tags

    def test_a_now_beyond_utc_range_is_refused(self, evaluator: Evaluator) -> None:
        """A now that has no UTC equivalent (year 1 at +01:00) is a clear error, not an OverflowError."""
        now = datetime.datetime(1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
        with pytest.raises(InvalidArgument, match="outside the range"):
            evaluator.evaluate(snapshot(), now=now)

    def test_now_must_be_a_datetime(self, evaluator: Evaluator) -> None:
        """A now that is not a datetime is a TypeError."""
        with pytest.raises(TypeError, match="now must be a datetime"):
            evaluator.evaluate(snapshot(), now="2026-06-01")  # type: ignore[arg-type]


class TestArguments:
    @pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "interpreted"])
    def test_unknown_manual_or_suppressed_tags_are_refused(self, compiled: bool) -> None:
        """tags= and suppressed= naming a tag the catalog does not define are refused with the nearest
        key; known ones are accepted, from any iterable."""
        evaluator = Evaluator(Catalog(tags=TAGS, schema=SCHEMA), compiled=compiled)
        now = datetime.datetime(2026, 6, 1, tzinfo=UTC)
        with pytest.raises(
            InvalidArgument, match="tags: the catalog defines no tag 'spend_hihg'; did you mean 'spend_high'"
        ):
            evaluator.evaluate(snapshot(), now, tags=["spend_hihg"])
        with pytest.raises(
            InvalidArgument, match="suppressed: the catalog defines no tag 'vpi'; did you mean 'vip'"
        ):
            evaluator.evaluate(snapshot(), now, suppressed={"vpi"})
        with pytest.raises(InvalidArgument, match="the catalog defines no tag 'nope'"):
            evaluator.explain(snapshot(), "vip", now, tags=("nope",))
        result = evaluator.evaluate(
            snapshot(), now, tags=(key for key in ["spend_high"]), suppressed=["freq_high"]
        )
        assert "spend_high" in result.tags


class TestErrorPolicy:
    def test_division_by_zero_fails_one_tag(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A rule failing on one snapshot lands in errors; the other tags are still evaluated."""
        result = evaluator.evaluate(snapshot(orders_365d=0), now=now)
        assert result.errors["avg_order_high"] == "division by zero"
        assert "avg_order_high" not in result.tags
        assert {"spend_high", "vip"} <= result.tags

    def test_dependents_of_a_failed_tag_are_unknown(
        self, evaluator: Evaluator, now: datetime.datetime
    ) -> None:
        """A tag depending on a failed tag is unknown too, and says which dependency failed."""
        result = evaluator.evaluate(snapshot(orders_365d=0), now=now)
        assert (
            result.errors["big_average_vip"] == "depends on 'avg_order_high', which failed: division by zero"
        )

    def test_missing_field(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A missing field fails only the rules that read it."""
        data = snapshot()
        del data["orders_30d"]
        result = evaluator.evaluate(data, now=now)
        assert result.errors["freq_high"] == "the snapshot has no field 'orders_30d'"
        assert result.errors["vip"].startswith("depends on 'freq_high', which failed")
        assert "spend_high" in result.tags

    def test_wrong_typed_value(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A wrong-typed value fails the rules that read it, naming the field."""
        result = evaluator.evaluate(snapshot(orders_30d="four"), now=now)
        assert result.errors["freq_high"] == "field 'orders_30d': expected int, got str 'four'"

    def test_failing_tier_makes_the_group_unknown(self, now: datetime.datetime) -> None:
        """If any tier of a group fails, the whole group is unknown."""
        catalog = Catalog(
            [
                {"key": "high", "rule": "amount / count > 10", "group": "g", "priority": 2},
                {"key": "low", "rule": "amount > 0", "group": "g", "priority": 1},
                {"key": "uses_low", "rule": "'low' in tags"},
            ],
            {"amount": "float", "count": "int"},
        )
        result = Evaluator(catalog).evaluate({"amount": 5.0, "count": 0}, now=now)
        assert result.tags == frozenset()
        assert result.errors["high"] == "division by zero"
        assert (
            result.errors["low"]
            == "the exclusive group 'g' is unknown because 'high' failed: division by zero"
        )
        assert result.errors["uses_low"].startswith("depends on 'low', which failed")

    def test_validate_names_every_bad_field(self, evaluator: Evaluator) -> None:
        """validate() raises one SnapshotError naming each missing or bad field."""
        data = snapshot(orders_30d="x")
        del data["age"]
        with pytest.raises(SnapshotError) as caught:
            evaluator.validate(data)
        assert caught.value.problems == {"orders_30d": "expected int, got str 'x'", "age": "missing"}

    def test_lookup_failure(self, now: datetime.datetime) -> None:
        """An index that is not there is an error for that tag, with a hint."""
        catalog = Catalog([{"key": "first_is_a", "rule": "items[0] == 'a'"}], {"items": "list[str]"})
        result = Evaluator(catalog).evaluate({"items": []}, now=now)
        assert result.errors["first_is_a"].startswith("no item 0")

    def test_budget_bounds_comprehensions(self, now: datetime.datetime) -> None:
        """A rule that would take too many steps fails with a clear error instead of hanging."""
        catalog = Catalog(
            [{"key": "a", "rule": "[[1 for x in $range(10000)] for y in $range(10000)].length > 0"}],
            {"n": "int"},
        )
        result = Evaluator(catalog).evaluate({"n": 1}, now=now)
        assert "steps" in result.errors["a"]

    def test_range_is_bounded(self, now: datetime.datetime) -> None:
        """$range refuses to build an enormous list."""
        catalog = Catalog([{"key": "a", "rule": "$range(n).length > 0"}], {"n": "int"})
        result = Evaluator(catalog).evaluate({"n": 10**12}, now=now)
        assert "longer than" in result.errors["a"]

    def test_nothing_is_both_assigned_and_failed(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A failed tag is never in the assigned tags."""
        result = evaluator.evaluate({"spend_365d": 1.0}, now=now)
        assert not result.tags & set(result.errors)
        assert result.errors


class TestExplain:
    def test_explanation_tree(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """The explanation shows each part of the rule, its value, and the fields it read."""
        text = str(evaluator.explain(snapshot(spend_365d=81234.5), "spend_high", now=now))
        assert text.splitlines() == [
            "spend_high: not assigned (the rule is false)",
            "spend_365d >= 100000 -> false (spend_365d = 81234.5)",
        ]

    def test_short_circuit_is_shown(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """Parts skipped by short-circuiting are marked as not evaluated."""
        text = str(evaluator.explain(snapshot(spend_365d=50.0), "vip", now=now))
        assert "'spend_high' in tags -> false" in text
        assert "'freq_high' in tags -> not evaluated (the left side is false)" in text

    def test_losing_tier(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A true tier that lost its group says which tier won."""
        explanation = evaluator.explain(snapshot(), "spend_mid", now=now)
        assert explanation.outcome == "not assigned"
        assert explanation.reason == "'spend_high' (priority 3) wins the exclusive group 'spend'"

    def test_failed_rule(self, evaluator: Evaluator, now: datetime.datetime) -> None:
        """A failing rule is explained as unknown, with the failing part."""
        explanation = evaluator.explain(snapshot(orders_365d=0), "avg_order_high", now=now)
        assert explanation.outcome == "unknown"
        assert "error: division by zero" in str(explanation)

    def test_unknown_tag(self, evaluator: Evaluator) -> None:
        """Explaining a tag that is not in the catalog is a KeyError with a suggestion."""
        with pytest.raises(KeyError, match="did you mean 'vip'"):
            evaluator.explain(snapshot(), "vipp")


class TestNestedObjects:
    def test_lists_of_objects_and_objects(self, now: datetime.datetime) -> None:
        """Rules read nested models, alone or in lists, given as models or as plain mappings."""

        class Order(BaseModel):
            amount: float

        class Customer(BaseModel):
            orders: list[Order]
            address: Order

        catalog = Catalog(
            [
                {"key": "big", "rule": "[o for o in orders if o.amount > 100].length >= 1"},
                {"key": "far", "rule": "address.amount > 1"},
            ],
            Customer,
        )
        evaluator = Evaluator(catalog)
        as_dicts = evaluator.evaluate({"orders": [{"amount": 150.0}], "address": {"amount": 5.0}}, now=now)
        model = Customer(orders=[Order(amount=150.0)], address=Order(amount=5.0))
        as_models = evaluator.evaluate(model, now=now)
        assert as_dicts.tags == as_models.tags == {"big", "far"}
        assert not as_dicts.errors
