"""Push-down: rules compiled to SQL, the catalog query, counts, and what stays in Python."""

from __future__ import annotations

import datetime
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Engine

from sql_tables import fill, snapshot_table
from tagrules import (
    Catalog,
    Evaluator,
    MemoryStore,
    NotPushable,
    SourceError,
    count_tags,
    retag_from_table,
    tag_query,
)
from tagrules.extensions import DerivedField, RuleFunction
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog
from tagrules.sources.tables import stream_snapshots
from tagrules.sql.compiler import FieldColumn
from tagrules.sql.dialects import compiler_for

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 1, tzinfo=UTC)
_names = itertools.count()

SCHEMA = {
    "name": "str",
    "tier": "str | None",
    "spend": "float",
    "orders": "int",
    "age": "int | None",
    "seen_at": "datetime",
    "partner": "bool",
}


@pytest.fixture
def engine(database_url: URL) -> Iterator[Engine]:
    created = sa.create_engine(database_url)
    yield created
    created.dispose()


def make_table(engine: Engine, catalog: Catalog, rows: list[dict[str, Any]], **options: Any) -> sa.Table:
    dialect = engine.dialect.name
    table = snapshot_table(f"pushdown_unit_{next(_names)}", catalog.schema, dialect, **options)
    with engine.begin() as connection:
        fill(connection, table, catalog.schema, rows, aware=options.get("aware", False))
    return table


def states(engine: Engine, catalog: Catalog, table: sa.Table, **options: Any) -> dict[str, dict[str, Any]]:
    """Row id -> tag -> 1, 0 or None (unknown), from the catalog query."""
    query = tag_query(catalog, table, dialect=engine.dialect.name, now=NOW, id_columns=["id"], **options)
    with engine.connect() as connection:
        result = connection.execute(query.select).all()
    return {row[0]: {key: row[1 + index] for index, key in enumerate(query.tag_columns)} for row in result}


def python_states(engine: Engine, catalog: Catalog, table: sa.Table) -> dict[str, dict[str, Any]]:
    """The same from Python evaluation of the rows read back."""
    evaluator = Evaluator(catalog)
    found = {}
    with engine.connect() as connection:
        fields = ["id", *catalog.schema.fields]
        for snapshot in stream_snapshots(connection, table, catalog.schema, fields=fields):
            evaluation = evaluator.evaluate(snapshot, now=NOW)
            found[snapshot["id"]] = {
                definition.key: None
                if definition.key in evaluation.errors
                else int(definition.key in evaluation.tags)
                for definition in catalog.active
            }
    return found


ROWS: list[dict[str, Any]] = [
    {
        "id": "a",
        "name": "abc",
        "tier": "gold",
        "spend": 0.1,
        "orders": 3,
        "age": 30,
        "seen_at": NOW - datetime.timedelta(days=10),
        "partner": True,
    },
    {
        "id": "b",
        "name": "ABC",
        "tier": None,
        "spend": 0.30000000000000004,
        "orders": 0,
        "age": None,
        "seen_at": NOW - datetime.timedelta(days=100),
        "partner": False,
    },
    {
        "id": "c",
        "name": "abc ",
        "tier": "Gold",
        "spend": 1e300,
        "orders": -7,
        "age": 17,
        "seen_at": datetime.datetime(
            2026, 5, 31, 23, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
        ),
        "partner": True,
    },
    {
        "id": "d",
        "name": "ábc",
        "tier": "",
        "spend": 99999.99,
        "orders": 2**62,
        "age": 0,
        "seen_at": NOW,
        "partner": False,
    },
    {
        "id": "e",
        "name": None,
        "tier": "gold",
        "spend": None,
        "orders": None,
        "age": 45,
        "seen_at": None,
        "partner": None,
    },
]


#: (dialect, rule) pairs of the table below that stay in Python ("*": on every dialect).
KNOWN_REFUSALS = {
    ("sqlite", "orders // (orders - orders) > 0"),
    ("sqlite", "orders + 1 > 4611686018427387904"),
    ("*", "orders == 3 or spend / 0 > 1"),
}


class TestSemantics:
    @pytest.mark.parametrize(
        "rule",
        [
            "name == 'abc'",
            "name != 'abc'",
            "name < 'abd'",
            "name in ['abc', 'x']",
            "(tier ?? 'none') == 'gold'",
            "tier == null",
            "tier == 'gold' or tier == null",
            "spend >= 0.1",
            "spend == 0.30000000000000004",
            "spend > 0.3",
            "spend < 1e300",
            "spend >= 99999.99",
            "orders > 2",
            "orders // 2 >= 1",
            "orders % 4 == 1",
            "orders // (orders - orders) > 0",
            "orders + 1 > 4611686018427387904",
            "-orders > 5",
            "(age ?? 0) >= 18 and (age ?? 0) <= 45",
            "seen_at >= $now - t'P30D'",
            "seen_at < $today",
            "partner",
            "not partner and orders >= 0",
            "orders > 0 ? spend > 1 : name == 'ABC'",
            "name.length == 3",
            "orders == 3 or spend / 0 > 1",
            "false and name == 'abc'",
        ],
    )
    def test_rule_agrees_with_python(self, engine: Engine, rule: str) -> None:
        """Each construct, on rows of edge values and nulls: the database's states are Python's (or
        the construct is one the dialect is known not to push down)."""
        catalog = Catalog([{"key": "t", "rule": rule}], SCHEMA)
        table = make_table(engine, catalog, ROWS)
        try:
            found = states(engine, catalog, table, mode="database")
        except NotPushable:
            assert (engine.dialect.name, rule) in KNOWN_REFUSALS or ("*", rule) in KNOWN_REFUSALS
            return
        assert found == python_states(engine, catalog, table)

    def test_strings_compare_exactly_whatever_the_collation(self, engine: Engine) -> None:
        """Case, accents and trailing spaces count, also under MariaDB's case-insensitive collation."""
        catalog = Catalog([{"key": "t", "rule": "name == 'abc'"}], SCHEMA)
        table = make_table(engine, catalog, ROWS)
        found = states(engine, catalog, table)
        assert {key for key, value in found.items() if value["t"] == 1} == {"a"}

    def test_a_null_in_a_field_that_is_not_nullable_is_unknown(self, engine: Engine) -> None:
        """Python fails a rule reading a null non-nullable field: the tag is unknown, not false."""
        catalog = Catalog([{"key": "t", "rule": "orders >= 0"}], SCHEMA)
        table = make_table(engine, catalog, ROWS)
        assert states(engine, catalog, table)["e"] == {"t": None}

    def test_division_by_zero_is_unknown(self, engine: Engine) -> None:
        """A row on which Python divides by zero is unknown (and not counted), never tagged."""
        catalog = Catalog(
            [{"key": "t", "rule": "orders % (age ?? 0) >= 0 or orders // (age ?? 0) < 0"}], SCHEMA
        )
        table = make_table(engine, catalog, ROWS)
        assert states(engine, catalog, table)["b"] == {"t": None}
        with engine.connect() as connection:
            counts = count_tags(catalog, connection, table, now=NOW, mode="database")
        assert counts.unknown["t"] == 3  # 'b' and 'd' divide by zero, 'e' has null orders
        assert counts.counts["t"] == 1  # -7 % 17 is -7 and -7 // 17 is 0, as in Decimal

    def test_naive_timestamps_are_utc(self, engine: Engine) -> None:
        """A naive column holds UTC; PostgreSQL's timestamptz columns compare as the instants they hold."""
        catalog = Catalog([{"key": "t", "rule": "seen_at >= d'2026-06-01T03:00:00+03:00'"}], SCHEMA)
        for aware in (False, True) if engine.dialect.name == "postgresql" else (False,):
            table = make_table(engine, catalog, ROWS, aware=aware)
            found = states(engine, catalog, table)
            assert {key for key, value in found.items() if value["t"] == 1} == {"c", "d"}

    def test_literals_are_bound_parameters(self, engine: Engine) -> None:
        """Nothing from a rule is pasted into the SQL text."""
        catalog = Catalog([{"key": "t", "rule": 'name == "x\' OR 1=1 --" or spend >= 12345.5'}], SCHEMA)
        table = snapshot_table("not_created", catalog.schema, engine.dialect.name)
        query = tag_query(catalog, table, dialect=engine.dialect.name, now=NOW)
        text = str(query.select.compile(dialect=engine.dialect))
        assert "OR 1=1" not in text
        assert "12345.5" not in text


DICT_SCHEMA = {
    "spend": "dict[str, float]",
    "views": "dict[str, int] | None",
    "labels": "dict[str, str]",
    "flags": "dict[str, bool | None]",
    "pick": "str | None",
}

DICT_ROWS: list[dict[str, Any]] = [
    {
        "id": "a",
        "spend": {"electronics": 5000.0, "home": 0.1},
        "views": {"electronics": 20},
        "labels": {"tier": "gold", "x.y": "é"},
        "flags": {"vip": True, "new": None},
        "pick": "home",
    },
    {
        "id": "b",
        "spend": {"electronics": 4999.999999999999, "beauty": 1e300},
        "views": None,
        "labels": {"tier": "Gold"},
        "flags": {"vip": False},
        "pick": "electronics",
    },
    {"id": "c", "spend": {}, "views": {}, "labels": {}, "flags": {}, "pick": None},
    {
        "id": "d",
        "spend": {"electronics": 7, "home": -0.0},
        "views": {"electronics": 2**62, "beauty": 5.0},
        "labels": {"tier": "gold ", "北京": "😀"},
        "flags": {"vip": None},
        "pick": "北京",
    },
    # values the schema refuses: every rule reading the field fails on the row
    {"id": "e", "spend": {"home": None}, "views": {"home": 1.5}, "labels": {"tier": 1}, "flags": {"vip": 1}},
    {"id": "f", "spend": None, "views": {"home": 2**63}, "labels": None, "flags": None, "pick": "vip"},
    {"id": "g", "spend": [1.0], "views": {"home": True}, "labels": "gold", "flags": {"vip": "true"}},
    {"id": "h", "spend": {"big": 2**1023}, "views": {"home": 2**63 - 1}, "labels": {}, "flags": {}},
]

#: dict lookups each dialect keeps in Python: MariaDB all of them; SQLite those of float dicts
#: (Python reads the Infinity that json.dumps writes; SQLite refuses it), of computed keys and of
#: keys that are not printable ASCII
DICT_REFUSALS = {
    "mysql": "dict lookups on mysql",
    "sqlite": "float dict|computed key|dict key",
}


class TestDictLookups:
    @pytest.mark.parametrize(
        "rule",
        [
            "(spend&['electronics'] ?? 0) >= 5000 or (views&['electronics'] ?? 0) >= 20",
            "spend['electronics'] >= 5000",
            "spend&['home'] == null",
            "(spend&['home'] ?? 1) < 0.1",
            "(spend&['x.y'] ?? 0) == 0",
            "views&['electronics'] != 20",
            "(views&['beauty'] ?? -1) == 5",
            "views&['beauty'] == null",
            "labels['tier'] == 'gold'",
            "(labels&['tier'] ?? 'none') != 'gold'",
            "(labels&['北京'] ?? '') == '😀'",
            "labels&['x.y'] == 'é'",
            "flags['vip'] == true",
            "flags&['new'] == null",
            "(flags&['vip'] ?? false) or (flags&['new'] ?? true)",
            "(spend&[pick ?? 'home'] ?? 0) > 1",
            "spend[pick ?? 'home'] > 1",
            "(labels&[pick ?? ''] ?? '') == ''",
        ],
    )
    def test_lookup_agrees_with_python(self, engine: Engine, rule: str) -> None:
        """``d[key]`` and ``d&[key]`` on dict fields: missing keys, nulls and values the schema
        refuses give the database Python's states (or the dialect refuses the lookup)."""
        catalog = Catalog([{"key": "t", "rule": rule}], DICT_SCHEMA)
        jsonb_options = (True, False) if engine.dialect.name == "postgresql" else (True,)
        for jsonb in jsonb_options:
            table = make_table(engine, catalog, DICT_ROWS, jsonb=jsonb)
            try:
                found = states(engine, catalog, table, mode="database")
            except NotPushable as error:
                refused = str(error)
            else:
                assert found == python_states(engine, catalog, table)
                continue
            pattern = DICT_REFUSALS.get(engine.dialect.name)
            assert pattern is not None, refused
            assert re.search(pattern, refused), refused
            return

    @pytest.mark.parametrize(
        "rule",
        [
            "views['a'] >= 10",
            "(views&['a'] ?? 0) >= 10",
            "[v for v in views.values if v >= 10].length == 1",
            "[v for v in views.values].length == 1",
        ],
    )
    def test_json_text_is_read_as_python_reads_it(self, engine: Engine, rule: str) -> None:
        """JSON text as other writers leave it: of a key written twice Python keeps the last, and
        a key written with escapes is the same key (SQLite's JSON paths find neither)."""
        catalog = Catalog([{"key": "t", "rule": rule}], {"views": "dict[str, int]"})
        texts = {
            "twice": '{"a": 1, "a": 20}',
            "refused_first": '{"a": "x", "a": 30}',
            "refused_last": '{"a": 30, "a": "x"}',
            "escaped": '{"\\u0061": 25}',
            "escaped_later": '{"a": 25, "\\u0061": 2}',
            "others": '{"a": 12, "b": 40, "b": 3}',
        }
        dialect = engine.dialect.name
        if dialect == "mysql":
            with pytest.raises(NotPushable):
                tag_query(
                    catalog,
                    sa.table("rows", sa.column("views", sa.JSON())),
                    dialect=dialect,
                    now=NOW,
                    mode="database",
                )
            return
        json_types = [postgresql.JSONB(), postgresql.JSON()] if dialect == "postgresql" else [sa.JSON()]
        for json_type in json_types:
            table = sa.Table(
                f"pushdown_raw_{next(_names)}",
                sa.MetaData(),
                sa.Column("id", sa.Text(), primary_key=True),
                sa.Column("views", json_type),
            )
            with engine.begin() as connection:
                table.create(connection)
                # the text as written (a JSON type would write it as a JSON string)
                value = (
                    ":views"
                    if dialect != "postgresql"
                    else f"CAST(:views AS {json_type.compile(engine.dialect)})"
                )
                connection.execute(
                    sa.text(f"INSERT INTO {table.name} (id, views) VALUES (:id, {value})"),
                    [{"id": key, "views": text} for key, text in texts.items()],
                )
            found = states(engine, catalog, table, mode="database")
            assert found == python_states(engine, catalog, table)
            assert {found[key]["t"] for key in texts} == {0, 1, None}

    def test_retail_interest_rule(self, engine: Engine) -> None:
        """The retail pack's interest tags on dict columns: pinned states where they are pushed."""
        rule = "(spend&['electronics'] ?? 0) >= 5000 or (views&['electronics'] ?? 0) >= 20"
        catalog = Catalog([{"key": "t", "rule": rule}], DICT_SCHEMA)
        table = make_table(engine, catalog, DICT_ROWS)
        if engine.dialect.name != "postgresql":
            pytest.skip("float dicts stay in Python on this dialect")
        found = {key: value["t"] for key, value in states(engine, catalog, table, mode="database").items()}
        assert found == {"a": 1, "b": 0, "c": 0, "d": 1, "e": None, "f": None, "g": None, "h": None}

    def test_keys_are_bound_parameters(self) -> None:
        """A key, and a JSON path built from it, never enter the SQL text."""
        from sqlalchemy.dialects import postgresql, sqlite

        rule = "(labels&['zz\\' OR 1=1 --'] ?? '') == 'q' or (views&['qq'] ?? 0) > 1"
        catalog = Catalog([{"key": "t", "rule": rule}], DICT_SCHEMA)
        dialects: list[tuple[str, Any]] = [
            ("postgresql", postgresql.dialect()),  # type: ignore[no-untyped-call]
            ("sqlite", sqlite.dialect()),
        ]
        for dialect, engine_dialect in dialects:
            table = snapshot_table("customers", catalog.schema, dialect)
            query = tag_query(catalog, table, dialect=dialect, now=NOW, mode="database")
            text = str(query.select.compile(dialect=engine_dialect))
            assert "OR 1=1" not in text
            assert "qq" not in text

    @pytest.mark.parametrize(
        ("schema", "rule", "construct"),
        [
            ({"d": "dict"}, "(d&['a'] ?? 0) > 1", "indexing a dict field"),
            ({"d": "dict[int, int]"}, "(d&[1] ?? 0) > 1", r"indexing a dict\[int, int\] field"),
            ({"d": "dict[str, list[int]]"}, "(d&['a'] ?? []).length > 1", "indexing a dict"),
            ({"items": "list[int]"}, "items[0] > 1", "indexing a list"),
            ({"name": "str"}, "name[0] == 'a'", "indexing"),
            ({"name": "str"}, "name[1:] == 'a'", "indexing"),
        ],
    )
    def test_other_indexing_is_kept_in_python(
        self, schema: dict[str, str], rule: str, construct: str
    ) -> None:
        """Untyped dicts, other key types, collections of collections, lists, strings and slices."""
        catalog = Catalog([{"key": "t", "rule": rule}], schema)
        table = snapshot_table("not_created", catalog.schema, "postgresql")
        with pytest.raises(NotPushable, match=construct):
            tag_query(catalog, table, dialect="postgresql", now=NOW, mode="database")

    def test_a_dict_in_a_text_column_is_not_pushable_on_postgresql(self) -> None:
        """PostgreSQL reads dicts from json and jsonb columns only."""
        catalog = Catalog([{"key": "t", "rule": "(views&['a'] ?? 0) > 1"}], DICT_SCHEMA)
        table = sa.Table(
            "customers", sa.MetaData(), sa.Column("id", sa.Text()), sa.Column("views", sa.Text())
        )
        with pytest.raises(NotPushable, match="json or jsonb column is needed"):
            tag_query(catalog, table, dialect="postgresql", now=NOW, mode="database")


class TestCatalogs:
    def test_groups_and_dependencies(self, engine: Engine) -> None:
        """Exclusive groups take the first true member by priority; dependents see the winners."""
        catalog = Catalog(
            [
                {"key": "high", "rule": "spend >= 1000", "group": "spend", "priority": 2},
                {"key": "low", "rule": "spend >= 0", "group": "spend", "priority": 1},
                {"key": "vip", "rule": "'high' in tags and partner"},
                {"key": "small", "rule": "'low' in tags or 'vip' in tags"},
            ],
            SCHEMA,
        )
        table = make_table(engine, catalog, ROWS)
        found = states(engine, catalog, table)
        assert found == python_states(engine, catalog, table)
        assert found["c"] == {"high": 1, "low": 0, "vip": 1, "small": 1}
        assert found["e"] == {"high": None, "low": None, "vip": None, "small": None}

    def test_retail_pack_counts_equal_python(self, engine: Engine) -> None:
        """The retail pack on generated customers: auto mode counts what Python counts."""
        catalog = load_catalog()
        customers = list(generate_customers(400, seed=5))
        aware = engine.dialect.name == "postgresql"
        table = make_table(engine, catalog, customers, aware=aware)
        with engine.connect() as connection:
            pushed = count_tags(catalog, connection, table, now=REFERENCE_NOW)
            python = count_tags(catalog, connection, table, now=REFERENCE_NOW, mode="python")
        assert pushed.counts == python.counts
        assert pushed.unknown == python.unknown
        assert pushed.rows == python.rows == 400
        assert pushed.where["vip"] == "database"
        # the interest tags read float dicts (pushed down on PostgreSQL only), and follows_category
        # is a comprehension over dict values (not pushed down on MariaDB)
        interests = {"likes_electronics", "likes_beauty", "likes_home"}
        kept = {"postgresql": set(), "sqlite": interests, "mysql": {"follows_category", *interests}}
        assert set(pushed.in_python) == kept[engine.dialect.name]

    def test_a_datetime_default_keeps_datetime_comparisons(self, engine: Engine) -> None:
        """``(f ?? d'1970-01-01') > $now`` compares instants, not text, on every database (MariaDB
        made a COALESCE of a DATETIME column and a driver-written parameter text)."""
        catalog = Catalog([{"key": "later", "rule": "(f ?? d'1970-01-01') > $now"}], {"f": "datetime | None"})
        naive = NOW.replace(tzinfo=None)
        rows: list[dict[str, Any]] = [
            {"id": "equal", "f": naive},
            {"id": "after", "f": naive + datetime.timedelta(microseconds=1)},
            {"id": "null", "f": None},
        ]
        found = states(engine, catalog, make_table(engine, catalog, rows))
        assert found == {"equal": {"later": 0}, "after": {"later": 1}, "null": {"later": 0}}

    def test_the_connections_settings_are_restored(self, engine: Engine) -> None:
        """A count on a caller's connection leaves its session as it found it (on PostgreSQL the
        query runs with its own JIT settings, for its transaction only)."""
        catalog = Catalog([{"key": "t", "rule": "orders >= 3"}], {"orders": "int"})
        table = make_table(engine, catalog, [{"id": "a", "orders": 4}, {"id": "b", "orders": 1}])
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SET LOCAL jit_optimize_above_cost = 123456")
                shown = (
                    "SELECT current_setting('jit_optimize_above_cost'), "
                    "current_setting('jit_inline_above_cost')"
                )
                before = connection.exec_driver_sql(shown).one()
            assert count_tags(catalog, connection, table, now=NOW).counts == {"t": 1}
            if engine.dialect.name == "postgresql":
                assert connection.exec_driver_sql(shown).one() == before
                assert before[0] == "123456"

    def test_an_engine_counts_both_parts_at_once(self, engine: Engine) -> None:
        """Given an engine, the tags left to Python stream through a second connection while the
        count query runs: the counts are those of one connection, and of Python."""
        retail = load_catalog()
        # the retail pack and a tag no dialect pushes down (a comprehension over dict keys)
        keys = {"key": "views_many", "rule": "[k for k in category_views_30d.keys if k != ''].length > 2"}
        catalog = Catalog([*retail.tags, keys], retail.schema)
        customers = list(generate_customers(300, seed=11))
        table = make_table(engine, catalog, customers, aware=engine.dialect.name == "postgresql")
        overlapped = count_tags(catalog, engine, table, now=REFERENCE_NOW)
        with engine.connect() as connection:
            one_connection = count_tags(catalog, connection, table, now=REFERENCE_NOW)
        python = count_tags(catalog, engine, table, now=REFERENCE_NOW, mode="python")
        assert overlapped == one_connection
        assert overlapped.counts == python.counts
        assert overlapped.rows == 300
        assert set(overlapped.where.values()) == {"database", "python"}

    def test_column_mapping(self, engine: Engine) -> None:
        """Fields read from columns of other names."""
        catalog = Catalog([{"key": "t", "rule": "orders >= 3"}], {"orders": "int"})
        table = sa.Table(
            f"pushdown_map_{next(_names)}", sa.MetaData(), sa.Column("n_orders", sa.BigInteger())
        )
        with engine.begin() as connection:
            table.create(connection)
            connection.execute(table.insert(), [{"n_orders": 3}, {"n_orders": 1}])
        counts = count_tags(catalog, engine, table.name, now=NOW, columns={"orders": "n_orders"})
        assert counts.to_data() == {"t": 1}

    def test_missing_table_and_column(self, engine: Engine) -> None:
        """A missing table or column is a SourceError that says which."""
        catalog = Catalog([{"key": "t", "rule": "orders >= 3"}], {"orders": "int"})
        with pytest.raises(SourceError, match="no table 'no_such_table'"):
            count_tags(catalog, engine, "no_such_table", now=NOW)
        table = sa.Table(f"pushdown_cols_{next(_names)}", sa.MetaData(), sa.Column("other", sa.BigInteger()))
        with engine.begin() as connection:
            table.create(connection)
        with pytest.raises(SourceError, match="no column 'orders' for the field 'orders'"):
            count_tags(catalog, engine, table.name, now=NOW)


class TestNotPushable:
    def test_comprehensions_are_not_pushable_anywhere(self, engine: Engine) -> None:
        """A comprehension names its tag and construct; auto mode evaluates it in Python."""
        catalog = Catalog(
            [
                {"key": "many", "rule": "[x for x in items if x > 1].length > 0"},
                {"key": "t", "rule": "n > 0"},
            ],
            {"items": "list[int]", "n": "int"},
        )
        table = snapshot_table("not_created", catalog.schema, engine.dialect.name)
        with pytest.raises(NotPushable, match="tag 'many': a comprehension") as raised:
            tag_query(catalog, table, dialect=engine.dialect.name, now=NOW, mode="database")
        assert raised.value.tag == "many"
        query = tag_query(catalog, table, dialect=engine.dialect.name, now=NOW)
        assert set(query.in_python) == {"many"}
        assert set(query.tag_columns) == {"t"}

    def test_regex_where_the_dialect_has_it(self, engine: Engine) -> None:
        """Regex runs in PostgreSQL and MariaDB when the pattern translates exactly; never on SQLite."""
        rules = ["name =~ 'a[b-c]+'", "name =~~ 'c$'", "name !~ '^A'", "(tier ?? '') =~ 'o.d'"]
        catalog = Catalog([{"key": f"r{index}", "rule": rule} for index, rule in enumerate(rules)], SCHEMA)
        table = make_table(engine, catalog, ROWS)
        if engine.dialect.name == "sqlite":
            with pytest.raises(NotPushable, match="regular expression"):
                tag_query(catalog, table, dialect="sqlite", now=NOW, mode="database")
            return
        assert states(engine, catalog, table, mode="database") == python_states(engine, catalog, table)

    @pytest.mark.parametrize(
        ("rule", "construct"),
        [
            ("name =~ '(?i)abc'", "regular expression"),
            ("name =~ '\\\\d+'", "regular expression"),
            ("name.as_upper == 'ABC'", "attribute .as_upper"),
            ("spend + 1.5 > 2", "arithmetic on a float"),
            ("orders * 2 > 2", "operator *"),
            ("orders / 2 > 2", "operator /"),
            ("orders > spend", "values of two types"),
        ],
    )
    def test_constructs_kept_in_python(self, rule: str, construct: str) -> None:
        """Constructs without exact SQL raise NotPushable naming them."""
        catalog = Catalog([{"key": "t", "rule": rule}], SCHEMA)
        table = snapshot_table("not_created", catalog.schema, "postgresql")
        with pytest.raises(NotPushable, match=construct):
            tag_query(catalog, table, dialect="postgresql", now=NOW, mode="database")


class TestCompiledSql:
    @pytest.mark.parametrize(
        ("dialect", "filtered"),
        [("postgresql", True), ("sqlite", True), ("mysql", False), ("mariadb", False), ("trino", False)],
    )
    def test_counts_filter_only_where_the_dialect_has_it(self, dialect: str, filtered: bool) -> None:
        """``count(*) FILTER (WHERE ...)`` on PostgreSQL and SQLite; a sum elsewhere (MariaDB and
        many warehouses have no FILTER clause)."""
        column = sa.column("t_0", sa.Integer())
        text = str(compiler_for(dialect).count_where(column == 1).compile())
        assert ("FILTER (WHERE t_0 = :t_0_1)" in text) is filtered
        assert ("sum(CASE WHEN (t_0 = :t_0_1)" in text) is not filtered

    @pytest.mark.parametrize(
        ("dialect", "rule", "expected"),
        [
            (
                "postgresql",
                "name == 'abc'",
                '(customers.name COLLATE "C") = (%(param_1)s::VARCHAR COLLATE "C")',
            ),
            (
                "mysql",
                "name == 'abc'",
                "CONVERT(customers.name USING utf8mb4) COLLATE utf8mb4_nopad_bin = "
                "CONVERT(%s USING utf8mb4) COLLATE utf8mb4_nopad_bin",
            ),
            ("sqlite", "name == 'abc'", '(customers.name COLLATE "BINARY") = (? COLLATE "BINARY")'),
            ("postgresql", "name =~ 'a.c'", 'customers.name COLLATE "C" ~ %(param_1)s::VARCHAR'),
            (
                "postgresql",
                "seen_at >= $now - t'P30D'",
                "timezone(%(timezone_1)s::VARCHAR, customers.seen_at) >= "
                "%(param_1)s::TIMESTAMP WITHOUT TIME ZONE",
            ),
            (
                "postgresql",
                "orders + 1 > 5",
                "CAST(customers.orders AS NUMERIC) + %(param_1)s::BIGINT > %(param_2)s",
            ),
            ("mysql", "orders // 2 > 5", "customers.orders DIV CASE WHEN"),
        ],
    )
    def test_fixtures(self, dialect: str, rule: str, expected: str) -> None:
        """Rule -> SQL fixtures: collations, regex operators, UTC conversion, exact arithmetic."""
        from sqlalchemy.dialects import mysql, postgresql, sqlite

        catalog = Catalog([{"key": "t", "rule": rule}], SCHEMA)
        table = snapshot_table("customers", catalog.schema, dialect, aware=True)
        fields = {
            name: FieldColumn(table.c[name], catalog.schema.fields[name], table.c[name].type)
            for name in catalog.rule("t").fields
        }
        compiler = compiler_for(dialect)(catalog.language.context, fields, NOW)
        compiled = compiler.compile(catalog.rule("t").statement)
        engine_dialect = {"postgresql": postgresql, "mysql": mysql, "sqlite": sqlite}[dialect].dialect()
        text = " ".join(str(compiled.value.compile(dialect=engine_dialect)).split())
        assert expected in text


def _capped(value: int, cap: int) -> int:
    return min(value, cap)


CAPPED = RuleFunction(
    "capped",
    _capped,
    arguments=["int", "int"],
    returns="int",
    sql=lambda value, cap: sa.case((value > cap, cap), else_=value),
)
HALVED = RuleFunction("halved", lambda value: value / 2, arguments=["float"], returns="float")


class TestCustomFunctions:
    def test_a_function_with_a_sql_form_is_pushed_down(self, engine: Engine) -> None:
        """A plugin function that gives its SQL form runs in the database, with Python's results."""
        catalog = Catalog(
            [
                {"key": "t", "rule": "$capped(orders, 3) >= 3"},
                {"key": "u", "rule": "$capped(orders, 1) == orders"},
            ],
            SCHEMA,
            functions=[CAPPED],
        )
        table = make_table(engine, catalog, ROWS)
        assert states(engine, catalog, table, mode="database") == python_states(engine, catalog, table)

    def test_a_function_without_one_stays_in_python(self, engine: Engine) -> None:
        """Without a SQL form the call is not pushable; auto mode evaluates that tag in Python."""
        catalog = Catalog([{"key": "t", "rule": "$halved(spend) > 1"}], SCHEMA, functions=[HALVED])
        table = make_table(engine, catalog, ROWS)
        with pytest.raises(NotPushable, match=r"the function \$halved, which has no SQL form"):
            states(engine, catalog, table, mode="database")
        with engine.connect() as connection:
            counts = count_tags(catalog, connection, table, now=NOW)
            python = count_tags(catalog, connection, table, now=NOW, mode="python")
        assert counts.where == {"t": "python"}
        assert counts.counts == python.counts
        assert counts.unknown == python.unknown


DOUBLE_SPEND = DerivedField(
    "double_spend",
    "float | None",
    lambda snapshot, now: None if snapshot["spend"] is None else snapshot["spend"] * 2,
    reads=["spend"],
)
DAYS_SEEN = DerivedField(
    "days_seen",
    "int | None",
    lambda snapshot, now: None if snapshot["seen_at"] is None else (now - snapshot["seen_at"]).days,
    reads=["seen_at"],
)
DERIVED_TAGS = [
    {"key": "big", "rule": "(double_spend ?? 0) >= 1"},
    {"key": "recent", "rule": "(days_seen ?? 9999) <= 30"},
    {"key": "ordered", "rule": "(orders ?? 0) >= 1"},
    {"key": "recent_orderer", "rule": "'recent' in tags and 'ordered' in tags"},
]


def _expected_counts(
    catalog: Catalog, rows: list[dict[str, Any]], *, unknown: bool = False
) -> dict[str, int]:
    evaluator = Evaluator(catalog)
    evaluations = [evaluator.evaluate(row, now=NOW) for row in rows]
    chosen = [evaluation.errors if unknown else evaluation.tags for evaluation in evaluations]
    return {tag.key: sum(tag.key in found for found in chosen) for tag in catalog.active}


class TestDerivedFields:
    def test_counted_in_python_from_the_fields_they_read(self, engine: Engine) -> None:
        """Tags reading derived fields are evaluated in Python from the columns of the fields they read."""
        catalog = Catalog(DERIVED_TAGS, SCHEMA, derived=[DOUBLE_SPEND, DAYS_SEEN])
        table = make_table(engine, Catalog([], SCHEMA), ROWS)
        expected = _expected_counts(catalog, ROWS)
        assert expected == {"big": 2, "recent": 3, "ordered": 2, "recent_orderer": 2}
        for mode in ("auto", "python"):
            report = count_tags(catalog, engine, table.name, now=NOW, mode=mode)
            assert dict(report.counts) == expected, mode
            assert (
                dict(report.unknown)
                == _expected_counts(catalog, ROWS, unknown=True)
                == dict.fromkeys(expected, 1)
            )
        report = count_tags(catalog, engine, table.name, now=NOW)
        assert report.where == {
            "big": "python",
            "recent": "python",
            "ordered": "database",
            "recent_orderer": "python",
        }
        assert report.in_python["big"].startswith("tag 'big': the derived field 'double_spend'")

    @pytest.mark.parametrize("set_wise", [False, None])
    def test_retagged_from_a_table(self, engine: Engine, set_wise: bool | None) -> None:
        """retag_from_table computes derived fields from the columns of the fields they read too."""
        catalog = Catalog(DERIVED_TAGS, SCHEMA, derived=[DOUBLE_SPEND, DAYS_SEEN])
        table = make_table(engine, Catalog([], SCHEMA), ROWS)
        store = MemoryStore()
        retag_from_table(catalog, engine, table.name, store, now=NOW, set_wise=set_wise)
        evaluator = Evaluator(catalog)
        held = {row["id"]: {membership.tag for membership in store.memberships(row["id"])} for row in ROWS}
        assert held == {row["id"]: set(evaluator.evaluate(row, now=NOW).tags) for row in ROWS}
        assert held["a"] == {"recent", "ordered", "recent_orderer"}

    def test_database_mode_names_the_derived_field(self, engine: Engine) -> None:
        """database mode refuses a tag reading a derived field, naming the tag and the field."""
        catalog = Catalog(DERIVED_TAGS, SCHEMA, derived=[DOUBLE_SPEND, DAYS_SEEN])
        table = make_table(engine, Catalog([], SCHEMA), ROWS)
        with pytest.raises(NotPushable, match=r"tag 'big': the derived field 'double_spend' \(computed in"):
            count_tags(catalog, engine, table.name, now=NOW, mode="database")


def test_in_memory_sqlite_with_tags_in_sql_and_python() -> None:
    """count_tags over an in-memory SQLite engine works with tags split between SQL and Python."""
    catalog = Catalog(
        [{"key": "t", "rule": "$halved(spend ?? 0) > 1"}, {"key": "u", "rule": "(orders ?? 0) >= 1"}],
        SCHEMA,
        functions=[HALVED],
    )
    engine = sa.create_engine("sqlite://")
    try:
        table = make_table(engine, catalog, ROWS)
        report = count_tags(catalog, engine, table, now=NOW)
        assert report.where == {"t": "python", "u": "database"}
        assert dict(report.counts) == _expected_counts(catalog, ROWS) == {"t": 2, "u": 2}
    finally:
        engine.dispose()
