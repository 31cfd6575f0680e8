"""Comprehensions over JSON dict values pushed down to PostgreSQL and SQLite, against Python.

``[v for v in D.values if C].length`` over the integer values of a dict held in ``json`` or
``jsonb`` on PostgreSQL is computed by an SQL/JSON path query, over JSON text on SQLite by
``json_each``; MariaDB, and every other form of comprehension, raise :class:`~tagrules.NotPushable`.
Each case compares the state of each tag on each row with what :class:`~tagrules.Evaluator` gives on
the same row read back.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from tagrules import Catalog, Evaluator, NotPushable
from tagrules.packs.retail import load_catalog
from tagrules.rules._language import MAX_STEPS
from tagrules.sources.tables import query_settings, tag_query

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
SCHEMA = {"views": "dict[str, int]", "scores": "list[int]", "spend": "dict[str, float]", "n": "int"}
_JSON_FIELDS = ("views", "scores", "spend")
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
_names = itertools.count()


#: where a dict is held: (database, column type)
PLACES = {
    "jsonb": ("postgresql", postgresql.JSONB()),
    "json": ("postgresql", sa.JSON()),
    "sqlite": ("sqlite", sa.JSON()),
    "duckdb": ("duckdb", sa.JSON()),
    "duckdb-text": ("duckdb", sa.Text()),
}


@pytest.fixture(params=list(PLACES))
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Any]]:
    """An engine and the column type holding the dicts: PostgreSQL jsonb and json, SQLite JSON text,
    DuckDB JSON and VARCHAR."""
    dialect, json_type = PLACES[request.param]
    if dialect == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"{dialect}:///{tmp_path / 'rows.db'}"
    created = sa.create_engine(url)
    yield created, json_type
    created.dispose()


def _table(json_type: Any) -> sa.Table:
    return sa.Table(
        f"json_rows_{next(_names)}",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("views", json_type),
        sa.Column("scores", json_type),
        sa.Column("spend", json_type),
        sa.Column("n", sa.BigInteger()),
    )


def _as_text(value: Any) -> Any:
    """A dict as JSON text (Python's None as JSON null), SQL NULL kept."""
    return None if isinstance(value, sa.sql.elements.Null) else json.dumps(value)


def states_both_ways(
    engine: Engine, json_type: Any, rules: dict[str, str], rows: Sequence[dict[str, Any]]
) -> tuple[dict[int, dict[str, int | None]], dict[int, dict[str, int | None]]]:
    """Per row id, per tag: the state the catalog query gives, and the one Python gives."""
    catalog = Catalog([{"key": key, "rule": rule} for key, rule in rules.items()], SCHEMA)
    table = _table(json_type)
    with engine.begin() as connection:
        table.create(connection)
        try:
            if rows:
                stored = [{"id": index, "n": 0, **row} for index, row in enumerate(rows)]
                if isinstance(json_type, sa.Text):
                    # JSON text in a text column, as a Parquet or CSV export holds it
                    stored = [
                        {
                            name: _as_text(value) if name in _JSON_FIELDS else value
                            for name, value in row.items()
                        }
                        for row in stored
                    ]
                connection.execute(table.insert(), stored)
            query = tag_query(
                catalog, table, dialect=engine.dialect.name, now=NOW, id_columns=["id"], mode="database"
            )
            with query_settings(connection):
                sql = {
                    row.id: {key: getattr(row, label) for key, label in query.tag_columns.items()}
                    for row in connection.execute(query.select)
                }
            evaluator = Evaluator(catalog)
            python: dict[int, dict[str, int | None]] = {}
            for row in connection.execute(sa.select(table)):
                snapshot = {name: getattr(row, name) for name in SCHEMA}
                if isinstance(json_type, sa.Text):
                    # read back as push-down's Python side reads JSON text
                    snapshot = {
                        name: json.loads(value) if name in _JSON_FIELDS and value is not None else value
                        for name, value in snapshot.items()
                    }
                result = evaluator.evaluate(snapshot, now=NOW)
                python[row.id] = {
                    key: None if key in result.errors else int(key in result.tags) for key in rules
                }
        finally:
            table.drop(connection)
    return sql, python


EDGE_ROWS: list[dict[str, Any]] = [
    {"views": {}, "scores": []},
    {"views": {"a": 10}, "scores": [10]},
    {"views": {"a": 9, "b": 12, "c": 10}, "scores": [10, 12, 10, -4]},
    {"views": {"a": 2**63 - 1, "b": -(2**63) + 1}, "scores": [2**63 - 1]},
    # values the schema refuses: the rules reading them fail, in both places
    {"views": {"a": 1.5}, "scores": [1.5]},
    {"views": {"a": "10"}, "scores": ["10"]},
    {"views": {"a": None}, "scores": [None]},
    {"views": {"a": True}, "scores": [False]},
    {"views": {"a": 2**63}, "scores": [-(2**63)]},
    {"views": [1, 2], "scores": {"a": 1}},
    {"views": None, "scores": None},
    {"views": {"a": 1.0}, "scores": [3.0, 1e2]},
    {"views": sa.null(), "scores": sa.null()},
]

PINNED_RULES = {
    "follows": "[v for v in views.values if v >= 10].length > 0",
    "two_high": "[v for v in views.values if v > 9 and v != 12].length >= 2",
    "none_small": "[v for v in views.values if not v < 10 or v == -4].length == 0",
    "many": "[v for v in views.values].length > 2",
    "hits": "[v for v in views.values if 10 == v or v < -3].length == 1",
    "mirrored": "[v for v in views.values if 9.5 < v].length >= 1",
    "decimal_edge": "[v for v in views.values if v >= 9223372036854775806.5].length > 0",
    "with_field": "n == 0 and [v for v in views.values if v >= 12].length == 1",
    "in_ternary": "(n > 0 ? 1 : [v for v in views.values if v < 0].length) == 0",
}


def test_pinned_rows_equal_python(place: tuple[Engine, Any]) -> None:
    sql, python = states_both_ways(*place, PINNED_RULES, EDGE_ROWS)
    assert sql == python
    # the edge rows do exercise every outcome
    states = {state for row in sql.values() for state in row.values()}
    assert states == {0, 1, None}
    assert (sql[2]["follows"], sql[2]["hits"], sql[2]["two_high"]) == (1, 1, 0)
    assert (sql[4]["follows"], sql[10]["many"], sql[12]["many"]) == (None, None, None)


def test_more_members_than_the_step_budget_fail_in_both(place: tuple[Engine, Any]) -> None:
    """Each member iterated is a step of the rule's budget: past it, Python fails the rule."""
    rows = [{"views": {f"k{index}": 1 for index in range(count)}} for count in (MAX_STEPS, MAX_STEPS + 1)]
    rules = {"follows": "[v for v in views.values if v > 0].length > 0"}
    sql, python = states_both_ways(*place, rules, rows)
    assert sql == python == {0: {"follows": 1}, 1: {"follows": None}}


def test_the_retail_comprehension_is_pushed_on_postgresql_and_sqlite() -> None:
    catalog = load_catalog()
    for dialect in ("postgresql", "sqlite", "mysql"):
        table = sa.table(
            "customers",
            *[sa.column(name, _retail_type(kind, dialect)) for name, kind in _retail_kinds(catalog)],
        )
        query = tag_query(catalog, table, dialect=dialect, now=NOW)
        if dialect != "mysql":
            assert "follows_category" in query.tag_columns
        else:
            assert "comprehension" in query.in_python["follows_category"]


def _retail_kinds(catalog: Catalog) -> list[tuple[str, str]]:
    return [(name, field.kind) for name, field in catalog.schema.fields.items()]


def _retail_type(kind: str, dialect: str) -> Any:
    types: dict[str, Any] = {
        "int": sa.BigInteger(),
        "float": sa.Float(53),
        "str": sa.Text(),
        "enum": sa.Text(),
        "bool": sa.Boolean(),
        "datetime": sa.DateTime(timezone=True),
        "date": sa.Date(),
    }
    if kind in types:
        return types[kind]
    return postgresql.JSONB() if dialect == "postgresql" else sa.JSON()


@pytest.mark.parametrize(
    "rule",
    [
        "[s for s in scores if s > 1].length > 0",  # a list
        "[v for v in views.values if v > 1].length + [v for v in views.values].length > 0",  # two
        "[v for v in views&.values if v > 1].length > 0",  # safe navigation
        "[v * 2 for v in views.values if v > 1].length > 0",  # a result other than the variable
        "[v for v in views.values if v > n].length > 0",  # a condition reading another field
        "[v for v in views.values if v == 'a'].length > 0",  # a comparison with text
        "[v for v in spend.values if v > 1].length > 0",  # float values
        "[k for k in views.keys if k == 'a'].length > 0",  # keys
        "[v for v in views.values if v > 1][0] > 0",  # anything but .length
    ],
)
@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_other_comprehensions_are_not_pushable(rule: str, dialect: str) -> None:
    catalog = Catalog([{"key": "t", "rule": rule}], SCHEMA)
    table = _table(postgresql.JSONB() if dialect == "postgresql" else sa.JSON())
    with pytest.raises(NotPushable) as raised:
        tag_query(catalog, table, dialect=dialect, now=NOW, mode="database")
    assert "'t'" in str(raised.value)


def test_a_text_column_is_not_read_as_json() -> None:
    catalog = Catalog([{"key": "t", "rule": "[v for v in views.values if v > 1].length > 0"}], SCHEMA)
    table = sa.table("rows", sa.column("views", sa.Text()))
    with pytest.raises(NotPushable, match="json or jsonb"):
        tag_query(catalog, table, dialect="postgresql", now=NOW, mode="database")


# -- random conditions x random rows ---------------------------------------------------------------

_EDGE_INTS = st.sampled_from([0, 1, -1, 9, 10, 11, 2**31, 2**53 + 1, 2**63 - 1, -(2**63) + 1])
_INTS = st.one_of(_EDGE_INTS, st.integers(-20, 20), st.integers(-(2**63) + 1, 2**63 - 1))
_LITERALS = st.one_of(
    _INTS.map(str),
    st.sampled_from(["9.5", "-0.5", "1e3", "10.0", "9223372036854775807.5", "0.1"]),
)
_OPERATORS = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


@st.composite
def conditions(draw: st.DrawFn, variable: str, depth: int = 0) -> str:
    if depth < 2 and draw(st.booleans()):
        kind = draw(st.sampled_from(["and", "or", "not"]))
        if kind == "not":
            return f"not ({draw(conditions(variable, depth + 1))})"
        left, right = draw(conditions(variable, depth + 1)), draw(conditions(variable, depth + 1))
        return f"({left}) {kind} ({right})"
    operator, literal = draw(_OPERATORS), draw(_LITERALS)
    if draw(st.booleans()):
        return f"{variable} {operator} {literal}"
    return f"{literal} {operator} {variable}"


@st.composite
def comprehension_rules(draw: st.DrawFn) -> str:
    variable, iterable = "v", "views.values"
    condition = f" if {draw(conditions(variable))}" if draw(st.booleans()) else ""
    operator = draw(_OPERATORS)
    return f"[{variable} for {variable} in {iterable}{condition}].length {operator} {draw(st.integers(0, 3))}"


_VALUES = st.one_of(_INTS, st.sampled_from([1.5, "x", None, 2**63, 3.0]))
_ROWS = st.fixed_dictionaries(
    {
        "views": st.one_of(
            st.dictionaries(
                st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=3),
                _INTS,
                max_size=5,
            ),
            st.dictionaries(
                st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=3),
                _VALUES,
                max_size=3,
            ),
            st.none(),
        ),
        "scores": st.one_of(st.lists(_INTS, max_size=5), st.lists(_VALUES, max_size=3), st.none()),
    }
)


@settings(
    max_examples=400 if LONG else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rules=st.lists(comprehension_rules(), min_size=1, max_size=4), rows=st.lists(_ROWS, max_size=8))
def test_random_comprehensions_equal_python(
    place: tuple[Engine, Any], rules: list[str], rows: list[dict[str, Any]]
) -> None:
    keyed = {f"t{index}": rule for index, rule in enumerate(rules)}
    sql, python = states_both_ways(*place, keyed, rows)
    assert sql == python
