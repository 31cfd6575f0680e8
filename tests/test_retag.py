"""Retagging from a database table: the store ends exactly as a run over the same rows as snapshots."""

from __future__ import annotations

import datetime
import itertools
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from sql_tables import fill, snapshot_table
from store_helpers import drop_store, unique_prefix
from tagrules import (
    Catalog,
    ConcurrentUpdate,
    Evaluator,
    SourceError,
    SQLStore,
    Tagger,
    TagStore,
    retag_from_table,
)
from tagrules.sources import _setwise
from tagrules.sources.tables import open_table
from tagrules.stores import CustomerChange

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 1, tzinfo=UTC)
LATER = datetime.datetime(2026, 7, 1, tzinfo=UTC)
LAST = datetime.datetime(2026, 8, 1, tzinfo=UTC)
_names = itertools.count()

SCHEMA = {"spend": "float", "orders": "int", "items": "list[int]"}
TAGS: list[dict[str, Any]] = [
    {"key": "spend_high", "rule": "spend >= 1000", "group": "spend", "priority": 2},
    {"key": "spend_mid", "rule": "spend >= 100", "group": "spend", "priority": 1},
    {"key": "frequent", "rule": "orders >= 3"},
    {"key": "per_order", "rule": "spend / orders > 100"},
    {"key": "vip", "rule": "'spend_high' in tags and 'frequent' in tags"},
    {"key": "many", "rule": "[x for x in items if x > 1].length > 1"},
    {"key": "many_vip", "rule": "'many' in tags and 'vip' in tags"},
    {"key": "key_account", "rule": "false"},
    {"key": "key_account_vip", "rule": "'key_account' in tags and 'frequent' in tags"},
]


def catalog(**status: str) -> Catalog:
    tags = [{**tag, "status": status[tag["key"]]} if tag["key"] in status else tag for tag in TAGS]
    return Catalog.from_data({"schema": SCHEMA, "tags": tags})


def generate(seed: int, count: int) -> list[dict[str, Any]]:
    """Rows of customers c000, c001...; orders of 0 make per_order fail (a division by zero)."""
    rng = random.Random(seed)
    return [
        {
            "id": f"c{index:03d}",
            "spend": rng.choice([0.0, 50.0, 100.0, 150.5, 999.99, 1000.0, 5000.0]),
            "orders": rng.choice([0, 1, 2, 3, 4, 9]),
            "items": [rng.randint(0, 3) for _ in range(rng.randint(0, 4))],
        }
        for index in range(count)
    ]


def changed(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    result = []
    for row in rows:
        if rng.random() < 0.3:
            row = {**row, "spend": rng.choice([0.0, 150.5, 1000.0]), "orders": rng.choice([0, 3, 5])}
        result.append(row)
    return result


@pytest.fixture
def engine(database_url: URL) -> Iterator[Engine]:
    created = sa.create_engine(database_url)
    yield created
    created.dispose()


@pytest.fixture
def stores(database_url: URL) -> Iterator[tuple[SQLStore, SQLStore]]:
    """Two stores in the test database: one for the snapshot run, one for the table run."""
    prefixes = [unique_prefix(), unique_prefix()]
    opened = [SQLStore(database_url, prefix=prefix, migrate=True) for prefix in prefixes]
    try:
        yield opened[0], opened[1]
    finally:
        for store, prefix in zip(opened, prefixes, strict=True):
            store.close()
            drop_store(database_url, prefix)


def make_table(engine: Engine, rows: list[dict[str, Any]]) -> sa.Table:
    table = snapshot_table(f"retag_rows_{next(_names)}", catalog().schema, engine.dialect.name)
    with engine.begin() as connection:
        fill(connection, table, catalog().schema, rows)
    return table


def replace_rows(engine: Engine, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(table.delete())
        connection.execute(table.insert(), [{**row, "items": row["items"]} for row in rows])


def as_snapshots(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The rows as a JSON Lines run reads them."""
    return [(str(row["id"]), json.loads(json.dumps(row))) for row in rows]


def contents(store: TagStore, ids: list[str]) -> dict[str, Any]:
    """Everything the store keeps about ``ids``, outbox order aside."""
    events = sorted(
        (event.customer_id, event.tag, event.change, event.at, event.reason)
        for event in store.pending_events(limit=100_000)
    )
    return {
        "memberships": {customer: store.memberships(customer) for customer in ids},
        "history": {customer: store.history(customer) for customer in ids},
        "events": events,
    }


def run_counts(store: SQLStore) -> list[tuple[int, dict[str, Any]]]:
    """The customers and per-tag counts of the store's run records (not the single applies' days)."""
    return [(run.customers, dict(run.tags)) for run in store.runs() if run.kind == "run"]


def set_overrides(store: TagStore, now: datetime.datetime) -> None:
    tagger = Tagger(catalog(), store)
    tagger.include("c003", "key_account", by="rep", reason="signed", now=now)
    tagger.exclude("c005", "spend_high", by="steward", reason="wrong", now=now)
    tagger.exclude("c006", "frequent", by="steward", reason="wrong", now=now)
    tagger.include("c007", "spend_mid", by="rep", reason="promised", now=now)


class TestRetagFromTable:
    def test_same_store_as_a_snapshot_run(
        self, engine: Engine, stores: tuple[SQLStore, SQLStore], database_url: URL
    ) -> None:
        """Memberships, history and outbox events match a snapshot run, over overrides, errors,
        changed rows, a retired tag and a repeated run."""
        by_snapshots, by_table = stores
        first = generate(5, 60)
        ids = [row["id"] for row in first]
        table = make_table(engine, first)
        for store in stores:
            set_overrides(store, NOW - datetime.timedelta(days=1))

        expected = Tagger(catalog(), by_snapshots).apply_many(as_snapshots(first), now=NOW, chunk_size=7)
        found = retag_from_table(
            catalog(), database_url, table.name, by_table, now=NOW, chunk_size=7, page_size=11, set_wise=False
        )
        assert not found.set_wise
        assert dict(found.tags) == dict(expected.tags)
        assert found.customers == expected.customers == 60
        assert found.tags["per_order"].errors > 0
        assert contents(by_table, ids) == contents(by_snapshots, ids)
        assert found.where["many"] == found.where["many_vip"] == "python"
        assert found.where["vip"] == found.where["spend_high"] == "database"
        assert "comprehension" in found.in_python["many"]

        second = changed(first, 6)
        replace_rows(engine, table, second)
        retired = catalog(per_order="retired")
        expected = Tagger(retired, by_snapshots).apply_many(as_snapshots(second), now=LATER, chunk_size=9)
        found = retag_from_table(retired, database_url, table.name, by_table, now=LATER, set_wise=False)
        assert dict(found.tags) == dict(expected.tags)
        assert found.tags["per_order"].removed > 0
        assert contents(by_table, ids) == contents(by_snapshots, ids)

        events = len(by_table.pending_events(limit=100_000))
        again = retag_from_table(retired, database_url, table.name, by_table, now=LAST, set_wise=False)
        assert (again.added, again.removed) == (0, 0)
        assert len(by_table.pending_events(limit=100_000)) == events

    def test_listeners_hear_every_change(
        self, engine: Engine, stores: tuple[SQLStore, SQLStore], database_url: URL
    ) -> None:
        """Listeners get the committed changes, as they do from apply_many."""
        _, store = stores
        table = make_table(engine, generate(8, 20))
        heard: list[Any] = []
        report = retag_from_table(
            catalog(), database_url, table.name, store, now=NOW, listeners=[heard.append], set_wise=False
        )
        assert len(heard) == report.added + report.removed > 0

    def test_missing_table_and_id_column(self, engine: Engine, database_url: URL) -> None:
        """A missing table or id column is a SourceError naming it."""
        store_prefix = unique_prefix()
        store = SQLStore(database_url, prefix=store_prefix, migrate=True)
        try:
            with pytest.raises(SourceError, match="no table 'nowhere'"):
                retag_from_table(catalog(), database_url, "nowhere", store, now=NOW)
            table = make_table(engine, generate(1, 3))
            with pytest.raises(SourceError, match="no id column 'customer'"):
                retag_from_table(catalog(), database_url, table.name, store, id_column="customer", now=NOW)
        finally:
            store.close()
            drop_store(database_url, store_prefix)


def pushable(**status: str) -> Catalog:
    """The test catalog without the tags no database can evaluate; per_order divides integers."""
    tags = [
        {**tag, "status": status[tag["key"]]} if tag["key"] in status else tag
        for tag in TAGS
        if tag["key"] not in ("many", "many_vip")
    ]
    tags = [{**tag, "rule": "100 // orders >= 25"} if tag["key"] == "per_order" else tag for tag in tags]
    return Catalog.from_data({"schema": SCHEMA, "tags": tags})


@pytest.fixture
def pg_stores(postgres_url: URL) -> Iterator[tuple[SQLStore, SQLStore]]:
    prefixes = [unique_prefix(), unique_prefix()]
    opened = [SQLStore(postgres_url, prefix=prefix, migrate=True) for prefix in prefixes]
    try:
        yield opened[0], opened[1]
    finally:
        for store, prefix in zip(opened, prefixes, strict=True):
            store.close()
            drop_store(postgres_url, prefix)


@pytest.fixture
def pg_engine(postgres_url: URL) -> Iterator[Engine]:
    created = sa.create_engine(postgres_url)
    yield created
    created.dispose()


def tagged_table(
    engine: Engine, store: SQLStore, seed: int, count: int
) -> tuple[list[dict[str, Any]], sa.Table]:
    """Generated rows in a new table, retagged once into ``store``."""
    rows = generate(seed, count)
    table = make_table(engine, rows)
    retag_from_table(pushable(), engine.url, table.name, store, now=NOW)
    return rows, table


class TestSetWise:
    @pytest.mark.parametrize("segment_rows", [None, 17], ids=["one-segment", "segments-of-17"])
    @pytest.mark.parametrize("make_catalog", [pushable, catalog], ids=["all-pushed", "some-in-python"])
    def test_same_store_as_a_snapshot_run(
        self,
        postgres_url: URL,
        pg_stores: tuple[SQLStore, SQLStore],
        make_catalog: Any,
        segment_rows: int | None,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Set-wise retagging leaves memberships, history and events as a snapshot run does, over
        overrides, errors, changed rows, a retired tag, tags left to Python and a repeated run;
        whether the table's states are computed at once or in segments of a few rows."""
        if segment_rows is not None:
            monkeypatch.setattr(_setwise, "SEGMENT_ROWS", segment_rows)
        by_snapshots, by_table = pg_stores
        engine = sa.create_engine(postgres_url)
        try:
            first = generate(11, 80)
            ids = [row["id"] for row in first]
            table = make_table(engine, first)
            for store in pg_stores:
                set_overrides(store, NOW - datetime.timedelta(days=1))
            heard: list[Any] = []
            expected = Tagger(make_catalog(), by_snapshots).apply_many(as_snapshots(first), now=NOW)
            found = retag_from_table(
                make_catalog(),
                postgres_url,
                table.name,
                by_table,
                now=NOW,
                page_size=13,
                listeners=[heard.append],
            )
            assert found.set_wise
            assert dict(found.tags) == dict(expected.tags)
            assert found.customers == 80
            assert found.tags["per_order"].errors > 0
            # one run record, with the customers with overrides counted in it (not a second record)
            assert run_counts(by_table) == run_counts(by_snapshots) == [(80, dict(expected.tags))]
            assert contents(by_table, ids) == contents(by_snapshots, ids)
            assert sorted((e.customer_id, e.tag, e.change) for e in heard) == sorted(
                (e.customer_id, e.tag, e.change)
                for e in by_table.pending_events(limit=100_000)
                if e.reason != "manual"
            )

            second = changed(first, 12)
            replace_rows(engine, table, second)
            retired = make_catalog(per_order="retired")
            expected = Tagger(retired, by_snapshots).apply_many(as_snapshots(second), now=LATER)
            found = retag_from_table(retired, postgres_url, table.name, by_table, now=LATER, page_size=7)
            assert found.set_wise
            assert dict(found.tags) == dict(expected.tags)
            assert contents(by_table, ids) == contents(by_snapshots, ids)

            versions = {c: by_table.load([c]).get(c) for c in ids}
            seen: list[int] = []
            again = retag_from_table(
                retired, postgres_url, table.name, by_table, now=LAST, progress=seen.append
            )
            assert (again.added, again.removed) == (0, 0)
            assert again.customers == 80
            assert dict(again.tags) == dict(
                Tagger(retired, by_snapshots).apply_many(as_snapshots(second), now=LAST).tags
            )
            assert seen
            assert seen == sorted(seen)
            assert {c: by_table.load([c]).get(c) for c in ids} == versions
        finally:
            engine.dispose()

    @pytest.mark.parametrize("set_wise", [True, False], ids=["set-wise", "row-by-row"])
    def test_a_run_without_events(
        self, postgres_url: URL, pg_stores: tuple[SQLStore, SQLStore], set_wise: bool
    ) -> None:
        """emit_events=False: the retag writes the memberships and history of a snapshot run and no
        change event (none for a retired tag either), the listeners hear nothing, and the run
        records say so."""
        by_snapshots, by_table = pg_stores
        engine = sa.create_engine(postgres_url)
        try:
            rows = generate(21, 40)
            ids = [row["id"] for row in rows]
            table = make_table(engine, rows)
            heard: list[Any] = []
            for make, moment in ((pushable(), NOW), (pushable(per_order="retired"), LATER)):
                Tagger(make, by_snapshots).apply_many(as_snapshots(rows), now=moment, emit_events=False)
                found = retag_from_table(
                    make,
                    postgres_url,
                    table.name,
                    by_table,
                    now=moment,
                    listeners=[heard.append],
                    set_wise=set_wise,
                    emit_events=False,
                )
                assert found.set_wise is set_wise
                assert contents(by_table, ids) == contents(by_snapshots, ids)
            assert any(entry.reason == "retired" for c in ids for entry in by_table.history(c))
            assert contents(by_table, ids)["events"] == []
            assert heard == []
            assert by_table.runs()
            assert not any(run.emit_events for run in by_table.runs())
        finally:
            engine.dispose()

    def test_unchanged_customers_are_found_with_their_segment(
        self, pg_engine: Engine, pg_stores: tuple[SQLStore, SQLStore]
    ) -> None:
        """After a run, the segment's query finds unchanged every customer whose tags are all known
        and who has no override: none of them goes through the chunks again."""
        _, store = pg_stores
        rows, table = tagged_table(pg_engine, store, 5, 40)
        Tagger(pushable(), store).include(rows[0]["id"], "vip", by="test", reason="pinned", now=NOW)
        evaluator = Evaluator(pushable())
        known = [row["id"] for row in rows if not evaluator.evaluate(as_snapshots([row])[0][1], NOW).errors]
        expected = sorted(set(known) - {rows[0]["id"]})
        assert 0 < len(expected) < len(rows)
        with pg_engine.connect() as connection:
            source = open_table(connection, table.name)
            work = _setwise._SetWise(Tagger(pushable(), store), store, connection, source, "id", NOW, 10)
            assert work.fill_segment(None) is None
            found = connection.exec_driver_sql(
                "SELECT customer_id FROM tagrules_retag_segment WHERE unchanged ORDER BY customer_id"
            ).scalars()
            assert sorted(found) == expected
            assert work.customers == len(expected)

    def test_versions_move_as_python_writers_expect(
        self, pg_engine: Engine, pg_stores: tuple[SQLStore, SQLStore]
    ) -> None:
        """Each changed customer's version is bumped, so a writer holding an older state retries."""
        _, store = pg_stores
        rows, table = tagged_table(pg_engine, store, 3, 10)
        before = store.load([row["id"] for row in rows])
        replace_rows(pg_engine, table, [{**row, "spend": 5000.0, "orders": 9} for row in rows])
        retag_from_table(pushable(), pg_engine.url, table.name, store, now=LATER)
        after = store.load([row["id"] for row in rows])
        moved = [c for c, state in before.items() if after[c].computed != state.computed]
        assert moved
        for customer in moved:
            assert after[customer].version == before[customer].version + 1
        # a writer that read a customer before the set-wise change fails its version check
        stale = CustomerChange(moved[0], before[moved[0]].version, LATER, cleared=("spend_mid",))
        with pytest.raises(ConcurrentUpdate):
            store.commit([stale])

    @pytest.mark.parametrize("set_wise", [True, False], ids=["set-wise", "row-by-row"])
    def test_an_older_run_leaves_later_customers_alone(
        self, pg_engine: Engine, pg_stores: tuple[SQLStore, SQLStore], set_wise: bool
    ) -> None:
        """A retag at a time before the customers' last change writes none of them and counts them
        stale: no history period ends before it starts."""
        _, store = pg_stores
        rows, table = tagged_table(pg_engine, store, 3, 10)
        ids = [row["id"] for row in rows]
        before = store.load(ids)
        assert before
        replace_rows(pg_engine, table, [{**row, "spend": 5000.0, "orders": 9} for row in rows])
        earlier = NOW - datetime.timedelta(days=1)
        report = retag_from_table(
            pushable(), pg_engine.url, table.name, store, now=earlier, set_wise=set_wise
        )
        assert report.set_wise == set_wise
        assert report.stale == len(before)
        assert {c: state for c, state in store.load(ids).items() if c in before} == before
        for customer in ids:
            assert all(e.until is None or e.since <= e.until for e in store.history(customer))

    def test_refused_where_it_cannot_run(self, sqlite_url: URL) -> None:
        """Asking for set-wise retagging where it cannot run is a SourceError saying why."""
        store = SQLStore(sqlite_url, migrate=True)
        engine = sa.create_engine(sqlite_url)
        try:
            table = make_table(engine, generate(2, 3))
            with pytest.raises(SourceError, match="set-wise retag needs"):
                retag_from_table(pushable(), sqlite_url, table.name, store, now=NOW, set_wise=True)
            report = retag_from_table(pushable(), sqlite_url, table.name, store, now=NOW)
            assert not report.set_wise
        finally:
            store.close()
            engine.dispose()
