"""The hypothesis strategies of the testing kit: valid snapshots, and snapshots on the edges of tiers."""

from __future__ import annotations

import datetime
import enum
import math
from typing import Any, Literal

import pytest
from hypothesis import given
from pydantic import BaseModel

from tagrules import Catalog, Evaluator, Schema
from tagrules.packs import load_pack
from tagrules.packs.retail import Customer
from tagrules.testing import boundary_snapshots, boundary_values, snapshots

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
RETAIL = load_pack("retail")
RETAIL_EVALUATOR = Evaluator(RETAIL)

INLINE = Catalog(
    tags=[
        {"key": "rich", "rule": "spend >= 1000.5", "group": "wealth", "priority": 2},
        {"key": "poor", "rule": "spend < 10", "group": "wealth", "priority": 1},
        {"key": "teen", "rule": "(age ?? 0) >= 13 and (age ?? 0) <= 19"},
        {"key": "fresh", "rule": "joined >= $now - t'P7D'"},
        {"key": "born", "rule": "birthday == d'2000-01-01'"},
        {"key": "north", "rule": "region == 'north'"},
        {"key": "fan", "rule": "(views&['shoes'] ?? 0) > 4"},
    ],
    schema={
        "spend": "float",
        "age": "int | None",
        "joined": "datetime",
        "birthday": "date",
        "region": "str",
        "views": "dict[str, int]",
        "labels": "set[str]",
        "scores": "list[float | None]",
        "extra": "dict",
        "wait": "timedelta | None",
        "flag": "bool",
    },
)


class Tier(enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


class Address(BaseModel):
    city: str
    floor: int | None = None


class Member(BaseModel):
    tier: Tier
    address: Address
    visits: list[Address]
    level: int


class Ranked(BaseModel):
    rank: Literal[1, 2, 3]


MODEL_SCHEMA = Schema.from_model(Member)


def assert_valid(schema: Schema, snapshot: dict[str, Any]) -> None:
    values, bad = schema.read(snapshot)
    assert bad == {}
    assert set(values) == set(schema.fields)


class TestSnapshots:
    @given(snapshots(INLINE))
    def test_inline_schema_snapshots_are_valid(self, snapshot: dict[str, Any]) -> None:
        """Every snapshot of an inline schema has every field, each of its type."""
        assert_valid(INLINE.schema, snapshot)
        Evaluator(INLINE).validate(snapshot)

    @given(snapshots(RETAIL))
    def test_retail_snapshots_are_valid_customers(self, snapshot: dict[str, Any]) -> None:
        """Snapshots of the retail pack fit its schema and its pydantic Customer model."""
        assert_valid(RETAIL.schema, snapshot)
        Customer.model_validate(snapshot)

    @given(snapshots(MODEL_SCHEMA))
    def test_nested_models_and_enums(self, snapshot: dict[str, Any]) -> None:
        """Nested models, lists of them and enums get valid values; a Schema works as the source."""
        assert_valid(MODEL_SCHEMA, snapshot)
        Member.model_validate(snapshot)

    @given(snapshots(RETAIL))
    def test_evaluation_never_fails_on_valid_snapshots(self, snapshot: dict[str, Any]) -> None:
        """A valid snapshot of the retail pack evaluates without a rule failing."""
        assert RETAIL_EVALUATOR.evaluate(snapshot, now=NOW).errors == {}


class TestBoundaryValues:
    def test_int_threshold_and_neighbours(self) -> None:
        """An int threshold gives itself and the integers either side."""
        assert boundary_values(RETAIL, "freq_low")[("orders_90d",)] == [1, 0, 2]

    def test_higher_tiers_of_the_group_count(self) -> None:
        """A tier's edges include the thresholds of the higher tiers of its group."""
        values = boundary_values(RETAIL, "freq_low")
        assert set(values[("orders_30d",)]) == {0, 1, 2, 3, 4}

    def test_float_threshold_and_nearest_floats(self) -> None:
        """A float threshold gives itself and the nearest floats either side."""
        values = boundary_values(INLINE, "rich")[("spend",)]
        assert values == [1000.5, math.nextafter(1000.5, -math.inf), math.nextafter(1000.5, math.inf)]

    def test_dependencies_count(self) -> None:
        """A tag testing other tags is decided by their thresholds too."""
        values = boundary_values(RETAIL, "vip")
        assert 100000.0 in values[("spend_365d",)]
        assert {2, 3, 4} <= set(values[("orders_30d",)])

    def test_nullable_field_includes_null(self) -> None:
        """A nullable field read through '??' also takes null, which falls back to the default."""
        assert boundary_values(INLINE, "teen")[("age",)] == [13, 12, 14, 19, 18, 20, None]

    def test_dict_keys_and_text(self) -> None:
        """Keys of dict fields and compared text are edges too."""
        assert boundary_values(INLINE, "fan") == {("views", "shoes"): [4, 3, 5]}
        assert boundary_values(INLINE, "north") == {("region",): ["north"]}

    def test_times_need_now(self) -> None:
        """Thresholds relative to $now count only when now is given; then one microsecond either side."""
        assert boundary_values(INLINE, "fresh") == {}
        edge = NOW - datetime.timedelta(days=7)
        step = datetime.timedelta(microseconds=1)
        assert boundary_values(INLINE, "fresh", now=NOW) == {("joined",): [edge, edge - step, edge + step]}

    def test_dates_step_by_a_day(self) -> None:
        """A date field's edges are the day before, the day, and the day after."""
        day = datetime.date(2000, 1, 1)
        one = datetime.timedelta(days=1)
        assert boundary_values(INLINE, "born") == {("birthday",): [day, day - one, day + one]}

    def test_enums_stay_valid(self) -> None:
        """Enum fields take only their own values: the compared one first, then the others."""
        schema = Schema.from_model(Member)
        built = Catalog(tags=[{"key": "top", "rule": "level >= 2 and tier == 'gold'"}], schema=schema)
        assert boundary_values(built, "top") == {("level",): [2, 1, 3], ("tier",): ["gold", "silver"]}
        numbered = Catalog(tags=[{"key": "top", "rule": "rank >= 3"}], schema=Schema.from_model(Ranked))
        assert boundary_values(numbered, "top") == {("rank",): [3, 2, 1]}

    def test_unknown_tag(self) -> None:
        """An unknown tag key is refused."""
        with pytest.raises(KeyError):
            boundary_values(RETAIL, "vipp")


class TestBoundarySnapshots:
    @given(boundary_snapshots(RETAIL, "freq_low"))
    def test_values_sit_on_the_edges(self, snapshot: dict[str, Any]) -> None:
        """Fields read by thresholds take edge values; every snapshot stays valid."""
        assert_valid(RETAIL.schema, snapshot)
        assert snapshot["orders_90d"] in (0, 1, 2)
        assert snapshot["orders_30d"] in (0, 1, 2, 3, 4)

    @given(boundary_snapshots(INLINE, "fan"))
    def test_dict_keys_are_set(self, snapshot: dict[str, Any]) -> None:
        """A threshold on a dict key puts that key in the snapshot's dict."""
        assert_valid(INLINE.schema, snapshot)
        assert snapshot["views"]["shoes"] in (3, 4, 5)

    @given(boundary_snapshots(RETAIL, "spend_low"))
    def test_spend_tiers_at_their_edges(self, snapshot: dict[str, Any]) -> None:
        """A property test over the edges: the spend tier assigned follows the policy's thresholds."""
        tags = RETAIL_EVALUATOR.evaluate(snapshot, now=NOW).tags
        spend = snapshot["spend_365d"]
        expected = "spend_high" if spend >= 100000 else "spend_mid" if spend >= 30000 else "spend_low"
        assert tags & {"spend_high", "spend_mid", "spend_low"} == {expected}

    @given(boundary_snapshots(INLINE, "fresh", now=NOW))
    def test_time_edges(self, snapshot: dict[str, Any]) -> None:
        """Datetime thresholds relative to now are probed one microsecond either side."""
        edge = NOW - datetime.timedelta(days=7)
        assert abs(snapshot["joined"] - edge) <= datetime.timedelta(microseconds=1)
        fresh = "fresh" in Evaluator(INLINE).evaluate(snapshot, now=NOW).tags
        assert fresh == (snapshot["joined"] >= edge)
