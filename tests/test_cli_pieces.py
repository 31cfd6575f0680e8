"""The CLI's options for scripts: run --id-field/--column/--all/--json, --json elsewhere, explain all."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_helpers import run_cli
from tagrules import Catalog, Evaluator

CATALOG = """
schema:
  spend: float
  orders: int
tags:
  - {key: big, rule: "spend >= 100"}
  - {key: frequent, rule: "orders >= 3"}
  - {key: loyal, rule: "'frequent' in tags and spend >= 10"}
"""
NOW = "2026-06-01T00:00:00Z"
LATER = "2026-07-01T00:00:00Z"


@pytest.fixture
def catalog(write: Callable[[str, str], Path]) -> Path:
    return write("catalog.yaml", CATALOG)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


class TestRunOptions:
    """`run` takes the id field and the column names, as evaluate and count do."""

    def test_id_field(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, store: str, write: Callable[[str, str], Path]
    ) -> None:
        """--id-field names the field holding the id, as for evaluate and explain."""
        path = write("in.jsonl", '{"key": "k1", "spend": 500, "orders": 1}\n')
        status, _, err = run_cli(
            capsys, "run", str(catalog), str(path), "--store", store, "--id-field", "key"
        )
        assert (status, err) == (0, "")
        assert run_cli(capsys, "members", "--store", store, "--tag", "big")[1] == "k1\n"

    def test_column(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, store: str, tmp_path: Path
    ) -> None:
        """--column FIELD=COLUMN reads a field from a column of another name, as count does."""
        source = tmp_path / "source.db"
        with sqlite3.connect(source) as connection:
            connection.execute(
                "create table customers (id text primary key, total_spend real, orders integer)"
            )
            connection.execute("insert into customers values ('a', 500, 1)")
        table = ["--db", f"sqlite:///{source}", "--table", "customers", "--column", "spend=total_spend"]
        status, _, err = run_cli(capsys, "run", str(catalog), *table, "--store", store, "--now", NOW)
        assert status == 0, err
        assert run_cli(capsys, "members", "--store", store, "--tag", "big")[1] == "a\n"

    def test_column_needs_a_table(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, write: Callable[[str, str], Path]
    ) -> None:
        """--column with a JSON Lines input is refused: there are no columns to rename."""
        path = write("in.jsonl", '{"id": "a"}\n')
        status, _, err = run_cli(capsys, "run", str(catalog), str(path), "--column", "spend=total")
        assert status == 1
        assert "--column FIELD=COLUMN names table columns; it goes with --db and --table" in err


class TestRunSummary:
    """The summary lists the tags that changed; --all lists every tag; --json is one object."""

    def test_only_changed_tags_then_all(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, store: str, write: Callable[[str, str], Path]
    ) -> None:
        """A second run that changes one tag lists that tag alone, and says how many are unchanged."""
        first = write("first.jsonl", '{"id": "a", "spend": 500, "orders": 4}\n')
        second = write("second.jsonl", '{"id": "a", "spend": 50, "orders": 4}\n')
        assert run_cli(capsys, "run", str(catalog), str(first), "--store", store, "--now", NOW)[0] == 0
        status, out, _ = run_cli(capsys, "run", str(catalog), str(second), "--store", store, "--now", LATER)
        assert status == 0
        assert out.splitlines() == [
            "tag    members      added    removed     errors",
            "big          0          0          1          0",
            "(2 tags unchanged; --all lists every tag)",
            "1 customer: 0 added, 1 removed, 0 errors",
        ]
        status, out, _ = run_cli(capsys, "run", str(catalog), str(second), "--store", store, "--all")
        assert out.splitlines() == [
            "tag         members      added    removed     errors",
            "big               0          0          0          0",
            "frequent          1          0          0          0",
            "loyal             1          0          0          0",
            "1 customer: 0 added, 0 removed, 0 errors",
        ]

    def test_json(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, store: str, write: Callable[[str, str], Path]
    ) -> None:
        """run --json prints one object: totals, bad lines, and every tag's figures."""
        path = write("in.jsonl", '{"id": "a", "spend": 500, "orders": 4}\nnot json\n')
        status, out, _ = run_cli(capsys, "run", str(catalog), str(path), "--store", store, "--json")
        assert status == 1
        assert json.loads(out) == {
            "customers": 1,
            "added": 3,
            "removed": 0,
            "errors": 0,
            "stale": 0,
            "bad_lines": 1,
            "tags": {
                "big": {"members": 1, "added": 1, "removed": 0, "errors": 0},
                "frequent": {"members": 1, "added": 1, "removed": 0, "errors": 0},
                "loyal": {"members": 1, "added": 1, "removed": 0, "errors": 0},
            },
        }


class TestJsonOutput:
    """validate, members and history speak JSON for scripts."""

    def test_validate(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, write: Callable[[str, str], Path]
    ) -> None:
        """validate --json: one object for a valid catalog and one for an invalid one, same exit codes."""
        status, out, _ = run_cli(capsys, "validate", str(catalog), "--json")
        assert status == 0
        assert json.loads(out) == {
            "catalog": str(catalog),
            "valid": True,
            "problems": [],
            "tags": 3,
            "active": 3,
            "draft": 0,
            "retired": 0,
            "groups": 0,
            "warnings": [],
            "bad_lines": 0,
        }
        bad = write("bad.yaml", "schema: {spend: float}\ntags: [{key: a, rule: 'spend = 1'}]\n")
        status, out, _ = run_cli(capsys, "validate", str(bad), "--json")
        assert status == 1
        data = json.loads(out)
        assert data["valid"] is False
        assert data["problems"] == [
            {
                "message": "syntax error (illegal character '='); did you mean '=='?",
                "file": str(bad),
                "tag": "a",
                "line": 1,
                "column": 7,
                "section": None,
                "text": f"{bad}: tag 'a': syntax error (illegal character '='); did you mean '=='? "
                "(column 7)",
            }
        ]

    def test_members_and_history(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, store: str, write: Callable[[str, str], Path]
    ) -> None:
        """members --json and history --json print JSON Lines, one object per customer or period."""
        first = write("first.jsonl", '{"id": "a", "spend": 500, "orders": 4}\n{"id": "b", "spend": 200}\n')
        second = write("second.jsonl", '{"id": "a", "spend": 50, "orders": 4}\n')
        run_cli(capsys, "run", str(catalog), str(first), "--store", store, "--now", NOW)
        run_cli(capsys, "run", str(catalog), str(second), "--store", store, "--now", LATER)
        status, out, _ = run_cli(
            capsys, "members", "--store", store, "--tag", "big", "--as-of", NOW, "--json"
        )
        assert status == 0
        assert [json.loads(line) for line in out.splitlines()] == [{"id": "a"}, {"id": "b"}]
        status, out, _ = run_cli(capsys, "history", "--store", store, "--id", "a", "--json")
        assert status == 0
        version = Catalog.load(catalog).version
        assert [json.loads(line) for line in out.splitlines()] == [
            {
                "tag": "big",
                "source": "computed",
                "since": "2026-06-01T00:00:00Z",
                "until": "2026-07-01T00:00:00Z",
                "reason": "rule",
                "assigned_by": {"version": version, "rule": "spend >= 100"},
                "removed_by": {"version": version, "rule": "spend >= 100"},
            },
            {
                "tag": "frequent",
                "source": "computed",
                "since": "2026-06-01T00:00:00Z",
                "until": None,
                "reason": None,
                "assigned_by": {"version": version, "rule": "orders >= 3"},
                "removed_by": None,
            },
            {
                "tag": "loyal",
                "source": "computed",
                "since": "2026-06-01T00:00:00Z",
                "until": None,
                "reason": None,
                "assigned_by": {"version": version, "rule": "'frequent' in tags and spend >= 10"},
                "removed_by": None,
            },
        ]


class TestExplain:
    """explain without --tag explains every tag; a tag unknown through a failed one is unknown in its tree."""

    def test_every_tag(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, write: Callable[[str, str], Path]
    ) -> None:
        """Without --tag, each tag's explanation follows the other's, in catalog order."""
        path = write("in.jsonl", '{"id": "a", "spend": 500, "orders": 4}\n')
        status, out, _ = run_cli(capsys, "explain", str(catalog), str(path), "--id", "a", "--now", NOW)
        assert status == 0
        assert [block.splitlines()[0] for block in out.split("\n\n")] == [
            "big: assigned (the rule is true)",
            "frequent: assigned (the rule is true)",
            "loyal: assigned (the rule is true)",
        ]

    def test_unknown_in_the_tree(self) -> None:
        """A tag unknown because a tag it tests failed shows unknown at that test and at the root."""
        evaluator = Evaluator(Catalog.loads(CATALOG))
        explanation = evaluator.explain({"spend": 500}, "loyal")
        why = "the snapshot has no field 'orders'"
        assert str(explanation).splitlines() == [
            f"loyal: unknown (depends on 'frequent', which failed: {why})",
            f"'frequent' in tags and spend >= 10 -> unknown ('frequent' failed: {why})",
            f"├── 'frequent' in tags -> unknown ('frequent' failed: {why}) (tags = {{'big'}})",
            "└── spend >= 10 -> true (spend = 500.0)",
        ]
