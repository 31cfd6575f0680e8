"""DuckDB as a dialect of the rule compiler (SQLAlchemy dialect name ``duckdb``, from ``duckdb-engine``).

DuckDB compares strings byte by byte in UTF-8, which is code point order; ``length`` counts code
points, as ``len`` does; integer ``//`` and ``%`` truncate toward zero, as ``Decimal`` does, and a
``HUGEINT`` holds any sum of two 64-bit integers; regular expressions are RE2's, searched with
``regexp_matches``, so only the patterns whose RE2 spelling finds the same strings are pushed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

from tagrules.schema import FieldType
from tagrules.sql.compiler import Expression, RuleCompiler

__all__ = ["DuckDBRuleCompiler"]


class _HugeInt(UserDefinedType[int]):
    """DuckDB's 128-bit integer."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "HUGEINT"


class DuckDBRuleCompiler(RuleCompiler):
    """DuckDB: binary string order, ``HUGEINT`` sums, RE2 regex searched with ``regexp_matches``."""

    dialect = "duckdb"
    aggregate_filter = True
    TRANSFORMS = {**RuleCompiler.TRANSFORMS}

    def text_length(self, expression: Expression) -> Expression:
        return sa.func.length(expression)

    def float_problem(self, column: Expression) -> Expression | None:
        return sa.func.isnan(column)

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        if isinstance(sql_type, sa.DateTime) and sql_type.timezone:
            return sa.func.timezone("UTC", column)
        if not isinstance(sql_type, sa.DateTime):
            return sa.cast(column, sa.DateTime())
        return column

    def exact(self, expression: Expression) -> Expression:
        return sa.cast(expression, _HugeInt())

    def divide(self, left: Expression, right: Expression) -> Expression:
        return left.op("//")(right)

    def modulo(self, left: Expression, right: Expression) -> Expression:
        return left.op("%")(right)

    def regex_flavour(self) -> str:
        return "re2"

    def regex(self, subject: Expression, pattern: str) -> Expression:
        return sa.func.regexp_matches(
            subject, sa.bindparam(None, pattern, type_=sa.String()), type_=sa.Boolean()
        )
