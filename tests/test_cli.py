"""The tagrules command's contract, run as a subprocess the way scripts run it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

CATALOG = """
schema:
  age: "int | None"
  spend_365d: float
  orders_30d: int
tags:
  - {key: spend_high, rule: "spend_365d >= 100000", group: spend, priority: 2}
  - {key: spend_mid, rule: "spend_365d >= 30000", group: spend, priority: 1}
  - {key: freq_high, rule: "orders_30d >= 3"}
  - {key: vip, name: VIP, rule: "'spend_high' in tags and 'freq_high' in tags"}
  - {key: per_order, rule: "spend_365d / orders_30d > 10000"}
"""

BAD_CATALOG = """
schema:
  spend_365d: float
tags:
  - {key: vip, rule: "spend_356d >= 1"}
  - {key: low, rule: "spend_365d < "}
"""

NOW = "2026-06-01T00:00:00Z"


def tagrules(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        check=False,
    )


@pytest.fixture
def catalog(write: Callable[[str, str], Path]) -> Path:
    return write("catalog.yaml", CATALOG)


@pytest.fixture
def snapshots(write: Callable[[str, str], Path]) -> Path:
    lines = [
        {"id": "a", "age": 30, "spend_365d": 150000.0, "orders_30d": 4},
        {"id": 2, "age": None, "spend_365d": 40000, "orders_30d": 0},
        {"id": "c", "spend_365d": 10.0, "orders_30d": 1},
    ]
    return write("snapshots.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")


class TestValidate:
    def test_valid_catalog(self, catalog: Path) -> None:
        """A valid catalog exits 0 with a one-line summary."""
        result = tagrules("validate", str(catalog))
        assert result.returncode == 0
        assert result.stdout.splitlines() == [
            f"{catalog}: valid: 5 tags (5 active, 0 draft, 0 retired), 1 exclusive group"
        ]

    def test_every_problem_one_per_line(self, write: Callable[[str, str], Path]) -> None:
        """An invalid catalog exits 1 listing each problem as FILE: tag 'KEY': MESSAGE (column N)."""
        path = write("bad.yaml", BAD_CATALOG)
        result = tagrules("validate", str(path))
        assert result.returncode == 1
        assert result.stdout.splitlines() == [
            f"{path}: tag 'vip': unknown field 'spend_356d'; did you mean 'spend_365d'? (column 1)",
            f"{path}: tag 'low': syntax error: the rule ends too early (column 14)",
        ]

    def test_pack_by_name(self) -> None:
        """A pack shipped with tagrules can be named instead of a file."""
        result = tagrules("validate", "retail")
        assert result.returncode == 0
        assert "valid: 47 tags" in result.stdout

    def test_verbose_lists_the_evaluation_order(self, catalog: Path) -> None:
        """--verbose lists the tags in the order they run, groups together, and how they run."""
        result = tagrules("validate", "--verbose", str(catalog))
        assert "  group spend: spend_high, spend_mid" in result.stdout.splitlines()
        assert "compiled to Python: 5 rules" in result.stdout.splitlines()

    def test_verbose_lists_interpreted_rules(self, write: Callable[[str, str], Path]) -> None:
        """--verbose names each rule that runs in the interpreter, and why."""
        path = write(
            "groups.yaml",
            "schema: {email: str}\n"
            "tags:\n  - {key: qq, rule: \"email =~ '(.*)@qq' and $re_groups[0] != ''\"}\n",
        )
        result = tagrules("validate", "--verbose", str(path))
        assert result.returncode == 0, result.stdout
        assert "  qq: $re_groups depends on the last regex match" in result.stdout.splitlines()

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing catalog file is one clear line and exit 1, not a traceback."""
        result = tagrules("validate", str(tmp_path / "nope.yaml"))
        assert result.returncode == 1
        assert result.stdout.strip() == f"{tmp_path / 'nope.yaml'}: no such file"
        assert "Traceback" not in result.stderr


class TestEvaluate:
    def test_one_object_per_line_in_order(self, catalog: Path, snapshots: Path) -> None:
        """Each input line gives one JSON object, in input order, with sorted tags and errors when any."""
        result = tagrules("evaluate", str(catalog), str(snapshots), "--now", NOW)
        assert result.returncode == 0, result.stderr
        assert [json.loads(line) for line in result.stdout.splitlines()] == [
            {"id": "a", "tags": ["freq_high", "per_order", "spend_high", "vip"]},
            {"id": 2, "tags": ["spend_mid"], "errors": {"per_order": "division by zero"}},
            {"id": "c", "tags": []},
        ]

    def test_bad_lines_are_reported_and_skipped(
        self, catalog: Path, write: Callable[[str, str], Path]
    ) -> None:
        """Bad lines go to stderr with their number; good lines are still evaluated; exit 1."""
        path = write(
            "mixed.jsonl",
            '{"id": 1, "spend_365d": 1.0, "orders_30d": 1}\n'
            "not json\n"
            '{"id": 3, "spend_365d": "lots", "orders_30d": 1}\n'
            "[1, 2]\n"
            '{"spend_365d": 1.0, "orders_30d": 1}\n'
            "\n"
            '{"id": 7, "spend_365d": 1.0, "orders_30d": 2}\n',
        )
        result = tagrules("evaluate", str(catalog), str(path), "--now", NOW)
        assert result.returncode == 1
        assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [1, 7]
        errors = result.stderr.splitlines()
        assert errors[0].startswith(f"{path}:2: not valid JSON")
        assert errors[1] == f"{path}:3: field 'spend_365d': expected float, got str 'lots'; line skipped"
        assert errors[2] == f"{path}:4: a snapshot must be a JSON object; line skipped"
        assert errors[3] == f"{path}:5: no 'id' field; line skipped"

    def test_output_file_and_id_field(
        self, catalog: Path, write: Callable[[str, str], Path], tmp_path: Path
    ) -> None:
        """--output writes the results to a file; --id-field picks the id."""
        path = write("s.jsonl", '{"customer": "x", "spend_365d": 200000.0, "orders_30d": 5}\n')
        out = tmp_path / "out.jsonl"
        result = tagrules(
            "evaluate", str(catalog), str(path), "--now", NOW, "--id-field", "customer", "-o", str(out)
        )
        assert result.returncode == 0
        assert result.stdout == ""
        assert json.loads(out.read_text())["id"] == "x"

    def test_stdin(self, catalog: Path) -> None:
        """'-' reads snapshots from standard input."""
        result = tagrules(
            "evaluate",
            str(catalog),
            "-",
            "--now",
            NOW,
            stdin='{"id": 1, "spend_365d": 1.0, "orders_30d": 3}\n',
        )
        assert json.loads(result.stdout) == {"id": 1, "tags": ["freq_high"]}

    def test_invalid_catalog(self, write: Callable[[str, str], Path], snapshots: Path) -> None:
        """An invalid catalog stops evaluation with its problems on stderr."""
        path = write("bad.yaml", BAD_CATALOG)
        result = tagrules("evaluate", str(path), str(snapshots))
        assert result.returncode == 1
        assert "unknown field 'spend_356d'" in result.stderr

    def test_bad_now(self, catalog: Path, snapshots: Path) -> None:
        """A --now that is not ISO 8601 is a usage error."""
        result = tagrules("evaluate", str(catalog), str(snapshots), "--now", "yesterday")
        assert result.returncode == 2
        assert "ISO 8601" in result.stderr

    def test_missing_snapshot_file(self, catalog: Path, tmp_path: Path) -> None:
        """A snapshot file that cannot be read is one clear line."""
        result = tagrules("evaluate", str(catalog), str(tmp_path / "none.jsonl"))
        assert result.returncode == 1
        assert result.stderr.startswith("tagrules: cannot read")


class TestExplain:
    def test_tree(self, catalog: Path, snapshots: Path) -> None:
        """explain prints the outcome and the rule's tree with the values taken."""
        result = tagrules(
            "explain", str(catalog), str(snapshots), "--id", "2", "--tag", "spend_high", "--now", NOW
        )
        assert result.returncode == 0
        assert result.stdout.splitlines() == [
            "spend_high: not assigned (the rule is false)",
            "spend_365d >= 100000 -> false (spend_365d = 40000.0)",
        ]

    def test_unknown_id_and_tag(self, catalog: Path, snapshots: Path) -> None:
        """An id or tag that is not there is a clear error with exit 1."""
        result = tagrules("explain", str(catalog), str(snapshots), "--id", "zz", "--tag", "vip")
        assert result.returncode == 1
        assert "no snapshot with id 'zz'" in result.stderr
        result = tagrules("explain", str(catalog), str(snapshots), "--id", "a", "--tag", "vipp")
        assert result.returncode == 1
        assert "did you mean 'vip'" in result.stderr


class TestSample:
    def test_sample_is_deterministic(self) -> None:
        """tagrules sample writes the same customers for the same seed."""
        first = tagrules("sample", "--count", "3", "--seed", "5")
        second = tagrules("sample", "--count", "3", "--seed", "5")
        assert first.returncode == 0
        assert first.stdout == second.stdout
        assert [json.loads(line)["id"] for line in first.stdout.splitlines()] == [
            "C0000001",
            "C0000002",
            "C0000003",
        ]
