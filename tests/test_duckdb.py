"""DuckDB as a source of rows: its tables (``duckdb:///PATH``), files it reads and DataFrames, counted
in process with the same results as Python evaluation; DuckDB refused as a tag store."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas
import polars
import pyarrow
import pyarrow.csv
import pyarrow.parquet
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from sql_tables import fill, snapshot_table
from tagrules import Catalog, Evaluator, NotPushable, SourceError, SQLStore, StoreError, count_tags, tag_query
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog
from tagrules.sql._regex import translate_regex

UTC = datetime.timezone.utc
#: the long profile (``make test-duckdb``) draws many more dicts
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"


def _retail_rows(count: int) -> list[dict[str, Any]]:
    """Generated retail customers as flat rows: enums as text, dicts as JSON text."""
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
def retail_arrow() -> pyarrow.Table:
    return pyarrow.Table.from_pylist(_retail_rows(300))


@pytest.fixture(scope="module")
def python_counts(retail_arrow: pyarrow.Table) -> Any:
    return count_tags(load_catalog(), retail_arrow, now=REFERENCE_NOW, mode="python")


class TestDuckDBTables:
    def test_count_in_a_duckdb_file_equals_python(
        self, tmp_path: Path, retail_arrow: pyarrow.Table, python_counts: Any
    ) -> None:
        """count_tags over a table in a duckdb:/// file: Python's counts and unknowns, most tags pushed."""
        url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            raw: Any = connection.connection.driver_connection
            raw.register("frame", retail_arrow)
            connection.exec_driver_sql("CREATE TABLE customers AS SELECT * FROM frame")
        engine.dispose()
        report = count_tags(load_catalog(), url, "customers", now=REFERENCE_NOW)
        assert report.rows == 300
        assert dict(report.counts) == dict(python_counts.counts)
        assert dict(report.unknown) == dict(python_counts.unknown)
        assert set(report.where.values()) == {"database"}

    def test_missing_table(self, tmp_path: Path) -> None:
        """A table the DuckDB database does not hold is a SourceError naming it."""
        with pytest.raises(SourceError, match="no table 'customers'"):
            count_tags(load_catalog(), f"duckdb:///{tmp_path / 'empty.duckdb'}", "customers")

    def test_time_zone_aware_columns_compare_as_utc(self) -> None:
        """A TIMESTAMPTZ column is compared as UTC, whatever the session's time zone."""
        catalog = Catalog([{"key": "early", "rule": "seen < d'2026-01-01T10:00:00Z'"}], {"seen": "datetime"})
        engine = sa.create_engine("duckdb:///:memory:")
        with engine.connect() as connection:
            connection.exec_driver_sql("SET TimeZone = 'Asia/Tokyo'")
            connection.exec_driver_sql("CREATE TABLE t (seen TIMESTAMPTZ)")
            connection.exec_driver_sql(
                "INSERT INTO t VALUES ('2026-01-01 09:59:59+00'), ('2026-01-01 19:00:00+09'), "
                "('2026-01-01 10:00:01+00')"
            )
            report = count_tags(catalog, connection, "t", mode="database")
        engine.dispose()
        assert report.counts["early"] == 1

    def test_regex_pushed_only_where_re2_finds_the_same(self) -> None:
        """RE2 has no lookahead: Python's ``$`` (end or before a final newline) stays in Python."""
        assert translate_regex("ab+c", "re2", anchored=True) == "^(?:a(?:b)+c)"
        assert translate_regex("ab$", "re2", anchored=False) is None
        table = sa.table("t", sa.column("name", sa.String()))
        pushed = Catalog([{"key": "m", "rule": "name =~ 'ab+'"}], {"name": "str"})
        kept = Catalog([{"key": "m", "rule": "name =~ 'ab$'"}], {"name": "str"})
        assert dict(tag_query(pushed, table, dialect="duckdb").tag_columns) == {"m": "t_0"}
        with pytest.raises(NotPushable, match="duckdb"):
            tag_query(kept, table, dialect="duckdb", mode="database")

    @pytest.mark.parametrize("column_type", ["JSON", "VARCHAR"])
    def test_json_texts_read_as_python_reads_them(self, column_type: str) -> None:
        """Texts DuckDB's JSON reader takes and Python's refuses (a trailing comma, nan, Inf, -NaN) are
        refused dicts; a key written twice keeps its last value, valid or not, as in Python."""
        texts = [
            '{"a": 1,}',
            '{"a": nan}',
            '{"a": Inf}',
            '{"a": -NaN}',
            '{"a": "x,}", "b": 2}',
            '{"a": "x", "a": 5}',
            '{"a": 5, "a": "x"}',
            '{"a": 1e2, "b": 3.0}',
            '{"a": 9223372036854775807}',
            '{"a": 9223372036854775808}',
            '{"a": -9223372036854775808}',
            '{"a": NaN}',
            "[1]",
            "null",
            "not json",
            None,
        ]
        rules = {
            "lookup": "(views&['a'] ?? 0) > 3",
            "count": "[v for v in views.values if v > 1].length > 0",
        }
        catalog = Catalog(
            [{"key": key, "rule": rule} for key, rule in rules.items()], {"views": "dict[str, int]"}
        )
        engine = sa.create_engine("duckdb:///:memory:")
        with engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE TABLE t (id INTEGER, views {column_type})")
            for index, text in enumerate(texts):
                if column_type == "JSON" and text == "not json":
                    continue  # a JSON column refuses it on insert
                connection.execute(
                    sa.text("INSERT INTO t VALUES (:id, :views)"), {"id": index, "views": text}
                )
            table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer()), sa.Column("views", sa.JSON()))
            query = tag_query(catalog, table, dialect="duckdb", id_columns=["id"], mode="database")
            sql = {row[0]: tuple(row[1:]) for row in connection.execute(query.select)}
        engine.dispose()
        evaluator = Evaluator(catalog)
        for index, text in enumerate(texts):
            if index not in sql:
                continue
            try:
                value = None if text is None else json.loads(text)
            except ValueError:
                value = text
            result = evaluator.evaluate({"views": value})
            expected = tuple(None if key in result.errors else int(key in result.tags) for key in rules)
            assert sql[index] == expected, text

    def test_wide_integer_sums_compare_exactly(self) -> None:
        """A sum beyond 53 bits compared with a number: DuckDB compares HUGEINT with a bound decimal
        as doubles, so the threshold is bound as a HUGEINT (found by the long parity profile)."""
        rule = "(4 + (f0 == 100000 ? 30000 : f0)) in [1152921504606846976, 1e300, 10]"
        catalog = Catalog(
            [{"key": "t", "rule": rule}, {"key": "u", "rule": "f0 + 4 == 1152921504606846980"}], {"f0": "int"}
        )
        engine = sa.create_engine("duckdb:///:memory:")
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE t (f0 BIGINT)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1152921504606846976), (1152921504606846972)")
            report = count_tags(catalog, connection, "t", mode="database")
        engine.dispose()
        assert dict(report.counts) == {"t": 1, "u": 1}


class TestNotAStore:
    def test_sqlstore_refuses_duckdb(self, tmp_path: Path) -> None:
        """SQLStore on a duckdb URL is a StoreError saying DuckDB is not a tag store."""
        with pytest.raises(StoreError, match="DuckDB is not a tag store"):
            SQLStore(f"duckdb:///{tmp_path / 'tags.duckdb'}")


class TestDataFrames:
    @pytest.mark.parametrize("kind", ["pyarrow", "pandas", "polars"])
    def test_count_over_a_frame_equals_python(
        self, kind: str, retail_arrow: pyarrow.Table, python_counts: Any
    ) -> None:
        """A pandas or Polars DataFrame or a pyarrow Table is counted by DuckDB with Python's results."""
        frame: Any = {
            "pyarrow": retail_arrow,
            "pandas": retail_arrow.to_pandas(),
            "polars": polars.from_arrow(retail_arrow),
        }[kind]
        report = count_tags(load_catalog(), frame, now=REFERENCE_NOW)
        assert dict(report.counts) == dict(python_counts.counts)
        assert report.where["vip"] == "database"

    @pytest.mark.parametrize("kind", ["pyarrow", "pandas", "polars"])
    def test_tag_query_over_a_frame_gives_python_states(self, kind: str, retail_arrow: pyarrow.Table) -> None:
        """tag_query over a DataFrame or pyarrow Table compiles for DuckDB; to_arrow runs it over the
        frame and gives each row's states as the Evaluator does."""
        frame: Any = {
            "pyarrow": retail_arrow,
            "pandas": retail_arrow.to_pandas(),
            "polars": polars.from_arrow(retail_arrow),
        }[kind]
        catalog = load_catalog()
        query = tag_query(catalog, frame, now=REFERENCE_NOW, id_columns=["id"])
        states = {row["id"]: row for row in query.to_arrow().to_pylist()}
        evaluator = Evaluator(catalog)
        for row in _retail_rows(300):
            snapshot = {
                **row,
                **{name: json.loads(row[name]) for name in ("category_spend_365d", "category_views_30d")},
            }
            result = evaluator.evaluate(snapshot, now=REFERENCE_NOW)
            for key, label in query.tag_columns.items():
                expected = None if key in result.errors else int(key in result.tags)
                assert states[row["id"]][label] == expected, (key, row["id"])

    @pytest.mark.parametrize("kind", ["pyarrow", "pandas", "polars"])
    def test_evaluate_over_a_frame_gives_each_row_in_order(
        self, kind: str, retail_arrow: pyarrow.Table
    ) -> None:
        """tagrules.duckdb.evaluate over a DataFrame or pyarrow Table yields each row's id and its
        Evaluation, in the frame's order, as the Evaluator gives it (valid_until included)."""
        from tagrules.duckdb import evaluate

        frame: Any = {
            "pyarrow": retail_arrow,
            # numpy-backed pandas holds an int column with nulls as floats, refused for an int field
            "pandas": retail_arrow.to_pandas(types_mapper=pandas.ArrowDtype),
            "polars": polars.from_arrow(retail_arrow),
        }[kind]
        catalog = load_catalog()
        found = list(evaluate(catalog, frame, now=REFERENCE_NOW, valid_until=True))
        rows = _retail_rows(300)
        assert [identifier for identifier, _ in found] == [row["id"] for row in rows]
        evaluator = Evaluator(catalog)
        for (_, result), row in zip(found, rows, strict=True):
            snapshot = {
                **row,
                **{name: json.loads(row[name]) for name in ("category_spend_365d", "category_views_30d")},
            }
            expected = evaluator.evaluate(snapshot, now=REFERENCE_NOW, valid_until=True)
            assert (result.tags, dict(result.errors), result.valid_until) == (
                expected.tags,
                dict(expected.errors),
                expected.valid_until,
            )

    def test_evaluate_reports_or_refuses_rows_the_schema_refuses(self) -> None:
        """A row without an id is a SourceError naming its row; with ``invalid`` it is handed over and
        skipped. A missing id column is refused by name."""
        from tagrules.duckdb import evaluate

        catalog = Catalog([{"key": "young", "rule": "age < 30"}], {"age": "int"})
        frame = pyarrow.table({"id": ["a", None, "c"], "age": [20, 25, 40]})
        with pytest.raises(SourceError, match="row 2: the 'id' column must hold a string or an integer"):
            list(evaluate(catalog, frame))
        skipped: list[tuple[int, str]] = []
        found = [
            (identifier, sorted(result.tags))
            for identifier, result in evaluate(catalog, frame, invalid=lambda n, p: skipped.append((n, p)))
        ]
        assert found == [("a", ["young"]), ("c", [])]
        assert [number for number, _ in skipped] == [2]
        with pytest.raises(SourceError, match="no column 'customer'"):
            list(evaluate(catalog, frame, id_column="customer"))

    def test_to_arrow_of_a_database_query_is_refused(self) -> None:
        """A query made for a database table has no frame to run over: to_arrow says so."""
        catalog = Catalog([{"key": "big", "rule": "spend >= 100"}], {"spend": "float"})
        table = sa.table("customers", sa.column("spend", sa.Float()))
        with pytest.raises(ValueError, match="DataFrame"):
            tag_query(catalog, table, dialect="duckdb").to_arrow()

    def test_a_frame_missing_a_column(self) -> None:
        """A rule reading a field the DataFrame has no column for is a SourceError naming it."""
        catalog = Catalog([{"key": "big", "rule": "spend >= 100"}], {"spend": "float"})
        with pytest.raises(SourceError, match="'spend'"):
            count_tags(catalog, pandas.DataFrame({"other": [1.0]}))


def _tagrules(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagrules.cli", *arguments], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, retail_arrow: pyarrow.Table) -> Path:
    folder = tmp_path_factory.mktemp("files")
    pyarrow.parquet.write_table(retail_arrow, folder / "customers.parquet")
    (folder / "parts").mkdir()
    pyarrow.parquet.write_table(retail_arrow.slice(0, 100), folder / "parts" / "a.parquet")
    pyarrow.parquet.write_table(retail_arrow.slice(100), folder / "parts" / "b.parquet")
    pyarrow.csv.write_csv(retail_arrow, folder / "customers.csv")
    with open(folder / "customers.jsonl", "w", encoding="utf-8") as out:
        for row in retail_arrow.to_pylist():
            out.write(json.dumps(row, default=lambda value: value.isoformat()) + "\n")
    return folder


class TestCountInput:
    @pytest.mark.parametrize(
        "name", ["customers.parquet", "parts", "parts/*.parquet", "customers.csv", "customers.jsonl"]
    )
    def test_every_kind_of_file_counts_as_python(self, files: Path, name: str, python_counts: Any) -> None:
        """Parquet (a file, a directory, a glob), CSV, JSON Lines: DuckDB's counts equal Python's."""
        now = REFERENCE_NOW.isoformat()
        result = _tagrules("count", "retail", "--input", str(files / name), "--now", now, "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == dict(python_counts.counts)

    def test_engine_python_gives_the_same_counts(self, files: Path, python_counts: Any) -> None:
        """``--engine python`` streams the file's rows through the evaluator: the same counts."""
        now = REFERENCE_NOW.isoformat()
        path = str(files / "customers.parquet")
        result = _tagrules("count", "retail", "--input", path, "--now", now, "--json", "--engine", "python")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == dict(python_counts.counts)

    def test_wrong_column_type_is_refused_before_counting(self, tmp_path: Path) -> None:
        """A column whose type cannot hold its field is an error naming the file, column and field."""
        path = tmp_path / "bad.parquet"
        pyarrow.parquet.write_table(pyarrow.table({"id": ["a"], "age": ["old"]}), path)
        result = _tagrules("count", "retail", "--input", str(path))
        assert result.returncode == 1
        assert "the column 'age' is VARCHAR, not an integer column for the field 'age'" in result.stderr
        assert "Traceback" not in result.stderr

    def test_missing_column_is_refused(self, tmp_path: Path) -> None:
        """A field the rules read with no column in the file is an error naming both."""
        path = tmp_path / "thin.parquet"
        pyarrow.parquet.write_table(pyarrow.table({"id": ["a"], "age": [30]}), path)
        result = _tagrules("count", "retail", "--input", str(path))
        assert result.returncode == 1
        assert f"{path}: no column" in result.stderr

    def test_db_and_input_are_exclusive(self, files: Path) -> None:
        """``--input`` and ``--db`` name two sources: the command refuses both at once."""
        path = str(files / "customers.parquet")
        result = _tagrules("count", "retail", "--input", path, "--db", "sqlite://", "--table", "t")
        assert result.returncode == 2
        assert "not allowed with argument" in result.stderr


class TestWindows:
    @pytest.mark.parametrize("database", ["duckdb", "sqlite", "postgresql", "mysql"])
    @pytest.mark.parametrize(
        "rule",
        [
            "$now - seen > t'P180D'",
            "$now - seen >= t'P180D'",
            "t'P7D' < $now - seen",
            "seen - $now <= t'PT1H'",
            "$now - seen == t'P1D'",
        ],
    )
    def test_window_is_the_column_against_a_bound_constant(
        self, request: pytest.FixtureRequest, tmp_path: Path, database: str, rule: str
    ) -> None:
        """``$now - F op D`` compiles to ``F op' :cutoff`` (no arithmetic per row) on every dialect, with
        Python's answers on the boundary, a microsecond either side, and a null in the non-nullable field."""
        url: Any = {
            "duckdb": f"duckdb:///{tmp_path / 'w.duckdb'}",
            "sqlite": f"sqlite:///{tmp_path / 'w.db'}",
        }.get(database) or request.getfixturevalue(
            {"postgresql": "postgres_url", "mysql": "mysql_url"}[database]
        )
        catalog = Catalog([{"key": "w", "rule": rule}], {"seen": "datetime"})
        now = datetime.datetime(2026, 6, 1, tzinfo=UTC)
        edges = [now - datetime.timedelta(days=180), now - datetime.timedelta(days=7), now]
        edges += [now - datetime.timedelta(days=1), now + datetime.timedelta(hours=1)]
        tick = datetime.timedelta(microseconds=1)
        values: list[datetime.datetime | None] = [
            edge + shift for edge in edges for shift in (-tick, 0 * tick, tick)
        ]
        values.append(None)
        engine = sa.create_engine(url)
        table = snapshot_table(f"window_{abs(hash(rule))}", catalog.schema, engine.dialect.name)
        try:
            with engine.begin() as connection:
                fill(connection, table, catalog.schema, [{"seen": value} for value in values])
                query = tag_query(
                    catalog, table, dialect=engine.dialect.name, now=now, id_columns=["id"], mode="database"
                )
                sql = {row[0]: row[1] for row in connection.execute(query.select)}
                compiled = str(query.select.compile(dialect=engine.dialect))
                table.drop(connection)
        finally:
            engine.dispose()
        assert re.search(rf"{table.name}\.seen [<>=]", compiled), compiled
        evaluator = Evaluator(catalog)
        for index, value in enumerate(values):
            result = evaluator.evaluate({"seen": value}, now=now)
            expected = None if "w" in result.errors else int("w" in result.tags)
            assert (None if sql[str(index)] is None else int(sql[str(index)])) == expected, (rule, value)

    @pytest.mark.parametrize(
        "rule", ["$now - seen > t'P180D'", "(maybe ?? other) < $now - t'P7D'", "seen >= $now"]
    )
    def test_a_timestamptz_window_compares_the_column_itself(self, rule: str) -> None:
        """Over TIMESTAMPTZ columns a window compares the column (or a ``??`` of columns) with a bound
        instant, without converting each row to UTC, with Python's answers at the edges."""
        catalog = Catalog(
            [{"key": "w", "rule": rule}],
            {"seen": "datetime", "maybe": "datetime | None", "other": "datetime"},
        )
        now = datetime.datetime(2026, 6, 1, tzinfo=UTC)
        tick = datetime.timedelta(microseconds=1)
        edges = [now - datetime.timedelta(days=180), now - datetime.timedelta(days=7), now]
        values: list[datetime.datetime | None] = [
            edge + shift for edge in edges for shift in (-tick, 0 * tick, tick)
        ]
        values.append(None)
        engine = sa.create_engine("duckdb:///:memory:")
        with engine.connect() as connection:
            connection.exec_driver_sql("SET TimeZone = 'America/New_York'")
            connection.exec_driver_sql(
                "CREATE TABLE t (id INTEGER, seen TIMESTAMPTZ, maybe TIMESTAMPTZ, other TIMESTAMPTZ)"
            )
            for index, value in enumerate(values):
                connection.execute(
                    sa.text("INSERT INTO t VALUES (:id, :seen, :seen, :other)"),
                    {"id": index, "seen": value, "other": now - datetime.timedelta(days=8)},
                )
            query = tag_query(
                catalog,
                sa.Table(
                    "t",
                    sa.MetaData(),
                    sa.Column("id", sa.Integer()),
                    sa.Column("seen", sa.DateTime(timezone=True)),
                    sa.Column("maybe", sa.DateTime(timezone=True)),
                    sa.Column("other", sa.DateTime(timezone=True)),
                ),
                dialect="duckdb",
                now=now,
                id_columns=["id"],
                mode="database",
            )
            compiled = str(query.select.compile(dialect=engine.dialect))
            sql = {row[0]: row[1] for row in connection.execute(query.select)}
        engine.dispose()
        assert re.search(r"(t\.seen|coalesce\(t\.maybe, t\.other\)) [<>=]+ CAST", compiled), compiled
        evaluator = Evaluator(catalog)
        for index, value in enumerate(values):
            snapshot = {"seen": value, "maybe": value, "other": now - datetime.timedelta(days=8)}
            result = evaluator.evaluate(snapshot, now=now)
            assert sql[index] == (None if "w" in result.errors else int("w" in result.tags)), (rule, value)


class TestEvaluateAndSampleFiles:
    @pytest.fixture(scope="class")
    @classmethod
    def samples(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        folder = tmp_path_factory.mktemp("samples")
        for name in ("s.jsonl", "s.parquet"):
            done = _tagrules("sample", "--count", "40", "--seed", "5", "--output", str(folder / name))
            assert done.returncode == 0, done.stderr
        return folder

    def test_sample_parquet_holds_the_same_customers(self, samples: Path) -> None:
        """``sample --output FILE.parquet`` writes the customers JSON Lines would: same ids, same tags."""
        table = pyarrow.parquet.read_table(samples / "s.parquet")
        lines = (samples / "s.jsonl").read_text(encoding="utf-8").splitlines()
        assert table.column("id").to_pylist() == [json.loads(line)["id"] for line in lines]
        assert str(table.schema.field("registered_at").type) == "timestamp[us, tz=UTC]"

    def test_evaluate_parquet_prints_what_json_lines_gives(self, samples: Path) -> None:
        """``evaluate`` of the Parquet sample prints byte for byte the JSON Lines sample's output."""
        now = "2026-06-01T00:00:00Z"
        from_lines = _tagrules("evaluate", "retail", str(samples / "s.jsonl"), "--now", now)
        from_parquet = _tagrules("evaluate", "retail", str(samples / "s.parquet"), "--now", now)
        assert from_lines.returncode == from_parquet.returncode == 0, from_parquet.stderr
        assert from_parquet.stdout == from_lines.stdout
        assert len(from_lines.stdout.splitlines()) == 40

    def test_evaluate_writes_parquet_results(self, samples: Path, tmp_path: Path) -> None:
        """``--output OUT.parquet``: columns id, tags (list of strings), errors (map); a row per snapshot."""
        now = "2026-06-01T00:00:00Z"
        out = tmp_path / "tags.parquet"
        done = _tagrules("evaluate", "retail", str(samples / "s.jsonl"), "--now", now, "--output", str(out))
        assert done.returncode == 0, done.stderr
        lines = _tagrules("evaluate", "retail", str(samples / "s.jsonl"), "--now", now).stdout.splitlines()
        table = pyarrow.parquet.read_table(out)
        assert table.column_names == ["id", "tags", "errors"]
        expected = [json.loads(line) for line in lines]
        assert table.column("id").to_pylist() == [result["id"] for result in expected]
        assert table.column("tags").to_pylist() == [result["tags"] for result in expected]

    def test_a_bad_row_is_reported_by_number(self, tmp_path: Path) -> None:
        """A Parquet row without an id is reported by its row number and skipped; exit status 1."""
        path = tmp_path / "ids.parquet"
        pyarrow.parquet.write_table(pyarrow.table({"id": ["a", None]}), path)
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text("schema: {}\ntags:\n  - {key: all, rule: 'true'}\n", encoding="utf-8")
        done = _tagrules("evaluate", str(catalog), str(path))
        assert done.returncode == 1
        assert f"{path}: row 2: the 'id' column must hold a string or an integer; row skipped" in done.stderr
        assert done.stdout == '{"id": "a", "tags": ["all"]}\n'


class TestRunFromDuckDB:
    def test_run_retags_a_duckdb_table_into_a_store(
        self, tmp_path: Path, retail_arrow: pyarrow.Table
    ) -> None:
        """``run --db duckdb:///... --table`` computes the tags in DuckDB and stores them elsewhere;
        ``--store duckdb:///...`` is refused with a message."""
        database = tmp_path / "crm.duckdb"
        engine = sa.create_engine(f"duckdb:///{database}")
        with engine.begin() as connection:
            raw: Any = connection.connection.driver_connection
            raw.register("frame", retail_arrow)
            connection.exec_driver_sql("CREATE TABLE customers AS SELECT * FROM frame")
        engine.dispose()
        now = REFERENCE_NOW.isoformat()
        store = f"sqlite:///{tmp_path / 'tags.db'}"
        source = ["--db", f"duckdb:///{database}", "--table", "customers", "--now", now]
        done = _tagrules("run", "retail", *source, "--store", store)
        assert done.returncode == 0, done.stderr
        assert "300 customers" in done.stdout + done.stderr
        vips = _tagrules("members", "--store", store, "--tag", "vip").stdout.split()
        expected = count_tags(load_catalog(), retail_arrow, now=REFERENCE_NOW).counts["vip"]
        assert len(vips) == expected
        refused = _tagrules("run", "retail", *source, "--store", f"duckdb:///{tmp_path / 'tags.duckdb'}")
        assert refused.returncode == 1
        assert "DuckDB is not a tag store" in refused.stderr


_KEYS = st.sampled_from(["a", "b", "", "a\u00e9", "\U0001f600"])
_NUMBER_TEXTS = st.sampled_from(
    [
        "0",
        "-0",
        "7",
        "-3",
        "12",
        "1.5",
        "2.0",
        "1e2",
        "-1E-2",
        "10.0",
        "1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        "nan",
        "inf",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "123456789012345678",
        "1234567890123456789",
        "18446744073709551616",
        "0.1e1",
    ]
)
_OTHER_TEXTS = st.sampled_from(
    ['"x"', '"10"', '"a\\u00e9\\n"', '"\\ud83d\\ude00"', '"\\ud800"', "true", "false", "null", "[1]", "{}"]
)
_SPACES = st.sampled_from(["", " ", "\n", "\t ", "\r"])


@st.composite
def dict_texts(draw: st.DrawFn) -> str | None:
    """JSON texts of dicts as files hold them: spacing, escapes, keys written twice, numbers spelled
    every way, members of other types, and now and then text that is not JSON at all."""
    if draw(st.integers(0, 15)) == 0:
        return draw(
            st.sampled_from([None, "null", "[1, 2]", "not json", '{"a": 1,}', "{", ' {"a": 1} ', "\ufeff{}"])
        )
    members = []
    for _ in range(draw(st.integers(0, 4))):
        key = json.dumps(draw(_KEYS), ensure_ascii=draw(st.booleans()))
        value = draw(st.one_of(_NUMBER_TEXTS, _OTHER_TEXTS))
        space = draw(_SPACES)
        members.append(f"{space}{key}{space}:{draw(_SPACES)}{value}{space}")
    return draw(_SPACES) + "{" + ",".join(members) + "}" + draw(_SPACES)


def _as_python_reads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


_ITEM_RULES = {
    "int": [
        "(d&['a'] ?? 0) > 3",
        "d['b'] == 7",
        "[v for v in d.values if v > 1].length > 0",
        "(d&['']) == null",
    ],
    "float": ["(d&['a'] ?? 0) >= 1.5", "(d['b'] ?? 1) < 0.5", "(d&['a\u00e9'] ?? -1) == 100"],
    "str": ["(d&['a'] ?? '') == 'x'", "d['b'] != '10'", "(d&['\U0001f600'] ?? 'z') > 'a'"],
    "bool": ["d&['a'] ?? false", "not d['b']"],
}


class TestDictsReadOncePerRow:
    @settings(max_examples=1000 if LONG else 40, deadline=None)
    @given(
        item=st.sampled_from(["int", "float", "str", "bool", "int | None", "float | None", "str | None"]),
        texts=st.lists(dict_texts(), min_size=1, max_size=12),
        column_type=st.sampled_from(["JSON", "VARCHAR"]),
    )
    def test_json_text_dicts_equal_python(self, item: str, texts: list[str | None], column_type: str) -> None:
        """Every JSON dict text, in the plain shape read by json_transform or any other read member by
        member, gives each lookup and comprehension the state Python gives it."""
        kind = item.split(" ")[0]
        rules = _ITEM_RULES[kind]
        catalog = Catalog(
            [{"key": f"r{index}", "rule": rule} for index, rule in enumerate(rules)],
            {"d": f"dict[str, {item}]"},
        )
        engine = sa.create_engine("duckdb:///:memory:")
        with engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE TABLE t (id INTEGER, d {column_type})")
            kept = []
            for index, text in enumerate(texts):
                valid = connection.execute(sa.text("SELECT json_valid(:d)"), {"d": text}).scalar()
                if column_type == "JSON" and valid is False:
                    continue  # a JSON column refuses text that is not JSON
                connection.execute(sa.text("INSERT INTO t VALUES (:id, :d)"), {"id": index, "d": text})
                kept.append(index)
            table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer()), sa.Column("d", sa.JSON()))
            query = tag_query(catalog, table, dialect="duckdb", id_columns=["id"])
            assert query.tag_columns
            pushed = list(query.tag_columns)
            sql = {row[0]: tuple(row[1:]) for row in connection.execute(query.select)}
        engine.dispose()
        evaluator = Evaluator(catalog)
        for index in kept:
            text = texts[index]
            if text is not None and "\\ud800" in text:
                continue  # an escaped lone surrogate: DuckDB refuses the text (the module says so)
            result = evaluator.evaluate({"d": _as_python_reads(text)})
            expected = tuple(None if key in result.errors else int(key in result.tags) for key in pushed)
            assert sql[index] == expected, (item, text)

    @settings(max_examples=500 if LONG else 30, deadline=None)
    @given(
        data=st.data(),
        item=st.sampled_from(["int", "float", "str", "bool", "int | None", "float | None"]),
    )
    def test_map_columns_equal_python(self, data: st.DataObject, item: str) -> None:
        """A dict held in a MAP column (a Parquet or Arrow map) is read natively, with Python's states:
        NULL members, NaN and -2**63 refused where the schema refuses them."""
        kind = item.split(" ")[0]
        values: Any = {
            "int": st.one_of(st.integers(-5, 20), st.sampled_from([-(2**63), 2**63 - 1])),
            "float": st.one_of(st.floats(allow_nan=True), st.sampled_from([1.5, 0.0, -0.0, 100.0])),
            "str": st.sampled_from(["x", "10", "", "\U0001f600"]),
            "bool": st.booleans(),
        }[kind]
        dicts = data.draw(
            st.lists(
                st.one_of(st.none(), st.dictionaries(_KEYS, st.one_of(values, st.none()), max_size=4)),
                min_size=1,
                max_size=10,
            )
        )
        arrow_type = {
            "int": pyarrow.int64(),
            "float": pyarrow.float64(),
            "str": pyarrow.string(),
            "bool": pyarrow.bool_(),
        }[kind]
        frame = pyarrow.table(
            {
                "id": list(range(len(dicts))),
                "d": pyarrow.array(
                    [None if value is None else list(value.items()) for value in dicts],
                    type=pyarrow.map_(pyarrow.string(), arrow_type),
                ),
            }
        )
        catalog = Catalog(
            [{"key": f"r{index}", "rule": rule} for index, rule in enumerate(_ITEM_RULES[kind])],
            {"d": f"dict[str, {item}]"},
        )
        pushed = count_tags(catalog, frame)
        python = count_tags(catalog, frame, mode="python")
        assert "database" in pushed.where.values()
        assert dict(pushed.counts) == dict(python.counts)
        assert dict(pushed.unknown) == dict(python.unknown)
