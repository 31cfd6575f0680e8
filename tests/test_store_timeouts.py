"""Nothing waits forever: a server that stops answering, and locks held by another connection, end
in one tagrules error within the configured timeouts, on real servers."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import URL

from store_helpers import catalog, unique_prefix
from tagrules import ChangeEvent, ConcurrentUpdate, SQLStore, StoreError, Tagger
from tagrules.stores import CustomerChange
from tagrules.stores._database import translated
from tcp_proxy import proxy_to
from test_cli_interrupted import changes, run_until_a_chunk_is_committed
from test_cli_store import CATALOG, NOW, tagrules
from test_store_erasure import prefix

__all__ = ["prefix"]

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
T1 = T0 + datetime.timedelta(days=1)
RICH = {"spend": 2000.0, "orders": 4}
FAST = {"connect_timeout": "2", "statement_timeout": "1", "read_timeout": "3", "lock_timeout": "1"}


# minutes of work for each server
LONG_QUERIES = {
    "postgresql": "SELECT COUNT(*) FROM generate_series(1, 1000000000)",
    "mysql": "SELECT COUNT(*) FROM information_schema.COLLATIONS a, information_schema.COLLATIONS b, "
    "information_schema.COLLATIONS c, information_schema.COLLATIONS d",
}


def scalar(store: SQLStore, sql: str) -> object:
    """One value of ``sql`` run on the store's engine, errors translated as the store's are."""
    with translated(store.url, "run a query"), store._engine.connect() as connection:
        return connection.exec_driver_sql(sql).scalar()


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)
class TestServerStopsAnswering:
    def test_store_calls_end_in_one_error_and_work_again_after(self, database_url: URL, prefix: str) -> None:
        """With the server's answers held back (a paused proxy), a read and a write each fail with one
        StoreError line within the timeouts; once the server answers again the store works, and the
        failed write can be done again."""
        with proxy_to(database_url) as proxy:
            store = SQLStore(proxy.url(database_url, **FAST), prefix=prefix)
            try:
                tagger = Tagger(catalog(), store)
                tagger.apply("c", RICH, now=T0)
                proxy.pause()
                for call in (lambda: store.memberships("c"), lambda: store.load(["c"])):
                    started = time.monotonic()
                    with pytest.raises(StoreError) as raised:
                        call()
                    assert time.monotonic() - started < 30
                    assert "reachable" in one_line(raised.value)
                with pytest.raises(StoreError):
                    tagger.apply("d", RICH, now=T0)
                proxy.resume()
                assert [m.tag for m in store.memberships("c")] == [
                    "frequent",
                    "per_order_high",
                    "spend_high",
                    "vip",
                ]
                assert tagger.apply("d", RICH, now=T0).added
            finally:
                store.close()

    def test_statement_timeout_is_set_on_the_server(self, database_url: URL, prefix: str) -> None:
        """A statement running longer than statement_timeout is stopped by the server, with a line
        naming the timeout."""
        store = SQLStore(database_url.update_query_dict(FAST), prefix=prefix)
        try:
            started = time.monotonic()
            with pytest.raises(StoreError) as raised:
                scalar(store, LONG_QUERIES[database_url.get_backend_name()])
            assert time.monotonic() - started < 10
            assert "statement timeout" in one_line(raised.value)
        finally:
            store.close()


class TestLockTimeout:
    def test_a_held_lock_ends_in_concurrent_update(self, database_url: URL, prefix: str) -> None:
        """A commit waiting for a lock another connection holds gives up after lock_timeout with
        ConcurrentUpdate (which the tagger retries), instead of waiting for as long as it is held."""
        limits = {**FAST, "statement_timeout": "10", "read_timeout": "20"}
        store = SQLStore(database_url.update_query_dict(limits), prefix=prefix)
        Tagger(catalog(), store).apply("c", RICH, now=T0)
        version = store.load(["c"])["c"].version
        holder = sqlalchemy.create_engine(database_url)
        try:
            with holder.connect() as connection:
                if database_url.get_backend_name() == "sqlite":
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    connection.exec_driver_sql(
                        f"SELECT * FROM {prefix}customers WHERE customer_id = 'c' FOR UPDATE"
                    )
                change = CustomerChange(
                    "c",
                    version,
                    T1,
                    removed=(("vip", "rule"),),
                    events=(ChangeEvent("c", "vip", "removed", T1, "rule"),),
                )
                started = time.monotonic()
                with pytest.raises(ConcurrentUpdate):
                    store.commit([change])
                assert time.monotonic() - started < 20
                connection.rollback()
            store.commit([change])
            assert "vip" not in {m.tag for m in store.memberships("c")}
        finally:
            holder.dispose()
            store.close()


def test_a_bad_timeout_is_refused() -> None:
    """A timeout that is not a positive number of seconds is refused, naming the parameter."""
    with pytest.raises(StoreError, match="lock_timeout='soon'"):
        SQLStore("sqlite:///:memory:?lock_timeout=soon")


ROWS = 25_000  # three pages of the table read, 25 chunks


@pytest.fixture
def source_table(postgres_url: URL) -> Iterator[str]:
    """A table of ROWS customers in the PostgreSQL test database; its name."""
    name = f"src_{unique_prefix()}"
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {name} (id TEXT PRIMARY KEY, spend FLOAT, orders INTEGER)")
        connection.exec_driver_sql(
            f"INSERT INTO {name} SELECT 'c' || n, mod(n * 37, 3000), mod(n, 7) "
            f"FROM generate_series(1, {ROWS}) AS n"
        )
    yield name
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE {name}")
    engine.dispose()


class TestRunWhenTheSourceStopsAnswering:
    def test_run_ends_in_one_line_and_a_rerun_completes(
        self, postgres_url: URL, source_table: str, tmp_path: Path
    ) -> None:
        """`run --db` whose source stops answering in the middle of the read (a paused proxy) exits 1
        within the read timeout with one line (no traceback of SQLAlchemy's pool); the changes of
        the committed chunks are in its --changes file, and with the re-run's they equal a clean
        run's."""
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(CATALOG, encoding="utf-8")
        first, second, clean = (tmp_path / f"{name}.jsonl" for name in ("first", "second", "clean"))
        command = ["run", str(catalog), "--table", source_table, "--now", NOW]
        store = f"sqlite:///{tmp_path / 'stopped.db'}"
        direct = postgres_url.render_as_string(hide_password=False)
        with proxy_to(postgres_url) as proxy:
            url = proxy.url(postgres_url, **FAST).render_as_string(hide_password=False)
            process = run_until_a_chunk_is_committed([*command, "--db", url, "--store", store], first)
            proxy.pause()
            paused = time.monotonic()
            out, err = process.communicate(timeout=120)
            assert time.monotonic() - paused < 60
        assert process.returncode == 1, err
        assert out == ""
        assert "Traceback" not in err
        assert "Exception during reset" not in err
        [line] = [
            line
            for line in err.splitlines()
            if not line.startswith("tagrules: [") and "customers (" not in line
        ]
        assert line.startswith("tagrules: postgresql+psycopg://")
        assert "cannot read the table" in line
        assert "reachable" in line
        stopped = changes(first)
        assert stopped
        rerun = tagrules(*command, "--db", direct, "--store", store, "--changes", str(second))
        assert rerun.returncode == 0, rerun.stderr
        clean_store = f"sqlite:///{tmp_path / 'clean.db'}"
        reference = tagrules(*command, "--db", direct, "--store", clean_store, "--changes", str(clean))
        assert reference.returncode == 0, reference.stderr
        assert sum(changes(clean).values()) > sum(stopped.values())
        assert changes(first, second) == changes(clean)


class TestFullDisk:
    def test_a_full_sqlite_database_says_the_disk_is_full(self, tmp_path: Path) -> None:
        """SQLite's "database or disk is full" (here: the file may grow no more pages) is reported as a
        full disk, not as an unreachable database."""
        store = SQLStore(f"sqlite:///{tmp_path / 'tags.db'}")
        try:
            tagger = Tagger(catalog(), store)
            tagger.apply("c0", RICH, now=T0)
            sqlalchemy.event.listen(
                store._engine,
                "connect",
                lambda connection, record: connection.execute("PRAGMA max_page_count = 12"),
            )
            store._engine.dispose()
            with pytest.raises(StoreError) as raised:
                tagger.apply_many([(f"c{n}", RICH) for n in range(1, 5000)], now=T0)
            message = one_line(raised.value)
            assert "the disk is full" in message
            assert "reachable" not in message
        finally:
            store.close()

    @pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
    def test_changes_to_a_full_disk(self, tmp_path: Path) -> None:
        """`run --changes` on a full disk (/dev/full) stops with one line saying so, exit 1."""
        catalog_file = tmp_path / "catalog.yaml"
        catalog_file.write_text(CATALOG, encoding="utf-8")
        snapshots = tmp_path / "in.jsonl"
        snapshots.write_text('{"id": "a", "spend": 2000.0, "orders": 4}\n', encoding="utf-8")
        store = f"sqlite:///{tmp_path / 'tags.db'}"
        result = tagrules(
            "run", str(catalog_file), str(snapshots), "--now", NOW, "--store", store, "--changes", "/dev/full"
        )
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert line.startswith("tagrules: cannot write /dev/full: No space left on device (the disk is full)")
