"""``tagrules run --db``'s contract, run as a subprocess: a table's rows retagged into a store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from store_helpers import drop_store, unique_prefix
from test_cli_store import CATALOG, FIRST, NOW, jsonl, tagrules

ROWS: list[dict[str, Any]] = [{**row, "id": str(row["id"])} for row in FIRST]


def table_database(tmp_path: Path, rows: list[dict[str, Any]], name: str = "customers") -> str:
    """A SQLite file with a table of ``rows``; its URL."""
    url = f"sqlite:///{tmp_path / 'source.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"CREATE TABLE {name} (id TEXT PRIMARY KEY, spend REAL, orders INTEGER, note TEXT)")
        )
        connection.execute(
            sa.text(f"INSERT INTO {name} (id, spend, orders) VALUES (:id, :spend, :orders)"), rows
        )
    engine.dispose()
    return url


def changes(path: Path) -> list[dict[str, Any]]:
    return sorted(
        (json.loads(line) for line in path.read_text().splitlines()), key=lambda c: (c["id"], c["tag"])
    )


@pytest.fixture
def catalog(write: Callable[[str, str], Path]) -> Path:
    return write("catalog.yaml", CATALOG)


class TestRunFromTable:
    def test_summary_says_where_tags_ran(self, tmp_path: Path, catalog: Path) -> None:
        """The summary table is the snapshot run's, followed by where each tag was evaluated."""
        db = table_database(tmp_path, ROWS)
        store = f"sqlite:///{tmp_path / 'tags.db'}"
        arguments = ["run", str(catalog), "--db", db, "--table", "customers", "--store", store]
        result = tagrules(*arguments, "--now", NOW)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "tag           members      added    removed     errors",
            "spend_high          1          1          0          0",
            "spend_mid           1          1          0          0",
            "frequent            1          1          0          0",
            "per_order           1          1          0          1",
            "3 customers: 4 added, 0 removed, 1 error",
            "in the database: spend_high, spend_mid, frequent",
            "in Python: per_order: tag 'per_order': the operator / on a field (rule-engine rounds it to 28 "
            "digits) (spend / orders) cannot be evaluated in the database on sqlite",
            "customers with overrides evaluated in Python",
        ]
        again = tagrules(*arguments, "--now", "2026-07-01T00:00:00Z")
        assert again.returncode == 0, again.stderr
        assert "3 customers: 0 added, 0 removed, 1 error" in again.stdout

    def test_changes_match_a_snapshot_run(self, tmp_path: Path, catalog: Path) -> None:
        """--changes writes the lines a run over the same rows as JSON Lines writes."""
        db = table_database(tmp_path, ROWS)
        snapshots = tmp_path / "rows.jsonl"
        snapshots.write_text(jsonl(ROWS))
        from_table = tagrules(
            "run", str(catalog), "--db", db, "--table", "customers", "--now", NOW,
            "--store", f"sqlite:///{tmp_path / 'a.db'}", "--changes", str(tmp_path / "a.jsonl"),
        )  # fmt: skip
        from_file = tagrules(
            "run", str(catalog), str(snapshots), "--now", NOW,
            "--store", f"sqlite:///{tmp_path / 'b.db'}", "--changes", str(tmp_path / "b.jsonl"),
        )  # fmt: skip
        assert from_table.returncode == from_file.returncode == 0, from_table.stderr + from_file.stderr
        assert changes(tmp_path / "a.jsonl") == changes(tmp_path / "b.jsonl")
        assert changes(tmp_path / "a.jsonl")

    def test_tags_left_to_python_are_named_with_why(
        self, tmp_path: Path, write: Callable[[str, str], Path]
    ) -> None:
        """A tag the database cannot evaluate is evaluated in Python, and the summary says why."""
        catalog = write(
            "regex.yaml",
            "schema: {spend: float, note: str | None}\n"
            "tags:\n"
            "  - {key: big, rule: 'spend >= 100'}\n"
            "  - {key: noted, rule: \"(note ?? '') =~ 'x+'\"}\n",
        )
        db = table_database(tmp_path, ROWS)
        result = tagrules(
            "run", str(catalog), "--db", db, "--table", "customers", "--now", NOW,
            "--store", f"sqlite:///{tmp_path / 'tags.db'}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "in the database: big" in result.stdout
        assert "in Python: noted: tag 'noted': " in result.stdout

    def test_sqlite_dates_of_any_type(self, tmp_path: Path, write: Callable[[str, str], Path]) -> None:
        """A SQLite DATETIME column holding text that is no date or a number: those rows' tags reading
        it are errors, in the database and in Python alike, and the run goes on."""
        catalog = write(
            "dates.yaml",
            "schema: {last: datetime | None, note: str | None}\n"
            "tags:\n"
            "  - {key: recent, rule: \"(last ?? d'1970-01-01') > d'2024-01-01'\"}\n"
            "  - {key: noted, rule: \"(note ?? '') =~ 'x+' or (last ?? d'1970-01-01') > d'2024-01-01'\"}\n",
        )
        url = f"sqlite:///{tmp_path / 'source.db'}"
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                sa.text("CREATE TABLE customers (id TEXT PRIMARY KEY, last DATETIME, note TEXT)")
            )
            connection.execute(
                sa.text(
                    "INSERT INTO customers VALUES ('a', '2025-01-01 00:00:00.000000', NULL), "
                    "('b', 'not a date', NULL), ('c', 20250101, NULL), "
                    "('d', '2025-03-01 10:00:00.500000', NULL)"
                )
            )
        engine.dispose()
        result = tagrules(
            "run", str(catalog), "--db", url, "--table", "customers", "--now", NOW,
            "--store", f"sqlite:///{tmp_path / 'tags.db'}", "--changes", str(tmp_path / "changes.jsonl"),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "4 customers: 4 added, 0 removed, 4 errors" in result.stdout
        assert "in the database: recent" in result.stdout
        assert {(c["id"], c["tag"]) for c in changes(tmp_path / "changes.jsonl")} == {
            ("a", "recent"), ("a", "noted"), ("d", "recent"), ("d", "noted"),
        }  # fmt: skip

    def test_snapshots_and_table_together(self, tmp_path: Path, catalog: Path) -> None:
        """SNAPSHOTS with --db is a one-line usage error."""
        (tmp_path / "rows.jsonl").write_text(jsonl(ROWS))
        db = table_database(tmp_path, ROWS)
        result = tagrules(
            "run", str(catalog), str(tmp_path / "rows.jsonl"), "--db", db, "--table", "customers",
            "--store", f"sqlite:///{tmp_path / 'tags.db'}",
        )  # fmt: skip
        assert result.returncode == 1
        assert "give either SNAPSHOTS.jsonl or --db URL --table NAME, not both" in result.stderr
        assert "Traceback" not in result.stderr

    def test_db_without_table(self, tmp_path: Path, catalog: Path) -> None:
        """--db without --table is a one-line usage error."""
        db = table_database(tmp_path, ROWS)
        result = tagrules("run", str(catalog), "--db", db, "--store", f"sqlite:///{tmp_path / 'tags.db'}")
        assert result.returncode == 1
        assert "--db URL and --table NAME go together" in result.stderr

    def test_neither_snapshots_nor_table(self, tmp_path: Path, catalog: Path) -> None:
        """Without SNAPSHOTS or --db, run says what to give."""
        result = tagrules("run", str(catalog), "--store", f"sqlite:///{tmp_path / 'tags.db'}")
        assert result.returncode == 1
        assert "or --db URL --table NAME" in result.stderr

    @pytest.mark.parametrize(
        ("db", "table", "id_column", "message"),
        [
            ("not a url", "customers", "id", "not a database URL"),
            ("postgresql+psycopg://postgres@127.0.0.1:1/none", "customers", "id", "cannot connect"),
            (None, "missing", "id", "no table 'missing'"),
            (None, "customers", "customer", "no id column 'customer'"),
        ],
    )
    def test_errors_are_messages(
        self, tmp_path: Path, catalog: Path, db: str | None, table: str, id_column: str, message: str
    ) -> None:
        """A bad URL, an unreachable server, a missing table or id column: one line, exit 1."""
        url = db or table_database(tmp_path, ROWS)
        result = tagrules(
            "run", str(catalog), "--db", url, "--table", table, "--id-column", id_column,
            "--store", f"sqlite:///{tmp_path / 'tags.db'}",
        )  # fmt: skip
        assert result.returncode == 1
        assert message in result.stderr
        assert "Traceback" not in result.stderr

    def test_store_not_set_up(self, tmp_path: Path, catalog: Path, postgres_url: Any) -> None:
        """A server store without its tables is a one-line error naming `tagrules db upgrade`."""
        db = table_database(tmp_path, ROWS)
        store = postgres_url.set(query={}).render_as_string(hide_password=False)
        result = tagrules(
            "run", str(catalog), "--db", db, "--table", "customers", "--store", store, "--prefix", "nostore_"
        )
        assert result.returncode == 1
        assert "tagrules db upgrade" in result.stderr
        assert "Traceback" not in result.stderr


class TestRunSetWise:
    def test_store_in_the_same_database(
        self, postgres_url: Any, write: Callable[[str, str], Path], tmp_path: Path
    ) -> None:
        """With the store in the table's PostgreSQL database, the summary says the diff ran set-wise."""
        catalog = write(
            "pushable.yaml",
            "schema: {spend: float, orders: int}\n"
            "tags:\n"
            "  - {key: big, rule: 'spend >= 100'}\n"
            "  - {key: frequent, rule: 'orders >= 3'}\n",
        )
        url = postgres_url.render_as_string(hide_password=False)
        prefix = unique_prefix()
        engine = sa.create_engine(postgres_url)
        table = f"cli_setwise_{prefix.rstrip('_')}"
        with engine.begin() as connection:
            connection.execute(
                sa.text(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, spend FLOAT, orders INT)")
            )
            connection.execute(
                sa.text(f"INSERT INTO {table} VALUES (:id, :spend, :orders)"),
                [{"id": str(row["id"]), "spend": row["spend"], "orders": row["orders"]} for row in FIRST],
            )
        engine.dispose()
        try:
            assert tagrules("db", "upgrade", url, "--prefix", prefix).returncode == 0
            arguments = [
                "run",
                str(catalog),
                "--db",
                url,
                "--table",
                table,
                "--store",
                url,
                "--prefix",
                prefix,
            ]
            result = tagrules(*arguments, "--now", NOW, "--changes", str(tmp_path / "changes.jsonl"))
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines()[-3:] == [
                "3 customers: 3 added, 0 removed, 0 errors",
                "in the database: big, frequent",
                "changes computed set-wise in the database (the store shares the table's database)",
            ]
            assert changes(tmp_path / "changes.jsonl") == [
                {"id": "a", "tag": "big", "change": "added"},
                {"id": "a", "tag": "frequent", "change": "added"},
                {"id": "b", "tag": "big", "change": "added"},
            ]
            again = tagrules(*arguments, "--now", "2026-07-01T00:00:00Z")
            assert "3 customers: 0 added, 0 removed, 0 errors" in again.stdout
        finally:
            drop_store(postgres_url, prefix)
