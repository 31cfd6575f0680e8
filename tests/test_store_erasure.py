"""Erasure: `forget` against commits in flight, no copy left in SQLite's files, `tagrules forget`."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.engine import URL

from store_helpers import catalog, drop_store, unique_prefix
from tagrules import ChangeEvent, ConcurrentUpdate, SQLStore, Tagger
from tagrules.stores import CustomerChange, store_tables
from test_cli_store import tagrules

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
T1 = T0 + datetime.timedelta(days=1)
RICH = {"spend": 2000.0, "orders": 4}
MID = {"spend": 200.0, "orders": 1}
TABLES = ["customers", "memberships", "history", "overrides", "outbox"]


@pytest.fixture
def prefix(database_url: URL) -> Iterator[str]:
    """A table prefix with a store set up in the test's database; dropped afterwards."""
    made = unique_prefix()
    SQLStore(database_url, prefix=made, migrate=True).close()
    yield made
    drop_store(database_url, made)


def rows_of(url: URL, prefix: str, customer_id: str) -> dict[str, int]:
    """How many rows of ``customer_id`` each table of the store holds, read with SQL."""
    tables = store_tables(prefix)
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                name.removeprefix(prefix): connection.execute(
                    sqlalchemy.select(sqlalchemy.func.count()).where(table.c.customer_id == customer_id)
                ).scalar_one()
                for name, table in tables.metadata.tables.items()
                if "customer_id" in table.c  # run records hold counts, not customers
            }
    finally:
        engine.dispose()


class TestForgetDuringCommit:
    @pytest.mark.parametrize("known", [True, False], ids=["known", "first-commit"])
    def test_forget_leaves_nothing_of_a_commit_in_flight(
        self, database_url: URL, prefix: str, known: bool
    ) -> None:
        """`forget(c)` called from a second connection while a commit for c is held up between its
        statements (a delay before its history insert) leaves no row of c in any table: the commit
        completes first and the erasure removes all of it."""
        writer = SQLStore(database_url, prefix=prefix)
        eraser = SQLStore(database_url, prefix=prefix)
        tagger = Tagger(catalog(), writer)
        if known:
            tagger.apply("c", RICH, now=T0)
        in_flight = threading.Event()

        def delay(connection: Any, cursor: Any, statement: str, *arguments: Any) -> None:
            if statement.startswith(f"INSERT INTO {prefix}history") and not in_flight.is_set():
                in_flight.set()
                time.sleep(1.5)

        sqlalchemy.event.listen(writer._engine, "before_cursor_execute", delay)
        try:
            with ThreadPoolExecutor(1) as pool:
                applied = pool.submit(tagger.apply, "c", MID, now=T1)
                assert in_flight.wait(60), "the commit never reached its history insert"
                eraser.forget("c")
                assert applied.result(timeout=120).added == {"spend_mid"}
        finally:
            writer.close()
            eraser.close()
        assert rows_of(database_url, prefix, "c") == dict.fromkeys(TABLES, 0)

    def test_commit_worked_out_before_forget_is_refused(self, database_url: URL, prefix: str) -> None:
        """A change worked out from the state before an erasure and committed after it writes nothing
        (ConcurrentUpdate: the tagger works it out again, from nothing)."""
        store = SQLStore(database_url, prefix=prefix)
        try:
            Tagger(catalog(), store).apply("c", RICH, now=T0)
            stale = store.load(["c"])["c"]
            store.forget("c")
            change = CustomerChange(
                "c",
                stale.version,
                T1,
                removed=(("vip", "rule"),),
                events=(ChangeEvent("c", "vip", "removed", T1, "rule"),),
            )
            with pytest.raises(ConcurrentUpdate):
                store.commit([change])
        finally:
            store.close()
        assert rows_of(database_url, prefix, "c") == dict.fromkeys(TABLES, 0)


class TestNoCopyLeft:
    def test_sqlite_files_hold_no_copy_of_a_forgotten_id(self, tmp_path: Path) -> None:
        """While the store stays open, neither the database file nor its write-ahead log keeps the
        bytes of a forgotten customer's id."""
        path = tmp_path / "tags.db"
        store = SQLStore(f"sqlite:///{path}")
        try:
            tagger = Tagger(catalog(), store)
            tagger.apply("erase-me-4711", RICH, now=T0)
            tagger.include("erase-me-4711", "key_account", by="ann", reason="x", now=T0)
            tagger.apply("keep-me-0815", RICH, now=T0)
            wal = path.with_name("tags.db-wal")
            assert b"erase-me-4711" in wal.read_bytes() + path.read_bytes()
            store.forget("erase-me-4711")
            assert b"erase-me-4711" not in wal.read_bytes()
            assert b"erase-me-4711" not in path.read_bytes()
            assert store.memberships("keep-me-0815")
        finally:
            store.close()


class TestForgetCommand:
    def test_forget_erases_one_customer(self, database_url: URL, prefix: str, tmp_path: Path) -> None:
        """`tagrules forget --store URL --id ID` erases that customer (exit 0); an id the store does not
        know, such as the same id in another case, is one line and exit 1."""
        store = SQLStore(database_url, prefix=prefix)
        try:
            tagger = Tagger(catalog(), store)
            tagger.apply("Big", RICH, now=T0)
            tagger.apply("other", RICH, now=T0)
        finally:
            store.close()
        url = database_url.render_as_string(hide_password=False)
        unknown = tagrules("forget", "--store", url, "--prefix", prefix, "--id", "big")
        assert unknown.returncode == 1
        assert unknown.stdout == ""
        assert unknown.stderr.startswith("tagrules: no customer 'big' in ")
        assert unknown.stderr.count("\n") == 1
        assert rows_of(database_url, prefix, "Big")["memberships"] == 4
        done = tagrules("forget", "--store", url, "--prefix", prefix, "--id", "Big")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("forgot customer 'Big'")
        assert rows_of(database_url, prefix, "Big") == dict.fromkeys(TABLES, 0)
        assert rows_of(database_url, prefix, "other")["memberships"] == 4
        again = tagrules("forget", "--store", url, "--prefix", prefix, "--id", "Big")
        assert again.returncode == 1

    def test_missing_store(self, tmp_path: Path) -> None:
        """A SQLite store that does not exist is reported, not created."""
        result = tagrules("forget", "--store", f"sqlite:///{tmp_path / 'none.db'}", "--id", "a")
        assert result.returncode == 1
        assert "no such store" in result.stderr
        assert not (tmp_path / "none.db").exists()
