"""``tagrules test`` and the warnings of ``tagrules validate``, run as a subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from test_cli import CATALOG, tagrules

EXAMPLE = Path(__file__).parent.parent / "examples" / "retail.cases.yaml"

CASES = """
catalog: catalog.yaml
now: "2026-06-01T00:00:00Z"
cases:
  - name: big spender is vip
    snapshot: {age: 30, spend_365d: 150000.0, orders_30d: 4}
    has: [vip, spend_high]
  - name: mid spender is vip
    snapshot: {age: null, spend_365d: 50000.0, orders_30d: 4}
    has: [vip]
    lacks: [spend_mid]
"""

GAP_CATALOG = """
schema: {orders_30d: int, orders_90d: int}
tags:
  - {key: freq_high, rule: "orders_30d >= 3", group: frequency, priority: 3}
  - {key: freq_mid, rule: "orders_30d >= 1 and orders_30d <= 2", group: frequency, priority: 2}
  - {key: freq_low, rule: "orders_90d <= 1", group: frequency, priority: 1}
  - {key: never, rule: "orders_30d > 5 and orders_30d < 2"}
"""


@pytest.fixture
def project(write: Callable[[str, str], Path]) -> Path:
    write("catalog.yaml", CATALOG)
    return write("tags.cases.yaml", CASES)


class TestTestCommand:
    def test_all_pass_exits_0(self) -> None:
        """Every case passing: exit 0 and a summary line."""
        result = tagrules("test", str(EXAMPLE))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines() == ["6 cases: 6 passed, 0 failed"]

    def test_failure_names_case_tag_and_explains(self, project: Path) -> None:
        """A failing case exits 1 and names the case and each wrong tag, with the rule explained."""
        result = tagrules("test", str(project))
        assert result.returncode == 1
        assert result.stdout.splitlines() == [
            f"{project}: case 'mid spender is vip': 2 tags not as expected",
            "  tag 'vip': expected, but not assigned",
            "      vip: not assigned (the rule is false)",
            "      'spend_high' in tags and 'freq_high' in tags -> false",
            "      ├── 'spend_high' in tags -> false (tags = {'freq_high', 'spend_mid'})",
            "      └── 'freq_high' in tags -> not evaluated (the left side is false)",
            "  tag 'spend_mid': not expected, but assigned",
            "      spend_mid: assigned (the rule is true)",
            "      spend_365d >= 30000 -> true (spend_365d = 50000.0)",
            "2 cases: 1 passed, 1 failed",
        ]

    def test_malformed_file_is_reported_without_traceback(self, write: Callable[[str, str], Path]) -> None:
        """A bad case file exits 1 with its problems, each naming file and case; other files still run."""
        write("catalog.yaml", CATALOG)
        bad = write(
            "bad.cases.yaml", "catalog: catalog.yaml\ncases:\n  - {name: a, snapshot: {}, has: [vipp]}\n"
        )
        result = tagrules("test", str(bad), str(EXAMPLE))
        assert result.returncode == 1
        assert "Traceback" not in result.stdout + result.stderr
        assert result.stdout.splitlines() == [
            f"{bad}: case 'a': has: no tag 'vipp' in the catalog; did you mean 'vip'?",
            f"{bad}: case 'a': no 'now': "
            "give one for the file or for the case, so that results do not change",
            "6 cases: 6 passed, 0 failed; 1 file not valid",
        ]

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that does not exist is a problem, exit 1."""
        result = tagrules("test", str(tmp_path / "none.cases.yaml"))
        assert result.returncode == 1
        assert result.stdout.splitlines()[0] == f"{tmp_path / 'none.cases.yaml'}: no such file"

    def test_directory_is_searched(self, project: Path) -> None:
        """A directory runs every *.cases.yaml file below it."""
        result = tagrules("test", str(project.parent), "--verbose")
        assert result.stdout.splitlines()[0] == f"{project}: case 'big spender is vip': passed"
        assert result.stdout.splitlines()[-1] == "2 cases: 1 passed, 1 failed"

    def test_coverage(self, project: Path) -> None:
        """--coverage lists the clauses no case saw both true and false."""
        result = tagrules("test", str(project), "--coverage")
        lines = result.stdout.splitlines()
        assert (
            f"{project.parent / 'catalog.yaml'}: rule coverage: 3 of 7 clauses seen both true and false"
            in lines
        )
        assert "  freq_high: orders_30d >= 3: never false" in lines
        assert result.returncode == 1


class TestValidateWarnings:
    def test_retail_passes_its_own_strict_validation(self) -> None:
        """The retail pack silences the warnings its policy means in its checks section: --strict passes."""
        result = tagrules("validate", "retail", "--strict")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines() == [
            "retail: valid: 47 tags (47 active, 0 draft, 0 retired), 10 exclusive groups"
        ]

    def test_silenced_warnings_stay_silent(self, write: Callable[[str, str], Path]) -> None:
        """A catalog's checks section silences per group and per tag what --strict would fail on."""
        checks = """
checks:
  ignore:
    - {group: frequency, check: overlap}
    - {group: frequency, check: gap}
    - {tag: never, check: always-false}
"""
        path = write("catalog.yaml", GAP_CATALOG + checks)
        result = tagrules("validate", str(path), "--strict")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == ""

    def test_strict_fails_on_warnings(self, write: Callable[[str, str], Path]) -> None:
        """--strict turns warnings into exit 1; each warning names the file and the tag or group."""
        path = write("catalog.yaml", GAP_CATALOG)
        result = tagrules("validate", str(path), "--strict")
        assert result.returncode == 1
        assert result.stdout.splitlines()[1:] == [
            f"{path}: tag 'never': warning: the rule is always false, whatever the snapshot [always-false]",
            f"{path}: group 'frequency': warning: no tier matches when orders_30d == 0 and orders_90d >= 2 "
            "(for example orders_30d = 0, orders_90d = 2), between 'freq_mid' and 'freq_low' [gap]",
            f"{path}: group 'frequency': warning: 'freq_high' and 'freq_low' both match when orders_30d >= 3 "
            "and orders_90d <= 1; priority gives those to 'freq_high' [overlap]",
            f"{path}: group 'frequency': warning: 'freq_mid' and 'freq_low' both match when orders_30d >= 1 "
            "and orders_30d <= 2 and orders_90d <= 1; priority gives those to 'freq_mid' [overlap]",
        ]
        assert result.stderr.splitlines() == [f"{path}: 4 warnings"]

    def test_no_warnings_keeps_the_summary_alone(self, write: Callable[[str, str], Path]) -> None:
        """A catalog without findings prints only its summary, also with --strict."""
        path = write("catalog.yaml", CATALOG)
        result = tagrules("validate", str(path), "--strict")
        assert result.returncode == 0
        assert len(result.stdout.splitlines()) == 1
        assert result.stderr == ""

    def test_sample_finds_unmatched_tags(self, write: Callable[[str, str], Path]) -> None:
        """--sample warns about every active tag no snapshot of the sample was given."""
        path = write("catalog.yaml", CATALOG)
        lines = [
            {"id": 1, "age": 30, "spend_365d": 50000.0, "orders_30d": 1},
            {"id": 2, "age": 40, "spend_365d": 10.0, "orders_30d": 2},
        ]
        sample = write("sample.jsonl", "\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
        result = tagrules("validate", str(path), "--sample", str(sample), "--now", "2026-06-01T00:00:00Z")
        assert result.stdout.splitlines()[1:] == [
            f"{path}: tag '{key}': warning: "
            f"no snapshot of {sample} was given the tag (2 snapshots) [never-matched]"
            for key in ("spend_high", "freq_high", "vip")
        ]
        assert f"{sample}:3: not valid JSON" in result.stderr
        assert result.returncode == 1
