"""What loads evaluates: big and deep catalogs compile, evaluate and agree with the interpreter."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tagrules import Catalog, DefinitionError, Evaluator
from tagrules.analysis import check_catalog
from tagrules.catalog import MAX_RULE_TEXT, MAX_TAGS

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
SCHEMA = {"spend": "float", "n": "int"}


def tiers(count: int) -> list[dict[str, Any]]:
    """An exclusive group of ``count`` tiers: tier ``i`` matches ``spend >= i`` and ranks ``i``."""
    return [
        {"key": f"t{index}", "rule": f"spend >= {index} and 1 / n > 0", "group": "g", "priority": index}
        for index in range(count)
    ]


Evaluators = tuple[Evaluator, Evaluator]


def evaluators(catalog: Catalog) -> Evaluators:
    """The compiled and the interpreted evaluator of ``catalog``."""
    return Evaluator(catalog), Evaluator(catalog, compiled=False)


@pytest.fixture(scope="module")
def big_group() -> Evaluators:
    return evaluators(Catalog(tiers(1_000), SCHEMA))


def agree(pair: Evaluators, snapshots: list[dict[str, Any]], **options: Any) -> list[Any]:
    """Evaluate compiled and interpreted; both must give the same tags and errors."""
    compiled, interpreted = pair
    results = []
    for snapshot in snapshots:
        first = compiled.evaluate(snapshot, now=NOW, **options)
        second = interpreted.evaluate(snapshot, now=NOW, **options)
        assert (first.tags, dict(first.errors)) == (second.tags, dict(second.errors))
        results.append(first)
    return results


class TestBigGroups:
    @pytest.mark.parametrize("count", [2, 33, 1_000])
    def test_group_evaluates(self, count: int) -> None:
        """An exclusive group of up to 1,000 tiers compiles; the highest-priority match wins."""
        top = count - 1
        first, second, third = agree(
            evaluators(Catalog(tiers(count), SCHEMA)),
            [{"spend": 1.5, "n": 1}, {"spend": float(top), "n": 1}, {"spend": -1.0, "n": 1}],
        )
        assert first.tags == {"t1"}
        assert second.tags == {f"t{top}"}
        assert third.tags == set()

    def test_suppressed_tier_gives_way_to_the_next(self, big_group: Evaluators) -> None:
        """In a big group a suppressed winner gives way to the next tier that matches."""
        (result,) = agree(big_group, [{"spend": 500.0, "n": 1}], suppressed={"t500"})
        assert result.tags == {"t499"}

    def test_manual_tags_are_not_assigned(self, big_group: Evaluators) -> None:
        """Manual tags seen by a big group's rules do not change which tier is assigned."""
        (result,) = agree(big_group, [{"spend": 7.0, "n": 1}], tags={"t900"})
        assert "t7" in result.tags

    def test_failed_tier_makes_the_group_unknown(self, big_group: Evaluators) -> None:
        """A tier that fails makes every tier of the big group unknown, as in a small one."""
        (result,) = agree(big_group, [{"spend": 3.0, "n": 0}])
        assert result.tags == set()
        assert len(result.errors) == 1_000


class TestDeepCatalogs:
    def test_long_dependency_chain(self) -> None:
        """A chain of 1,000 tags, each depending on the one before, evaluates to the end."""
        definitions = [{"key": "c0", "rule": "spend >= 1"}]
        definitions += [{"key": f"c{index}", "rule": f"'c{index - 1}' in tags"} for index in range(1, 1_000)]
        (result,) = agree(evaluators(Catalog(definitions, SCHEMA)), [{"spend": 2.0, "n": 1}])
        assert len(result.tags) == 1_000

    @pytest.mark.parametrize(
        "rule",
        [
            " and ".join(["spend >= 1"] * 100),
            " or ".join(["spend < 1"] * 99) + " or spend >= 1",
            "(" * 1_000 + "spend >= 1" + ")" * 1_000,
            "not " * 98 + "spend >= 1",
            "(n == 0 ? false : " * 49 + "spend >= 1" + ")" * 49,
            " + ".join(["n"] * 100) + " > 0",
        ],
    )
    def test_deepest_rules_evaluate(self, rule: str) -> None:
        """Rules as deep as the load-time limit allows compile and evaluate."""
        (result,) = agree(
            evaluators(Catalog([{"key": "deep", "rule": rule}], SCHEMA)), [{"spend": 2.0, "n": 1}]
        )
        assert result.tags == {"deep"}

    @pytest.mark.parametrize(
        "rule",
        [" and ".join(["spend >= 1"] * 102), "not " * 101 + "spend >= 1", " + ".join(["n"] * 102) + " > 0"],
    )
    def test_deeper_rules_are_refused_at_load(self, rule: str) -> None:
        """A rule one step past the limit is refused at load with the limit in the message."""
        with pytest.raises(DefinitionError, match="nests more than 100 levels deep"):
            Catalog([{"key": "deep", "rule": rule}], SCHEMA)


class TestDocumentedLimits:
    def test_the_most_tags_load_check_and_evaluate(self) -> None:
        """A catalog of exactly MAX_TAGS tags, half of them one exclusive group, loads, is checked and
        evaluates: the highest matching tier and every matching ungrouped tag."""
        half = MAX_TAGS // 2
        definitions: list[dict[str, Any]] = [
            {"key": f"t{index}", "rule": f"n >= {index}", "group": "g", "priority": index}
            for index in range(half)
        ]
        definitions += [{"key": f"u{index}", "rule": f"n >= {index}"} for index in range(MAX_TAGS - half)]
        catalog = Catalog(definitions, SCHEMA)
        findings = check_catalog(catalog)
        assert [(finding.code, finding.group) for finding in findings] == [("not-checked", "g")]
        result = Evaluator(catalog).evaluate({"spend": 0.0, "n": 1_000}, now=NOW)
        assert result.tags == {"t1000", *(f"u{index}" for index in range(1_001))}
        assert not result.errors

    def test_one_tag_more_is_refused(self) -> None:
        """One tag past MAX_TAGS is refused at load, before any rule is parsed, with the limit."""
        definitions = [{"key": f"t{index}", "rule": "n >= 1"} for index in range(MAX_TAGS + 1)]
        with pytest.raises(DefinitionError, match=f"the catalog has 5,001 tags; the limit is {MAX_TAGS:,}"):
            Catalog(definitions, SCHEMA)

    def test_too_much_rule_text_is_refused(self) -> None:
        """Rules longer than MAX_RULE_TEXT characters in all are refused at load, with the limit."""
        rule = " and ".join(["n >= 1"] * 5_000)
        count = MAX_RULE_TEXT // len(rule) + 1
        definitions = [{"key": f"t{index}", "rule": rule} for index in range(count)]
        with pytest.raises(
            DefinitionError, match="characters long in all; the limit is 500,000 for a catalog"
        ):
            Catalog(definitions, SCHEMA)
