"""Snapshot tables for the push-down tests: a table whose columns hold a schema's fields, filled."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection

from tagrules.schema import FieldType, Schema

UTC = datetime.timezone.utc


def column_type(field_type: FieldType, dialect: str, *, aware: bool = False, jsonb: bool = True) -> Any:
    """The column type holding a field of ``field_type`` on ``dialect`` (PostgreSQL dicts in ``jsonb``
    columns, or ``json`` ones)."""
    kind = field_type.kind
    if kind == "int" or (kind == "enum" and field_type.is_number):
        return sa.BigInteger()
    if kind == "float":
        return sa.Float(53)
    if kind in ("str", "enum"):
        return sa.Text() if dialect != "mysql" else mysql.VARCHAR(255, charset="utf8mb4")
    if kind == "bool":
        return sa.Boolean()
    if kind == "datetime":
        if dialect == "mysql":
            return mysql.DATETIME(fsp=6)
        if dialect in ("postgresql", "duckdb"):
            return postgresql.TIMESTAMP(timezone=aware)
        return sa.DateTime()
    if kind == "date":
        return sa.Date()
    if kind == "timedelta":
        return sa.Interval()
    if kind == "dict" and dialect == "postgresql":
        return postgresql.JSONB() if jsonb else postgresql.JSON()
    return sa.JSON()


def snapshot_table(
    name: str,
    schema: Schema,
    dialect: str,
    *,
    id_column: str | None = "id",
    aware: bool = False,
    jsonb: bool = True,
) -> sa.Table:
    """A table for snapshots of ``schema`` (plus an integer ``id`` primary key)."""
    columns: list[sa.Column[Any]] = []
    if id_column is not None and id_column not in schema.fields:
        columns.append(
            sa.Column(id_column, sa.String(64) if dialect == "mysql" else sa.Text(), primary_key=True)
        )
    for field_name, field_type in schema.fields.items():
        columns.append(
            sa.Column(field_name, column_type(field_type, dialect, aware=aware, jsonb=jsonb), nullable=True)
        )
    if dialect == "mysql":
        # MariaDB's default collations compare case-insensitively: the tests keep one
        return sa.Table(
            name, sa.MetaData(), *columns, mysql_charset="utf8mb4", mysql_collate="utf8mb4_general_ci"
        )
    return sa.Table(name, sa.MetaData(), *columns)


def stored(value: Any, field_type: FieldType, dialect: str, aware: bool = False) -> Any:
    """A snapshot value as it goes into its column."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None and not aware:
        return value.astimezone(UTC).replace(tzinfo=None)
    if hasattr(value, "value") and field_type.kind == "enum":
        return value.value
    return value


def fill(
    connection: Connection,
    table: sa.Table,
    schema: Schema,
    snapshots: Iterable[Mapping[str, Any]],
    *,
    aware: bool = False,
) -> None:
    """Create ``table`` and insert ``snapshots`` (ids are their positions unless they hold one)."""
    dialect = connection.dialect.name
    table.create(connection)
    rows = []
    for index, snapshot in enumerate(snapshots):
        row: dict[str, Any] = dict.fromkeys(schema.fields)
        for name, value in snapshot.items():
            if name in schema.fields:
                row[name] = stored(value, schema.fields[name], dialect, aware)
        if "id" in table.c and "id" not in schema.fields:
            row["id"] = str(snapshot.get("id", index))
        rows.append(row)
    if rows:
        connection.execute(table.insert(), rows)
