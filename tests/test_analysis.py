"""The static checks of catalogs: gaps, overlaps and shadowed tiers, constant rules, unmatched tags."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagrules import Catalog, DefinitionError, Evaluator
from tagrules.analysis import Finding, check_catalog, check_sample
from tagrules.packs import load_pack

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


def catalog(tags: list[dict[str, Any]], schema: dict[str, str] | None = None) -> Catalog:
    return Catalog(tags=tags, schema=schema or {"orders": "int", "recent": "int", "spend": "float"})


def tier(key: str, rule: str, priority: int, group: str = "tiers") -> dict[str, Any]:
    return {"key": key, "rule": rule, "group": group, "priority": priority}


def codes(findings: list[Finding]) -> list[str]:
    return [finding.code for finding in findings]


class TestGroups:
    def test_retail_frequency_gap_is_found(self) -> None:
        """The retail pack's frequency tiers leave two purchases in a quarter (none this month) untagged
        (the pack silences the warning; without its checks section it is found)."""
        data = load_pack("retail").to_data()
        del data["checks"]
        findings = check_catalog(Catalog.from_data(data, source="catalog.yaml"))
        gaps = [finding for finding in findings if finding.code == "gap" and finding.group == "frequency"]
        assert len(gaps) == 1
        assert gaps[0].message == (
            "no tier matches when orders_30d == 0 and orders_90d >= 2 "
            "(for example orders_30d = 0, orders_90d = 2), between 'freq_mid' and 'freq_low'"
        )
        assert gaps[0].file is not None
        assert gaps[0].file.endswith("catalog.yaml")

    def test_hole_between_tiers_is_a_gap(self) -> None:
        """A value range between two tiers that neither matches is reported with its bounds."""
        findings = check_catalog(catalog([tier("high", "orders >= 3", 2), tier("low", "orders <= 1", 1)]))
        assert [str(finding) for finding in findings] == [
            "<catalog>: group 'tiers': warning: "
            "no tier matches when orders == 2, between 'high' and 'low' [gap]"
        ]

    def test_float_gap_has_strict_bounds(self) -> None:
        """For float fields the gap's bounds say whether the thresholds belong to it."""
        findings = check_catalog(catalog([tier("high", "spend > 100", 2), tier("low", "spend < 50", 1)]))
        assert [finding.message for finding in findings] == [
            "no tier matches when spend >= 50 and spend <= 100, between 'high' and 'low'"
        ]

    def test_edges_of_the_range_are_not_gaps(self) -> None:
        """Values below the lowest tier or above the highest are taken as intended, not reported."""
        findings = check_catalog(
            catalog([tier("high", "spend >= 100000", 2), tier("mid", "spend >= 30000", 1)])
        )
        assert findings == []

    def test_contiguous_tiers_have_no_findings(self) -> None:
        """Tiers that meet exactly, nested by priority, give no warning."""
        tags = [
            tier("high", "spend >= 100000", 3),
            tier("mid", "spend >= 30000", 2),
            tier("low", "spend < 30000", 1),
        ]
        assert check_catalog(catalog(tags)) == []

    def test_crossing_ranges_overlap(self) -> None:
        """Two tiers sharing an edge value (both include 25) are an overlap priority resolves."""
        tags = [tier("young", "orders >= 18 and orders <= 25", 2), tier("adult", "orders >= 25", 1)]
        findings = check_catalog(catalog(tags))
        assert codes(findings) == ["overlap"]
        assert findings[0].message == (
            "'young' and 'adult' both match when orders == 25; priority gives those to 'young'"
        )

    def test_fully_covered_tier_is_shadowed(self) -> None:
        """A tier whose every value a higher tier takes is never assigned."""
        tags = [tier("many", "orders >= 2", 2), tier("lots", "orders >= 5", 1)]
        findings = check_catalog(catalog(tags))
        assert codes(findings) == ["shadowed"]
        assert "'lots' is never assigned" in findings[0].message
        assert "'many'" in findings[0].message

    def test_negative_counts_are_not_gaps(self) -> None:
        """Fields compared only with non-negative numbers are taken as non-negative."""
        tags = [
            tier("active", "orders >= 1 or recent >= 1", 2),
            tier("inactive", "orders == 0 and recent == 0", 1),
        ]
        assert check_catalog(catalog(tags)) == []

    def test_groups_with_other_rules_are_not_checked(self) -> None:
        """A tier that tests tags or text makes its group's ranges unknown; nothing is claimed."""
        tags = [
            {"key": "vip", "rule": "orders >= 10"},
            tier("a", "'vip' in tags", 2),
            tier("c", "orders <= 1", 1),
        ]
        assert check_catalog(catalog(tags)) == []


class TestConstantRules:
    @pytest.mark.parametrize(
        ("rule", "code"),
        [
            ("orders > 5 and orders < 3", "always-false"),
            ("spend >= 10 or spend < 20", "always-true"),
            ("not (orders > 1 or orders <= 1)", "always-false"),
            ("'vip' in tags or 'vip' not in tags", "always-true"),
        ],
    )
    def test_constant_rule_is_reported(self, rule: str, code: str) -> None:
        """A rule whose outcome never depends on the snapshot is reported on its tag."""
        tags = [{"key": "vip", "rule": "orders >= 10"}, {"key": "odd", "rule": rule}]
        findings = check_catalog(catalog(tags))
        assert [(finding.code, finding.tag) for finding in findings] == [(code, "odd")]

    def test_catch_all_lowest_tier_is_not_reported(self) -> None:
        """``true`` as the lowest tier of a group is the usual fallback, not a mistake."""
        tags = [tier("a", "orders >= 3", 2, "klass"), tier("c", "true", 1, "klass")]
        assert check_catalog(catalog(tags)) == []

    def test_ungrouped_true_rule_is_reported(self) -> None:
        """An ungrouped tag whose rule is ``true`` is given to everyone."""
        findings = check_catalog(catalog([{"key": "everyone", "rule": "true"}]))
        assert str(findings[0]) == (
            "<catalog>: tag 'everyone': warning: the rule is always true, whatever the snapshot [always-true]"
        )

    def test_rules_reading_the_snapshot_are_not_constant(self) -> None:
        """Ordinary rules over fields, text and time are not reported."""
        tags = [
            {"key": "a", "rule": "orders >= 3 and spend < 10.5"},
            {"key": "b", "rule": "recent != 2 or orders == 2"},
        ]
        assert check_catalog(catalog(tags)) == []


class TestSample:
    def test_unmatched_tags_are_reported(self) -> None:
        """Active tags no snapshot of the sample got are reported, with the sample's size."""
        built = catalog([{"key": "big", "rule": "spend > 100"}, {"key": "small", "rule": "spend <= 100"}])
        sample = [{"orders": 1, "recent": 0, "spend": 5.0}, {"orders": 2, "recent": 1, "spend": 50.0}]
        findings = check_sample(built, sample, now=NOW, file="sample.jsonl")
        assert [(finding.code, finding.tag, finding.message) for finding in findings] == [
            ("never-matched", "big", "no snapshot of sample.jsonl was given the tag (2 snapshots)")
        ]

    def test_failures_are_counted(self) -> None:
        """A tag whose rule failed on the sample says on how many snapshots."""
        built = catalog([{"key": "ratio", "rule": "spend / orders > 10"}])
        findings = check_sample(built, [{"orders": 0, "spend": 5.0}], now=NOW)
        assert findings[0].message.endswith("its rule failed on 1 of them")

    def test_retail_sample_matches_every_tag(self) -> None:
        """Generated retail customers exercise every tag of the pack."""
        from tagrules.packs.retail import REFERENCE_NOW, generate_customers

        retail = load_pack("retail")
        assert check_sample(retail, generate_customers(300, seed=1), now=REFERENCE_NOW) == []


def _atoms(draw: st.DrawFn, depth: int) -> str:
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        field = draw(st.sampled_from(["x", "y"]))
        operator = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        return f"{field} {operator} {draw(st.integers(0, 5))}"
    kind = draw(st.sampled_from(["and", "or", "not"]))
    if kind == "not":
        return f"not ({_atoms(draw, depth - 1)})"
    return f"({_atoms(draw, depth - 1)} {kind} {_atoms(draw, depth - 1)})"


@st.composite
def threshold_rules(draw: st.DrawFn) -> str:
    return _atoms(draw, 3)


# every piece of the ranges the rules split: thresholds are 0..5
_POINTS = [{"x": x, "y": y} for x in range(-2, 8) for y in range(-2, 8)]


class TestAgainstEvaluation:
    @given(threshold_rules())
    def test_constant_rules_match_evaluation(self, rule: str) -> None:
        """A rule is reported always true (false) exactly when evaluation on every value agrees."""
        built = Catalog(tags=[{"key": "t", "rule": rule}], schema={"x": "int", "y": "int"})
        evaluator = Evaluator(built)
        outcomes = {"t" in evaluator.evaluate(point, now=NOW).tags for point in _POINTS}
        expected = [] if len(outcomes) == 2 else ["always-true" if outcomes.pop() else "always-false"]
        assert codes(check_catalog(built)) == expected

    @given(st.lists(threshold_rules(), min_size=2, max_size=3))
    def test_group_claims_match_evaluation(self, rules: list[str]) -> None:
        """Shadowed tiers are never assigned, and reported gaps hold values no tier gets."""
        tags = [tier(f"t{index}", rule, 10 - index) for index, rule in enumerate(rules)]
        built = Catalog(tags=tags, schema={"x": "int", "y": "int"})
        evaluator = Evaluator(built)
        assigned = [evaluator.evaluate(point, now=NOW).tags for point in _POINTS if min(point.values()) >= 0]
        for finding in check_catalog(built):
            if finding.code == "shadowed":
                key = finding.message.split("'")[1]
                assert all(key not in tags for tags in assigned)
            elif finding.code == "gap":
                assert any(not tags for tags in assigned)


def bands(count: int, missing: int) -> list[dict[str, Any]]:
    """``count`` one-unit tiers of spend, highest first, without tier ``missing``."""
    return [
        tier(f"t{index}", f"spend >= {index} and spend < {index + 1}", index)
        for index in reversed(range(count))
        if index != missing
    ]


class TestBigGroups:
    def test_thousand_tiers_are_checked_whole(self) -> None:
        """A 1,000-tier group is checked completely: its gap, its two crossings and its hidden tier."""
        tags = [
            tier("wide", "spend >= 100.5 and spend < 101.5", 2_000),
            *bands(1_000, missing=500),
            tier("hidden", "spend >= 10.25 and spend < 10.75", -1),
        ]
        findings = check_catalog(catalog(tags))
        assert sorted(codes(findings)) == ["gap", "overlap", "overlap", "shadowed"]
        messages = {finding.code: finding.message for finding in findings}
        assert (
            messages["gap"] == "no tier matches when spend >= 500 and spend < 501, between 't501' and 't499'"
        )
        assert (
            messages["shadowed"]
            == "'hidden' is never assigned: every value it matches is taken by the higher tier 't10'"
        )

    def test_too_many_pairs_are_not_checked_for_overlaps(self) -> None:
        """Past the pair budget the overlap check says it did not run; gaps are still found."""
        findings = check_catalog(catalog(bands(1_500, missing=7)))
        assert codes(findings) == ["gap", "not-checked"]
        assert (
            findings[1].message
            == "overlaps not checked: 1,499 tiers make 1,122,751 pairs, more than 1,000,000"
        )

    def test_too_many_cases_are_not_checked(self) -> None:
        """A group whose thresholds split its fields into too many cases says it was not checked."""
        tags = [
            tier(f"t{index}", f"orders >= {index} and recent >= {index} and spend >= {index}", index)
            for index in range(40)
        ]
        (finding,) = check_catalog(catalog(tags))
        assert finding.code == "not-checked"
        assert finding.message.startswith("not checked: the tiers split orders, recent, spend into ")


GAPPY = [
    tier("high", "orders >= 3", 2, group="freq"),
    tier("low", "orders <= 1", 1, group="freq"),
    tier("big", "spend >= 10", 2, group="spend"),
    tier("small", "spend < 5", 1, group="spend"),
    {"key": "never", "rule": "orders > 5 and orders < 2"},
]


class TestIgnoredChecks:
    def test_a_group_silences_its_own_warning_only(self) -> None:
        """An entry for one group silences that check there, and not in another group."""
        checks = {
            "ignore": [{"group": "freq", "check": "gap", "reason": "two orders are neither, on purpose"}]
        }
        findings = check_catalog(Catalog(GAPPY, {"orders": "int", "spend": "float"}, checks=checks))
        assert [(finding.code, finding.group or finding.tag) for finding in findings] == [
            ("always-false", "never"),
            ("gap", "spend"),
        ]

    def test_a_tag_and_everywhere(self) -> None:
        """An entry for a tag silences its warning; one without group or tag silences the check everywhere."""
        checks = {"ignore": [{"tag": "never", "check": "always-false"}, {"check": "gap"}]}
        assert check_catalog(Catalog(GAPPY, {"orders": "int", "spend": "float"}, checks=checks)) == []

    def test_never_matched_can_be_silenced(self) -> None:
        """The sample check heeds the entries too."""
        checks = {"ignore": [{"tag": "high", "check": "never-matched"}]}
        catalog = Catalog(GAPPY[:2], {"orders": "int", "spend": "float"}, checks=checks)
        findings = check_sample(catalog, [{"orders": 0, "spend": 1.0}], now=NOW)
        assert findings == []

    def test_written_and_read_back(self) -> None:
        """A catalog's checks section survives to_data and from_data."""
        checks = {"ignore": [{"group": "freq", "check": "gap", "reason": "on purpose"}]}
        catalog = Catalog(GAPPY, {"orders": "int", "spend": "float"}, checks=checks)
        again = Catalog.from_data(catalog.to_data())
        assert again.ignored_checks == catalog.ignored_checks
        assert again.to_data()["checks"] == checks

    @pytest.mark.parametrize(
        ("checks", "message"),
        [
            (
                {"ignore": [{"group": "freq", "check": "gaps"}]},
                "entry 1: unknown check 'gaps'; did you mean 'gap'?",
            ),
            (
                {"ignore": [{"group": "fraq", "check": "gap"}]},
                "entry 1: no exclusive group 'fraq'; did you mean 'freq'?",
            ),
            ({"ignore": [{"tag": "nevr", "check": "gap"}]}, "entry 1: no tag 'nevr'; did you mean 'never'?"),
            (
                {"ignore": [{"group": "freq", "tag": "high", "check": "gap"}]},
                "entry 1: give 'group' or 'tag', not both",
            ),
            ({"ignore": [{"group": "freq", "check": "gap", "why": "x"}]}, "entry 1: unknown field 'why'"),
            ({"ignore": [{"group": "freq"}]}, "entry 1: no 'check'; the checks are gap, overlap"),
            ({"skip": []}, "'checks' must be a mapping with one entry, 'ignore'"),
            ({"ignore": "gap"}, "'checks.ignore' must be a list"),
        ],
    )
    def test_bad_entries_are_refused(self, checks: dict[str, Any], message: str) -> None:
        """Each wrong entry is a load problem in the checks section, naming the entry."""
        with pytest.raises(DefinitionError) as caught:
            Catalog(GAPPY, {"orders": "int", "spend": "float"}, checks=checks)
        (problem,) = caught.value.problems
        assert problem.section == "checks"
        assert message in problem.message
