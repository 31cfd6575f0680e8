"""When tags lapse by time alone, kept in every store: ``due`` and ``expiring``, memory, SQLite,
PostgreSQL and MariaDB; and the ``due`` and ``members --expiring-before`` commands as subprocesses."""

from __future__ import annotations

import datetime
import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from sql_tables import fill, snapshot_table
from store_helpers import drop_store, sql_store, store, unique_prefix
from tagrules import Catalog, Evaluator, SQLStore, Tagger, TagStore, retag_from_table
from tagrules.stores import Due

__all__ = ["sql_store", "store"]

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 6, 1, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
ONE = datetime.timedelta(microseconds=1)
SCHEMA = {"seen": "datetime", "bought": "datetime | None", "orders": "int"}
TAGS: list[dict[str, Any]] = [
    {"key": "new", "rule": "seen >= $now - t'P30D'"},
    {"key": "welcome", "rule": "'new' in tags and orders > 0"},
    {"key": "lapsed", "rule": "orders > 0 and (bought ?? seen) < $now - t'P90D'"},
    {"key": "busy", "rule": "orders >= 5"},
]


def catalog() -> Catalog:
    return Catalog(TAGS, SCHEMA)


def snapshot(seen_days_ago: float, bought_days_ago: float | None, orders: int) -> dict[str, Any]:
    bought = None if bought_days_ago is None else T0 - bought_days_ago * DAY
    return {"seen": T0 - seen_days_ago * DAY, "bought": bought, "orders": orders}


class TestDue:
    def test_due_lists_the_customers_whose_tags_time_has_changed(self, store: TagStore) -> None:
        """A customer is due from the instant its tags change by time alone, not a microsecond before."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", snapshot(20, None, 1), T0)  # new and welcome until day 10
        tagger.apply("b", snapshot(200, 60, 2), T0)  # lapsed from day 30
        tagger.apply("c", snapshot(200, None, 0), T0)  # nothing ever changes
        first = T0 + 10 * DAY + ONE
        lapsing = T0 + 30 * DAY + ONE
        assert tagger.due(first - ONE) == []
        assert tagger.due(first) == ["a"]
        assert store.due(lapsing - ONE) == ["a"]
        assert store.due(lapsing) == ["a", "b"]
        assert store.load(["c"]) == {}  # holding nothing, due never: not kept

    def test_the_due_time_is_the_evaluation_s_valid_until(self, store: TagStore) -> None:
        """The stored due time is exactly ``Evaluation.valid_until``."""
        tagger = Tagger(catalog(), store)
        data = snapshot(25, 80, 3)
        tagger.apply("a", data, T0)
        expected = Evaluator(catalog()).evaluate(data, T0, valid_until=True).valid_until
        assert expected is not None
        assert store.load(["a"])["a"].due.at == expected
        assert store.due(expected) == ["a"]
        assert store.due(expected - ONE) == []

    def test_new_data_moves_the_due_time_without_a_tag_change(self, store: TagStore) -> None:
        """A customer whose data changes but whose tags do not gets its new due time."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", snapshot(200, 10, 1), T0)  # lapses at day 80
        assert store.due(T0 + 80 * DAY + ONE) == ["a"]
        report = tagger.apply_many([("a", snapshot(200, 5, 1))], now=T0)  # bought again: day 85
        assert report.tags["lapsed"].added == report.tags["lapsed"].removed == 0
        assert store.due(T0 + 80 * DAY + ONE) == []
        assert store.due(T0 + 85 * DAY + ONE) == ["a"]

    def test_evaluating_at_the_due_time_moves_it_on(self, store: TagStore) -> None:
        """Re-evaluating a due customer applies the change and sets the next due time."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", snapshot(20, 20, 1), T0)  # new until day 10, lapsed from day 70
        moment = T0 + 10 * DAY + ONE
        assert tagger.due(moment) == ["a"]
        change = tagger.apply("a", snapshot(20, 20, 1), moment)
        assert change.removed == {"new", "welcome"}
        assert tagger.due(moment) == []
        assert tagger.due(T0 + 70 * DAY + ONE) == ["a"]

    def test_a_catalog_reading_time_otherwise_keeps_no_due_time(self, store: TagStore) -> None:
        """Where the instants cannot be derived, the store knows no due time and lists nobody."""
        odd = Catalog([{"key": "may", "rule": "$now.month == 5 and orders > 0"}], SCHEMA)
        Tagger(odd, store).apply("a", snapshot(1, None, 1), T0 - 5 * DAY)
        assert store.load(["a"])["a"].due == Due(known=False)
        assert store.due(T0 + 400 * DAY) == []


class TestExpiring:
    def test_members_whose_membership_lapses_by_then(self, store: TagStore) -> None:
        """``expiring`` lists the members of a tag that lose it by time alone by the given time."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", snapshot(20, None, 1), T0)  # loses new and welcome at day 10
        tagger.apply("b", snapshot(5, None, 1), T0)  # loses them at day 25
        tagger.apply("c", snapshot(5, None, 0), T0)  # new (not welcome) until day 25
        assert store.expiring("new", T0 + 10 * DAY) == []
        assert store.expiring("new", T0 + 10 * DAY + ONE) == ["a"]
        assert store.expiring("new", T0 + 25 * DAY + ONE) == ["a", "b", "c"]
        assert store.expiring("welcome", T0 + 25 * DAY + ONE) == ["a", "b"]
        assert store.expiring("busy", T0 + 4000 * DAY) == []

    def test_the_lapse_of_one_tag_not_the_customer_s_next_change(self, store: TagStore) -> None:
        """A tag's lapse is its own: a customer whose next change is another tag's is not listed."""
        tagger = Tagger(catalog(), store)
        # lapsed from day 10 (bought 80 days ago); new until day 20
        tagger.apply("a", snapshot(10, 80, 1), T0)
        record = store.load(["a"])["a"].due
        assert record.at == T0 + 10 * DAY + ONE
        assert dict(record.lapses) == {"new": T0 + 20 * DAY + ONE, "welcome": T0 + 20 * DAY + ONE}
        assert store.expiring("new", T0 + 15 * DAY) == []
        assert store.expiring("new", T0 + 20 * DAY + ONE) == ["a"]

    def test_a_removed_membership_no_longer_expires(self, store: TagStore) -> None:
        """Once a customer loses a tag (its data changed), it is not listed as expiring."""
        tagger = Tagger(catalog(), store)
        tagger.apply("a", snapshot(20, None, 1), T0)
        tagger.apply("a", snapshot(60, None, 1), T0 + DAY)
        assert store.expiring("new", T0 + 4000 * DAY) == []

    def test_a_manual_membership_never_expires(self, store: TagStore) -> None:
        """A tag a person included is held whatever time does, and so are the tags testing it."""
        tagger = Tagger(catalog(), store)
        tagger.include("a", "new", by="ana", reason="event guest", now=T0)
        tagger.apply("a", snapshot(20, None, 1), T0)
        assert store.expiring("new", T0 + 4000 * DAY) == []
        assert store.expiring("welcome", T0 + 4000 * DAY) == []
        assert store.tags("a") == {"new", "welcome"}


_TIMES = st.datetimes(
    min_value=datetime.datetime(2026, 3, 1), max_value=datetime.datetime(2026, 9, 1), timezones=st.just(UTC)
)


@st.composite
def monotone_catalogs(draw: st.DrawFn) -> Catalog:
    """Tags each reading one comparison with time: each flips at most once, so a customer's tags at
    a later time differ from its tags now exactly when time has changed them."""
    tags = []
    for index in range(draw(st.integers(1, 4))):
        operator = draw(st.sampled_from([">=", ">", "<=", "<"]))
        delta = draw(st.sampled_from(["t'P30D'", "t'PT1H'", "t'P0D'", "t'P1DT0.5S'"]))
        side = draw(st.sampled_from(["seen", "(bought ?? seen)"]))
        shape = draw(st.integers(0, 2))
        if shape == 0:
            rule = f"{side} {operator} $now - {delta}"
        elif shape == 1:
            rule = f"$now + {delta} {operator} {side}"
        else:
            rule = f"$today {operator} {side}"
        if draw(st.booleans()):
            rule = f"orders > {draw(st.integers(0, 2))} and {rule}"
        tags.append({"key": f"t{index}", "rule": rule})
    return Catalog(tags, SCHEMA)


class TestDueProperty:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        tags=monotone_catalogs(),
        snapshots=st.lists(
            st.fixed_dictionaries(
                {"seen": _TIMES, "bought": st.one_of(st.none(), _TIMES), "orders": st.integers(0, 3)}
            ),
            min_size=1,
            max_size=6,
        ),
        later=st.lists(st.timedeltas(min_value=datetime.timedelta(0), max_value=90 * DAY), max_size=4),
    )
    def test_due_lists_exactly_the_customers_time_has_changed(
        self,
        store: TagStore,
        tags: Catalog,
        snapshots: list[dict[str, Any]],
        later: list[datetime.timedelta],
    ) -> None:
        """At any later time, ``due`` lists exactly the customers whose evaluation then differs from
        their stored tags (and failures) by time alone."""
        run = secrets.token_hex(4)
        evaluator = Evaluator(tags)
        tagger = Tagger(tags, store, evaluator=evaluator)
        ids = [f"{run}-{index}" for index in range(len(snapshots))]
        tagger.apply_many(list(zip(ids, snapshots, strict=True)), now=T0)
        start = {cid: evaluator.evaluate(data, T0) for cid, data in zip(ids, snapshots, strict=True)}
        for offset in later:
            moment = T0 + offset
            expected = [
                cid
                for cid, data in zip(ids, snapshots, strict=True)
                if (evaluation := evaluator.evaluate(data, moment)).tags != start[cid].tags
                or set(evaluation.errors) != set(start[cid].errors)
            ]
            assert [cid for cid in store.due(moment) if cid.startswith(f"{run}-")] == expected


def tagrules(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


CATALOG = """
schema:
  seen: datetime
  bought: datetime | None
  orders: int
tags:
  - {key: new, rule: "seen >= $now - t'P30D'"}
  - {key: lapsed, rule: "orders > 0 and (bought ?? seen) < $now - t'P90D'"}
"""


@pytest.fixture
def stored(write: Callable[[str, str], Path], tmp_path: Path) -> str:
    """A SQLite store after one run on three customers at 2026-06-01."""
    rows = [
        {"id": "a", "seen": "2026-05-22T00:00:00Z", "bought": None, "orders": 1},  # new until 06-21
        {"id": "b", "seen": "2025-01-01T00:00:00Z", "bought": "2026-04-01T00:00:00Z", "orders": 2},
        {"id": "c", "seen": "2026-05-27T00:00:00Z", "bought": None, "orders": 0},  # new until 06-26
    ]
    catalog = write("catalog.yaml", CATALOG)
    snapshots = write("snapshots.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    url = f"sqlite:///{tmp_path / 'tags.db'}"
    result = tagrules("run", str(catalog), str(snapshots), "--store", url, "--now", "2026-06-01T00:00:00Z")
    assert result.returncode == 0, result.stderr
    return url


class TestCommands:
    def test_due(self, stored: str) -> None:
        """``tagrules due`` prints the due customers' ids, one per line, sorted."""
        assert tagrules("due", "--store", stored, "--now", "2026-06-21T00:00:00Z").stdout == ""
        edge = tagrules("due", "--store", stored, "--now", "2026-06-30T00:00:00Z")  # b: a microsecond on
        assert edge.stdout.splitlines() == ["a", "c"]
        result = tagrules("due", "--store", stored, "--now", "2026-07-01T00:00:00Z")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["a", "b", "c"]
        json_lines = tagrules("due", "--store", stored, "--now", "2026-06-22T00:00:00Z", "--json")
        assert [json.loads(line) for line in json_lines.stdout.splitlines()] == [{"id": "a"}]

    def test_members_expiring_before(self, stored: str) -> None:
        """``members --expiring-before`` lists the members whose membership lapses by then."""
        result = tagrules("members", "--store", stored, "--tag", "new", "--expiring-before", "2026-06-22")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["a"]
        later = tagrules("members", "--store", stored, "--tag", "new", "--expiring-before", "2026-07-01")
        assert later.stdout.splitlines() == ["a", "c"]
        none = tagrules("members", "--store", stored, "--tag", "lapsed", "--expiring-before", "2027-01-01")
        assert none.stdout == ""

    def test_bad_input_is_one_line(self, stored: str, tmp_path: Path) -> None:
        """A bad time or a missing store is one clear line, exit 1 or 2, no traceback."""
        bad = tagrules("due", "--store", stored, "--now", "soon")
        assert bad.returncode == 2
        assert "soon" in bad.stderr
        assert "Traceback" not in bad.stderr
        both = tagrules(
            "members",
            "--store",
            stored,
            "--tag",
            "new",
            "--as-of",
            "2026-06-01",
            "--expiring-before",
            "2026-07-01",
        )
        assert both.returncode == 2
        missing = tagrules("due", "--store", f"sqlite:///{tmp_path / 'none.db'}")
        assert missing.returncode == 1
        assert missing.stderr.startswith("tagrules: ")
        assert "Traceback" not in missing.stderr


class TestRetagFromATable:
    def test_tags_computed_in_the_database_leave_the_lapses_unknown(self, postgres_url: URL) -> None:
        """A set-wise retag computes tags, not their lapses: the due times and lapses the store held
        for the table's customers become unknown (listed by neither ``due`` nor ``expiring``)."""
        prefix = unique_prefix()
        store = SQLStore(postgres_url, prefix=prefix, migrate=True)
        engine = sqlalchemy.create_engine(postgres_url)
        table = snapshot_table(f"due_rows_{secrets.token_hex(4)}", catalog().schema, "postgresql")
        rows = [{"id": "a", **snapshot(20, None, 1)}, {"id": "b", **snapshot(200, 60, 2)}]
        try:
            with engine.begin() as connection:
                fill(connection, table, catalog().schema, rows)
            Tagger(catalog(), store).apply_many([(row["id"], row) for row in rows], now=T0)
            assert store.due(T0 + 40 * DAY) == ["a", "b"]
            report = retag_from_table(catalog(), engine, table.name, store, now=T0 + DAY)
            assert report.set_wise
            assert store.due(T0 + 4000 * DAY) == []
            assert store.expiring("new", T0 + 4000 * DAY) == []
            assert store.load(["a"])["a"].due == Due(known=False)
            again = Tagger(catalog(), store).apply("a", rows[0], T0 + 2 * DAY)
            assert not again.changed
            assert store.due(T0 + 40 * DAY) == ["a"]
        finally:
            with engine.begin() as connection:
                table.drop(connection)
            engine.dispose()
            store.close()
            drop_store(postgres_url, prefix)


class TestLapsesAsWritten:
    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        tags=monotone_catalogs(),
        runs=st.lists(
            st.lists(
                st.fixed_dictionaries(
                    {"seen": _TIMES, "bought": st.one_of(st.none(), _TIMES), "orders": st.integers(0, 3)}
                ),
                min_size=3,
                max_size=3,
            ),
            min_size=1,
            max_size=3,
        ),
        later=st.lists(st.timedeltas(min_value=datetime.timedelta(0), max_value=120 * DAY), max_size=3),
    )
    def test_expiring_and_due_agree_with_the_memory_store(
        self,
        store: TagStore,
        tags: Catalog,
        runs: list[list[dict[str, Any]]],
        later: list[datetime.timedelta],
    ) -> None:
        """After runs over new and stored customers (memberships gained, kept and lost), every store
        answers ``due`` and ``expiring`` as the memory store does: a new customer's lapses, written
        with its rows, and a stored one's, updated, are the same."""
        from tagrules import MemoryStore

        run = secrets.token_hex(4)
        reference = MemoryStore()
        ids = [f"{run}-{index}" for index in range(3)]
        for number, snapshots in enumerate(runs):
            for target in (store, reference):
                Tagger(tags, target).apply_many(list(zip(ids, snapshots, strict=True)), now=T0 + number * DAY)
        for offset in [datetime.timedelta(0), *later]:
            moment = T0 + offset
            ours = [cid for cid in store.due(moment) if cid.startswith(f"{run}-")]
            assert ours == reference.due(moment)
            for tag in (definition.key for definition in tags):
                held = [cid for cid in store.expiring(tag, moment) if cid.startswith(f"{run}-")]
                assert held == reference.expiring(tag, moment)


class TestLapsingIndex:
    def test_only_lapsing_memberships_are_indexed_where_the_database_can(self, sql_store: SQLStore) -> None:
        """On PostgreSQL and SQLite the index ``expiring`` reads holds only the memberships that lapse
        (revision 0006); MariaDB, which has no partial indexes, indexes them all."""
        name = f"{sql_store.prefix}memberships_lapses"
        with sql_store._engine.connect() as connection:
            if sql_store.url.get_backend_name() == "postgresql":
                definition = connection.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (name,)
                ).scalar_one()
            elif sql_store.url.get_backend_name() == "sqlite":
                definition = connection.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (name,)
                ).scalar_one()
            else:
                definition = None
                columns = connection.exec_driver_sql(
                    f"SHOW INDEX FROM {sql_store.prefix}memberships WHERE Key_name = %s", (name,)
                ).all()
                assert len(columns) == 2
        if definition is not None:
            assert "WHERE" in definition.upper()
            assert "lapses_at IS NOT NULL" in definition

    def test_expiring_reads_the_partial_index_on_postgresql(self, postgres_url: URL) -> None:
        """PostgreSQL's plan for ``expiring`` uses the partial index: its ``lapses_at <= ...`` implies
        the index's ``lapses_at IS NOT NULL``."""
        prefix = unique_prefix()
        with SQLStore(postgres_url, prefix=prefix, migrate=True) as store:
            try:
                tagger = Tagger(catalog(), store)
                tagger.apply_many(
                    [(f"c{index:05d}", snapshot(index % 60, None, index % 3)) for index in range(3000)],
                    now=T0,
                )
                m = store.tables.memberships
                statement = (
                    sqlalchemy.select(m.c.customer_id)
                    .where(m.c.tag == "new", m.c.source == "computed", m.c.lapses_at <= T0 + DAY)
                    .order_by(m.c.customer_id)
                )
                compiled = statement.compile(store._engine)
                with store._engine.connect() as connection:
                    connection.exec_driver_sql(f"ANALYZE {m.name}")
                    connection.exec_driver_sql("SET enable_seqscan = off")
                    plan = "\n".join(
                        row[0]
                        for row in connection.exec_driver_sql(
                            f"EXPLAIN {compiled.string}", compiled.params
                        ).all()
                    )
                assert f"{prefix}memberships_lapses" in plan
                assert store.expiring("new", T0 + DAY + ONE) != []
            finally:
                drop_store(postgres_url, prefix)
