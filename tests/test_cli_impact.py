"""``tagrules impact``'s contract, run as a subprocess: JSON Lines rows, a SQLite table, the exact JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sql_tables import fill, snapshot_table
from tagrules import Catalog

OLD = """
schema: {spend: float, orders: int}
tags:
  - {key: high, rule: "spend >= 100", group: spend, priority: 2}
  - {key: mid, rule: "spend >= 30", group: spend, priority: 1}
  - {key: vip, rule: "'high' in tags and orders >= 3"}
"""
NEW = (
    OLD.replace("spend >= 100", "spend >= 120") + '  - {key: big_order, rule: "orders >= 5", status: draft}\n'
)
ROWS: list[dict[str, Any]] = [
    {"id": "a", "spend": 150.0, "orders": 4},
    {"id": "b", "spend": 110.0, "orders": 5},
    {"id": 3, "spend": 40.0, "orders": 0},
]
NOW = "2026-06-01T00:00:00Z"
EXPECTED = {
    "rows": 3,
    "tags": {
        "high": {
            "before": 2,
            "after": 1,
            "gained": 0,
            "lost": 1,
            "errors_before": 0,
            "errors_after": 0,
            "examples": {"gained": [], "lost": ["b"]},
        },
        "mid": {
            "before": 1,
            "after": 2,
            "gained": 1,
            "lost": 0,
            "errors_before": 0,
            "errors_after": 0,
            "examples": {"gained": ["b"], "lost": []},
        },
        "vip": {
            "before": 2,
            "after": 1,
            "gained": 0,
            "lost": 1,
            "errors_before": 0,
            "errors_after": 0,
            "examples": {"gained": [], "lost": ["b"]},
        },
        "big_order": {
            "before": 0,
            "after": 1,
            "gained": 1,
            "lost": 0,
            "errors_before": 0,
            "errors_after": 0,
            "examples": {"gained": ["b"], "lost": []},
        },
    },
    "groups": {"spend": {"high": {"high": 1, "mid": 1}, "mid": {"mid": 1}}},
    "changed": {"big_order": "added", "high": "rule"},
}


def tagrules(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _files(write: Callable[[str, str], Path]) -> tuple[Path, Path, Path]:
    rows = write("rows.jsonl", "".join(json.dumps(row) + "\n" for row in ROWS))
    return write("old.yaml", OLD), write("new.yaml", NEW), rows


class TestImpactCommand:
    def test_json_from_json_lines(self, write: Callable[[str, str], Path]) -> None:
        """``--sample FILE --json`` prints exactly the documented object; the new draft is previewed."""
        old, new, rows = _files(write)
        result = tagrules("impact", str(old), str(new), "--sample", str(rows), "--now", NOW, "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data == EXPECTED
        assert list(data["tags"]) == ["big_order", "high", "mid", "vip"]  # biggest change first, then by key

    def test_as_written_and_input(self, write: Callable[[str, str], Path]) -> None:
        """``--as-written`` leaves the draft out; ``--input`` reads the same JSON Lines."""
        old, new, rows = _files(write)
        result = tagrules(
            "impact", str(old), str(new), "--input", str(rows), "--now", NOW, "--json", "--as-written"
        )
        assert result.returncode == 0, result.stderr
        assert "big_order" not in json.loads(result.stdout)["tags"]

    def test_database_table(self, write: Callable[[str, str], Path], tmp_path: Path) -> None:
        """``--db URL --table NAME`` gives the same object, computed in one query, and the examples asked."""
        old, new, _ = _files(write)
        url = f"sqlite:///{tmp_path / 'rows.db'}"
        engine = sa.create_engine(url)
        catalog = Catalog.load(old)
        with engine.begin() as connection:
            fill(connection, snapshot_table("customers", catalog.schema, "sqlite"), catalog.schema, ROWS)
        engine.dispose()
        result = tagrules(
            "impact", str(old), str(new), "--db", url, "--table", "customers", "--now", NOW, "--json"
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == EXPECTED
        table = tagrules("impact", str(old), str(new), "--db", url, "--table", "customers", "--now", NOW)
        assert "one query in the database" in table.stdout
        assert "high -> mid: 1" in table.stdout

    def test_parquet_input(self, write: Callable[[str, str], Path], tmp_path: Path) -> None:
        """``--input rows.parquet`` gives the same object, both versions in one DuckDB query."""
        import pyarrow
        import pyarrow.parquet

        old, new, _ = _files(write)
        path = tmp_path / "rows.parquet"
        pyarrow.parquet.write_table(
            pyarrow.table(
                {
                    "id": [str(row["id"]) for row in ROWS],
                    "spend": [row["spend"] for row in ROWS],
                    "orders": [row["orders"] for row in ROWS],
                }
            ),
            path,
        )
        result = tagrules("impact", str(old), str(new), "--input", str(path), "--now", NOW, "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == EXPECTED
        table = tagrules("impact", str(old), str(new), "--input", str(path), "--now", NOW)
        assert "one query in the database" in table.stdout

    def test_a_change_that_touches_nothing(self, write: Callable[[str, str], Path]) -> None:
        """A change that moves no row says so."""
        old, _, rows = _files(write)
        same = write("same.yaml", OLD.replace("orders >= 3", "3 <= orders"))
        result = tagrules("impact", str(old), str(same), "--sample", str(rows), "--now", NOW)
        assert result.returncode == 0, result.stderr
        assert "the change touches nothing" in result.stdout
        assert "vip (rule)" in result.stdout

    def test_usage_errors(self, write: Callable[[str, str], Path]) -> None:
        """No rows, ``--db`` without ``--table`` and bad lines are reported in one line each."""
        old, new, _ = _files(write)
        assert tagrules("impact", str(old), str(new)).returncode == 2
        result = tagrules("impact", str(old), str(new), "--db", "sqlite://")
        assert result.returncode == 1
        assert "--db needs --table" in result.stderr
        bad = write("bad.jsonl", '{"id": "a", "spend": "x", "orders": 1}\nnot json\n')
        result = tagrules("impact", str(old), str(new), "--sample", str(bad), "--json")
        assert result.returncode == 1
        assert "bad.jsonl:1: field 'spend'" in result.stderr
        assert "bad.jsonl:2: not valid JSON" in result.stderr
        assert json.loads(result.stdout)["rows"] == 0
