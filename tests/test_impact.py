"""The impact of a catalog change: counts, tier moves and changed definitions, in Python and in one query."""

from __future__ import annotations

import contextlib
import datetime
import itertools
from collections.abc import Iterator
from typing import Any, cast

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from rule_strategies import NO_HINTS, NOW, RandomSchema
from sql_tables import fill, snapshot_table
from tagrules import Catalog, DefinitionError, ImpactReport, impact
from tagrules.sources.tables import stream_snapshots
from test_pushdown_differential import _value, catalogs, engine_of, sql_schemas

SCHEMA = {"spend": "float", "orders": "int", "vip_flag": "bool"}
OLD: list[dict[str, Any]] = [
    {"key": "high", "rule": "spend >= 100", "group": "spend", "priority": 2},
    {"key": "mid", "rule": "spend >= 30", "group": "spend", "priority": 1},
    {"key": "frequent", "rule": "orders >= 3"},
    {"key": "vip", "rule": "'high' in tags and 'frequent' in tags"},
    {"key": "per_order", "rule": "spend / orders > 10"},
]
ROWS: list[dict[str, Any]] = [
    {"id": "a", "spend": 150.0, "orders": 4, "vip_flag": False},
    {"id": "b", "spend": 110.0, "orders": 5, "vip_flag": True},
    {"id": "c", "spend": 40.0, "orders": 0, "vip_flag": False},
    {"id": "d", "spend": 5.0, "orders": 1, "vip_flag": False},
]


@pytest.fixture(params=["sqlite", "postgresql", "mysql", "duckdb"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> URL:
    """Each database the one query runs on: a SQLite file, PostgreSQL, MariaDB, a DuckDB file."""
    if request.param == "duckdb":
        return sa.make_url(f"duckdb:///{tmp_path_factory.mktemp('duckdb') / 'impact.duckdb'}")
    name = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[request.param]
    url: URL = request.getfixturevalue(name)
    return url


def changed(**rules: str) -> list[dict[str, Any]]:
    return [{**tag, "rule": rules.get(tag["key"], tag["rule"])} for tag in OLD]


class TestImpactInPython:
    def test_a_raised_threshold(self) -> None:
        """Raising a tier's threshold moves its rows to the next tier, and its dependants lose them."""
        old, new = Catalog(OLD, SCHEMA), Catalog(changed(high="spend >= 120"), SCHEMA)
        report = impact(old, new, ROWS, now=NOW)
        assert report.where == "python"
        assert report.rows == 4
        assert dict(report.changed) == {"high": "rule"}
        high = report.tags["high"]
        assert (high.before, high.after, high.gained, high.lost) == (2, 1, 0, 1)
        assert high.examples_lost == ("b",)
        assert report.tags["mid"].examples_gained == ("b",)
        assert (report.tags["vip"].before, report.tags["vip"].after) == (2, 1)
        assert report.groups["spend"] == {
            "high": {"high": 1, "mid": 1},
            "mid": {"mid": 1},
            "none": {"none": 1},
        }
        assert list(report.tags)[:3] == ["high", "mid", "vip"]  # the biggest change first

    def test_errors_before_and_after(self) -> None:
        """Rows on which a rule fails are counted as unknown on each side."""
        old = Catalog(OLD, SCHEMA)
        new = Catalog(changed(per_order="orders > 0 and spend / orders > 10"), SCHEMA)
        tag = impact(old, new, ROWS, now=NOW).tags["per_order"]
        assert (tag.errors_before, tag.errors_after, tag.before, tag.after) == (1, 0, 2, 2)

    def test_added_removed_and_changed_definitions(self) -> None:
        """Tags added and removed, and the first kind of change of each other definition."""
        tags = [{**tag, "priority": 5} if tag["key"] == "high" else tag for tag in OLD if tag["key"] != "vip"]
        tags.append({"key": "flagged", "rule": "vip_flag"})
        report = impact(Catalog(OLD, SCHEMA), Catalog(tags, SCHEMA), ROWS, now=NOW)
        assert dict(report.changed) == {"flagged": "added", "high": "priority", "vip": "removed"}
        assert (report.tags["vip"].lost, report.tags["flagged"].gained) == (2, 1)

    def test_drafts_previewed_unless_as_written(self) -> None:
        """A draft of the new catalog counts as active, or as a draft with ``as_written``."""
        new = Catalog([*OLD, {"key": "flagged", "rule": "vip_flag", "status": "draft"}], SCHEMA)
        old = Catalog(OLD, SCHEMA)
        assert impact(old, new, ROWS, now=NOW).tags["flagged"].after == 1
        written = impact(old, new, ROWS, now=NOW, as_written=True)
        assert "flagged" not in written.tags
        assert written.touches_nothing
        assert dict(written.changed) == {"flagged": "added"}

    def test_a_change_that_touches_nothing(self) -> None:
        """A rewritten rule that assigns the same rows touches nothing, though its definition changed."""
        report = impact(Catalog(OLD, SCHEMA), Catalog(changed(frequent="3 <= orders"), SCHEMA), ROWS, now=NOW)
        assert report.touches_nothing
        assert dict(report.changed) == {"frequent": "rule"}

    def test_json_shape(self) -> None:
        """``to_data`` is the shape ``tagrules impact --json`` prints."""
        report = impact(Catalog(OLD, SCHEMA), Catalog(changed(high="spend >= 120"), SCHEMA), ROWS, now=NOW)
        data = report.to_data()
        assert set(data) == {"rows", "tags", "groups", "changed"}
        assert data["tags"]["high"] == {
            "before": 2,
            "after": 1,
            "gained": 0,
            "lost": 1,
            "errors_before": 0,
            "errors_after": 0,
            "examples": {"gained": [], "lost": ["b"]},
        }


@contextlib.contextmanager
def filled(url: URL, name: str, catalog: Catalog, rows: list[dict[str, Any]]) -> Iterator[sa.Engine]:
    """An engine on ``url`` with the table ``name`` holding ``rows``, dropped after."""
    engine = sa.create_engine(url)
    table = snapshot_table(name, catalog.schema, engine.dialect.name)
    try:
        with engine.begin() as connection:
            fill(connection, table, catalog.schema, rows)
        yield engine
    finally:
        with engine.begin() as connection:
            table.drop(connection)
        engine.dispose()


class TestImpactInDatabase:
    def test_one_query_equals_python(self, database_url: URL) -> None:
        """On a table, one query gives the report Python gives on the same rows."""
        pushable = [
            tag for tag in changed(high="spend >= 120", mid="spend > 40") if tag["key"] != "per_order"
        ]
        old = Catalog([tag for tag in OLD if tag["key"] != "per_order"], SCHEMA)
        new = Catalog(pushable, SCHEMA)
        with filled(database_url, "impact_fixed", old, ROWS) as engine:
            report = impact(old, new, engine, table="impact_fixed", now=NOW)
        assert report.where == "database", report.in_python
        assert report.to_data() == impact(old, new, ROWS, now=NOW).to_data()

    def test_integer_ids_are_reported_as_text(self, database_url: URL) -> None:
        """Ids stored as integers come back as the text of each id, the examples the smallest ones."""
        old = Catalog([tag for tag in OLD if tag["key"] != "per_order"], SCHEMA)
        new = Catalog([tag for tag in changed(high="spend >= 120") if tag["key"] != "per_order"], SCHEMA)
        rows = [{**row, "spend": 110.0 + index} for index, row in enumerate(ROWS * 3)]
        engine = sa.create_engine(database_url)
        table = sa.Table(
            "impact_integer_ids",
            sa.MetaData(),
            sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
            sa.Column("spend", sa.Float()),
            sa.Column("orders", sa.BigInteger()),
            sa.Column("vip_flag", sa.Boolean()),
        )
        try:
            with engine.begin() as connection:
                table.create(connection)
                numbered = [{**row, "id": 7 + index} for index, row in enumerate(rows)]
                connection.execute(table.insert(), numbered)
            report = impact(old, new, engine, table="impact_integer_ids", now=NOW, examples=3)
        finally:
            with engine.begin() as connection:
                table.drop(connection, checkfirst=True)
            engine.dispose()
        assert report.where == "database", report.in_python
        # spend 110 to 119 (ids 7 to 16) are high before and not after
        assert report.tags["high"].lost == 10
        assert len(report.tags["high"].examples_lost) == 3
        assert set(report.tags["high"].examples_lost) <= {str(number) for number in range(7, 17)}

    def test_unknown_steady_dependency(self, database_url: URL) -> None:
        """A moved tag testing an unchanged tag that is unknown on a row is unknown there too, in SQL
        as in Python (the unchanged tag's state is read, not computed again)."""
        old = Catalog([tag for tag in OLD if tag["key"] != "per_order"], SCHEMA)
        new = Catalog([tag for tag in changed(high="spend >= 120") if tag["key"] != "per_order"], SCHEMA)
        rows = [*ROWS, {"id": "e", "spend": 150.0, "orders": None, "vip_flag": False}]
        with filled(database_url, "impact_unknown", old, rows) as engine:
            report = impact(old, new, engine, table="impact_unknown", now=NOW)
        assert report.where == "database", report.in_python
        assert report.tags["vip"].errors_after == 1
        assert report.to_data() == impact(old, new, rows, now=NOW).to_data()

    def test_not_pushable_falls_back_to_python(self, sqlite_url: URL) -> None:
        """A tag the database cannot evaluate sends both catalogs to Python over the table's rows."""
        old = Catalog([*OLD, {"key": "odd", "rule": "$odd(orders)"}], SCHEMA, functions=[_odd()])
        new = Catalog(
            [*changed(high="spend >= 120"), {"key": "odd", "rule": "$odd(orders)"}],
            SCHEMA,
            functions=[_odd()],
        )
        with filled(sqlite_url, "rows", old, ROWS) as engine:
            report = impact(old, new, engine, table="rows", now=NOW)
        assert report.where == "python"
        assert report.in_python
        assert report.to_data() == impact(old, new, ROWS, now=NOW).to_data()

    def test_missing_id_column(self, sqlite_url: URL) -> None:
        """A table without the id column is a SourceError naming it."""
        from tagrules import SourceError

        old = Catalog(OLD, SCHEMA)
        with (
            filled(sqlite_url, "rows", old, ROWS) as engine,
            pytest.raises(SourceError, match="no id column 'customer'"),
        ):
            impact(old, old, engine, table="rows", id_column="customer", now=NOW)


def _odd() -> Any:
    from tagrules.extensions import RuleFunction

    return RuleFunction("odd", lambda value: value % 2 == 1, arguments=("int",), returns="bool")


_names = itertools.count()


@st.composite
def catalog_pairs(draw: st.DrawFn, schema: RandomSchema) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An old catalog and a new one: the old with one rule, group or priority changed, or another draw."""
    old, _ = draw(catalogs(schema))
    if draw(st.booleans()):
        new, _ = draw(catalogs(schema))
        return old, new
    new = [dict(tag) for tag in old]
    victim = draw(st.integers(0, len(new) - 1))
    change = draw(st.sampled_from(["rule", "group", "priority", "status"]))
    if change == "rule":
        new[victim]["rule"] = draw(catalogs(schema))[0][0]["rule"]
    elif change == "group":
        new[victim]["group"] = None if new[victim]["group"] else "g"
    elif change == "priority":
        new[victim]["priority"] = -1 - new[victim]["priority"]
    else:
        new[victim]["status"] = draw(st.sampled_from(["draft", "retired"]))
    return old, new


def check_sql_equals_python(url: URL, data: st.DataObject) -> None:
    dialect = url.get_backend_name()
    random_schema = data.draw(sql_schemas())
    old_tags, new_tags = data.draw(catalog_pairs(random_schema))
    try:
        old, new = Catalog(old_tags, random_schema.schema), Catalog(new_tags, random_schema.schema)
    except DefinitionError:
        assume(False)
        return
    draw = cast(st.DrawFn, data.draw)
    rows = [
        {
            "id": str(index),
            **{name: _value(draw, kind, NO_HINTS, dialect) for name, kind in random_schema.types.items()},
        }
        for index in range(8)
    ]
    table = snapshot_table(f"impact_{next(_names)}", old.schema, dialect)
    engine = engine_of(url)
    with engine.begin() as connection:
        fill(connection, table, old.schema, rows)
    try:
        in_database = impact(old, new, engine, table=table, now=NOW, examples=2)
        with engine.connect() as connection:
            read_back = list(
                stream_snapshots(connection, table, old.schema, fields=["id", *old.schema.fields])
            )
    finally:
        with engine.begin() as connection:
            table.drop(connection)
    assume(in_database.where == "database")
    in_python = impact(old, new, read_back, now=NOW, examples=len(rows))
    assert_same(in_database, in_python, limit=2)


def assert_same(in_database: ImpactReport, in_python: ImpactReport, limit: int) -> None:
    """The same report, the database's examples being any ``limit`` of the rows Python found."""
    database, python = in_database.to_data(), in_python.to_data()
    for key, tag in database["tags"].items():
        for side in ("gained", "lost"):
            found, every = tag["examples"][side], python["tags"][key]["examples"][side]
            assert len(found) == min(limit, len(every)), (key, side, found, every)
            assert set(found) <= set(every), (key, side, found, every)
            tag["examples"][side] = python["tags"][key]["examples"][side] = None
    assert database == python


class TestImpactDifferential:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
            HealthCheck.too_slow,
        ],
    )
    @given(data=st.data())
    def test_sql_equals_python(self, database_url: URL, data: st.DataObject) -> None:
        """Random old and new catalogs and rows: the one query's report is Python's on the rows read back."""
        check_sql_equals_python(database_url, data)


def test_now_is_reported() -> None:
    """The report keeps the time both catalogs saw."""
    moment = datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)
    assert impact(Catalog(OLD, SCHEMA), Catalog(OLD, SCHEMA), ROWS, now=moment).now == moment
