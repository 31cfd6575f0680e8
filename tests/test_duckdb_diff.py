"""The population diff on DuckDB (``tagrules.duckdb.diff_tags``, ``tagrules run --input``) against
what successive :meth:`Tagger.apply_many` runs leave in a store."""

from __future__ import annotations

import datetime
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow
import pyarrow.parquet
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagrules import Catalog, ChangeEvent, MemoryStore, Tagger
from tagrules.duckdb import diff_tags

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
SCHEMA = {"spend": "float", "n": "int"}
#: the catalog of each run: the third drops 'small' and adds 'none'
TAGS: list[dict[str, Any]] = [
    {"key": "big", "rule": "spend >= 100"},
    {"key": "small", "rule": "spend < 10"},
    {"key": "high", "rule": "n >= 5", "group": "tier", "priority": 2},
    {"key": "low", "rule": "n >= 1", "group": "tier", "priority": 1},
    {"key": "vip", "rule": "'big' in tags and n >= 5"},
    # no exact DuckDB SQL (rule-engine rounds ** to 28 digits): evaluated in Python, with a tag
    # reading it
    {"key": "square", "rule": "spend ** 2 >= 10000"},
    {"key": "whale", "rule": "'square' in tags and n >= 1"},
]
CATALOGS = [
    Catalog(TAGS, SCHEMA),
    Catalog(TAGS, SCHEMA),
    Catalog([tag for tag in TAGS if tag["key"] != "small"] + [{"key": "none", "rule": "n == 0"}], SCHEMA),
]
IDS = ["a", "b", "c", "d", "e", "f"]

_ROWS = st.lists(
    st.tuples(
        st.sampled_from(IDS),
        st.sampled_from([5.0, 50.0, 150.0, math.nan, None]),
        st.sampled_from([0, 1, 5, None]),
    ),
    unique_by=lambda row: row[0],
    max_size=6,
)


def _frame(rows: list[tuple[str, float | None, int | None]]) -> pyarrow.Table:
    return pyarrow.table(
        {
            "id": pyarrow.array([row[0] for row in rows], pyarrow.string()),
            "spend": pyarrow.array([row[1] for row in rows], pyarrow.float64()),
            "n": pyarrow.array([row[2] for row in rows], pyarrow.int64()),
        }
    )


def _pairs(table: pyarrow.Table, *names: str) -> set[tuple[Any, ...]]:
    return {tuple(row[name] for name in names) for row in table.to_pylist()}


class TestDiffTags:
    @settings(max_examples=40, deadline=None)
    @given(runs=st.lists(_ROWS, min_size=3, max_size=3))
    def test_three_runs_equal_what_apply_many_leaves_in_a_store(self, runs: list[list[Any]]) -> None:
        """Over three successive runs (the third with a tag removed from the catalog and one added),
        the tags diff_tags gives equal the store's after each apply_many, and its changes the
        changes the tagger reports: unknown tags keep their state, removed tags are retired."""
        store = MemoryStore()
        previous: pyarrow.Table | None = None
        seen: set[str] = set()
        for index, (rows, catalog) in enumerate(zip(runs, CATALOGS, strict=True)):
            now = NOW + datetime.timedelta(days=index)
            events: list[ChangeEvent] = []
            tagger = Tagger(catalog, store, listeners=[events.append])
            snapshots = [(identifier, {"spend": spend, "n": n}) for identifier, spend, n in rows]
            tagger.apply_many(snapshots, now=now)
            seen.update(identifier for identifier, _, _ in rows)
            tags, changes = diff_tags(catalog, _frame(rows), previous, now=now)
            held = {(identifier, tag) for identifier in seen for tag in store.tags(identifier)}
            assert _pairs(tags, "id", "tag") == held
            assert _pairs(changes, "id", "tag", "change") == {
                (event.customer_id, event.tag, event.change) for event in events
            }
            previous = tags

    def test_without_previous_every_tag_is_added(self) -> None:
        """With no previous tags, every tag held is a change 'added'."""
        tags, changes = diff_tags(CATALOGS[0], _frame([("a", 150.0, 5), ("b", 5.0, 0)]), now=NOW)
        assert _pairs(tags, "id", "tag") == {
            ("a", "big"),
            ("a", "high"),
            ("a", "vip"),
            ("a", "square"),
            ("a", "whale"),
            ("b", "small"),
        }
        assert _pairs(changes, "id", "tag", "change") == {
            (i, t, "added") for i, t in _pairs(tags, "id", "tag")
        }

    def test_a_tag_without_exact_sql_runs_in_python(self) -> None:
        """A rule DuckDB cannot evaluate exactly is evaluated in Python over the rows DuckDB reads;
        its states join the diff as the pushed tags' do (an unknown state keeps the previous tag)."""
        catalog = Catalog(
            [{"key": "odd", "rule": "name =~~ '(?<=a)b'"}, {"key": "long", "rule": "name.length > 2"}],
            {"name": "str"},
        )
        rows = pyarrow.table({"id": ["a", "b", "c"], "name": ["ab", "xyz", None]})
        before = pyarrow.table({"id": ["c", "b"], "tag": ["odd", "odd"]})
        tags, changes = diff_tags(catalog, rows, before, now=NOW)
        assert _pairs(tags, "id", "tag") == {("a", "odd"), ("b", "long"), ("c", "odd")}
        assert _pairs(changes, "id", "tag", "change") == {
            ("a", "odd", "added"),
            ("b", "long", "added"),
            ("b", "odd", "removed"),
        }


def _tagrules(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments], capture_output=True, text=True, check=False
    )


class TestRunInput:
    def test_run_input_writes_tags_and_changes(self, tmp_path: Path) -> None:
        """run --input --engine duckdb writes TAGS.parquet and CHANGES.parquet; a second run against
        the first's tags writes only what changed; nothing is written to a store."""
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(
            "schema: {spend: float, n: int}\ntags:\n"
            "  - {key: big, rule: 'spend >= 100'}\n  - {key: active, rule: 'n >= 1'}\n",
            encoding="utf-8",
        )
        first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
        pyarrow.parquet.write_table(_frame([("a", 150.0, 1), ("b", 5.0, 0)]), first)
        pyarrow.parquet.write_table(_frame([("a", 150.0, 0), ("b", 500.0, 0)]), second)
        tags1, tags2, changes2 = tmp_path / "t1.parquet", tmp_path / "t2.parquet", tmp_path / "c2.parquet"
        done = _tagrules(
            "run",
            str(catalog),
            "--input",
            str(first),
            "--engine",
            "duckdb",
            "--output",
            str(tags1),
            "--now",
            NOW.isoformat(),
        )
        assert done.returncode == 0, done.stderr
        assert _pairs(pyarrow.parquet.read_table(tags1), "id", "tag") == {("a", "big"), ("a", "active")}
        done = _tagrules(
            "run",
            str(catalog),
            "--input",
            str(second),
            "--previous",
            str(tags1),
            "--output",
            str(tags2),
            "--changes",
            str(changes2),
            "--now",
            NOW.isoformat(),
        )
        assert done.returncode == 0, done.stderr
        assert _pairs(pyarrow.parquet.read_table(tags2), "id", "tag") == {("a", "big"), ("b", "big")}
        assert _pairs(pyarrow.parquet.read_table(changes2), "id", "tag", "change") == {
            ("a", "active", "removed"),
            ("b", "big", "added"),
        }
        assert not (tmp_path / "tagrules.db").exists()

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (["--engine", "duckdb"], "--output TAGS.parquet"),
            (["--output", "x.parquet", "--db", "sqlite://", "--table", "t"], "--input"),
            (["--output", "x.jsonl"], ".parquet"),
            (["--output", "x.parquet", "--previous", "missing.parquet"], "missing.parquet"),
        ],
    )
    def test_bad_arguments_are_one_line_errors(
        self, tmp_path: Path, arguments: list[str], message: str
    ) -> None:
        """Missing --output, --input beside --db, a non-Parquet output or a missing previous file:
        a one-line error naming it, exit status 1."""
        source = tmp_path / "rows.parquet"
        pyarrow.parquet.write_table(_frame([("a", 1.0, 1)]), source)
        done = _tagrules("run", "retail", "--input", str(source), *arguments)
        assert done.returncode == 1, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr
