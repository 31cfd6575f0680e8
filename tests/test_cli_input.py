"""What the commands read: one JSON Lines reader for `evaluate` and `run`, hostile values as line errors."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from cli_helpers import run_cli
from store_helpers import drop_store, unique_prefix
from tagrules.cli import main

CATALOG = """
schema:
  spend: float
  orders: int
  last_order_at: "datetime | None"
tags:
  - {key: big, rule: "spend >= 100"}
  - {key: frequent, rule: "orders >= 3"}
"""
NOW = "2026-06-01T00:00:00Z"
GOOD = '{"id": "good", "spend": 500, "orders": 4}\n'
#: each bad line, and what its error says
BAD_LINES = [
    ('{"id": "s", "spend": "12"}', "field 'spend': expected float"),
    ('{"id": "n", "spend": NaN}', "field 'spend': NaN is not a number"),
    ('{"id": "i", "spend": Infinity}', "field 'spend': an infinite number"),
    ('{"id": "e", "spend": 1e400}', "field 'spend': an infinite number"),
    ('{"id": "r", "orders": 1180591620717411303424}', "field 'orders': integer out of range"),
    ('{"id": "d", "last_order_at": "2026-02-30T00:00:00Z"}', "field 'last_order_at'"),
    ('{"id": "t", "last_order_at": 1700000000}', "field 'last_order_at': expected datetime"),
    ('{"id": "h", "orders": ' + "9" * 5000 + "}", "an integer of more than 4,300 digits"),
    ('{"id": ""}', "field 'id': the id is empty"),
    ('{"id": "\\ud800"}', "field 'id': the id holds a lone surrogate"),
    ('{"id": "a\\u0000b"}', "field 'id': the id holds a NUL character"),
    (
        '{"id": "' + "x" * 192 + '"}',
        "field 'id': the id is 192 characters long; stores hold ids of up to 191",
    ),
]


@pytest.fixture
def catalog(write: Callable[[str, str], Path]) -> Path:
    return write("catalog.yaml", CATALOG)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A file with a good line, every bad line, a line that is not UTF-8, and a good line again."""
    lines = [GOOD.encode()] + [(text + "\n").encode() for text, _ in BAD_LINES]
    lines.append(b'{"id": "latin", "note": "caf\xe9"}\n')
    lines.append(b'{"id": "last", "spend": 1, "orders": 0}\n')
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def skipped(stderr: str) -> dict[int, str]:
    return {
        int(number): problem for number, problem in re.findall(r"\.jsonl:(\d+): (.*); line skipped", stderr)
    }


def expect_skipped(stderr: str) -> None:
    found = skipped(stderr)
    assert sorted(found) == list(range(2, len(BAD_LINES) + 3)), stderr
    for number, (_, message) in enumerate(BAD_LINES, start=2):
        assert message in found[number], (number, found[number])
    assert found[len(BAD_LINES) + 2] == "not UTF-8 text (byte 29 of the line)"
    assert "Traceback" not in stderr


class TestOneReader:
    """`run` refuses exactly the lines `evaluate` refuses, with the same line numbers and messages."""

    def test_evaluate_skips_each_bad_line(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, hostile: Path
    ) -> None:
        """evaluate reports every hostile line with its number and goes on to the last line."""
        status, out, err = run_cli(capsys, "evaluate", str(catalog), str(hostile), "--now", NOW)
        assert status == 1
        assert [json.loads(line)["id"] for line in out.splitlines()] == ["good", "last"]
        expect_skipped(err)
        assert err.endswith(f"{hostile}: {len(BAD_LINES) + 1} bad lines skipped\n")

    def test_run_skips_the_same_lines(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, hostile: Path, tmp_path: Path
    ) -> None:
        """run stores only the good lines: nothing with partial tags, nothing under a mangled id."""
        store = f"sqlite:///{tmp_path / 'store.db'}"
        status, out, err = run_cli(capsys, "run", str(catalog), str(hostile), "--store", store, "--now", NOW)
        assert status == 1
        expect_skipped(err)
        assert out.splitlines()[-1].startswith("2 customers:")
        with sqlite3.connect(tmp_path / "store.db") as connection:
            ids = {row[0] for row in connection.execute("select customer_id from tagrules_customers")}
        assert ids <= {"good", "last"}

    def test_byte_order_mark_is_accepted(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, tmp_path: Path
    ) -> None:
        """A UTF-8 byte-order mark at the start of the file is not part of the first line."""
        path = tmp_path / "bom.jsonl"
        path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
        status, out, err = run_cli(capsys, "evaluate", str(catalog), str(path), "--now", NOW)
        assert (status, err) == (0, "")
        assert json.loads(out) == {"id": "good", "tags": ["big", "frequent"]}
        store = f"sqlite:///{tmp_path / 'store.db'}"
        status, out, err = run_cli(capsys, "run", str(catalog), str(path), "--store", store, "--now", NOW)
        assert (status, err) == (0, "")

    def test_missing_input_creates_no_store(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, tmp_path: Path
    ) -> None:
        """`run CATALOG missing.jsonl` says the input is missing and leaves no store behind."""
        store = tmp_path / "store.db"
        status, _, err = run_cli(
            capsys, "run", str(catalog), str(tmp_path / "missing.jsonl"), "--store", f"sqlite:///{store}"
        )
        assert status == 1
        assert err == f"tagrules: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory\n"
        assert not store.exists()

    def test_changes_to_stdout_only(
        self,
        capsys: pytest.CaptureFixture[str],
        catalog: Path,
        write: Callable[[str, str], Path],
        tmp_path: Path,
    ) -> None:
        """With `--changes -` standard output holds the changes alone; the summary goes to stderr."""
        path = write("in.jsonl", GOOD)
        store = f"sqlite:///{tmp_path / 'store.db'}"
        status, out, err = run_cli(
            capsys, "run", str(catalog), str(path), "--store", store, "--now", NOW, "--changes", "-"
        )
        assert status == 0
        assert [json.loads(line) for line in out.splitlines()] == [
            {"id": "good", "tag": "big", "change": "added"},
            {"id": "good", "tag": "frequent", "change": "added"},
        ]
        assert "1 customers:" in err or "1 customer:" in err


class TestHostileIdsInServerStores:
    """An id a store cannot hold is that line's error on every database, and the run goes on."""

    def test_run(
        self,
        capsys: pytest.CaptureFixture[str],
        catalog: Path,
        database_url: URL,
        write: Callable[[str, str], Path],
    ) -> None:
        """Too long, NUL and a lone surrogate are refused by line; the good ids around them are stored."""
        lines = [GOOD, *(text + "\n" for text, _ in BAD_LINES[-3:]), '{"id": "' + "y" * 191 + '"}\n']
        path = write("ids.jsonl", "".join(lines))
        prefix = unique_prefix()
        url = database_url.render_as_string(hide_password=False)
        try:
            assert run_cli(capsys, "db", "upgrade", url, "--prefix", prefix)[0] == 0
            status, out, err = run_cli(
                capsys, "run", str(catalog), str(path), "--store", url, "--prefix", prefix, "--now", NOW
            )
            assert status == 1, err
            assert sorted(skipped(err)) == [2, 3, 4]
            assert out.splitlines()[-1].startswith("2 customers:")
            status, out, _ = run_cli(capsys, "members", "--store", url, "--prefix", prefix, "--tag", "big")
            assert out == "good\n"
        finally:
            drop_store(database_url, prefix)


class TestHugeValues:
    """A 5,000-digit integer is a line error for every command that reads snapshots."""

    def test_validate_sample_and_explain(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, write: Callable[[str, str], Path]
    ) -> None:
        """validate --sample skips the line with its number; explain finds the next snapshot."""
        path = write("in.jsonl", '{"id": "h", "orders": ' + "9" * 5000 + "}\n" + GOOD)
        status, _, err = run_cli(capsys, "validate", str(catalog), "--sample", str(path), "--now", NOW)
        assert status == 1
        assert f"{path}:1: not valid JSON (column 23: an integer of more than 4,300 digits" in err
        status, out, err = run_cli(capsys, "explain", str(catalog), str(path), "--id", "good", "--tag", "big")
        assert status == 0, err
        assert "big" in out


class TestExtremeNow:
    """`--now` that cannot be converted to UTC is the same clear refusal for run and evaluate."""

    @pytest.mark.parametrize("now", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
    def test_refused_by_both(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, write: Callable[[str, str], Path], now: str
    ) -> None:
        """Both exit 2 with the parser's message, not an OverflowError."""
        path = write("in.jsonl", GOOD)
        messages: list[str] = []
        for arguments in (["evaluate"], ["run", "--store", "sqlite://"]):
            with pytest.raises(SystemExit) as stopped:
                main([*arguments, str(catalog), str(path), "--now", now])
            assert stopped.value.code == 2
            messages.append(capsys.readouterr().err.splitlines()[-1].split("error: ", 1)[1])
        assert (
            messages[0]
            == messages[1]
            == f"argument --now: {now!r} is outside the years 1 to 9999 once converted to UTC"
        )


class TestTableRun:
    """`run --db` refuses a table whose rows lack ids instead of merging them into a customer "None"."""

    def test_null_ids_are_refused(
        self, capsys: pytest.CaptureFixture[str], catalog: Path, tmp_path: Path
    ) -> None:
        """Rows with a NULL id stop the run before anything is stored, with how many there are."""
        source = tmp_path / "source.db"
        with sqlite3.connect(source) as connection:
            connection.execute(
                "create table customers (id text, spend real, orders integer, last_order_at text)"
            )
            connection.executemany(
                "insert into customers values (?, ?, ?, null)", [("a", 500, 4), (None, 1, 1), (None, 2, 2)]
            )
        store = f"sqlite:///{tmp_path / 'store.db'}"
        table = ["--db", f"sqlite:///{source}", "--table", "customers"]
        status, _, err = run_cli(capsys, "run", str(catalog), *table, "--store", store)
        assert status == 1
        assert err == (
            "tagrules: 2 rows of the table 'customers' have no id (NULL in 'id'); give every row an id, "
            "or retag a view of the rows that have one\n"
        )
        with sqlite3.connect(tmp_path / "store.db") as connection:
            assert connection.execute("select count(*) from tagrules_customers").fetchone() == (0,)
