"""The statistics commands' contract, run as a subprocess: stats, overlap, flow."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from cli_helpers import prepare
from store_helpers import drop_store, unique_prefix

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
WEEKS: list[list[dict[str, Any]]] = [
    [{"id": "a", "spend": 2000.0, "orders": 4}, {"id": "b", "spend": 150.0, "orders": 0}],
    [{"id": "a", "spend": 500.0, "orders": 4}, {"id": "b", "spend": 1500.0, "orders": 1}],
]
NOWS = ["2026-06-01T09:00:00Z", "2026-06-08T09:00:00Z"]


def tagrules(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def store_url(database_url: URL, write: Callable[[str, str], Path]) -> Any:
    """A store on each database after two weekly runs of the catalog; yields (url, prefix)."""
    prefix = unique_prefix()
    catalog = write("catalog.yaml", CATALOG)
    url = database_url.render_as_string(hide_password=False)
    try:
        for number, (rows, now) in enumerate(zip(WEEKS, NOWS, strict=True)):
            snapshots = write(f"week{number}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
            if number == 0 and database_url.get_backend_name() != "sqlite":
                prepare("db", "upgrade", url, "--prefix", prefix)
            prepare("run", str(catalog), str(snapshots), "--store", url, "--prefix", prefix, "--now", now)
        yield url, prefix
    finally:
        drop_store(database_url, prefix)


class TestStats:
    def test_json_shape(self, store_url: tuple[str, str]) -> None:
        """--json prints the periods by their start and, per tag, one entry per period of each series."""
        url, prefix = store_url
        result = tagrules(
            "stats",
            "--store",
            url,
            "--prefix",
            prefix,
            "--every",
            "week",
            "--since",
            "2026-06-01",
            "--until",
            "2026-06-10",
            "--tag",
            "spend_high",
            "--tag",
            "per_order",
            "--json",
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {
            "periods": ["2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z"],
            "tags": {
                "per_order": {
                    "members": [1, 2],
                    "added": [1, 1],
                    "removed": [0, 0],
                    "error_rate": [0.5, 0.0],
                },
                "spend_high": {
                    "members": [1, 1],
                    "added": [1, 1],
                    "removed": [0, 1],
                    "error_rate": [0.0, 0.0],
                },
            },
        }

    def test_table(self, store_url: tuple[str, str]) -> None:
        """Without --json: a row per period and tag, error rates as percentages, '-' where no run was."""
        url, prefix = store_url
        result = tagrules(
            "stats",
            "--store",
            url,
            "--prefix",
            prefix,
            "--every",
            "day",
            "--since",
            "2026-06-01",
            "--until",
            "2026-06-02",
            "--tag",
            "spend_mid",
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["period", "tag", "members", "added", "removed", "errors"]
        assert lines[1].split() == ["2026-06-01", "spend_mid", "1", "1", "0", "0.00%"]
        assert lines[2].split() == ["2026-06-02", "spend_mid", "1", "0", "0", "-"]
        assert lines[-1] == "2 periods of a day, 1 tag"

    def test_bad_range(self, store_url: tuple[str, str]) -> None:
        """An end before the start is a one-line error, exit 1."""
        url, prefix = store_url
        result = tagrules(
            "stats", "--store", url, "--prefix", prefix, "--since", "2026-06-02", "--until", "2026-06-01"
        )
        assert result.returncode == 1
        assert result.stderr.startswith("tagrules: stats: the end 2026-06-01")
        assert "Traceback" not in result.stderr


class TestOverlapAndFlow:
    def test_overlap_json(self, store_url: tuple[str, str]) -> None:
        """--json: members of each tag, and customers holding both of each pair, now or as of a time."""
        url, prefix = store_url
        arguments = [
            "overlap",
            "--store",
            url,
            "--prefix",
            prefix,
            "--tag",
            "spend_high",
            "--tag",
            "frequent",
        ]
        now = json.loads(tagrules(*arguments, "--json").stdout)
        assert now == {
            "as_of": None,
            "members": {"frequent": 1, "spend_high": 1},
            "both": {"frequent": {"spend_high": 0}},
        }
        then = json.loads(tagrules(*arguments, "--as-of", "2026-06-02T00:00:00Z", "--json").stdout)
        assert then["both"] == {"frequent": {"spend_high": 1}}
        assert then["as_of"] == "2026-06-02T00:00:00Z"

    def test_flow_json_and_table(self, store_url: tuple[str, str]) -> None:
        """--json: customers from each tier to each tier; the table has a row per tier of origin."""
        url, prefix = store_url
        arguments = [
            "flow",
            "--store",
            url,
            "--prefix",
            prefix,
            "--group",
            "spend",
            "--from",
            "2026-06-01T10:00:00Z",
            "--to",
            "2026-06-08T10:00:00Z",
        ]
        data = json.loads(tagrules(*arguments, "--json").stdout)
        assert data == {
            "group": "spend",
            "from": "2026-06-01T10:00:00Z",
            "to": "2026-06-08T10:00:00Z",
            "tiers": ["spend_high", "spend_mid"],
            "flow": {"spend_high": {"spend_mid": 1}, "spend_mid": {"spend_high": 1}},
        }
        table = tagrules(*arguments).stdout.splitlines()
        assert table[0].split() == ["from", "\\", "to", "spend_high", "spend_mid"]
        assert table[1].split() == ["spend_high", "0", "1"]

    def test_unknown_group(self, store_url: tuple[str, str]) -> None:
        """A group no run recorded is a one-line error."""
        url, prefix = store_url
        result = tagrules(
            "flow",
            "--store",
            url,
            "--prefix",
            prefix,
            "--group",
            "nope",
            "--from",
            "2026-06-01",
            "--to",
            "2026-06-02",
        )
        assert result.returncode == 1
        assert "no recorded run has the exclusive group 'nope'" in result.stderr
