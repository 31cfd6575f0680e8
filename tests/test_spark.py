"""A catalog on Apache Spark: Spark SQL text with named parameters, ANSI mode errors mapped to the
row's unknown state, the tags Spark SQL cannot evaluate run on the executors, and the same states as
the Python evaluator on random rules and rows (``make test-spark`` runs the long profile: 1,000 pushed
rules x 10,000 rows)."""

from __future__ import annotations

import collections
import datetime
import json
import os
import random
import subprocess
import sys
import warnings
from typing import Any, cast

import pyarrow
import pyarrow.parquet
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NonInteractiveExampleWarning

from rule_strategies import NOW, Hints, RandomSchema, RuleWriter
from tagrules import Catalog, DefinitionError, Evaluator, MemoryStore, NotPushable, SourceError, Tagger
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog
from tagrules.sources.tables import count_tags as count_in_python
from tagrules.sources.tables import tag_query
from tagrules.spark import count_tags, diff_tags, tag_columns
from tagrules.sql._spark import render_spark
from test_pushdown_differential import _value, _wide_value, catalogs, sql_schemas

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
UTC = datetime.timezone.utc
CASES: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report_cases() -> Any:
    yield
    if CASES:
        print("\nspark differential cases:", dict(sorted(CASES.items())))


def _spark_type(type_name: str) -> Any:
    from pyspark.sql import types

    base = type_name.split(" |")[0]
    if base.startswith("dict[str, "):
        return types.MapType(
            types.StringType(), _spark_type(base.removeprefix("dict[str, ").removesuffix("]"))
        )
    return {
        "int": types.LongType(),
        "float": types.DoubleType(),
        "str": types.StringType(),
        "bool": types.BooleanType(),
        "datetime": types.TimestampType(),
        "date": types.DateType(),
    }[base]


_MEMBER_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _fits(item: str, member: Any) -> bool:
    if type(member) is not _MEMBER_TYPES[item]:
        return False
    return item != "int" or (isinstance(member, int) and -(2**63) <= member < 2**63)


def _storable(value: Any, type_name: str) -> Any:
    """``value`` as a Spark column of ``type_name`` holds it: a dict's members of other types dropped
    (a map holds one type), an int beyond 64 bits or a non-dict in a map column read as null."""
    base = type_name.split(" |")[0]
    if not base.startswith("dict[") or value is None:
        return value
    if not isinstance(value, dict):
        return None
    item = base.removeprefix("dict[str, ").removesuffix("]").split(" |")[0]
    kept: dict[str, Any] = {}
    member: Any
    for key, member in value.items():
        if member is None:
            kept[key] = None
        elif _fits(item, member):
            kept[key] = member
    return kept


def _frame(spark: Any, types: dict[str, str], rows: list[dict[str, Any]]) -> Any:
    from pyspark.sql import types as spark_types

    schema = spark_types.StructType(
        [
            spark_types.StructField("id", spark_types.StringType(), False),
            *[
                spark_types.StructField(name, _spark_type(type_name), True)
                for name, type_name in types.items()
            ],
        ]
    )
    data = [
        (row["id"], *[_storable(row[name], type_name) for name, type_name in types.items()]) for row in rows
    ]
    return spark.createDataFrame(data, schema)


def _read_back(table: pyarrow.Table) -> list[dict[str, Any]]:
    """Rows as Spark gives them through Arrow: maps as dicts."""
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for name, value in row.items():
            if isinstance(value, list) and all(isinstance(pair, tuple) for pair in value):
                row[name] = dict(value)
    return rows


def _compare(spark: Any, catalog: Catalog, df: Any) -> tuple[list[Any], dict[str, str]]:
    """Spark's tag states against the Python evaluator's on the rows Spark holds: the differences."""
    from tagrules.spark._columns import tagged

    result = tagged(catalog, df, NOW)
    keys = list(result.states)
    tagged_rows = tag_columns(catalog, df, now=NOW).toArrow()
    evaluator = Evaluator(catalog)
    differences = []
    for row in _read_back(tagged_rows):
        snapshot = {name: row[name] for name in catalog.schema.fields}
        evaluation = evaluator.evaluate(snapshot, now=NOW)
        for key in keys:
            expected = None if key in evaluation.errors else key in evaluation.tags
            if row[key] != expected:
                differences.append((key, catalog[key].rule, snapshot, expected, row[key]))
        CASES["rows compared"] += 1
    return differences, dict(result.where)


_SETTINGS = settings(
    max_examples=300 if LONG else 3,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


_COMPREHENSIONS = [
    "[v for v in d.values if v > 1].length > 0",
    "[v for v in d.values if v >= 3 and v < 10].length == 2",
    "[v for v in d.values if v % 2 == 0].length >= 1",
    "[v for v in d.values if v != 4].length < 3",
    "[v for v in d.values].length == 0",
    "[v for v in d.values if v == null].length > 0",
]


class TestMapComprehensions:
    @settings(max_examples=200 if LONG else 4, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        item=st.sampled_from(["int", "int | None"]),
        dicts=st.lists(
            st.one_of(
                st.none(),
                st.dictionaries(
                    st.sampled_from(["a", "b", "c", "", "\u00e9"]),
                    st.one_of(st.none(), st.integers(-5, 20), st.sampled_from([-(2**63), 2**63 - 1])),
                    max_size=5,
                ),
            ),
            min_size=1,
            max_size=10,
        ),
    )
    def test_counts_over_integer_maps_equal_python(
        self, spark: Any, item: str, dicts: list[dict[str, int | None] | None]
    ) -> None:
        """The count of a comprehension over a MAP<STRING, BIGINT>'s values is computed in Spark SQL
        with the states Python gives: null members, -2**63 and null dicts where the schema refuses
        them."""
        catalog = Catalog(
            [{"key": f"r{index}", "rule": rule} for index, rule in enumerate(_COMPREHENSIONS)],
            {"d": f"dict[str, {item}]"},
        )
        rows = [{"id": str(index), "d": value} for index, value in enumerate(dicts)]
        differences, where = _compare(spark, catalog, _frame(spark, {"d": f"dict[str, {item}]"}, rows))
        # over int | None members, and with a modulo or a null test inside the lambda, the count is
        # left to the executors; the others are Spark SQL's
        in_python = {key for key, place in where.items() if place == "python"}
        assert in_python == (set(where) if item == "int | None" else {"r2", "r5"}), where
        assert not differences, differences[:3]


class TestDifferential:
    @_SETTINGS
    @given(data=st.data())
    def test_random_catalogs_equal_python(self, spark: Any, data: st.DataObject) -> None:
        """Random catalogs (groups and dependencies included) over random rows: each tag's state on
        each row on Spark equals the Python evaluator's, whether Spark SQL or the executors ran it."""
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
                **{name: _value(draw, kind, hints, "spark") for name, kind in random_schema.types.items()},
            }
            for index in range(8)
        ]
        differences, where = _compare(spark, catalog, _frame(spark, random_schema.types, rows))
        for place in where.values():
            CASES[f"tags run by {place}"] += 1
        assert not differences, differences[:3]

    def test_many_pushed_rules_over_many_rows(self, spark: Any) -> None:
        """Many random rules Spark SQL evaluates, at once over many random rows: each tag's state on
        each row equals Python's (the long profile: 1,000 pushed rules x 10,000 rows)."""
        rule_count, row_count = (1_000, 10_000) if LONG else (25, 100)
        rng = random.Random(15)
        types = [
            "int", "float", "int | None", "float | None", "str", "str | None", "bool", "bool | None",
            "datetime", "datetime | None", "date", "dict[str, int]", "dict[str, float]", "dict[str, str]",
        ]  # fmt: skip
        random_schema = RandomSchema({f"f{index}": name for index, name in enumerate(types)})
        schema = random_schema.schema
        df_empty = _frame(spark, random_schema.types, [])
        draw = cast(st.DrawFn, lambda strategy: strategy.example())
        rules: list[str] = []
        hints = Hints([], [], [])
        import sqlalchemy as sa

        from tagrules.spark._columns import spark_sql_type

        table = sa.table(
            "probe",
            *[sa.column(field.name, spark_sql_type(field.dataType)) for field in df_empty.schema.fields],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonInteractiveExampleWarning)
            while len(rules) < rule_count:
                writer = RuleWriter(draw, random_schema)
                text = writer.boolean(draw(st.integers(1, 3)))
                try:
                    catalog = Catalog([{"key": "t", "rule": text}], schema)
                    tag_query(catalog, table, dialect="spark", now=NOW, mode="database")
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
                **{name: _wide_value(rng, kind, hints) for name, kind in random_schema.types.items()},
            }
            for index in range(row_count)
        ]
        differences, where = _compare(spark, catalog, _frame(spark, random_schema.types, rows).repartition(2))
        assert set(where.values()) == {"spark"}
        CASES["wide: rules x rows compared"] += len(rules) * row_count
        assert not differences, differences[:3]


def _retail_rows(count: int) -> list[dict[str, Any]]:
    rows = []
    for customer in generate_customers(count, seed=7):
        row = dict(customer)
        for name in ("category_spend_365d", "category_views_30d"):
            row[name] = json.dumps(row[name])
        for name in ("gender", "city_tier", "occupation"):
            row[name] = getattr(row[name], "value", row[name])
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def retail(spark: Any) -> tuple[Any, pyarrow.Table]:
    table = pyarrow.Table.from_pylist(_retail_rows(120))
    return spark.createDataFrame(table), table


class TestRetail:
    def test_count_equals_python(self, retail: tuple[Any, pyarrow.Table]) -> None:
        """The retail catalog counted on Spark: Python's counts and unknowns; the dicts held as JSON
        text run on the executors, the rest in Spark SQL, as the report says."""
        df, table = retail
        report = count_tags(load_catalog(), df, now=REFERENCE_NOW)
        python = count_in_python(load_catalog(), table, now=REFERENCE_NOW, mode="python")
        assert report.rows == 120
        assert dict(report.counts) == dict(python.counts)
        assert dict(report.unknown) == dict(python.unknown)
        assert report.where["likes_electronics"] == "python"
        assert report.where["vip"] == "spark"
        assert set(report.in_python) == {key for key, place in report.where.items() if place == "python"}

    def test_tag_columns_are_booleans_beside_the_rows(self, retail: tuple[Any, pyarrow.Table]) -> None:
        """tag_columns keeps every row and column and adds one boolean column per active tag."""
        df, _ = retail
        tagged = tag_columns(load_catalog(), df, now=REFERENCE_NOW)
        keys = [definition.key for definition in load_catalog().active]
        assert tagged.columns[-len(keys) :] == keys
        assert "id" in tagged.columns
        assert {field.dataType.simpleString() for field in tagged.schema.fields[-len(keys) :]} == {"boolean"}
        assert tagged.count() == 120

    def test_missing_column(self, retail: tuple[Any, pyarrow.Table]) -> None:
        """A field no column holds is a SourceError naming it."""
        df, _ = retail
        with pytest.raises(SourceError, match="no column 'spend_365d'"):
            count_tags(load_catalog(), df.drop("spend_365d"), now=REFERENCE_NOW)


class TestSparkSql:
    def test_literals_are_named_parameters(self, spark: Any) -> None:
        """A rule's literals reach Spark as named parameters: none is in the SQL text."""
        catalog = Catalog(
            [{"key": "odd", "rule": "name == 'x\\' OR 1=1 --' and n > 123456789"}],
            {"name": "str", "n": "int"},
        )
        df = spark.createDataFrame([("x' OR 1=1 --", 123456790), ("y", 5)], "name string, n bigint")
        import sqlalchemy as sa

        table = sa.table("t", sa.column("name", sa.String()), sa.column("n", sa.BigInteger()))
        text, args = render_spark(tag_query(catalog, table, dialect="spark", now=NOW, mode="database").select)
        assert "OR 1=1" not in text
        assert "123456789" not in text
        assert "x' OR 1=1 --" in args.values()
        rows = tag_columns(catalog, df, now=NOW).orderBy("n").collect()
        assert [row["odd"] for row in rows] == [False, True]

    def test_ansi_errors_are_the_rows_unknown(self, spark: Any) -> None:
        """Division and remainder by zero and the int64 minimum (whose negation and quotient by -1
        overflow) make the row's tag unknown, as in Python; Spark's ANSI mode fails no job."""
        rules = ["n // d > 0", "n % d == 0", "-n < 0", "n + n > 0", "n - 1 < n", "n // e < 0"]
        catalog = Catalog(
            [{"key": f"t{index}", "rule": rule} for index, rule in enumerate(rules)],
            {"n": "int", "d": "int", "e": "int"},
        )
        df = spark.createDataFrame(
            [(0, -(2**63), 0, -1), (1, 2**62, 1, -1), (2, 7, 0, 1)], "id int, n bigint, d bigint, e bigint"
        )
        rows = tag_columns(catalog, df, now=NOW).orderBy("id").collect()
        assert [[row[f"t{index}"] for index in range(len(rules))] for row in rows] == [
            [None, None, None, None, None, None],
            [True, True, True, True, True, True],
            [None, None, True, True, True, False],
        ]
        assert set(count_tags(catalog, df, now=NOW).where.values()) == {"spark"}

    def test_wide_sums_and_quotients_are_exact(self, spark: Any) -> None:
        """Sums past 64 bits and their quotients are exact decimals, not overflows."""
        catalog = Catalog(
            [
                {"key": "big", "rule": "a + b > 9223372036854775807"},
                {"key": "q", "rule": "(a + b) // 2 == a"},
            ],
            {"a": "int", "b": "int"},
        )
        df = spark.createDataFrame([(2**63 - 1, 2**63 - 1), (1, 1)], "a bigint, b bigint")
        rows = tag_columns(catalog, df, now=NOW).orderBy("a").collect()
        assert [(row["big"], row["q"]) for row in rows] == [(False, True), (True, True)]

    def test_timestamps_compare_as_instants_whatever_the_session_zone(self, spark: Any) -> None:
        """TIMESTAMP, TIMESTAMP_NTZ (read as UTC) and DATE columns compare with $now as UTC, even
        with the session's time zone set elsewhere."""
        catalog = Catalog(
            [
                {"key": "early", "rule": "seen < d'2026-01-01T10:00:00Z'"},
                {"key": "naive", "rule": "wall < d'2026-01-01T10:00:00Z'"},
                {"key": "day", "rule": "$now - born > t'P1D'"},
            ],
            {"seen": "datetime", "wall": "datetime", "born": "date"},
        )
        moment = datetime.datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
        df = spark.createDataFrame(
            [(moment, moment.replace(tzinfo=None), datetime.date(2026, 5, 30))],
            "seen timestamp, wall timestamp_ntz, born date",
        )
        spark.conf.set("spark.sql.session.timeZone", "Asia/Tokyo")
        try:
            row = tag_columns(catalog, df, now=NOW).collect()[0]
            where = count_tags(catalog, df, now=NOW).where
        finally:
            spark.conf.set("spark.sql.session.timeZone", "UTC")
        assert (row["early"], row["naive"], row["day"]) == (True, True, True)
        assert set(where.values()) == {"spark"}


def _run_on_spark(
    spark: Any, catalog: Catalog, types: dict[str, str], rows: list[dict[str, Any]], previous: Any, now: Any
) -> tuple[Any, set[tuple[str, str]], set[tuple[str, str, str]]]:
    tags_df, changes_df = diff_tags(catalog, _frame(spark, types, rows), previous, now=now)
    tags_rows = tags_df.toArrow().to_pylist()
    tags = {(row["id"], row["tag"]) for row in tags_rows}
    changes = {(row["id"], row["tag"], row["change"]) for row in changes_df.toArrow().to_pylist()}
    assert len(tags) == len(tags_rows)
    return spark.createDataFrame(tags_rows, "id string, tag string"), tags, changes


class TestPopulationDiff:
    @settings(_SETTINGS, max_examples=40 if LONG else 1)
    @given(data=st.data())
    def test_three_runs_leave_what_the_store_holds(self, spark: Any, data: st.DataObject) -> None:
        """Three successive runs over random rows (customers coming and going, a tag retired in
        between): the tags diff_tags gives equal what Tagger.apply_many leaves in a MemoryStore, and
        its changes are the difference between one run's tags and the next."""
        random_schema = data.draw(sql_schemas())
        definitions, hints = data.draw(catalogs(random_schema))
        retired = data.draw(st.sampled_from([None, *[definition["key"] for definition in definitions]]))
        try:
            first = Catalog(definitions, random_schema.schema)
            later = Catalog(
                [{**d, "status": "retired" if d["key"] == retired else "active"} for d in definitions],
                random_schema.schema,
            )
        except DefinitionError:
            assume(False)
            return
        draw = cast(st.DrawFn, data.draw)
        store = MemoryStore()
        previous = None
        held: set[tuple[str, str]] = set()
        seen: set[str] = set()
        for run, catalog in enumerate([first, later, later]):
            ids = data.draw(st.lists(st.sampled_from("abcdef"), unique=True, min_size=1, max_size=6))
            rows = [
                {
                    "id": identifier,
                    **{
                        name: _value(draw, kind, hints, "spark") for name, kind in random_schema.types.items()
                    },
                }
                for identifier in ids
            ]
            now = NOW + datetime.timedelta(days=run)
            # the store evaluates the rows as Spark holds them
            stored_rows = _read_back(_frame(spark, random_schema.types, rows).toArrow())
            Tagger(catalog, store).apply_many(
                [(row["id"], {name: row[name] for name in catalog.schema.fields}) for row in stored_rows],
                now=now,
            )
            previous, tags, changes = _run_on_spark(spark, catalog, random_schema.types, rows, previous, now)
            seen.update(ids)
            assert tags == {(customer, tag) for customer in seen for tag in store.tags(customer)}
            assert changes == {(*pair, "added") for pair in tags - held} | {
                (*pair, "removed") for pair in held - tags
            }
            held = tags

    def test_no_previous_adds_every_tag(self, spark: Any) -> None:
        """Without previous tags every tag held is added; a failed rule holds nothing new."""
        catalog = Catalog(
            [{"key": "big", "rule": "n > 1"}, {"key": "q", "rule": "n // d > 0"}], {"n": "int", "d": "int"}
        )
        df = spark.createDataFrame([("a", 5, 0), ("b", 0, 1)], "id string, n bigint, d bigint")
        tags_df, changes_df = diff_tags(catalog, df, None, now=NOW)
        assert sorted(tuple(row) for row in tags_df.collect()) == [("a", "big")]
        assert sorted(tuple(row) for row in changes_df.collect()) == [("a", "big", "added")]


class TestLightImport:
    def test_importing_the_package_imports_no_pyspark(self) -> None:
        """import tagrules.spark loads no pyspark: it is imported when a function runs."""
        code = "import sys, tagrules.spark; print('pyspark' in sys.modules)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "False"


def _tagrules(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def customers(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("spark-cli") / "customers.parquet")
    result = _tagrules("sample", "--pack", "retail", "--count", "40", "--seed", "3", "--output", path)
    assert result.returncode == 0, result.stderr
    return path


def _in_process(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    """The command run in this process: on Spark it reuses the test session (started once)."""
    from tagrules.cli import main

    capsys.readouterr()
    status = main(list(arguments))
    return status, capsys.readouterr().out


class TestCommandLine:
    def test_count_and_evaluate_give_what_duckdb_gives(
        self, spark: Any, customers: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """count --engine spark prints DuckDB's counts; evaluate --engine spark --ordered DuckDB's lines."""
        now = ["--now", "2026-06-01T00:00:00Z"]
        status, on_spark = _in_process(
            capsys, "count", "retail", "--input", customers, "--engine", "spark", *now, "--json"
        )
        assert status == 0
        assert json.loads(on_spark) == json.loads(
            _in_process(capsys, "count", "retail", "--input", customers, *now, "--json")[1]
        )
        status, evaluated = _in_process(
            capsys, "evaluate", "retail", customers, "--engine", "spark", "--ordered", *now
        )
        assert status == 0
        assert evaluated == _in_process(capsys, "evaluate", "retail", customers, *now)[1]

    def test_run_writes_tags_and_changes(
        self, spark: Any, customers: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """run --input --engine spark: without --previous every tag held is added; a second run
        against the first's tags changes nothing."""
        tags, changes = str(tmp_path / "tags.parquet"), str(tmp_path / "changes.parquet")
        common = ["run", "retail", "--input", customers, "--engine", "spark", "--now", "2026-06-01T00:00:00Z"]
        assert _in_process(capsys, *common, "--output", tags, "--changes", changes)[0] == 0
        held = pyarrow.parquet.read_table(tags).to_pylist()
        assert held
        added = pyarrow.parquet.read_table(changes).to_pylist()
        assert sorted((row["id"], row["tag"]) for row in added) == sorted(
            (row["id"], row["tag"]) for row in held
        )
        assert {row["change"] for row in added} == {"added"}
        again, none = str(tmp_path / "again.parquet"), str(tmp_path / "none.parquet")
        status, _ = _in_process(capsys, *common, "--previous", tags, "--output", again, "--changes", none)
        assert status == 0
        assert pyarrow.parquet.read_table(none).num_rows == 0
        assert pyarrow.parquet.read_table(again).num_rows == len(held)

    def test_run_needs_an_output(self, customers: str) -> None:
        """run --input without --output is refused in one line, before Spark starts."""
        result = _tagrules("run", "retail", "--input", customers, "--engine", "spark")
        assert result.returncode != 0
        assert "--output TAGS.parquet" in result.stderr

    def test_count_refuses_a_mode_on_spark(self, customers: str) -> None:
        """count --engine spark --mode database is refused in one line: Spark runs in auto mode."""
        result = _tagrules("count", "retail", "--input", customers, "--engine", "spark", "--mode", "database")
        assert result.returncode != 0
        assert "--mode goes with --db or --engine duckdb" in result.stderr
