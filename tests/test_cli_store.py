"""The store commands' contract, run as a subprocess: run, members, history, db upgrade."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from store_helpers import drop_store, unique_prefix
from tagrules import Catalog

CATALOG = """
schema:
  spend: float
  orders: int
tags:
  - {key: spend_high, rule: "spend >= 1000", group: spend, priority: 2}
  - {key: spend_mid, rule: "spend >= 100", group: spend, priority: 1}
  - {key: frequent, rule: "orders >= 3"}
  - {key: per_order, rule: "spend / orders > 100"}
"""
FIRST: list[dict[str, Any]] = [
    {"id": "a", "spend": 2000.0, "orders": 4},
    {"id": "b", "spend": 150.0, "orders": 0},
    {"id": 7, "spend": 5.0, "orders": 1},
]
SECOND: list[dict[str, Any]] = [
    {"id": "a", "spend": 500.0, "orders": 4},
    {"id": "b", "spend": 150.0, "orders": 0},
    {"id": 7, "spend": 5.0, "orders": 1},
]
NOW = "2026-06-01T00:00:00Z"
LATER = "2026-07-01T00:00:00Z"


def tagrules(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def files(write: Callable[[str, str], Path]) -> tuple[Path, Path, Path]:
    return (
        write("catalog.yaml", CATALOG),
        write("first.jsonl", jsonl(FIRST)),
        write("second.jsonl", jsonl(SECOND)),
    )


class TestRun:
    def test_summary_table_and_default_store(self, files: tuple[Path, Path, Path], tmp_path: Path) -> None:
        """Without --store, tagrules.db is made in the working directory; the summary has a row per tag."""
        catalog, first, _ = files
        result = tagrules("run", str(catalog), str(first), "--now", NOW, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "tagrules.db").exists()
        assert result.stdout.splitlines() == [
            "tag           members      added    removed     errors",
            "spend_high          1          1          0          0",
            "spend_mid           1          1          0          0",
            "frequent            1          1          0          0",
            "per_order           1          1          0          1",
            "3 customers: 4 added, 0 removed, 1 error",
        ]

    def test_an_older_run_counts_stale_customers(
        self, files: tuple[Path, Path, Path], tmp_path: Path
    ) -> None:
        """A run with a --now before the customers' last change writes none of them and says so."""
        catalog, first, second = files
        store = f"sqlite:///{tmp_path / 'tags.db'}"
        tagrules("run", str(catalog), str(first), "--store", store, "--now", LATER)
        result = tagrules("run", str(catalog), str(second), "--store", store, "--now", NOW)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == (
            "3 customers: 0 added, 0 removed, 0 errors, 2 stale (not written)"
        )

    def test_changes_file_and_repeated_run(self, files: tuple[Path, Path, Path], tmp_path: Path) -> None:
        """--changes writes one JSON line per change; the same data again writes no change."""
        catalog, first, second = files
        store = f"sqlite:///{tmp_path / 'tags.db'}"
        changes = tmp_path / "changes.jsonl"
        tagrules("run", str(catalog), str(first), "--store", store, "--now", NOW)
        again = tagrules(
            "run", str(catalog), str(first), "--store", store, "--now", NOW, "--changes", str(changes)
        )
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines()[-1] == "3 customers: 0 added, 0 removed, 1 error"
        assert changes.read_text() == ""
        result = tagrules(
            "run", str(catalog), str(second), "--store", store, "--now", LATER, "--changes", str(changes)
        )
        assert result.returncode == 0, result.stderr
        assert [json.loads(line) for line in changes.read_text().splitlines()] == [
            {"id": "a", "tag": "spend_mid", "change": "added"},
            {"id": "a", "tag": "spend_high", "change": "removed"},
        ]

    def test_bad_lines_are_skipped(
        self, files: tuple[Path, Path, Path], write: Callable[[str, str], Path]
    ) -> None:
        """Bad lines are reported with their number and skipped; the others are stored; exit 1."""
        catalog = files[0]
        path = write("mixed.jsonl", '{"id": "a", "spend": 1.0, "orders": 1}\nnot json\n{"spend": 1.0}\n')
        store = f"sqlite:///{path.parent / 'tags.db'}"
        result = tagrules("run", str(catalog), str(path), "--store", store)
        assert result.returncode == 1
        assert f"{path}:2: not valid JSON" in result.stderr
        assert f"{path}:3: no 'id' field; line skipped" in result.stderr
        assert result.stdout.splitlines()[-1].startswith("1 customer:")

    def test_snapshots_are_required(self, files: tuple[Path, Path, Path], tmp_path: Path) -> None:
        """Without SNAPSHOTS.jsonl, run says what is missing."""
        result = tagrules("run", str(files[0]), cwd=tmp_path)
        assert result.returncode == 1
        assert "give SNAPSHOTS.jsonl" in result.stderr


class TestQueries:
    def test_members_now_and_as_of(self, files: tuple[Path, Path, Path], tmp_path: Path) -> None:
        """members lists the ids holding a tag, now or at --as-of."""
        catalog, first, second = files
        store = f"sqlite:///{tmp_path / 'tags.db'}"
        tagrules("run", str(catalog), str(first), "--store", store, "--now", NOW)
        tagrules("run", str(catalog), str(second), "--store", store, "--now", LATER)
        now = tagrules("members", "--store", store, "--tag", "spend_mid")
        assert now.returncode == 0, now.stderr
        assert now.stdout.splitlines() == ["a", "b"]
        before = tagrules("members", "--store", store, "--tag", "spend_mid", "--as-of", NOW)
        assert before.stdout.splitlines() == ["b"]
        assert tagrules("members", "--store", store, "--tag", "spend_high", "--as-of", NOW).stdout == "a\n"

    def test_history(self, files: tuple[Path, Path, Path], tmp_path: Path) -> None:
        """history shows each membership period with since, until and why it ended."""
        catalog, first, second = files
        store = f"sqlite:///{tmp_path / 'tags.db'}"
        tagrules("run", str(catalog), str(first), "--store", store, "--now", NOW)
        tagrules("run", str(catalog), str(second), "--store", store, "--now", LATER)
        result = tagrules("history", "--store", store, "--id", "a")
        assert result.returncode == 0, result.stderr
        version = Catalog.load(catalog).version
        assert result.stdout.splitlines() == [
            "tag         source    since                        until                        reason",
            "frequent    computed  2026-06-01T00:00:00Z",
            f"  assigned by version {version}: orders >= 3",
            "per_order   computed  2026-06-01T00:00:00Z",
            f"  assigned by version {version}: spend / orders > 100",
            "spend_high  computed  2026-06-01T00:00:00Z         2026-07-01T00:00:00Z         rule",
            f"  assigned by version {version}: spend >= 1000",
            f"  removed by version {version}: spend >= 1000",
            "spend_mid   computed  2026-07-01T00:00:00Z",
            f"  assigned by version {version}: spend >= 100",
        ]

    def test_unknown_customer_and_missing_store(self, tmp_path: Path) -> None:
        """A missing SQLite store or a customer without history is one line and exit 1."""
        missing = tagrules("history", "--store", f"sqlite:///{tmp_path / 'none.db'}", "--id", "a")
        assert missing.returncode == 1
        assert "no such store" in missing.stderr
        assert not (tmp_path / "none.db").exists()


class TestDatabase:
    def test_upgrade_then_run(self, database_url: URL, files: tuple[Path, Path, Path]) -> None:
        """db upgrade sets a database up (with a table prefix); run and members then use it."""
        catalog, first, _ = files
        prefix = unique_prefix()
        url = database_url.render_as_string(hide_password=False)
        try:
            upgraded = tagrules("db", "upgrade", url, "--prefix", prefix)
            assert upgraded.returncode == 0, upgraded.stderr
            assert upgraded.stdout == f"{url}: schema at revision 0006 (table prefix {prefix!r})\n"
            run = tagrules("run", str(catalog), str(first), "--store", url, "--prefix", prefix, "--now", NOW)
            assert run.returncode == 0, run.stderr
            members = tagrules("members", "--store", url, "--prefix", prefix, "--tag", "frequent")
            assert members.stdout == "a\n"
        finally:
            drop_store(database_url, prefix)

    def test_server_store_must_be_set_up(self, postgres_url: URL, files: tuple[Path, Path, Path]) -> None:
        """A server database without the tables is not set up silently: the message says what to run."""
        url = postgres_url.render_as_string(hide_password=False)
        result = tagrules("members", "--store", url, "--prefix", unique_prefix(), "--tag", "x")
        assert result.returncode == 1
        assert "run `tagrules db upgrade URL --prefix " in result.stderr
        assert "Traceback" not in result.stderr

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("not a url", "not a database URL"),
            ("nosuchdb://x/y", "no database driver for 'nosuchdb'"),
            ("postgresql+psycopg://postgres@127.0.0.1:1/x", "is the database running and reachable?"),
            ("mysql+pymysql://root@127.0.0.1:1/x", "is the database running and reachable?"),
        ],
    )
    def test_bad_urls_are_one_clear_line(self, url: str, message: str) -> None:
        """Bad URLs, missing drivers and unreachable servers give one line, exit 1, no traceback."""
        result = tagrules("members", "--store", url, "--tag", "vip")
        assert result.returncode == 1
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1


class TestProgress:
    def test_bar_on_a_terminal(
        self, monkeypatch: pytest.MonkeyPatch, write: Callable[[str, str], Path]
    ) -> None:
        """On a terminal the progress is a bar against the input's line count, rewritten in place."""
        from tagrules.cli import _store_commands

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        monkeypatch.setattr(_store_commands, "_PROGRESS_AFTER", 0.0)
        path = write("many.jsonl", "{}\n" * 40)
        stream = Terminal()
        progress = _store_commands._Progress(stream, str(path))
        progress(10)
        progress.done()
        assert stream.getvalue().startswith(
            "\rtagrules: [########......................]  25% 10/40 customers ("
        )
        assert stream.getvalue().endswith("/s)\n")

    def test_lines_elsewhere(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Off a terminal, and without a file to count, the progress is a plain line."""
        from tagrules.cli import _store_commands

        monkeypatch.setattr(_store_commands, "_PROGRESS_AFTER", 0.0)
        stream = io.StringIO()
        _store_commands._Progress(stream, "-")(5)
        assert stream.getvalue().startswith("tagrules: 5 customers (")
