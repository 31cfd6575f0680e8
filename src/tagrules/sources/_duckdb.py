"""Rows held by DuckDB: its tables, and files and DataFrames it reads in process.

A table is described from ``information_schema`` (``duckdb-engine``'s reflection reads PostgreSQL
catalogs DuckDB does not have); a file (Parquet, a directory or glob of Parquet files, CSV, JSON
Lines) or a DataFrame (pandas, Polars) or pyarrow Table becomes a view named ``source`` in an
in-memory database, which DuckDB scans where it lies: no row is copied through Python.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tagrules.catalog import Catalog
from tagrules.errors import SourceError
from tagrules.schema import FieldType
from tagrules.sql._duckdb import DuckDBMap, map_value_type

__all__ = ["check_columns", "duckdb_table", "file_source", "frame_source", "is_frame", "parquet_reader"]

#: the name of the view a file or a DataFrame is read through
SOURCE_VIEW = "source"

_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER"}
_FLOATS = {"FLOAT", "REAL", "DOUBLE"}
_TIMESTAMPS = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATETIME"}


def _sql_type(name: str) -> Any:
    """A DuckDB column type (as ``information_schema`` spells it) as a SQLAlchemy type."""
    name = name.strip().upper()
    value_type = map_value_type(name)
    if value_type is not None:
        return DuckDBMap(value_type)
    if name.endswith("[]"):
        return sa.ARRAY(_sql_type(name[:-2]))
    if name in _INTEGERS:
        return sa.BigInteger()
    if name in _FLOATS:
        return sa.Float(53)
    if name in ("VARCHAR", "TEXT", "STRING") or name.startswith("VARCHAR("):
        return sa.String()
    if name == "BOOLEAN":
        return sa.Boolean()
    if name == "DATE":
        return sa.Date()
    if name in _TIMESTAMPS:
        return sa.DateTime()
    if name in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return sa.DateTime(timezone=True)
    if name.startswith(("DECIMAL", "NUMERIC")):
        return sa.Numeric()
    if name == "JSON":
        return sa.JSON()
    return sa.types.NullType()


def duckdb_table(connection: Connection, name: str) -> sa.Table:
    """The DuckDB table or view ``name`` (``schema.table`` allowed), described from its columns.

    Raises:
        SourceError: there is no such table.
    """
    schema, _, table_name = name.rpartition(".")
    statement = sa.text(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = :name"
        + (" AND table_schema = :schema" if schema else "")
        + " ORDER BY ordinal_position"
    )
    rows = connection.execute(statement, {"name": table_name, "schema": schema}).all()
    if not rows:
        raise SourceError(f"no table {name!r} in the database")
    columns = [
        sa.Column(column, _sql_type(type_name), info={"duckdb_type": type_name}) for column, type_name in rows
    ]
    return sa.Table(table_name, sa.MetaData(), *columns, schema=schema or None)


def is_frame(value: object) -> bool:
    """Whether ``value`` is a pandas or Polars DataFrame or a pyarrow Table (none of them imported)."""
    kind = type(value)
    package = kind.__module__.partition(".")[0]
    return (package, kind.__name__) in {
        ("pandas", "DataFrame"),
        ("polars", "DataFrame"),
        ("pyarrow", "Table"),
    }


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _reader(path: str) -> str:
    """The DuckDB table function reading ``path``: Parquet (a file, a directory, a glob), CSV, JSON Lines."""
    location = Path(path)
    if location.is_dir():
        return f"read_parquet({_literal(str(location / '**' / '*.parquet'))})"
    lowered = path.lower()
    if glob.has_magic(path):
        if not glob.glob(path, recursive=True):
            raise SourceError(f"{path}: no file matches")
    elif not location.is_file():
        raise SourceError(f"{path}: no such file or directory")
    if lowered.endswith(".parquet"):
        return f"read_parquet({_literal(path)})"
    if lowered.endswith(".csv"):
        return f"read_csv({_literal(path)}, header = true)"
    if lowered.endswith((".jsonl", ".ndjson")):
        return f"read_json({_literal(path)}, format = 'newline_delimited')"
    raise SourceError(
        f"{path}: not a file tagrules reads (.parquet, a directory of them, .csv, .jsonl or .ndjson)"
    )


def parquet_reader(path: str) -> str:
    """The DuckDB table function reading the Parquet file(s) at ``path``.

    Raises:
        SourceError: no such file, or not a Parquet file.
    """
    reader = _reader(path)
    if not reader.startswith("read_parquet("):
        raise SourceError(f"{path}: not a Parquet file (.parquet, or a directory of them)")
    return reader


@contextmanager
def _in_memory() -> Iterator[Connection]:
    try:
        engine = sa.create_engine("duckdb:///:memory:")
    except (sa.exc.NoSuchModuleError, ImportError) as error:
        raise SourceError(f"DuckDB is not installed (install tagrules[duckdb]): {error}") from None
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def file_source(path: str) -> Iterator[tuple[Connection, sa.Table]]:
    """A connection to an in-memory DuckDB database and the view over the file(s) at ``path``.

    Raises:
        SourceError: no such file, a file of another kind, or one DuckDB cannot read.
    """
    reader = _reader(path)
    with _in_memory() as connection:
        try:
            connection.exec_driver_sql(f"CREATE VIEW {SOURCE_VIEW} AS SELECT * FROM {reader}")
        except sa.exc.DBAPIError as error:
            raise SourceError(f"{path}: cannot be read: {_first_line(error.orig)}") from None
        yield connection, duckdb_table(connection, SOURCE_VIEW)


@contextmanager
def frame_source(frame: Any) -> Iterator[tuple[Connection, sa.Table]]:
    """A connection to an in-memory DuckDB database and the view over ``frame`` (scanned in place)."""
    with _in_memory() as connection:
        raw: Any = connection.connection.driver_connection
        try:
            raw.register(SOURCE_VIEW, frame)
        except Exception as error:
            raise SourceError(f"DuckDB cannot read the {type(frame).__name__}: {error}") from None
        yield connection, duckdb_table(connection, SOURCE_VIEW)


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


#: field kind -> the SQLAlchemy column types that hold it, and how to say it
_HOLDERS: Mapping[str, tuple[tuple[type, ...], str]] = {
    "int": ((sa.Integer,), "an integer"),
    "float": ((sa.Float, sa.Integer, sa.Numeric), "a number"),
    "str": ((sa.String,), "a text"),
    "enum": ((sa.String, sa.Integer), "a text or integer"),
    "bool": ((sa.Boolean,), "a boolean"),
    "date": ((sa.Date, sa.DateTime), "a date"),
    "datetime": ((sa.DateTime, sa.Date), "a timestamp or date"),
    "list": ((sa.ARRAY, sa.JSON, sa.String), "a list"),
    "set": ((sa.ARRAY, sa.JSON, sa.String), "a list"),
    "dict": ((sa.JSON, sa.String, DuckDBMap), "a JSON or MAP"),
    "object": ((sa.JSON, sa.String), "a JSON"),
}


def check_columns(catalog: Catalog, table: sa.Table, where: str, columns: Mapping[str, str] | None) -> None:
    """Every field the catalog's rules read has a column of a type that holds it.

    Raises:
        SourceError: naming ``where``, the column and the field: missing, or of the wrong type.
    """
    mapping = dict(columns or {})
    needed = sorted({name for definition in catalog.active for name in catalog.rule(definition.key).fields})
    for name in needed:
        field_type: FieldType | None = catalog.schema.fields.get(name)
        if field_type is None:
            continue
        column_name = mapping.get(name, name)
        if column_name not in table.c:
            raise SourceError(f"{where}: no column {column_name!r} for the field {name!r} ({field_type})")
        holders = _HOLDERS.get(field_type.kind)
        column = table.c[column_name]
        if holders is not None and not isinstance(column.type, holders[0]):
            shown = column.info.get("duckdb_type", str(column.type))
            raise SourceError(
                f"{where}: the column {column_name!r} is {shown}, not {holders[1]} column for the field "
                f"{name!r} ({field_type})"
            )
