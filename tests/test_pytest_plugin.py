"""The pytest plugin, run end to end in a scratch project with pytester."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# imported here, before any in-process run: pytester forgets modules first imported inside a run, and
# libyaml's C loader cannot be imported twice
import tagrules.testing  # noqa: F401
from tagrules.packs import load_pack

pytest_plugins = ["pytester"]
load_pack("retail")

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
"""

CASES = """
catalog: catalog.yaml
now: "2026-06-01T00:00:00Z"
cases:
  - name: big spender is vip
    snapshot: {spend_365d: 150000.0, orders_30d: 4, last_order_at: "2026-05-01T00:00:00Z"}
    has: [vip]
    lacks: [churned]
  - name: mid spender is vip
    snapshot: {spend_365d: 50000.0, orders_30d: 4, last_order_at: "2026-05-01T00:00:00Z"}
    has: [vip]
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".yaml", catalog=CATALOG)
    pytester.makeini("[pytest]\ntagrules_catalog = catalog.yaml\ntagrules_now = 2026-06-01T00:00:00Z\n")
    return pytester


class TestCaseFiles:
    def test_each_case_is_a_test_item(self, project: pytest.Pytester) -> None:
        """Every case of a *.cases.yaml file is collected as its own test, named after the case."""
        project.makefile(".cases.yaml", tags=CASES)
        result = project.runpytest("--collect-only", "-q")
        result.stdout.fnmatch_lines(
            ["tags.cases.yaml::big spender is vip", "tags.cases.yaml::mid spender is vip"]
        )

    def test_failure_names_case_tag_and_explains(self, project: pytest.Pytester) -> None:
        """A failing case reports the case, the tag and the explanation tree, without a traceback."""
        project.makefile(".cases.yaml", tags=CASES)
        result = project.runpytest()
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            [
                "*tags.cases.yaml: case 'mid spender is vip': 1 tag not as expected",
                "*tag 'vip': expected, but not assigned",
                "*vip: not assigned (the rule is false)",
                "*'spend_high' in tags and 'freq_high' in tags -> false",
            ]
        )
        result.stdout.no_fnmatch_line("*Traceback*")
        result.stdout.no_fnmatch_line("*_pytestplugin.py*")

    def test_malformed_file_fails_its_own_item(self, project: pytest.Pytester) -> None:
        """A bad case file is one failing item naming the file, the case and the problem; others run."""
        project.makefile(
            ".cases.yaml",
            bad="catalog: catalog.yaml\nnow: '2026-06-01'\n"
            "cases:\n  - {name: a, snapshot: {}, has: [vipp]}\n",
            good=CASES,
        )
        result = project.runpytest()
        result.assert_outcomes(passed=1, failed=2)
        result.stdout.fnmatch_lines(["*invalid case file:", "*bad.cases.yaml: case 'a': has: no tag 'vipp'*"])
        result.stdout.fnmatch_lines(["FAILED bad.cases.yaml::invalid case file*"])
        result.stdout.no_fnmatch_line("*Traceback*")
        result.stdout.no_fnmatch_line("*error*during collection*")

    def test_lacks_fails_on_a_failed_rule(self, project: pytest.Pytester) -> None:
        """A case's 'lacks' of a tag whose rule errored fails with the error; 'unknown' passes."""
        project.makefile(
            ".cases.yaml",
            tags="catalog: catalog.yaml\nnow: '2026-06-01'\ncases:\n"
            "  - {name: lacks, snapshot: {spend_365d: 1.0}, lacks: [freq_high]}\n"
            "  - {name: unknown, snapshot: {spend_365d: 1.0}, unknown: [freq_high]}\n",
        )
        result = project.runpytest()
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            ["*tag 'freq_high': not expected, but unknown*", "*the snapshot has no field 'orders_30d'*"]
        )

    def test_pattern_is_configurable(self, pytester: pytest.Pytester) -> None:
        """The tagrules_case_files ini option chooses which files are case files."""
        pytester.makefile(".yaml", catalog=CATALOG)
        pytester.makefile(".yaml", rules_test=CASES)
        pytester.makefile(".cases.yaml", ignored=CASES)
        pytester.makeini("[pytest]\ntagrules_case_files = *_test.yaml\n")
        result = pytester.runpytest("--collect-only", "-q")
        result.stdout.fnmatch_lines(["rules_test.yaml::big spender is vip"])
        result.stdout.no_fnmatch_line("*ignored.cases.yaml*")

    def test_pack_example_passes(self, pytester: pytest.Pytester) -> None:
        """The example case file for the retail pack passes under pytest."""
        shutil.copy(EXAMPLE, pytester.path / EXAMPLE.name)
        result = pytester.runpytest()
        result.assert_outcomes(passed=6)

    def test_coverage_report(self, project: pytest.Pytester) -> None:
        """--tagrules-coverage lists the clauses no case saw both true and false."""
        project.makefile(".cases.yaml", tags=CASES)
        result = project.runpytest("--tagrules-coverage")
        result.stdout.fnmatch_lines(
            [
                "*tagrules rule coverage*",
                "*catalog.yaml (2 snapshots)",
                "*rule coverage: * of * clauses seen both true and false",
                "*freq_high: orders_30d >= 3: never false",
            ]
        )


TEST_MODULE = """
import pytest

def test_vip(assert_tags):
    assert_tags({"spend_365d": 150000.0, "orders_30d": 4, "last_order_at": None}, has={"vip"})

def test_explained_failure(assert_tags):
    assert_tags({"spend_365d": 81234.5, "orders_30d": 4, "last_order_at": None}, has={"vip"})

def test_frozen_now(tagrules_evaluator, tagrules_now):
    assert tagrules_now.isoformat() == "2026-06-01T00:00:00+00:00"
    assert tagrules_evaluator.evaluate(
        {"spend_365d": 0.0, "orders_30d": 0, "last_order_at": "2025-12-03T00:00:00Z"}
    ).now == tagrules_now

@pytest.mark.tagrules(catalog="retail", now="2030-01-01T00:00:00Z")
def test_marker_chooses_pack(tagrules_catalog, tagrules_now):
    assert len(tagrules_catalog) == 47
    assert tagrules_now.year == 2030

def test_tagger_applies_at_the_frozen_time(tagrules_tagger, tagrules_store, tagrules_now):
    tagrules_tagger.apply("c2", {"spend_365d": 150000.0, "orders_30d": 4, "last_order_at": None})
    assert {entry.since for entry in tagrules_store.history("c2")} == {tagrules_now}

def test_assert_tags_now_as_text(assert_tags):
    snapshot = {"spend_365d": 0.0, "orders_30d": 0, "last_order_at": "2026-05-01T00:00:00Z"}
    assert_tags(snapshot, lacks={"churned"})
    assert_tags(snapshot, has={"churned"}, now="2027-01-01T00:00:00Z")

def test_assert_tags_lacks_of_a_failed_rule(assert_tags):
    assert_tags({"spend_365d": 1.0}, lacks={"freq_high"})

def test_store_and_tagger(tagrules_tagger, tagrules_store, tagrules_now):
    snapshot = {"spend_365d": 150000.0, "orders_30d": 4, "last_order_at": None}
    change = tagrules_tagger.apply("c1", snapshot, now=tagrules_now)
    assert change.added == {"vip", "spend_high", "freq_high", "churned"}
    held = {membership.tag for membership in tagrules_store.memberships("c1")}
    assert held == change.added
    assert not tagrules_tagger.apply("c1", snapshot, now=tagrules_now).changed
"""


class TestFixtures:
    def test_fixtures_and_assert_tags(self, project: pytest.Pytester) -> None:
        """assert_tags uses the configured catalog and frozen time; its failure shows the explanation."""
        project.makepyfile(test_rules=TEST_MODULE)
        result = project.runpytest()
        result.assert_outcomes(passed=6, failed=2)
        result.stdout.fnmatch_lines(
            [
                "*TagAssertionError: 1 tag not as expected:",
                "*tag 'vip': expected, but not assigned",
                "*'spend_high' in tags -> false*",
            ]
        )
        result.stdout.fnmatch_lines(
            [
                "*tag 'freq_high': not expected, but unknown*",
                "*the snapshot has no field 'orders_30d'*",
            ]
        )
        result.stdout.fnmatch_lines(
            [
                "FAILED test_rules.py::test_explained_failure*",
                "FAILED test_rules.py::test_assert_tags_lacks_of_a_failed_rule*",
            ]
        )

    def test_missing_catalog_is_explained(self, pytester: pytest.Pytester) -> None:
        """Without a configured catalog the fixture fails saying how to give one."""
        pytester.makepyfile("def test_it(tagrules_catalog):\n    pass\n")
        result = pytester.runpytest()
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(
            ["*no catalog for tagrules_catalog: set the 'tagrules_catalog' ini option*"]
        )

    def test_plugin_is_registered_and_lazy(self) -> None:
        """The plugin is a pytest11 entry point, and loading it imports nothing of tagrules."""
        from importlib.metadata import entry_points

        assert "_tagrules_pytestplugin" in [entry.value for entry in entry_points(group="pytest11")]
        code = "import sys, _tagrules_pytestplugin; print(any(m.startswith('tagrules') for m in sys.modules))"
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert output.stdout.strip() == "False"
