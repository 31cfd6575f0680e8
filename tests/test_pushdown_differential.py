"""Push-down against Python evaluation: the same tags and unknowns, row by row, on every database.

Random typed schemas of the field types a table can hold, random catalogs of one to three rules
(exclusive groups and ``'key' in tags`` dependencies included) and random rows with edge values and
nulls, also in fields that are not nullable. The rows go into a table; the catalog query's state of
each tag on each row must equal what :class:`~tagrules.Evaluator` gives on the same row read back —
or compilation raises :class:`~tagrules.NotPushable`. The default profile runs in ``make test``;
``make test-pushdown`` runs the long one (``HYPOTHESIS_PROFILE=long``).
"""

from __future__ import annotations

import collections
import enum
import itertools
import math
import os
import random
import re
import warnings
from typing import Any, cast

import pydantic
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NonInteractiveExampleWarning
from sqlalchemy.engine import URL, Engine

from rule_strategies import (
    _DATETIMES,
    _FLOATS,
    _INTS,
    _STRINGS,
    FIELD_TYPES,
    NOW,
    TAG_KEYS,
    Hints,
    RandomSchema,
    RuleWriter,
)
from sql_tables import fill, snapshot_table
from tagrules import Catalog, DefinitionError, Evaluator, NotPushable
from tagrules.sources.tables import stream_snapshots, tag_query

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
EXAMPLES = 2_000 if LONG else 60
ROWS = 8

#: Field types a table holds, and the kind of values rules see (as in rule_strategies).
SQL_FIELD_TYPES = {
    name: kind
    for name, kind in FIELD_TYPES.items()
    if kind.rstrip("?") in ("num", "str", "bool", "dt", "map_num", "map_str", "map_bool")
}

#: Cases seen per dialect: rules pushed down, rules refused (NotPushable), rows compared.
CASES: collections.Counter[tuple[str, str]] = collections.Counter()
_names = itertools.count()
_engines: dict[str, Engine] = {}


def engine_of(url: URL) -> Engine:
    key = url.render_as_string(hide_password=False)
    if key not in _engines:
        _engines[key] = sa.create_engine(url)
    return _engines[key]


@pytest.fixture(params=["sqlite", "postgresql", "mysql", "duckdb"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> URL:
    """Each database push-down runs on: a SQLite file, PostgreSQL, MariaDB, a DuckDB file."""
    if request.param == "duckdb":
        return sa.make_url(f"duckdb:///{tmp_path_factory.mktemp('duckdb') / 'pushdown.duckdb'}")
    name = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[request.param]
    url: URL = request.getfixturevalue(name)
    return url


@pytest.fixture(scope="module", autouse=True)
def report_cases() -> Any:
    yield
    for engine in _engines.values():
        engine.dispose()
    if CASES:
        print("\npush-down differential cases:", dict(sorted(CASES.items())))


class _SqlSchema(RandomSchema):
    pass


@st.composite
def sql_schemas(draw: st.DrawFn) -> RandomSchema:
    names = list(SQL_FIELD_TYPES)
    chosen = draw(st.lists(st.sampled_from(names), min_size=2, max_size=6))
    chosen += [draw(st.sampled_from(["int", "float"])), "str"]
    return RandomSchema({f"f{index}": type_name for index, type_name in enumerate(chosen)})


def _value(draw: st.DrawFn, type_name: str, hints: Hints, dialect: str) -> Any:
    nullable = type_name.endswith("| None")
    base = type_name.split(" |")[0]
    if draw(st.integers(0, 9 if not nullable else 3)) == 0:
        return None  # also in fields that are not nullable: the error path
    if base == "int":
        integers = [st.sampled_from(_INTS), st.integers(-5, 5), st.integers(-(2**63) + 1, 2**63 - 1)]
        if hints.ints:
            integers += [
                st.sampled_from([value for value in hints.ints if -(2**63) < value < 2**63] or [0])
            ] * 3
        return draw(st.one_of(integers))
    if base == "float":
        floats = [value for value in _FLOATS if dialect != "mysql" or abs(value) != float("inf")]
        hinted = [value for value in hints.floats if dialect != "mysql" or abs(value) != float("inf")]
        options: list[st.SearchStrategy[Any]] = [
            st.sampled_from(floats),
            st.floats(allow_nan=False, allow_infinity=dialect != "mysql", width=64),
            st.integers(-1000, 1000).map(lambda value: value / 4),
        ]
        if hinted:
            options += [st.sampled_from(hinted)] * 3
        return draw(st.one_of(options))
    if base == "str":
        text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=4)
        return draw(st.one_of(st.sampled_from(_STRINGS + hints.strings + ["a ", "ß", "SS", "Ab"]), text))
    if base == "bool":
        return draw(st.booleans())
    if base.startswith("dict["):
        return _dict_value(draw, base.removeprefix("dict[str, ").removesuffix("]"), hints, dialect)
    if base == "datetime":
        return draw(st.sampled_from(_DATETIMES))
    if base == "date":
        return draw(st.sampled_from(_DATETIMES)).date()
    raise AssertionError(base)


def _dict_value(draw: st.DrawFn, item: str, hints: Hints, dialect: str) -> Any:
    """A dict as JSON holds it: mostly good members; sometimes one the schema refuses (a null where
    the item type is not nullable, a value of another type), or no object at all."""
    if draw(st.integers(0, 14)) == 0:
        return draw(st.sampled_from([[1.5], "a", 3, True]))
    keys = draw(st.lists(st.sampled_from(["a", "b", "c", "é"]), unique=True, max_size=3))
    members = {key: _value(draw, item, hints, dialect) for key in keys}
    if keys and draw(st.integers(0, 9)) == 0:
        members[keys[0]] = draw(st.sampled_from([1.5, 2, "x", False, 2**63, 5.0, [1]]))
    for key, member in members.items():
        # JSON has no infinities: PostgreSQL and MariaDB refuse the Infinity json.dumps writes
        if isinstance(member, float) and math.isinf(member) and dialect != "sqlite":
            members[key] = 0.0
    return members


@st.composite
def catalogs(draw: st.DrawFn, schema: RandomSchema) -> tuple[list[dict[str, Any]], Hints]:
    """One to three tags over ``schema``, keyed by the tags rules may test, sometimes in a group."""
    writer = RuleWriter(draw, schema)
    count = draw(st.integers(1, 3))
    group = draw(st.sampled_from([None, "g"]))
    definitions = []
    for index in range(count):
        text = writer.boolean(draw(st.integers(1, 3)))
        member = group if index < 2 else None
        definitions.append({"key": TAG_KEYS[index], "rule": text, "group": member, "priority": index})
    return definitions, writer.hints()


def check(url: URL, data: st.DataObject) -> None:
    dialect = url.get_backend_name()
    random_schema = data.draw(sql_schemas())
    definitions, hints = data.draw(catalogs(random_schema))
    try:
        catalog = Catalog(definitions, random_schema.schema)
    except DefinitionError:
        assume(False)
        return
    draw = cast(st.DrawFn, data.draw)
    rows = [
        {
            "id": str(index),
            **{
                name: _value(draw, type_name, hints, dialect)
                for name, type_name in random_schema.types.items()
            },
        }
        for index in range(ROWS)
    ]
    aware = dialect in ("postgresql", "duckdb") and data.draw(st.booleans())
    jsonb = dialect != "postgresql" or data.draw(st.booleans())
    table = snapshot_table(f"pushdown_{next(_names)}", catalog.schema, dialect, aware=aware, jsonb=jsonb)
    engine = engine_of(url)
    with engine.begin() as connection:
        fill(connection, table, catalog.schema, rows, aware=aware)
    try:
        with engine.connect() as connection:
            pushed = _compare(connection, catalog, table, dialect)
    finally:
        with engine.begin() as connection:
            table.drop(connection)
    CASES[(dialect, "catalogs pushed" if pushed else "catalogs refused")] += 1
    if pushed and any(re.search(r"\w&?\['", definition["rule"]) for definition in definitions):
        CASES[(dialect, "catalogs pushed with dict lookups")] += 1


def _compare(connection: sa.Connection, catalog: Catalog, table: sa.Table, dialect: str) -> bool:
    try:
        query = tag_query(catalog, table, dialect=dialect, now=NOW, id_columns=["id"], mode="database")
    except NotPushable:
        return False
    states = {row[0]: row[1:] for row in connection.execute(query.select)}
    evaluator = Evaluator(catalog)
    snapshots = list(
        stream_snapshots(connection, table, catalog.schema, fields=["id", *catalog.schema.fields])
    )
    keys = list(query.tag_columns)
    for snapshot in snapshots:
        evaluation = evaluator.evaluate(snapshot, now=NOW)
        expected = tuple(None if key in evaluation.errors else int(key in evaluation.tags) for key in keys)
        actual = tuple(None if state is None else int(state) for state in states[snapshot["id"]])
        assert actual == expected, (
            f"{dialect}: tags {keys}\ncatalog: {[(d.key, d.rule, d.group) for d in catalog.tags]}\n"
            f"row: {snapshot!r}\nPython: {expected} errors {dict(evaluation.errors)}\nSQL: {actual}\n"
            f"{query.select.compile(connection, compile_kwargs={'literal_binds': False})}"
        )
        CASES[(dialect, "rows compared")] += 1
    return True


_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


class TestPushdownDifferential:
    @_SETTINGS
    @given(data=st.data())
    def test_sql_equals_python(self, database_url: URL, data: st.DataObject) -> None:
        """Random catalogs and rows: the query's tag states equal Python's tags and unknowns, row by row."""
        check(database_url, data)


HOSTILE_SCHEMA = {"n": "int", "x": "float", "s": "str"}
HOSTILE_RULES = [
    {"key": "a", "rule": "n >= 3"},
    {"key": "b", "rule": "x > 1.5"},
    {"key": "c", "rule": "s == 'lots'"},
    {"key": "d", "rule": "n < 0"},
]


def hostile_table(connection: sa.Connection, catalog: Catalog, rows: list[tuple[Any, Any, Any]]) -> sa.Table:
    """A snapshot table whose rows are written as raw SQL values, past the columns' declared types."""
    table = snapshot_table(f"hostile_{next(_names)}", catalog.schema, connection.dialect.name)
    fill(connection, table, catalog.schema, [])
    for index, (n, x, s) in enumerate(rows):
        connection.execute(
            sa.text(f"INSERT INTO {table.name} (id, n, x, s) VALUES (:id, {n}, {x}, {s})"), {"id": str(index)}
        )
    return table


class _Tier(str, enum.Enum):
    GOLD = "gold"
    SILVER = "silver"
    BRONZE = "bronze"


class _Member(pydantic.BaseModel):
    tier: _Tier | None = None
    level: _Tier


ENUM_RULES = [
    {"key": "gold", "rule": "tier == 'gold'"},
    {"key": "upper", "rule": "tier in ['gold', 'silver']"},
    {"key": "not_bronze", "rule": "tier != 'bronze'"},
    {"key": "silver_or_none", "rule": "level == 'silver' or tier == null"},
]
#: text an enum column may hold: each choice, others (case, spaces, empty), NULL
_TIERS = ["gold", "silver", "bronze", "platinum", "GOLD", "gold ", "", None]


class TestEnumColumns:
    def test_values_outside_the_choices_are_unknown(self, database_url: URL) -> None:
        """An enum field's column holding a choice, another text (another case, a trailing space, the
        empty string) or NULL: each tag's state is Python's on the row read back (a value outside the
        choices fails the rules that read it)."""
        catalog = Catalog(ENUM_RULES, _Member)
        engine = engine_of(database_url)
        dialect = engine.dialect.name
        table = snapshot_table(f"enums_{next(_names)}", catalog.schema, dialect)
        rows = [
            {"id": str(index), "tier": tier, "level": level}
            for index, (tier, level) in enumerate(
                itertools.product(_TIERS, ["silver", "gold", "Silver", None])
            )
        ]
        try:
            with engine.begin() as connection:
                table.create(connection)
                connection.execute(table.insert(), rows)
                assert _compare(connection, catalog, table, dialect)
        finally:
            with engine.begin() as connection:
                table.drop(connection, checkfirst=True)
            engine.dispose()


class TestWhatColumnsReallyHold:
    @pytest.mark.parametrize(
        "row",
        [
            ("3.5", "2.0", "'a'"),
            ("1e20", "2.0", "'a'"),
            ("3.0", "2.0", "'a'"),
            ("-3.0", "2.0", "'a'"),
            ("9223372036854775807.0", "2.0", "'a'"),
            ("'lots'", "2.0", "'a'"),
            ("X'00'", "2.0", "'a'"),
            ("4", "'lots'", "'a'"),
            ("4", "X'0102'", "'a'"),
            ("4", "7", "'a'"),
            ("4", "2.0", "X'6c6f7473'"),
            ("4", "2.0", "12"),
            ("-9223372036854775808", "2.0", "'a'"),
            ("-9223372036854775807", "2.0", "'a'"),
        ],
    )
    def test_sqlite_any_type_in_any_column(self, sqlite_url: URL, row: tuple[str, str, str]) -> None:
        """SQLite columns holding another type (text or blobs in numbers, non-integral or huge reals in
        ints, the int64 minimum) give each tag the state Python gives on the row read back."""
        catalog = Catalog(HOSTILE_RULES, HOSTILE_SCHEMA)
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as connection:
            table = hostile_table(connection, catalog, [row])
            assert _compare(connection, catalog, table, "sqlite")
        engine.dispose()

    @pytest.mark.parametrize(
        ("moment", "day", "states"),
        [
            ("'2025-01-01 00:00:00.000000'", "'2025-01-02'", (1, 1)),
            ("'2023-06-01 12:00:00.000000'", "'2023-06-01'", (0, 0)),
            ("'2025-06-01 12:00:00'", "'2025-06-01'", (None, 1)),
            ("'2024-01-01 00:00:00.000000'", "'2024-01-01'", (0, 0)),
            ("'not a date'", "'x'", (None, None)),
            ("20250101", "5", (None, None)),
            ("2025.5", "X'00'", (None, None)),
            ("'2025-01-01T00:00:00Z'", "'2025-1-2'", (None, None)),
            ("'2025-01-01 00:00:00.5'", "'2025-01-02 00:00:00'", (None, None)),
            ("'2025-02-30 00:00:00'", "'2025-02-30'", (None, None)),
            ("'2025-01-01 24:00:00'", "'0000-01-01'", (None, None)),
            ("'0000-01-01 00:00:00'", "'\uff12\uff10\uff12\uff15-01-02'", (None, None)),
            ("NULL", "NULL", (0, 0)),
        ],
    )
    def test_sqlite_dates_and_times_of_any_type(
        self, sqlite_url: URL, moment: str, day: str, states: tuple[int | None, int | None]
    ) -> None:
        """SQLite DATETIME and DATE columns holding text of another form, impossible days, numbers or
        blobs: the row is unknown in SQL, as Python finds it on the row read back (no crash reading it);
        text in the column's form is compared as the date it spells."""
        catalog = Catalog(
            [
                {"key": "recent", "rule": "(last ?? d'1970-01-01') > d'2024-01-01'"},
                {"key": "day", "rule": "(d ?? d'1970-01-01') > d'2024-01-01'"},
            ],
            {"last": "datetime | None", "d": "date | None"},
        )
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as connection:
            table = snapshot_table(f"moments_{next(_names)}", catalog.schema, "sqlite")
            fill(connection, table, catalog.schema, [])
            connection.execute(
                sa.text(f"INSERT INTO {table.name} (id, last, d) VALUES ('0', {moment}, {day})")
            )
            query = tag_query(catalog, table, dialect="sqlite", now=NOW, id_columns=["id"], mode="database")
            (row,) = connection.execute(query.select).all()
            assert tuple(None if state is None else int(state) for state in row[1:]) == states
            assert _compare(connection, catalog, table, "sqlite")
        engine.dispose()

    def test_int64_minimum_is_refused_everywhere(self, database_url: URL) -> None:
        """-2**63 is outside the schema's ints in Python; in SQL the row is unknown too, on every database."""
        catalog = Catalog(HOSTILE_RULES, HOSTILE_SCHEMA)
        engine = engine_of(database_url)
        with engine.begin() as connection:
            table = hostile_table(
                connection, catalog, [("-9223372036854775808", "2.0", "'a'"), ("5", "2.0", "'a'")]
            )
        try:
            with engine.connect() as connection:
                query = tag_query(
                    catalog, table, dialect=database_url.get_backend_name(), now=NOW, id_columns=["id"]
                )
                states = {row[0]: row[1:] for row in connection.execute(query.select)}
                position = list(query.tag_columns).index("a")
                assert states["0"][position] is None
                assert states["1"][position] in (1, True)
                assert _compare(connection, catalog, table, database_url.get_backend_name())
        finally:
            with engine.begin() as connection:
                table.drop(connection)


#: the wide profile: many pushed rules over one table of many rows (``make test-duckdb``: 1,000 x 10,000)
WIDE_RULES, WIDE_ROWS = (1_000, 10_000) if LONG else (30, 300)
_WIDE_TYPES = ["int", "float", "int | None", "float | None", "str", "str | None", "bool", "bool | None"]
_WIDE_TYPES += ["datetime", "datetime | None", "date", "dict[str, int]", "dict[str, float]", "dict[str, str]"]


def _wide_value(rng: random.Random, type_name: str, hints: Hints) -> Any:
    """A random value of ``type_name`` from the edge values and the rules' hints (nulls included)."""
    base = type_name.split(" |")[0]
    if rng.random() < (0.2 if type_name.endswith("| None") else 0.05):
        return None
    pools: dict[str, list[Any]] = {
        "int": _INTS + [value for value in hints.ints if -(2**63) < value < 2**63] + list(range(-3, 4)),
        "float": _FLOATS + hints.floats + [0.25, -1.5],
        "str": _STRINGS + hints.strings,
        "bool": [True, False],
        "datetime": _DATETIMES,
        "date": [moment.date() for moment in _DATETIMES],
    }
    if base.startswith("dict["):
        item = base.removeprefix("dict[str, ").removesuffix("]")
        keys = ["a", "b", "", "é", *hints.strings]
        return {rng.choice(keys): rng.choice(pools[item]) for _ in range(rng.randint(0, 3))}
    return rng.choice(pools[base])


class TestManyRulesOverManyRows:
    def test_every_pushed_rule_on_every_row(self, tmp_path: Any) -> None:
        """Many random rules pushed at once over one DuckDB table of many random rows: each tag's
        state on each row equals Python's (the long profile: 1,000 pushed rules x 10,000 rows)."""
        rng = random.Random(14)
        random_schema = RandomSchema({f"f{index}": name for index, name in enumerate(_WIDE_TYPES)})
        schema = random_schema.schema
        table = snapshot_table("wide", schema, "duckdb")
        draw = cast(st.DrawFn, lambda strategy: strategy.example())
        rules: list[str] = []
        hints = Hints([], [], [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonInteractiveExampleWarning)
            while len(rules) < WIDE_RULES:
                writer = RuleWriter(draw, random_schema)
                text = writer.boolean(draw(st.integers(1, 3)))
                try:
                    catalog = Catalog([{"key": "t", "rule": text}], schema)
                    tag_query(catalog, table, dialect="duckdb", now=NOW, mode="database")
                except (DefinitionError, NotPushable):
                    continue
                rules.append(text)
                found = writer.hints()
                hints = Hints(
                    hints.floats + found.floats, hints.ints + found.ints, hints.strings + found.strings
                )
        catalog = Catalog([{"key": f"t{index}", "rule": text} for index, text in enumerate(rules)], schema)
        rows = [
            {
                "id": str(index),
                **{
                    name: _wide_value(rng, type_name, hints)
                    for name, type_name in random_schema.types.items()
                },
            }
            for index in range(WIDE_ROWS)
        ]
        engine = sa.create_engine(f"duckdb:///{tmp_path / 'wide.duckdb'}")
        try:
            with engine.begin() as connection:
                fill(connection, table, schema, rows)
            with engine.connect() as connection:
                query = tag_query(
                    catalog, table, dialect="duckdb", now=NOW, id_columns=["id"], mode="database"
                )
                states = {row[0]: row[1:] for row in connection.execute(query.select)}
                snapshots = list(stream_snapshots(connection, table, schema, fields=["id", *schema.fields]))
        finally:
            engine.dispose()
        evaluator = Evaluator(catalog)
        keys = list(query.tag_columns)
        assert len(keys) == WIDE_RULES
        differences = []
        for snapshot in snapshots:
            evaluation = evaluator.evaluate(snapshot, now=NOW)
            expected = tuple(
                None if key in evaluation.errors else int(key in evaluation.tags) for key in keys
            )
            actual = tuple(None if state is None else int(state) for state in states[snapshot["id"]])
            differences += [
                (catalog[key].rule, snapshot)
                for key, want, got in zip(keys, expected, actual, strict=True)
                if want != got
            ]
        CASES[("duckdb", "wide: rules x rows compared")] += len(keys) * len(snapshots)
        assert not differences, differences[:3]
