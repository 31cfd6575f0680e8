"""The testing kit: assert_tags, the frozen evaluator, case files and rule coverage."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from tagrules import Catalog, DefinitionError, Evaluator, MemoryStore
from tagrules.packs import load_pack
from tagrules.testing import (
    FrozenEvaluator,
    FrozenTagger,
    RuleCoverage,
    TagAssertionError,
    assert_tags,
    check_tags,
    load_case_file,
    run_cases,
)

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
EXAMPLE = Path(__file__).parent.parent / "examples" / "retail.cases.yaml"

CATALOG = """
schema:
  spend_365d: float
  orders_30d: int
  last_order_at: "datetime | None"
tags:
  - {key: spend_high, rule: "spend_365d >= 100000", group: spend, priority: 2}
  - {key: spend_mid, rule: "spend_365d >= 30000", group: spend, priority: 1}
  - {key: freq_high, rule: "orders_30d >= 3"}
  - {key: vip, rule: "'spend_high' in tags and 'freq_high' in tags"}
  - {key: churned, rule: "(last_order_at ?? d'1970-01-01') < $now - t'P180D'"}
  - {key: later, rule: "orders_30d > 100", status: draft}
"""


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.loads(CATALOG)


@pytest.fixture
def evaluator(catalog: Catalog) -> FrozenEvaluator:
    return FrozenEvaluator(catalog, NOW)


class TestFrozenEvaluator:
    def test_now_is_frozen(self, evaluator: FrozenEvaluator) -> None:
        """Every evaluation sees the frozen time as $now."""
        snapshot = {"spend_365d": 0.0, "orders_30d": 0, "last_order_at": "2025-12-03T00:00:00Z"}
        assert "churned" not in evaluator.evaluate(snapshot).tags
        assert evaluator.evaluate(snapshot).now == NOW

    def test_naive_now_is_utc(self, catalog: Catalog) -> None:
        """A naive frozen time is taken as UTC."""
        assert FrozenEvaluator(catalog, datetime.datetime(2026, 6, 1)).now == NOW

    def test_explain_uses_frozen_time(self, evaluator: FrozenEvaluator) -> None:
        """explain() sees the same frozen time as evaluate()."""
        explanation = evaluator.explain({"last_order_at": None}, "churned")
        assert explanation.outcome == "assigned"


class TestAssertTags:
    def test_passes_silently(self, evaluator: FrozenEvaluator) -> None:
        """Expected tags present and unwanted tags absent: no error."""
        snapshot = {"spend_365d": 150000.0, "orders_30d": 4, "last_order_at": "2026-05-01T00:00:00Z"}
        assert_tags(snapshot, has={"vip", "spend_high"}, lacks={"churned", "spend_mid"}, evaluator=evaluator)

    def test_failure_explains_each_wrong_tag(self, evaluator: FrozenEvaluator) -> None:
        """The message names every wrong tag and shows its explanation tree."""
        snapshot = {"spend_365d": 81234.5, "orders_30d": 4, "last_order_at": "2026-05-01T00:00:00Z"}
        with pytest.raises(TagAssertionError) as caught:
            assert_tags(snapshot, has={"vip"}, lacks={"spend_mid"}, evaluator=evaluator)
        assert str(caught.value).splitlines() == [
            "2 tags not as expected:",
            "tag 'vip': expected, but not assigned",
            "    vip: not assigned (the rule is false)",
            "    'spend_high' in tags and 'freq_high' in tags -> false",
            "    ├── 'spend_high' in tags -> false (tags = {'freq_high', 'spend_mid'})",
            "    └── 'freq_high' in tags -> not evaluated (the left side is false)",
            "tag 'spend_mid': not expected, but assigned",
            "    spend_mid: assigned (the rule is true)",
            "    spend_365d >= 30000 -> true (spend_365d = 81234.5)",
        ]
        assert [mismatch.key for mismatch in caught.value.mismatches] == ["vip", "spend_mid"]

    def test_failed_rule_is_unknown(self, evaluator: FrozenEvaluator) -> None:
        """A tag whose rule fails on the snapshot is reported as unknown, with the failure."""
        with pytest.raises(TagAssertionError, match="expected, but unknown") as caught:
            assert_tags({"spend_365d": 1.0}, has={"freq_high"}, evaluator=evaluator)
        assert "the snapshot has no field 'orders_30d'" in str(caught.value)

    def test_accepts_plain_evaluator_and_now(self, catalog: Catalog) -> None:
        """A plain Evaluator works too, with the time given per call."""
        snapshot = {"spend_365d": 0.0, "orders_30d": 0, "last_order_at": "2026-01-01T00:00:00Z"}
        assert_tags(snapshot, lacks="churned", evaluator=Evaluator(catalog), now=NOW)
        later = NOW + datetime.timedelta(days=200)
        assert_tags(snapshot, has="churned", evaluator=Evaluator(catalog), now=later)

    def test_manual_tags_are_seen_by_rules(self, evaluator: FrozenEvaluator) -> None:
        """Manual tags given to assert_tags are visible to rules testing them."""
        snapshot = {"spend_365d": 0.0, "orders_30d": 4, "last_order_at": None}
        assert_tags(snapshot, has={"vip"}, tags={"spend_high"}, evaluator=evaluator)

    def test_unknown_tag_is_an_error(self, evaluator: FrozenEvaluator) -> None:
        """A misspelt tag key is refused with the nearest key, not silently passed."""
        with pytest.raises(KeyError, match="did you mean 'churned'"):
            assert_tags({}, lacks={"churnd"}, evaluator=evaluator)

    def test_tag_in_has_and_lacks_is_an_error(self, evaluator: FrozenEvaluator) -> None:
        """Asking for a tag and its absence at once is refused."""
        with pytest.raises(ValueError, match="both 'has' and 'lacks': vip"):
            check_tags(evaluator, {}, has={"vip"}, lacks={"vip"})

    def test_lacks_fails_on_a_failed_rule(self, evaluator: FrozenEvaluator) -> None:
        """A tag whose rule failed is unknown, not absent: 'lacks' fails and the message gives the error."""
        with pytest.raises(TagAssertionError) as caught:
            assert_tags({"spend_365d": 1.0}, lacks={"freq_high"}, evaluator=evaluator)
        lines = str(caught.value).splitlines()
        assert lines[1] == (
            "tag 'freq_high': not expected, but unknown (its rule failed, so absence is not known)"
        )
        assert "the snapshot has no field 'orders_30d'" in lines[2]
        assert caught.value.mismatches[0].expected is False

    def test_unknown_expects_a_failed_rule(self, evaluator: FrozenEvaluator) -> None:
        """'unknown' passes on a failed rule and fails, explained, on a rule that decided."""
        assert_tags({"spend_365d": 1.0}, lacks={"spend_high"}, unknown={"freq_high"}, evaluator=evaluator)
        snapshot = {"spend_365d": 1.0, "orders_30d": 5, "last_order_at": None}
        with pytest.raises(TagAssertionError, match=r"tag 'freq_high': expected unknown .*, but assigned"):
            assert_tags(snapshot, unknown={"freq_high"}, evaluator=evaluator)
        with pytest.raises(ValueError, match="both 'lacks' and 'unknown': vip"):
            check_tags(evaluator, {}, lacks={"vip"}, unknown={"vip"})

    def test_now_may_be_iso_text(self, catalog: Catalog) -> None:
        """now= takes ISO 8601 text as the ini option and markers do; naive text is UTC."""
        snapshot = {"spend_365d": 0.0, "orders_30d": 0, "last_order_at": "2026-01-01T00:00:00Z"}
        assert_tags(
            snapshot, has="churned", evaluator=FrozenEvaluator(catalog, NOW), now="2026-12-31T00:00:00Z"
        )
        assert_tags(snapshot, lacks="churned", evaluator=Evaluator(catalog), now="2026-06-01T00:00:00")
        with pytest.raises(ValueError, match="'June' is not an ISO 8601 datetime"):
            assert_tags(snapshot, lacks="churned", evaluator=Evaluator(catalog), now="June")

    def test_model_defaults_fill_missing_fields(self) -> None:
        """Snapshots of a model schema need only the fields that differ from the model's defaults."""
        retail = FrozenEvaluator(load_pack("retail"), NOW)
        snapshot = {"id": "x", "registered_at": "2024-01-01T00:00:00Z", "complaints_90d": 3}
        assert_tags(snapshot, has={"unsatisfied", "inactive"}, lacks={"satisfied"}, evaluator=retail)


class TestFrozenTagger:
    def test_calls_happen_at_the_frozen_time(self, catalog: Catalog) -> None:
        """apply, overrides and apply_many without now are stored at the frozen time; now= overrides it."""
        tagger = FrozenTagger(catalog, MemoryStore(), now=datetime.datetime(2026, 6, 1))
        snapshot = {"spend_365d": 150000.0, "orders_30d": 4, "last_order_at": None}
        assert tagger.apply("c1", snapshot).added == {"spend_high", "freq_high", "vip", "churned"}
        tagger.include("c2", "vip", by="ann", reason="asked")
        later = NOW + datetime.timedelta(days=1)
        tagger.apply_many([("c3", snapshot)], now=later)
        since = {(entry.customer_id, entry.since) for entry in tagger.store.history("c1")}
        since |= {(entry.customer_id, entry.since) for entry in tagger.store.history("c2")}
        since |= {(entry.customer_id, entry.since) for entry in tagger.store.history("c3")}
        assert since == {("c1", NOW), ("c2", NOW), ("c3", later)}
        assert tagger.catalog is catalog


def write_cases(tmp_path: Path, text: str, catalog: str = CATALOG) -> Path:
    (tmp_path / "catalog.yaml").write_text(catalog, encoding="utf-8")
    path = tmp_path / "tags.cases.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD_CASES = """
catalog: catalog.yaml
now: "2026-06-01T00:00:00Z"
cases:
  - name: big spender
    snapshot: {spend_365d: 150000.0, orders_30d: 4, last_order_at: "2026-05-01T00:00:00Z"}
    has: [vip, spend_high]
    lacks: [churned]
  - name: wrong expectation
    snapshot: {spend_365d: 50000.0, orders_30d: 4, last_order_at: null}
    has: [vip]
  - name: later in the year
    now: "2027-06-01T00:00:00Z"
    snapshot: {spend_365d: 1.0, orders_30d: 0, last_order_at: "2026-05-01T00:00:00Z"}
    has: [churned]
"""


class TestCaseFiles:
    def test_cases_load_in_order(self, tmp_path: Path) -> None:
        """A case file gives its catalog (relative to the file) and its cases, in order."""
        case_file = load_case_file(write_cases(tmp_path, GOOD_CASES))
        assert [case.name for case in case_file.cases] == [
            "big spender",
            "wrong expectation",
            "later in the year",
        ]
        assert case_file.cases[0].has == ("vip", "spend_high")
        assert case_file.cases[0].now == NOW
        assert case_file.cases[2].now == datetime.datetime(2027, 6, 1, tzinfo=datetime.timezone.utc)
        assert "freq_high" in case_file.catalog

    def test_results_name_case_tag_and_explanation(self, tmp_path: Path) -> None:
        """A failing case's report names the file, the case, the tag and explains the rule."""
        path = write_cases(tmp_path, GOOD_CASES)
        results = list(run_cases(load_case_file(path)))
        assert [result.passed for result in results] == [True, False, True]
        assert str(results[1]).splitlines()[:4] == [
            f"{path}: case 'wrong expectation': 1 tag not as expected",
            "  tag 'vip': expected, but not assigned",
            "      vip: not assigned (the rule is false)",
            "      'spend_high' in tags and 'freq_high' in tags -> false",
        ]

    def test_lacks_fails_and_unknown_passes_on_a_failed_rule(self, tmp_path: Path) -> None:
        """A case's 'lacks' fails on a tag whose rule errored, with the error; 'unknown' expects it."""
        text = """
catalog: catalog.yaml
now: "2026-06-01T00:00:00Z"
cases:
  - name: failed rule is not absent
    snapshot: {spend_365d: 1.0}
    lacks: [freq_high]
  - name: failed rule expected
    snapshot: {spend_365d: 1.0}
    lacks: [spend_high]
    unknown: [freq_high, vip]
"""
        case_file = load_case_file(write_cases(tmp_path, text))
        assert case_file.cases[1].unknown == ("freq_high", "vip")
        failed, expected = run_cases(case_file)
        assert expected.passed
        assert not failed.passed
        report = str(failed)
        assert "tag 'freq_high': not expected, but unknown" in report
        assert "the snapshot has no field 'orders_30d'" in report

    def test_pack_name_as_catalog(self) -> None:
        """The example case file names the retail pack, and every case passes."""
        case_file = load_case_file(EXAMPLE)
        assert case_file.catalog is load_pack("retail")
        results = list(run_cases(case_file))
        assert len(results) >= 5
        assert all(result.passed for result in results), "\n".join(map(str, results))

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("[1, 2]", "tags.cases.yaml: a case file must be a mapping with 'catalog', 'now' and 'cases'"),
            ("catalog: nowhere.yaml\ncases: []", "catalog 'nowhere.yaml' is neither a file"),
            ("catalog: catalog.yaml\nnow: 2026\ncases: []", "'now' must be an ISO 8601 datetime in quotes"),
            ("catalog: catalog.yaml\nnow: '2026-06-01'\ncases: {}", "'cases' must be a list of cases"),
            (
                "catalog: catalog.yaml\nnow: '2026-06-01'\ncase: []",
                "unknown entry 'case'; did you mean 'cases'?",
            ),
            ("catalog: catalog.yaml\ncases: [{name: a, snapshot: {}, has: [vip]}]", "case 'a': no 'now'"),
            ("catalog: catalog.yaml\nnow: '2026-06-01'\ncases: [7]", "case #1 must be a mapping"),
            ("catalog: catalog.yaml\nnow: x\ncases: []", "'now' 'x' is not an ISO 8601 datetime"),
            ("catalog: [", "not valid YAML"),
        ],
    )
    def test_malformed_file_is_a_clear_error(self, tmp_path: Path, text: str, message: str) -> None:
        """A malformed case file raises DefinitionError naming the file and what is wrong."""
        path = write_cases(tmp_path, text)
        with pytest.raises(DefinitionError) as caught:
            load_case_file(path)
        assert message in str(caught.value)
        assert all(problem.file == str(path) for problem in caught.value.problems)

    def test_every_case_problem_is_reported_with_its_case(self, tmp_path: Path) -> None:
        """Each bad case is named, and every problem of the file is reported at once."""
        text = """
catalog: catalog.yaml
now: "2026-06-01T00:00:00Z"
cases:
  - name: typo in a tag
    snapshot: {spend_365d: 1.0}
    has: [spend_hihg]
  - name: typo in a field
    snapshot: {spend_356d: 1.0, orders_30d: many}
    lacks: [vip]
  - name: typo in a field
    snapshot: {}
    has: [vip]
    lacks: [vip]
  - name: checks nothing
    snapshot: {}
  - name: draft tag
    snapshot: {}
    has: [later]
    expect: [vip]
"""
        path = write_cases(tmp_path, text)
        with pytest.raises(DefinitionError) as caught:
            load_case_file(path)
        assert [str(problem) for problem in caught.value.problems] == [
            f"{path}: case 'typo in a tag': "
            "has: no tag 'spend_hihg' in the catalog; did you mean 'spend_high'?",
            f"{path}: case 'typo in a field': "
            "snapshot: unknown field 'spend_356d'; did you mean 'spend_365d'?",
            f"{path}: case 'typo in a field': snapshot: field 'orders_30d': expected int, got str 'many'",
            f"{path}: case 'typo in a field': another case has the same name; names must be unique in a file",
            f"{path}: case 'typo in a field': tag 'vip' is in both 'has' and 'lacks'",
            f"{path}: case 'checks nothing': the case checks nothing; give it 'has', 'lacks' or 'unknown'",
            f"{path}: case 'draft tag': unknown entry 'expect'",
            f"{path}: case 'draft tag': has: tag 'later' is draft and never assigned",
        ]

    def test_invalid_catalog_problems_name_the_catalog(self, tmp_path: Path) -> None:
        """Problems of the catalog a case file names are reported with the catalog's file."""
        bad = "schema: {spend_365d: float}\ntags:\n  - {key: vip, rule: 'spend_356d > 1'}\n"
        path = write_cases(tmp_path, "catalog: catalog.yaml\nnow: '2026-06-01'\ncases: []", catalog=bad)
        with pytest.raises(DefinitionError) as caught:
            load_case_file(path)
        assert str(caught.value.problems[0]).startswith(
            f"{tmp_path / 'catalog.yaml'}: tag 'vip': unknown field"
        )


class TestRuleCoverage:
    def test_clauses_seen_both_ways_are_covered(self, catalog: Catalog) -> None:
        """A clause counts as covered once snapshots made it both true and false."""
        coverage = RuleCoverage(catalog)
        coverage.record({"spend_365d": 150000.0, "orders_30d": 4, "last_order_at": None}, now=NOW)
        coverage.record({"spend_365d": 10.0, "orders_30d": 1, "last_order_at": None}, now=NOW)
        states = {(clause.tag, clause.clause): clause.covered for clause in coverage.clauses}
        assert states[("freq_high", "orders_30d >= 3")]
        assert states[("vip", "'spend_high' in tags")]
        assert not states[("churned", "(last_order_at ?? d'1970-01-01T00:00:00+00:00') < $now - t'P180D'")]

    def test_report_lists_uncovered_clauses(self, catalog: Catalog) -> None:
        """The report says how many clauses are covered and why each other one is not."""
        coverage = RuleCoverage(catalog)
        coverage.record({"spend_365d": 10.0, "orders_30d": 1, "last_order_at": None}, now=NOW)
        assert coverage.report(tags=["vip"]).splitlines() == [
            "rule coverage: 0 of 3 clauses seen both true and false",
            "vip: 'spend_high' in tags and 'freq_high' in tags: never true",
            "vip: 'spend_high' in tags: never true",
            "vip: 'freq_high' in tags: never evaluated",
        ]

    def test_ternary_branches_are_clauses(self) -> None:
        """The condition and each branch of a ?: are clauses of their own."""
        built = Catalog(tags=[{"key": "t", "rule": "a > 1 ? b > 2 : b > 5"}], schema={"a": "int", "b": "int"})
        coverage = RuleCoverage(built)
        for a, b in [(2, 3), (2, 1), (0, 6)]:
            coverage.record({"a": a, "b": b}, now=NOW)
        assert [str(clause) for clause in coverage.uncovered] == ["t: b > 5: never false"]

    def test_cases_record_coverage(self) -> None:
        """Running cases with a coverage records each case's snapshot."""
        case_file = load_case_file(EXAMPLE)
        coverage = RuleCoverage(case_file.catalog)
        list(run_cases(case_file, coverage=coverage))
        assert coverage.snapshots == len(case_file.cases)
        covered = {clause.tag for clause in coverage.clauses if clause.covered}
        assert {"spend_high", "vip", "churned"} <= covered


class TestPublicNames:
    def test_testing_all_is_pinned(self) -> None:
        """tagrules.testing exports exactly the documented names, sorted."""
        import tagrules.testing

        assert tagrules.testing.__all__ == [
            "Case",
            "CaseFile",
            "CaseResult",
            "ClauseCoverage",
            "FrozenEvaluator",
            "FrozenTagger",
            "RuleCoverage",
            "TagAssertionError",
            "TagMismatch",
            "assert_tags",
            "boundary_snapshots",
            "boundary_values",
            "check_tags",
            "load_case_file",
            "resolve_catalog",
            "run_case",
            "run_cases",
            "snapshots",
        ]
        for name in tagrules.testing.__all__:
            assert hasattr(tagrules.testing, name), name

    def test_analysis_all_is_pinned(self) -> None:
        """tagrules.analysis exports the checks and their finding type."""
        import tagrules.analysis

        assert tagrules.analysis.__all__ == ["Finding", "check_catalog", "check_sample"]

    def test_assertion_error_is_an_assertion_error(self) -> None:
        """A failed tag assertion is an AssertionError, so every test runner reports it as a failure."""
        assert issubclass(TagAssertionError, AssertionError)
