"""The SQL dialects rules compile to: each a :class:`~tagrules.rules.to_sql.RuleCompiler` whose hooks
say how the database compares strings by code point, reads datetimes as UTC, divides integers and
matches regular expressions; a dialect without its own class gets generic SQL (which pushes less).
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from tagrules.errors import NotPushable
from tagrules.rules._language import UTC
from tagrules.rules._sql_json import json_comprehension_length
from tagrules.rules.to_sql import Expression, RuleCompiler, _Sql
from tagrules.schema import FieldType

__all__ = ["MySQLRuleCompiler", "PostgreSQLRuleCompiler", "SQLiteRuleCompiler", "compiler_for"]


class _BinaryText(ColumnElement[Any]):
    """``CONVERT(x USING utf8mb4) COLLATE utf8mb4_nopad_bin``: MariaDB strings compared by code point,
    trailing spaces included, whatever the column's character set and collation."""

    inherit_cache = True
    type = sa.String()
    _traverse_internals = [("wrapped", InternalTraversal.dp_clauseelement)]

    def __init__(self, expression: Expression) -> None:
        self.wrapped = expression


@compiles(_BinaryText)
def _compile_binary_text(element: _BinaryText, compiler: Any, **kw: Any) -> str:
    inner = compiler.process(element.wrapped, **kw)
    return f"CONVERT({inner} USING utf8mb4) COLLATE utf8mb4_nopad_bin"


class PostgreSQLRuleCompiler(RuleCompiler):
    """PostgreSQL: ``COLLATE "C"`` for code point order, exact ``NUMERIC`` sums, POSIX regex."""

    dialect = "postgresql"
    TRANSFORMS = {**RuleCompiler.TRANSFORMS}

    def text(self, expression: Expression) -> Expression:
        return expression.collate("C")

    def float_problem(self, column: Expression) -> Expression | None:
        return column == sa.cast(sa.literal("NaN"), sa.Float(53))

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        if isinstance(sql_type, sa.DateTime) and sql_type.timezone:
            return sa.func.timezone("UTC", column)
        if not isinstance(sql_type, sa.DateTime):
            return sa.cast(column, sa.DateTime())
        return column

    def exact(self, expression: Expression) -> Expression:
        return sa.cast(expression, sa.Numeric())

    def divide(self, left: Expression, right: Expression) -> Expression:
        return sa.func.div(sa.cast(left, sa.Numeric()), right)

    def modulo(self, left: Expression, right: Expression) -> Expression:
        return sa.func.mod(sa.cast(left, sa.Numeric()), right)

    def regex_flavour(self) -> str:
        return "postgresql"

    def comprehension_length(self, node: Any) -> _Sql:
        count, refused = json_comprehension_length(node, self.fields, self.folded_constant)
        return _Sql("int", count, refused)

    def regex(self, subject: Expression, pattern: str) -> Expression:
        return subject.collate("C").op("~", is_comparison=True)(
            sa.bindparam(None, pattern, type_=sa.String())
        )


class MySQLRuleCompiler(RuleCompiler):
    """MariaDB and MySQL: a binary no-pad collation for strings, ``DECIMAL(65)`` sums, PCRE regex."""

    dialect = "mysql"
    native_boolean = False
    TRANSFORMS = {**RuleCompiler.TRANSFORMS}

    def text(self, expression: Expression) -> Expression:
        return _BinaryText(expression)

    def float_parameter(self, value: float) -> Expression | bool | None:
        if math.isinf(value):
            return None
        # the driver writes repr(value), read back exactly; against a DOUBLE it compares as a double
        return sa.bindparam(None, value, type_=sa.Float(53))

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        if isinstance(sql_type, sa.TIMESTAMP):
            raise NotPushable("a MariaDB TIMESTAMP column (its values depend on the session's time zone)")
        if not isinstance(sql_type, sa.DateTime):
            return sa.cast(column, sa.DateTime())
        return column

    def exact(self, expression: Expression) -> Expression:
        return sa.cast(expression, sa.Numeric(65, 0))

    def divide(self, left: Expression, right: Expression) -> Expression:
        return left.op("DIV")(right)

    def modulo(self, left: Expression, right: Expression) -> Expression:
        return sa.func.mod(left, right)

    def regex_flavour(self) -> str:
        return "pcre"

    def regex(self, subject: Expression, pattern: str) -> Expression:
        return self.text(subject).op("REGEXP", is_comparison=True)(
            sa.bindparam(None, pattern, type_=sa.String())
        )


class SQLiteRuleCompiler(RuleCompiler):
    """SQLite: binary collation; no exact wide integers and no regex, so those stay in Python."""

    dialect = "sqlite"
    native_boolean = False
    TRANSFORMS = {**RuleCompiler.TRANSFORMS}

    def text(self, expression: Expression) -> Expression:
        return expression.collate("BINARY")

    def text_length(self, expression: Expression) -> Expression:
        return sa.func.length(expression)

    def divide(self, left: Expression, right: Expression) -> Expression:
        # integer operands: SQLite truncates toward zero, as Decimal does
        return left.op("/")(right)

    def modulo(self, left: Expression, right: Expression) -> Expression:
        return left.op("%")(right)

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        if not isinstance(sql_type, sa.DateTime):
            # SQLAlchemy stores dates as 'YYYY-MM-DD' and datetimes with six fraction digits
            return sa.type_coerce(column.op("||")(sa.literal(" 00:00:00.000000")), sa.String())
        return sa.type_coerce(column, sa.String())

    def datetime_parameter(self, value: datetime.datetime) -> Expression:
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return sa.bindparam(None, naive.strftime("%Y-%m-%d %H:%M:%S.%f"), type_=sa.String())


_COMPILERS: dict[str, type[RuleCompiler]] = {
    "postgresql": PostgreSQLRuleCompiler,
    "mysql": MySQLRuleCompiler,
    "mariadb": MySQLRuleCompiler,
    "sqlite": SQLiteRuleCompiler,
}


def compiler_for(dialect: str) -> type[RuleCompiler]:
    """The rule compiler of a SQLAlchemy dialect name (the generic one for other databases)."""
    return _COMPILERS.get(dialect, RuleCompiler)
