"""Published catalog versions, kept in every store (memory, SQLite, PostgreSQL, MariaDB), with the
history periods naming the versions that opened and closed them; ``publish``, ``versions`` and
``history`` as subprocesses."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from store_helpers import SCHEMA, TAGS, catalog, store
from tagrules import Catalog, InvalidArgument, Tagger, TagStore

__all__ = ["store"]

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
T1 = T0 + datetime.timedelta(days=1)
RICH = {"spend": 2000.0, "orders": 4}


def raised() -> Catalog:
    """The test catalog with a higher spend_high threshold."""
    tags = [{**tag, "rule": "spend >= 5000"} if tag["key"] == "spend_high" else tag for tag in TAGS]
    return Catalog(tags, SCHEMA)


class TestPublish:
    def test_publish_records_version_who_when_and_definitions(self, store: TagStore) -> None:
        """A published version keeps its content hash, publisher, time, note and each definition."""
        published = Tagger(catalog(), store).publish(by="ana", note="first review", now=T0)
        assert published.version == catalog().version
        held = store.catalog_version(catalog().version)
        assert held == published
        assert held is not None
        assert (held.by, held.note, held.published_at) == ("ana", "first review", T0)
        assert held.rule("spend_high") == "spend >= 1000"
        assert dict(held.tags["spend_high"]) == {
            "key": "spend_high",
            "rule": "spend >= 1000",
            "group": "spend",
            "priority": 2,
        }
        assert held.rule("nothing") is None
        assert store.versions() == [held]

    def test_publishing_again_keeps_the_first(self, store: TagStore) -> None:
        """The same content published twice is one version, the first publication's."""
        tagger = Tagger(catalog(), store)
        first = tagger.publish(by="ana", now=T0)
        again = tagger.publish(by="bob", note="again", now=T1)
        assert again == first
        assert [version.by for version in store.versions()] == ["ana"]

    def test_versions_are_listed_oldest_first(self, store: TagStore) -> None:
        """Each distinct content is a version of its own, listed in publication order."""
        Tagger(raised(), store).publish(by="bob", now=T1)
        Tagger(catalog(), store).publish(by="ana", now=T0)
        assert [version.version for version in store.versions()] == [catalog().version, raised().version]
        assert store.catalog_version("000000000000") is None

    def test_who_must_be_named(self, store: TagStore) -> None:
        """An empty publisher is refused."""
        with pytest.raises(InvalidArgument, match="by must name"):
            Tagger(catalog(), store).publish(by=" ")
        assert store.versions() == []


class TestRunsAndHistory:
    def test_a_run_publishes_an_unpublished_catalog(self, store: TagStore) -> None:
        """A run with a catalog no one published publishes it, by "tagrules run"."""
        Tagger(catalog(), store).apply_many([("c", RICH)], now=T0)
        versions = store.versions()
        assert [(version.version, version.by) for version in versions] == [
            (catalog().version, "tagrules run")
        ]
        assert [run.catalog_version for run in store.runs()] == [catalog().version]

    def test_history_keeps_the_versions_that_opened_and_closed_each_period(self, store: TagStore) -> None:
        """Each period names the version of the run that opened it and of the one that closed it."""
        Tagger(catalog(), store).publish(by="ana", now=T0)
        Tagger(catalog(), store).apply("c", RICH, now=T0)
        Tagger(raised(), store).apply("c", RICH, now=T1)
        periods = {(entry.tag, entry.since): entry for entry in store.history("c")}
        high = periods["spend_high", T0]
        assert (high.catalog_version, high.closed_version) == (catalog().version, raised().version)
        published = store.catalog_version(raised().version)
        assert published is not None
        assert published.by == "tagrules run"
        assert published.rule("spend_high") == "spend >= 5000"
        mid = periods["spend_mid", T1]
        assert (mid.catalog_version, mid.closed_version) == (raised().version, None)

    def test_a_manual_period_names_no_version(self, store: TagStore) -> None:
        """A person's inclusion is no run's: its period names no version."""
        Tagger(catalog(), store).include("c", "key_account", by="rep", reason="signed", now=T0)
        (entry,) = store.history("c")
        assert (entry.source, entry.catalog_version, entry.closed_version) == ("manual", None, None)


def tagrules(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


FIRST = """
schema: {spend: float}
tags:
  - {key: big, rule: "spend >= 100"}
"""
SECOND = """
schema: {spend: float}
tags:
  - {key: big, rule: "spend >= 200"}
"""


class TestCommands:
    def test_publish_versions_and_history(self, write: Callable[[str, str], Path], tmp_path: Path) -> None:
        """publish records a version; versions lists them; history shows the rule text that assigned
        and removed each period."""
        first, second = write("first.yaml", FIRST), write("second.yaml", SECOND)
        snapshots = write("s.jsonl", '{"id": "a", "spend": 150.0}\n')
        url = f"sqlite:///{tmp_path / 'tags.db'}"
        old, new = Catalog.load(first).version, Catalog.load(second).version
        assert (
            tagrules("run", str(first), str(snapshots), "--store", url, "--now", "2026-06-01").returncode == 0
        )
        published = tagrules("publish", str(second), "--store", url, "--by", "ana", "--note", "raise the bar")
        assert published.returncode == 0, published.stderr
        assert published.stdout == f"published version {new} (1 tag) by ana\n"
        assert (
            tagrules("run", str(second), str(snapshots), "--store", url, "--now", "2026-07-01").returncode
            == 0
        )
        listed = tagrules("versions", "--store", url, "--json")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(row["version"], row["by"], row["note"]) for row in rows] == [
            (old, "tagrules run", "published by a run"),
            (new, "ana", "raise the bar"),
        ]
        assert rows[1]["tags"] == {"big": {"key": "big", "rule": "spend >= 200"}}
        table = tagrules("versions", "--store", url).stdout.splitlines()
        assert table[0].split() == ["version", "published", "by", "tags", "note"]
        assert table[2].split()[0] == new
        history = tagrules("history", "--store", url, "--id", "a")
        assert history.stdout.splitlines()[1:] == [
            "big  computed  2026-06-01T00:00:00Z         2026-07-01T00:00:00Z         rule",
            f"  assigned by version {old}: spend >= 100",
            f"  removed by version {new}: spend >= 200",
        ]
        (period,) = [
            json.loads(line)
            for line in tagrules("history", "--store", url, "--id", "a", "--json").stdout.splitlines()
        ]
        assert period["assigned_by"] == {"version": old, "rule": "spend >= 100"}
        assert period["removed_by"] == {"version": new, "rule": "spend >= 200"}

    def test_bad_input_is_one_line(self, write: Callable[[str, str], Path], tmp_path: Path) -> None:
        """A missing --by is a usage error; an empty one and a missing store are one line, exit 1."""
        first = write("first.yaml", FIRST)
        url = f"sqlite:///{tmp_path / 'tags.db'}"
        assert tagrules("publish", str(first), "--store", url).returncode == 2
        empty = tagrules("publish", str(first), "--store", url, "--by", "")
        assert empty.returncode == 1
        assert empty.stderr == "tagrules: publish: by must name who publishes the catalog\n"
        missing = tagrules("versions", "--store", f"sqlite:///{tmp_path / 'none.db'}")
        assert missing.returncode == 1
        assert missing.stderr.startswith("tagrules: ")
