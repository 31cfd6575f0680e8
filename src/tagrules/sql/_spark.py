"""Apache Spark SQL as a dialect of the rule compiler, and the rendering of its queries as Spark SQL
text with named parameter markers (``:name``), run as ``spark.sql(text, args=...)``.

Spark compares strings byte by byte in UTF-8 (its default ``UTF8_BINARY`` collation), which is code
point order, and ``char_length`` counts code points, as ``len`` does. Integer sums run in
``DECIMAL(20, 0)``, which holds any sum of two 64-bit integers. Timestamps compare as instants,
whatever the session's time zone: a ``TIMESTAMP`` column as it is, a ``TIMESTAMP_NTZ`` column read
as UTC with ``make_timestamp(..., 'UTC')``, a ``DATE`` as UTC midnight, and ``$now`` bound as
microseconds since the epoch. Spark 4 runs in ANSI mode, where an overflow, a division by zero or an
invalid cast fails the whole job: the only integer values that could overflow (``-2**63``, which
the schema refuses) are read as NULL on the rows where they are the row's error anyway, divisors
are guarded by a ``CASE``, and map members are read with ``try_element_at``. Dicts are pushed when
they are Spark maps of strings to numbers, strings or booleans, and so is the count of a
comprehension over an integer map's values (``size(filter(map_values(...), ...))``); dicts held as
JSON text, lists and regular expressions (Java's differ from Python's) stay in Python.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import default
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import compiler as sa_compiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import UserDefinedType

from tagrules.errors import NotPushable
from tagrules.rules._language import MAX_STEPS, UTC
from tagrules.schema import FieldType
from tagrules.sql._json import _comprehension_column, _Members
from tagrules.sql.compiler import DictLookup, Expression, RuleCompiler, _Sql

__all__ = ["SparkMap", "SparkRuleCompiler", "render_spark"]

_INT_LOW = -(2**63)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
_MICROS_PER_DAY = 86_400_000_000


class SparkMap(UserDefinedType[Any]):
    """A Spark ``MAP<key, value>`` column; ``key`` and ``value`` are Spark type names (``STRING``,
    ``BIGINT``, ``DOUBLE``, ``BOOLEAN`` ...)."""

    cache_ok = True

    def __init__(self, key: str, value: str) -> None:
        self.key = key
        self.value = value

    def get_col_spec(self, **kw: Any) -> str:
        return f"MAP<{self.key}, {self.value}>"


#: map value types -> the dict item kinds Python reads from them
_MAP_ITEMS = {
    "BIGINT": ("int", "float"),
    "INT": ("int", "float"),
    "SMALLINT": ("int", "float"),
    "TINYINT": ("int", "float"),
    "DOUBLE": ("float",),
    "FLOAT": ("float",),
    "STRING": ("str",),
    "BOOLEAN": ("bool",),
}

_LAMBDA_VARIABLE = "tagrules_member"


class _Lambda(ColumnElement[Any]):
    """``tagrules_member -> body``, the argument of a Spark higher-order function."""

    inherit_cache = True
    _traverse_internals = [("body", InternalTraversal.dp_clauseelement)]

    def __init__(self, body: Expression) -> None:
        self.body = body


@compiles(_Lambda)
def _compile_lambda(element: _Lambda, compiler: Any, **kw: Any) -> str:
    return f"{_LAMBDA_VARIABLE} -> {compiler.process(element.body, **kw)}"


_MEMBER: Expression = sa.literal_column(_LAMBDA_VARIABLE)


def _bigint(value: int) -> Expression:
    return sa.bindparam(None, value, type_=sa.BigInteger())


def _without_low_int(value: Expression) -> Expression:
    """``value`` with ``-2**63`` read as NULL: the one value whose negation or quotient by -1
    overflows, which the schema refuses (the row is the rule's error wherever it is read)."""
    return sa.case((value == _bigint(_INT_LOW), sa.null()), else_=value)


class SparkRuleCompiler(RuleCompiler):
    """Spark SQL: binary string order, ``DECIMAL(20, 0)`` sums, instants for timestamps, maps."""

    dialect = "spark"
    aggregate_filter = True
    TRANSFORMS = {**RuleCompiler.TRANSFORMS}

    def float_problem(self, column: Expression) -> Expression | None:
        return sa.func.isnan(column)

    def stored_value(self, column: Expression, kind: str) -> tuple[Expression, Expression | None]:
        if kind != "int":
            return column, None
        return _without_low_int(column), column == _bigint(_INT_LOW)

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        if isinstance(sql_type, sa.DateTime) and sql_type.timezone:
            return column
        if isinstance(sql_type, sa.DateTime):
            # TIMESTAMP_NTZ: wall-clock time in UTC, as an instant
            seconds = sa.func.date_part(sa.bindparam(None, "SECOND", type_=sa.String()), column)
            return sa.func.make_timestamp(
                sa.func.year(column),
                sa.func.month(column),
                sa.func.day(column),
                sa.func.hour(column),
                sa.func.minute(column),
                seconds,
                sa.bindparam(None, "UTC", type_=sa.String()),
            )
        days = sa.cast(sa.func.unix_date(column), sa.BigInteger())
        return sa.func.timestamp_micros(days * _bigint(_MICROS_PER_DAY))

    def datetime_parameter(self, value: datetime.datetime) -> Expression:
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        micros = (aware - _EPOCH) // datetime.timedelta(microseconds=1)
        return sa.func.timestamp_micros(_bigint(micros))

    def exact(self, expression: Expression) -> Expression:
        return sa.cast(expression, sa.Numeric(20, 0))

    def exact_parameter(self, value: int) -> Expression:
        return sa.bindparam(None, value, type_=sa.Numeric(38, 0))

    def divide(self, left: Expression, right: Expression) -> Expression:
        # DIV gives a BIGINT, which a quotient of a DECIMAL(21, 0) sum overflows; the quotient of the
        # multiple of ``right`` below ``left`` is exact in decimals, truncated toward zero
        numerator = sa.cast(left, sa.Numeric(21, 0))
        whole = numerator - numerator.op("%")(right)
        return sa.cast(whole / right, sa.Numeric(21, 0))

    def modulo(self, left: Expression, right: Expression) -> Expression:
        return sa.cast(left, sa.Numeric(21, 0)).op("%")(right)

    def comprehension_length(self, node: Any) -> _Sql:
        """``[v for v in D.values if C].length`` over a ``MAP<STRING, integer>``: its values filtered
        by ``C`` and counted; the row's error where the dict is null, holds a member the schema
        refuses, or has more members than the rule's step budget (each member iterated is a step)."""
        self.only_comprehension(node)
        column = _comprehension_column(node, self.fields)
        sql_type = column.sql_type
        if not isinstance(sql_type, SparkMap) or sql_type.key != "STRING":
            raise NotPushable(
                f"a comprehension over a {sql_type} column (a MAP<STRING, ...> is needed on spark)"
            )
        item = column.field_type.item
        assert item is not None
        if "int" not in _MAP_ITEMS.get(sql_type.value, ()):
            raise NotPushable(f"a comprehension over a {sql_type.get_col_spec()} column on spark")
        problem = column.problem
        if problem is None:
            problem = self.dict_lookup(column.expression, sql_type, "", item).problem
        kept: Expression = sa.func.map_values(column.expression)
        if node.condition is not None:
            member = sa.literal_column(_LAMBDA_VARIABLE, sa.BigInteger())
            test = _Members(node.variable, member).build(node.condition, self.folded_constant)
            kept = sa.func.filter(kept, _Lambda(test))
        refused = sa.or_(
            column.expression.is_(None),
            sa.func.coalesce(problem, sa.false()),
            sa.func.size(column.expression) > _bigint(MAX_STEPS),
        )
        return _Sql("int", sa.cast(sa.func.size(kept), sa.BigInteger()), refused)

    def dict_lookup(
        self,
        column: Expression,
        sql_type: Any,
        key: str | Expression,
        item: FieldType,
        plain: Expression | None = None,
    ) -> DictLookup:
        if not isinstance(sql_type, SparkMap) or sql_type.key != "STRING":
            raise NotPushable(f"a dict field in a {sql_type} column (a MAP<STRING, ...> is needed on spark)")
        if item.kind not in _MAP_ITEMS.get(sql_type.value, ()):
            raise NotPushable(f"a dict of {item} in a {sql_type.get_col_spec()} column on spark")
        if not isinstance(key, str):
            raise NotPushable("a dict looked up by a computed key on spark")
        refused: list[Expression] = []
        if not item.nullable:
            refused.append(_MEMBER.is_(None))
        if item.kind == "int":
            refused.append(sa.func.coalesce(_bigint(_INT_LOW) == _MEMBER, sa.false()))
        elif item.kind == "float":
            refused.append(sa.func.coalesce(sa.func.isnan(_MEMBER), sa.false()))
        problem: Expression = sa.false()
        if refused:
            problem = sa.func.coalesce(
                sa.func.exists(sa.func.map_values(column), _Lambda(sa.or_(*refused))), sa.false()
            )
        looked_up = sa.bindparam(None, key, type_=sa.String())
        value: Expression = sa.func.try_element_at(column, looked_up)
        if item.kind == "int":
            value = _without_low_int(value)
        elif item.kind == "float" and sql_type.value not in ("DOUBLE", "FLOAT"):
            value = sa.cast(value, sa.Float(53))
        present = sa.func.coalesce(sa.func.map_contains_key(column, looked_up), sa.false())
        return DictLookup(column.is_(None), problem, present, value)


# ---------------------------------------------------------------------------------------------------
# rendering: SQLAlchemy Core -> Spark SQL text with named parameters
# ---------------------------------------------------------------------------------------------------


class _SparkTypeCompiler(sa_compiler.GenericTypeCompiler):
    def visit_FLOAT(self, type_: Any, **kw: Any) -> str:
        return "DOUBLE"

    def visit_float(self, type_: Any, **kw: Any) -> str:
        return "DOUBLE"

    def visit_double(self, type_: Any, **kw: Any) -> str:
        return "DOUBLE"

    def visit_big_integer(self, type_: Any, **kw: Any) -> str:
        return "BIGINT"

    def visit_integer(self, type_: Any, **kw: Any) -> str:
        return "BIGINT"

    def visit_string(self, type_: Any, **kw: Any) -> str:
        return "STRING"

    def visit_text(self, type_: Any, **kw: Any) -> str:
        return "STRING"

    def visit_datetime(self, type_: Any, **kw: Any) -> str:
        return "TIMESTAMP"

    def visit_boolean(self, type_: Any, **kw: Any) -> str:
        return "BOOLEAN"

    def visit_numeric(self, type_: Any, **kw: Any) -> str:
        return f"DECIMAL({type_.precision or 38}, {type_.scale or 0})"


class _SparkPreparer(sa_compiler.IdentifierPreparer):
    def __init__(self, dialect: Any) -> None:
        super().__init__(dialect, initial_quote="`", escape_quote="``")


class _SparkCompiler(sa_compiler.SQLCompiler):
    """Every bound value as a named marker, cast to the type the expression gave it (Spark would
    otherwise type a Python int by its size)."""

    def visit_bindparam(self, bindparam: Any, **kw: Any) -> Any:  # type: ignore[override]
        marker: str = super().visit_bindparam(bindparam, **kw)  # type: ignore[no-untyped-call]
        if kw.get("literal_binds") or bindparam.expanding:
            return marker
        type_ = bindparam.type
        if isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float):
            return f"CAST({marker} AS DECIMAL(38, 0))"
        if isinstance(type_, sa.Float):
            return f"CAST({marker} AS DOUBLE)"
        if isinstance(type_, sa.Integer):
            return f"CAST({marker} AS BIGINT)"
        if isinstance(type_, sa.String):
            return f"CAST({marker} AS STRING)"
        return marker


class _SparkDialect(default.DefaultDialect):
    name = "spark"
    paramstyle = "named"
    positional = False
    supports_native_boolean = True
    statement_compiler = _SparkCompiler
    type_compiler_cls = _SparkTypeCompiler
    preparer = _SparkPreparer  # type: ignore[assignment]


_DIALECT = _SparkDialect()


def render_spark(statement: Any) -> tuple[str, dict[str, Any]]:
    """A SQLAlchemy statement as Spark SQL text and its named parameters, for ``spark.sql(text, args)``.

    Decimals go as their digits (cast in the text): Spark types a Python int by its size, and one
    beyond 64 bits not at all.
    """
    compiled = statement.compile(dialect=_DIALECT)
    values = compiled.construct_params()
    args: dict[str, Any] = {}
    for name, value in values.items():
        bind = compiled.binds.get(name)
        type_ = bind.type if bind is not None else None
        if isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float) and value is not None:
            args[name] = str(int(value))
        elif isinstance(type_, sa.Float) and value is not None:
            args[name] = float(value)
        else:
            args[name] = value
    return str(compiled), args
