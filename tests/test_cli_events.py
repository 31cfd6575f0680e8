"""``tagrules events`` and ``run --no-events``, run as a subprocess: a consumer's next events, their
acknowledgement, purging, and a first load without events."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import URL

from cli_helpers import prepare
from store_helpers import drop_store, unique_prefix

CATALOG = """
schema:
  spend: float
tags:
  - {key: big, rule: "spend >= 100"}
  - {key: small, rule: "spend < 100"}
"""
SNAPSHOTS = '{"id": "a", "spend": 150}\n{"id": "b", "spend": 5}\n{"id": "c", "spend": 500}\n'
NOW = "2026-06-01T00:00:00Z"
KEYS = ["position", "id", "tag", "change", "at", "reason"]


def tagrules(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A store's URL and table prefix: a SQLite file (created by `run`) or a server database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}", "tagrules_"
        return
    url: URL = request.getfixturevalue({"postgresql": "postgres_url", "mysql": "mysql_url"}[request.param])
    prefix = unique_prefix()
    prepare("db", "upgrade", url.render_as_string(hide_password=False), "--prefix", prefix)
    try:
        yield url.render_as_string(hide_password=False), prefix
    finally:
        drop_store(url, prefix)


def _loaded(
    url: str, prefix: str, write: Callable[[str, str], Path]
) -> tuple[Callable[..., subprocess.CompletedProcess[str]], Path, Path]:
    catalog, snapshots = write("catalog.yaml", CATALOG), write("in.jsonl", SNAPSHOTS)
    prepare("run", str(catalog), str(snapshots), "--store", url, "--prefix", prefix, "--now", NOW)

    def events(*arguments: str) -> subprocess.CompletedProcess[str]:
        return tagrules("events", "--store", url, "--prefix", prefix, *arguments)

    return events, catalog, snapshots


@pytest.fixture
def loaded(
    store_url: tuple[str, str], write: Callable[[str, str], Path]
) -> tuple[Callable[..., subprocess.CompletedProcess[str]], Path, Path]:
    """``events`` bound to the store after one run of three customers (three events)."""
    return _loaded(*store_url, write)


@pytest.fixture
def loaded_sqlite(
    tmp_path: Path, write: Callable[[str, str], Path]
) -> tuple[Callable[..., subprocess.CompletedProcess[str]], Path, Path]:
    """As ``loaded``, on a SQLite file only: the command line's own checks."""
    return _loaded(f"sqlite:///{tmp_path / 'store.db'}", "tagrules_", write)


class TestEvents:
    def test_json_lines_and_acknowledgement(
        self, loaded: tuple[Callable[..., subprocess.CompletedProcess[str]], Path, Path]
    ) -> None:
        """--json prints one object per event with exactly the contract's keys; without --ack the
        same events come again, with --ack the consumer moves on; other consumers are unaffected."""
        events, _, _ = loaded
        first = lines(events("--consumer", "email", "--json"))
        assert [list(line) for line in first] == [KEYS] * 3
        assert [(e["id"], e["tag"], e["change"], e["reason"]) for e in first] == [
            ("a", "big", "added", "rule"),
            ("b", "small", "added", "rule"),
            ("c", "big", "added", "rule"),
        ]
        assert {e["at"] for e in first} == {NOW}
        assert lines(events("--consumer", "email", "--json")) == first
        assert lines(events("--consumer", "email", "--json", "--limit", "2", "--ack")) == first[:2]
        assert lines(events("--consumer", "email", "--json", "--ack")) == first[2:]
        assert lines(events("--consumer", "email", "--json")) == []
        assert lines(events("--consumer", "sink", "--json")) == first

    def test_table_without_json(
        self, loaded: tuple[Callable[..., subprocess.CompletedProcess[str]], Path, Path]
    ) -> None:
        """Without --json: a header, then one aligned line per event; nothing when none is new."""
        events, _, _ = loaded
        result = events("--consumer", "email", "--ack")
        assert result.returncode == 0, result.stderr
        header, *rows = result.stdout.splitlines()
        assert header.split() == ["position", "id", "tag", "change", "at", "reason"]
        assert [row.split()[1:] for row in rows] == [
            ["a", "big", "added", "2026-06-01T00:00:00Z", "rule"],
            ["b", "small", "added", "2026-06-01T00:00:00Z", "rule"],
            ["c", "big", "added", "2026-06-01T00:00:00Z", "rule"],
        ]
        assert events("--consumer", "email").stdout == ""

    def test_purge_keeps_what_a_consumer_has_not_acknowledged(
        self, loaded: tuple[Callable[..., subprocess.CompletedProcess[str]], Path, Path]
    ) -> None:
        """--purge deletes what every consumer acknowledged (before --before when given)."""
        events, _, _ = loaded
        lines(events("--consumer", "email", "--json", "--ack"))
        lines(events("--consumer", "sink", "--json", "--limit", "1", "--ack"))
        assert lines(events("--purge", "--json", "--before", "2026-01-01")) == [{"purged": 0}]
        result = events("--purge")
        assert (result.returncode, result.stdout) == (0, "purged 1 event every consumer has acknowledged\n")
        assert [e["id"] for e in lines(events("--consumer", "sink", "--json"))] == ["b", "c"]
        assert [e["id"] for e in lines(events("--consumer", "new", "--json"))] == ["b", "c"]

    def test_consumers_listed_and_dropped(
        self, loaded_sqlite: tuple[Callable[..., subprocess.CompletedProcess[str]], Path, Path]
    ) -> None:
        """--consumers lists each consumer's acknowledged position and pending events (JSON Lines
        with --json); --drop unregisters one, so that purging no longer waits for it. (The store
        methods behind them run on every store in test_store_feed.)"""
        events, _, _ = loaded_sqlite
        assert events("--consumers").stdout == "no consumer is registered\n"
        read = lines(events("--consumer", "email", "--json", "--limit", "1", "--ack"))
        lines(events("--consumer", "gone", "--json"))
        listed = lines(events("--consumers", "--json"))
        assert [(c["consumer"], c["position"], c["pending"]) for c in listed] == [
            ("email", read[0]["position"], 2),
            ("gone", 0, 3),
        ]
        assert all(str(c["registered_at"]).endswith("Z") for c in listed)
        header, *rows = events("--consumers").stdout.splitlines()
        assert header.split() == ["consumer", "position", "pending", "registered"]
        assert [row.split()[:3] for row in rows] == [
            ["email", str(read[0]["position"]), "2"],
            ["gone", "0", "3"],
        ]
        assert lines(events("--drop", "gone", "--json")) == [{"consumer": "gone", "dropped": True}]
        again = events("--drop", "gone")
        assert (again.returncode, again.stdout) == (0, "no consumer 'gone' is registered: nothing to drop\n")
        assert lines(events("--purge", "--json")) == [{"purged": 1}]

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ((), "give --consumer NAME to read events, --purge"),
            (("--consumer", "x", "--purge"), "(not --consumer NAME and --purge together)"),
            (("--consumers", "--drop", "x"), "(not --consumers and --drop NAME together)"),
            (("--purge", "--ack"), "--ack goes with --consumer NAME, not with --purge"),
            (("--consumers", "--ack"), "--ack goes with --consumer NAME, not with --consumers"),
            (("--drop", ""), "a consumer name is text of 1 to 64 characters"),
            (("--consumer", "x", "--before", "2026-01-01"), "--before ISO8601 goes with --purge"),
            (("--consumer", "x" * 65), "a consumer name is text of 1 to 64 characters"),
        ],
    )
    def test_usage_problems_are_one_line(
        self,
        loaded_sqlite: tuple[Callable[..., subprocess.CompletedProcess[str]], Path, Path],
        arguments: tuple[str, ...],
        message: str,
    ) -> None:
        """Options that do not go together, or a bad consumer name, exit 1 with one line."""
        events, _, _ = loaded_sqlite
        result = events(*arguments)
        assert result.returncode == 1
        assert result.stderr.startswith("tagrules: events: ")
        assert message in result.stderr
        assert len(result.stderr.splitlines()) == 1

    def test_a_bad_limit_is_a_usage_error(
        self, loaded_sqlite: tuple[Callable[..., subprocess.CompletedProcess[str]], Path, Path]
    ) -> None:
        """--limit takes a number of at least 1."""
        events, _, _ = loaded_sqlite
        result = events("--consumer", "x", "--limit", "0")
        assert result.returncode == 2
        assert "at least 1" in result.stderr


class TestNoEvents:
    def test_a_run_without_events(self, tmp_path: Path, write: Callable[[str, str], Path]) -> None:
        """run --no-events stores the tags and their history but no event, and says so; the next run
        emits events for what changes."""
        url = f"sqlite:///{tmp_path / 'store.db'}"
        catalog, snapshots = write("catalog.yaml", CATALOG), write("in.jsonl", SNAPSHOTS)
        run = tagrules("run", str(catalog), str(snapshots), "--store", url, "--now", NOW, "--no-events")
        assert run.returncode == 0, run.stderr
        assert run.stdout.endswith("no change events written (--no-events)\n")
        assert tagrules("members", "--store", url, "--tag", "big").stdout == "a\nc\n"
        assert tagrules("events", "--store", url, "--consumer", "email").stdout == ""
        later = write("later.jsonl", '{"id": "a", "spend": 1}\n')
        assert (
            tagrules("run", str(catalog), str(later), "--store", url, "--now", "2026-07-01").returncode == 0
        )
        found = lines(tagrules("events", "--store", url, "--consumer", "email", "--json"))
        assert [(e["id"], e["tag"], e["change"]) for e in found] == [
            ("a", "small", "added"),
            ("a", "big", "removed"),
        ]
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as connection:
                flags = connection.exec_driver_sql(
                    "SELECT emit_events FROM tagrules_runs ORDER BY evaluated_at"
                ).scalars()
                assert [bool(flag) for flag in flags] == [False, True]
        finally:
            engine.dispose()

    def test_a_table_run_without_events(self, tmp_path: Path, write: Callable[[str, str], Path]) -> None:
        """run --db --table --no-events writes no event either."""
        database = f"sqlite:///{tmp_path / 'crm.db'}"
        engine = sqlalchemy.create_engine(database)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE people (id TEXT PRIMARY KEY, spend REAL)")
            connection.exec_driver_sql("INSERT INTO people VALUES ('a', 150.0), ('b', 5.0)")
        engine.dispose()
        url = f"sqlite:///{tmp_path / 'store.db'}"
        catalog = write("catalog.yaml", CATALOG)
        run = tagrules(
            "run", str(catalog), "--db", database, "--table", "people", "--store", url, "--no-events"
        )
        assert run.returncode == 0, run.stderr
        assert tagrules("members", "--store", url, "--tag", "big").stdout == "a\n"
        assert tagrules("events", "--store", url, "--consumer", "email").stdout == ""

    @pytest.mark.parametrize("option", [("--changes", "-"), ("--listener", "x")])
    def test_options_that_hand_on_events_are_refused(
        self, tmp_path: Path, write: Callable[[str, str], Path], option: tuple[str, str]
    ) -> None:
        """--changes and --listener hand on events, which --no-events does not write: refused
        before any store is made."""
        catalog, snapshots = write("catalog.yaml", CATALOG), write("in.jsonl", SNAPSHOTS)
        url = f"sqlite:///{tmp_path / 'store.db'}"
        run = tagrules("run", str(catalog), str(snapshots), "--store", url, "--no-events", *option)
        assert run.returncode == 1
        assert f"{option[0]} hands on the change events, which --no-events does not write" in run.stderr
        assert not (tmp_path / "store.db").exists()
