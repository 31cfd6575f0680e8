"""Compiling rules to SQL: rule-engine's syntax tree -> SQLAlchemy Core expressions.

A rule becomes two SQL expressions over the columns that hold the snapshot fields: its **value**
and its **error** condition, true on the rows where Python evaluation raises (a null in a field
that is not nullable, a division by zero, a comparison of mismatched types). The catalog query
(:mod:`tagrules.sources.tables`) turns them into a tag state per row: assigned, not assigned, or unknown
— the error policy of :class:`~tagrules.Evaluator`.

Only what SQL reproduces exactly is compiled; everything else raises :class:`~tagrules.NotPushable`:

* numbers keep rule-engine's decimal semantics: a field compared with a literal uses the exact
  native thresholds of :mod:`tagrules.rules._numbers`; integer ``+ - // %`` run in an exact
  decimal type; float arithmetic, true division and products (rounded to 28 digits by rule-engine)
  are not pushed;
* a sub-expression that reads no field (``$now - t'P90D'``, a literal list) is evaluated in Python
  once and bound as a parameter; nothing from a rule is pasted into SQL text;
* strings compare by code point, case- and accent-sensitively, whatever the column's collation;
* datetimes compare as UTC (naive columns hold UTC).
* a ``dict[str, T]`` field of numbers, strings or booleans is read only by key (``d['key']``,
  ``d&['key']``) from its JSON, as Python reads that JSON back; the looked-up value carries the
  item type into the rest of the rule.

The compiler is a table from node class to handler (``TRANSFORMS``); a dialect
(:mod:`tagrules.sql.dialects`) extends the table and overrides the few hooks where SQL
differs (string collation, regex, datetime columns, integer division).
"""

from __future__ import annotations

import datetime
import decimal
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final, final

import sqlalchemy as sa
from rule_engine import ast as re_ast
from sqlalchemy.sql.elements import ColumnElement

from tagrules.errors import NotPushable
from tagrules.rules._language import DECIMAL_CONTEXT, UTC, RuleContext, Scope, evaluation_state
from tagrules.rules._numbers import mirror, plan_float_comparison, plan_int_comparison
from tagrules.rules._tree import unparse, walk
from tagrules.schema import FieldType
from tagrules.sql._regex import translate_regex

__all__ = ["Decoding", "DictLookup", "FieldColumn", "RuleCompiler", "SqlFunction", "SqlRule"]

Expression = ColumnElement[Any]
_NOTHING: Final = object()
_INT_LOW, _INT_HIGH = -(2**63), 2**63 - 1
_ORDER = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda left, right: left == right,
    "!=": lambda left, right: left != right,
    ">": lambda left, right: left > right,
    ">=": lambda left, right: left >= right,
    "<": lambda left, right: left < right,
    "<=": lambda left, right: left <= right,
}
_NUMBER_KINDS = frozenset({"int", "exact", "float"})


@final
@dataclass(frozen=True)
class FieldColumn:
    """Where a snapshot field lives: its column (or any expression) and the field's type."""

    expression: Expression
    field_type: FieldType
    sql_type: Any
    #: where the schema refuses the column's value, computed once per row beforehand (by the query
    #: builder, for checks of JSON collections that several rules read); ``None``: checked inline
    problem: Expression | None = None


@final
@dataclass(frozen=True)
class SqlRule:
    """A rule compiled to SQL: ``value`` is its truth, ``error`` (``None``: never) where it fails."""

    value: Expression
    error: Expression | None


@final
@dataclass(frozen=True)
class SqlFunction:
    """The SQL form of a custom rule function (``$name(...)``).

    ``build`` receives the SQL expressions of the arguments (preceded by ``now`` as a bound
    parameter when ``uses_now``) and returns the call's SQL expression; ``arguments`` and ``returns``
    are the declared types.
    """

    build: Callable[..., Expression]
    arguments: tuple[FieldType | None, ...]
    returns: FieldType
    uses_now: bool = False


@final
@dataclass(frozen=True)
class DictLookup:
    """How a dialect reads one key of a dict field's JSON column.

    ``is_null`` holds where the dict is null: SQL NULL or JSON ``null``, never unknown. ``problem``
    holds (where it is not null) where the schema refuses the whole value: not a JSON object, or a
    member that is not of the dict's item type — Python then fails every rule reading the field.
    ``present`` holds where the key is in the object; ``value`` is the member read as the item type,
    SQL NULL when it is JSON null or absent. None of them may raise on any stored text.
    """

    is_null: Expression
    problem: Expression
    present: Expression
    value: Expression


@final
@dataclass(frozen=True)
class Decoding:
    """A collection column read once per row, before any rule reads it, in two subqueries: the first
    computes ``first`` over the table's column; the second calls ``finish(column, first)`` with both
    as that subquery's columns, which gives the field's new value (of ``sql_type``) and where the
    schema refuses it. Rules then read the new value, whatever its table column held."""

    first: Expression
    finish: Callable[[Expression, Expression], tuple[Expression, Expression]]
    sql_type: Any


#: Item types a dict lookup can read from JSON, and the kind of the value.
_DICT_ITEM_KINDS = frozenset({"int", "float", "str", "bool"})

_FUNCTION_KINDS = {"int": "int", "float": "float", "str": "str", "bool": "bool", "datetime": "datetime"}


@dataclass(frozen=True)
class _Sql:
    """A compiled sub-expression.

    ``kind`` is what the SQL value is: ``bool``, ``int`` (a 64-bit integer), ``exact`` (a wider exact
    integer), ``float`` (a double read as rule-engine reads floats), ``str``, ``datetime`` (naive UTC)
    or ``null``; ``constant`` holds the rule-engine value of a sub-expression folded in Python.
    ``error`` is the SQL condition under which evaluation raises; ``nullable`` whether the value
    may be the rule's null (SQL NULL).
    """

    kind: str
    expr: Expression | None = None
    error: Expression | None = None
    nullable: bool = False
    constant: Any = _NOTHING

    @property
    def is_constant(self) -> bool:
        return self.constant is not _NOTHING


#: A sub-expression that always fails (the value of a folded constant that raised).
_FAILED: Final[_Sql] = _Sql("null", sa.null(), sa.true())
_FOLD_FAILED: Final = object()


def _any(*conditions: Expression | None) -> Expression | None:
    present = [condition for condition in conditions if condition is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else sa.or_(*present)


def _when(condition: Expression, error: Expression | None) -> Expression | None:
    # the error first: it is usually false and cheap, and the database may stop there
    return None if error is None else sa.and_(error, condition)


def _kind_of_constant(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, decimal.Decimal):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, datetime.datetime):
        return "datetime"
    return "other"


def _family(kind: str) -> str:
    return "number" if kind in _NUMBER_KINDS else kind


class RuleCompiler:
    """Compiles rules over one table to SQLAlchemy expressions for one dialect (the base is generic SQL).

    Args:
        context: the catalog's rule context.
        fields: field name -> its column.
        now: the evaluation time (``$now``, ``$today``).
        tag_state: tag key -> the SQL expression of its state (1 assigned, 0 not, NULL unknown), for
            ``'key' in tags``; ``None`` for a tag no rule computes (always absent).
        functions: custom function name -> its SQL form; calls of other functions are not pushable.
    """

    dialect: ClassVar[str] = "sql"
    #: whether boolean columns are SQL booleans (elsewhere they hold integers, non-zero meaning true)
    native_boolean: ClassVar[bool] = True
    #: whether aggregates take ``FILTER (WHERE ...)`` (MariaDB and many warehouses do not)
    aggregate_filter: ClassVar[bool] = False
    TRANSFORMS: ClassVar[dict[type, Callable[[RuleCompiler, Any], _Sql]]] = {}

    def __init__(
        self,
        context: RuleContext,
        fields: Mapping[str, FieldColumn],
        now: datetime.datetime,
        tag_state: Callable[[str], Expression | None] = lambda key: None,
        functions: Mapping[str, SqlFunction] | None = None,
    ) -> None:
        self.context = context
        self.fields = fields
        self.now = now
        self.tag_state = tag_state
        self.functions: Mapping[str, SqlFunction] = functions or {}
        #: the number of comprehensions in the rule being compiled (they share its step budget)
        self.comprehensions = 0

    # -- entry points --------------------------------------------------------------------------------

    def compile(self, statement: Any) -> SqlRule:
        """The rule's truth and error condition.

        Raises:
            NotPushable: the rule uses a construct this dialect cannot evaluate exactly.
        """
        self.comprehensions = sum(
            isinstance(node, re_ast.ComprehensionExpression) for node, _ in walk(statement.expression)
        )
        result = self.value(statement.expression)
        if result.is_constant:
            if result.constant is _FOLD_FAILED:
                return SqlRule(sa.false(), sa.true())
            return SqlRule(sa.true() if _truth(result.constant) else sa.false(), None)
        if result.kind != "bool" or result.nullable:
            raise NotPushable(f"a rule whose value is not a boolean ({unparse(statement.expression)})")
        assert result.expr is not None
        return SqlRule(result.expr, result.error)

    def value(self, node: Any) -> _Sql:
        if _reads_nothing(node):
            return self.fold(node)
        handler = self.TRANSFORMS.get(type(node))
        if handler is None:
            for kind, candidate in self.TRANSFORMS.items():
                if isinstance(node, kind):
                    handler = candidate
                    break
            else:
                raise NotPushable(f"{type(node).__name__} ({unparse(node)})")
        return handler(self, node)

    def fold(self, node: Any) -> _Sql:
        """A sub-expression reading no field, evaluated once in Python."""
        evaluation_state.now = self.now
        evaluation_state.steps = 0
        try:
            with decimal.localcontext(DECIMAL_CONTEXT):
                value = node.evaluate(Scope({}, {}, set()))
        except Exception:
            return _Sql("null", constant=_FOLD_FAILED)
        return _Sql(_kind_of_constant(value), constant=value)

    def unsupported(self, node: Any) -> _Sql:
        raise NotPushable(f"{_construct(node)} ({unparse(node)})")

    def comprehension_length(self, node: Any) -> _Sql:
        """``[...].length``: the number of items of a comprehension, where a dialect can count them."""
        return self.unsupported(node)

    def only_comprehension(self, node: Any) -> None:
        """Raises NotPushable unless ``node`` is its rule's only comprehension: comprehensions share
        the rule's step budget, so which steps are taken depends on every one of them."""
        if self.comprehensions > 1:
            raise NotPushable(f"a comprehension in a rule with several ({unparse(node)})")

    def folded_constant(self, node: Any) -> Any:
        """The rule-engine value of a sub-expression that reads no field.

        Raises:
            NotPushable: evaluating it fails.
        """
        folded = self.fold(node)
        if folded.constant is _FOLD_FAILED:
            raise NotPushable(f"a constant that fails to evaluate ({unparse(node)})")
        return folded.constant

    def function_call(self, node: Any) -> _Sql:
        """A custom function whose plugin gives its SQL form; other calls stay in Python."""
        function = node.function
        if not isinstance(function, re_ast.SymbolExpression) or function.scope is None:
            return self.unsupported(node)
        declared = self.functions.get(function.name)
        if declared is None:
            raise NotPushable(f"the function ${function.name}, which has no SQL form ({unparse(node)})")
        kind = _FUNCTION_KINDS.get(declared.returns.kind)
        if kind is None:
            raise NotPushable(f"${function.name}, which returns {declared.returns} ({unparse(node)})")
        expressions: list[Expression] = []
        errors: list[Expression | None] = []
        for position, argument in enumerate(node.arguments):
            part = self.value(argument)
            if part.is_constant:
                wanted = declared.arguments[position] if position < len(declared.arguments) else None
                target = _FUNCTION_KINDS.get(wanted.kind) if wanted is not None else None
                if part.constant is None:
                    part = _Sql("null", sa.null(), nullable=True)
                elif target is None:
                    raise NotPushable(f"the argument #{position + 1} of ${function.name} ({unparse(node)})")
                else:
                    part = self.as_sql(part, target)
            assert part.expr is not None
            expressions.append(part.expr)
            errors.append(part.error)
        if declared.uses_now:
            expressions.insert(0, self.datetime_parameter(self.now))
        built = declared.build(*expressions)
        return _Sql(kind, built, _any(*errors), nullable=declared.returns.nullable)

    # -- hooks a dialect overrides ---------------------------------------------------------------------

    def text(self, expression: Expression) -> Expression:
        """A string expression compared by code point, case- and accent-sensitively."""
        return expression

    def text_length(self, expression: Expression) -> Expression:
        return sa.func.char_length(expression)

    def float_parameter(self, value: float) -> Expression | bool | None:
        """A float threshold as SQL; ``True``/``False`` when no stored value reaches an infinite one."""
        return sa.bindparam(None, value, type_=sa.Float(53))

    def float_problem(self, column: Expression) -> Expression | None:
        """Where a float column holds a value the schema refuses (NaN)."""
        return None

    def stored_value(self, column: Expression, kind: str) -> tuple[Expression, Expression | None]:
        """An int, float or str column as Python reads its value, and where the value stored is
        one the schema refuses; for databases whose columns hold only their declared type, as is."""
        return column, None

    def stored_moment_problem(self, column: Expression, sql_type: Any) -> Expression | None:
        """Where a date or datetime column holds a value the column's type cannot read; ``None`` for
        databases whose columns hold only their declared type."""
        return None

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        """A datetime or date column as a naive UTC timestamp."""
        return column

    def datetime_parameter(self, value: datetime.datetime) -> Expression:
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return sa.bindparam(None, naive, type_=sa.DateTime())

    def boolean_column(self, column: Expression) -> Expression:
        return column != 0

    def exact(self, expression: Expression) -> Expression:
        """An integer expression in a type wide enough for sums of two 64-bit integers."""
        raise NotPushable(f"integer arithmetic on {self.dialect} (its integers overflow)")

    def exact_parameter(self, value: int) -> Expression:
        """An integer beyond 64 bits, compared with an ``exact`` expression."""
        return sa.bindparam(None, value, type_=sa.Numeric())

    def divide(self, left: Expression, right: Expression) -> Expression:
        """Integer division truncated toward zero (as ``Decimal`` does)."""
        raise NotPushable(f"integer division on {self.dialect}")

    def modulo(self, left: Expression, right: Expression) -> Expression:
        """The remainder with the sign of the dividend (as ``Decimal`` does)."""
        raise NotPushable(f"the remainder operator on {self.dialect}")

    def regex(self, subject: Expression, pattern: str) -> Expression:
        """Whether ``pattern`` (already translated for the dialect) is found in ``subject``."""
        raise NotPushable(f"regular expressions on {self.dialect}")

    def outside(self, text: Expression, choices: Sequence[Expression]) -> Expression:
        """Whether the (non-null) ``text`` is none of ``choices``: an enum field's check."""
        return text.not_in(choices)

    def regex_flavour(self) -> str:
        return "none"

    @classmethod
    def count_where(cls, condition: Expression) -> Expression:
        """An aggregate: the number of rows where ``condition`` holds."""
        if cls.aggregate_filter:
            return sa.func.count().filter(condition)
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    @classmethod
    def count_states(cls, state: Expression) -> tuple[Expression, Expression]:
        """The aggregates counting the rows where a tag's state (1, 0 or NULL) is 1, and is NULL."""
        return cls.count_where(state == 1), cls.count_where(state.is_(None))

    def dict_lookup(
        self,
        column: Expression,
        sql_type: Any,
        key: str | Expression,
        item: FieldType,
        plain: Expression | None = None,
    ) -> DictLookup:
        """One key of a ``dict[str, item]`` field held as JSON in ``column``: a literal key as ``str``,
        a computed one as a text expression (a dialect that cannot look it up raises ``NotPushable``).
        ``plain``, where given, holds where every member is known to be an ordinary value (a number
        of 53 bits at most, not tiny) that the dialect may read without its exact checks."""
        raise NotPushable(f"dict lookups on {self.dialect}")

    def collection_problem(self, column: FieldColumn) -> Expression | None:
        """Where the schema refuses a JSON collection column's value (not a collection of the field's
        type), for a query to compute once per row; ``None`` where the dialect does not check it.
        The condition is true (refused), false, or NULL where every member is an ordinary value."""
        return None

    def decoded_collection(self, column: FieldColumn) -> Decoding | None:
        """How a query reads a collection column once per row into a form its rules read faster;
        ``None`` (the default): the rules read the column as it is."""
        return None

    def dict_problem(self, column: FieldColumn) -> Expression | None:
        """Where the schema refuses a dict column's value: the check the query computed once per row,
        or the dialect's own (``collection_problem``); ``None`` where the dialect does not check it."""
        return column.problem if column.problem is not None else self.collection_problem(column)

    # -- fields and symbols --------------------------------------------------------------------------

    def symbol(self, node: Any) -> _Sql:
        if node.scope is not None:
            raise NotPushable(f"the builtin ${node.name}")
        if node.name == "tags":
            raise NotPushable("the tags set used other than in 'key' in tags")
        column = self.fields.get(node.name)
        if column is None:
            raise NotPushable(f"the symbol {node.name!r}, which no column holds")
        return self.field(node.name, column)

    def field(self, name: str, column: FieldColumn) -> _Sql:
        field_type = column.field_type
        expression = column.expression
        kind = field_type.kind
        problems: list[Expression | None] = []
        if not field_type.nullable:
            problems.append(expression.is_(None))
        if kind == "enum":
            if field_type.is_number:
                raise NotPushable(f"the numeric enum field {name!r}")
            kind = "str"
            choices = [sa.bindparam(None, choice, type_=sa.String()) for choice in field_type.choices]
            problems.append(sa.and_(expression.is_not(None), self.outside(self.text(expression), choices)))
        sql_type = column.sql_type
        if kind in ("int", "float", "str"):
            expression, stored_problem = self.stored_value(expression, kind)
            problems.append(stored_problem)
        if kind == "int":
            _require(name, sql_type, (sa.Integer,), "an integer column")
            # the schema's ints lie strictly between -2**63 and 2**63, as their negations do
            problems.append(expression == sa.bindparam(None, -(2**63), type_=sa.BigInteger()))
        elif kind == "float":
            _require(name, sql_type, (sa.Float,), "a floating-point column")
            problems.append(self.float_problem(expression))
        elif kind == "str":
            _require(name, sql_type, (sa.String, sa.Enum), "a text column")
        elif kind == "bool":
            if not isinstance(sql_type, (sa.Boolean, sa.Integer)):
                raise NotPushable(f"the field {name!r} in a {sql_type} column (a boolean column is needed)")
            if not isinstance(sql_type, sa.Boolean) or not self.native_boolean:
                expression = sa.case((expression.is_(None), sa.null()), else_=self.boolean_column(expression))
        elif kind == "date":
            _require(name, sql_type, (sa.Date,), "a date column")
            problems.append(self.stored_moment_problem(expression, sql_type))
            expression = self.datetime_column(expression, sql_type, field_type)
            kind = "datetime"
        elif kind == "datetime":
            _require(name, sql_type, (sa.DateTime, sa.Date), "a datetime or date column")
            problems.append(self.stored_moment_problem(expression, sql_type))
            expression = self.datetime_column(expression, sql_type, field_type)
        else:
            raise NotPushable(f"the {field_type} field {name!r} (collections stay in Python)")
        return _Sql(kind, expression, _any(*problems), nullable=field_type.nullable)

    # -- constants as SQL ----------------------------------------------------------------------------

    def as_sql(self, part: _Sql, kind: str) -> _Sql:
        """A folded constant as an SQL value of ``kind`` (the kind of the other operand)."""
        if not part.is_constant:
            return part
        value = part.constant
        if value is _FOLD_FAILED:
            return _FAILED
        if value is None:
            return _Sql("null", sa.null(), nullable=True)
        if isinstance(value, bool) and kind == "bool":
            return _Sql("bool", sa.true() if value else sa.false())
        if isinstance(value, decimal.Decimal) and not isinstance(value, bool) and kind in _NUMBER_KINDS:
            if kind in ("int", "exact") and value == value.to_integral_value() and abs(value) < 2**63:
                return _Sql("int", sa.bindparam(None, int(value), type_=sa.BigInteger()))
            if kind == "float" and value.is_finite():
                nearest = float(value)
                if not math.isinf(nearest) and decimal.Decimal(repr(nearest)) == value:
                    parameter = self.float_parameter(nearest)
                    if isinstance(parameter, ColumnElement):
                        return _Sql("float", parameter)
        if isinstance(value, str) and kind == "str":
            return _Sql("str", sa.bindparam(None, value, type_=sa.String()))
        if isinstance(value, datetime.datetime) and kind == "datetime":
            return _Sql("datetime", self.datetime_parameter(value))
        raise NotPushable(f"the value {value!r} where SQL needs a {kind}")

    # -- logic ---------------------------------------------------------------------------------------

    def condition(self, node: Any) -> _Sql:
        part = self.value(node)
        if part.is_constant:
            if part.constant is _FOLD_FAILED:
                return _Sql("bool", sa.false(), sa.true())
            return _Sql("bool", sa.true() if _truth(part.constant) else sa.false())
        if part.kind != "bool" or part.nullable:
            raise NotPushable(f"the truth of a value that is not a boolean ({unparse(node)})")
        return part

    def logic(self, node: Any) -> _Sql:
        left, right = self.condition(node.left), self.condition(node.right)
        assert left.expr is not None
        assert right.expr is not None
        if node.type == "and":
            return _Sql(
                "bool", sa.and_(left.expr, right.expr), _any(left.error, _when(left.expr, right.error))
            )
        return _Sql(
            "bool", sa.or_(left.expr, right.expr), _any(left.error, _when(sa.not_(left.expr), right.error))
        )

    def unary(self, node: Any) -> _Sql:
        if node.type == "not":
            operand = self.condition(node.right)
            assert operand.expr is not None
            return _Sql("bool", sa.not_(operand.expr), operand.error)
        operand = self.value(node.right)
        if operand.kind not in ("int", "float"):
            return self.unsupported(node)
        assert operand.expr is not None
        error = _any(operand.error, operand.expr.is_(None) if operand.nullable else None)
        return _Sql(operand.kind, -operand.expr, error)

    def ternary(self, node: Any) -> _Sql:
        condition = self.condition(node.condition)
        first, second = self.value(node.case_true), self.value(node.case_false)
        first, second = self.unify(first, second, node)
        assert condition.expr is not None
        assert first.expr is not None
        assert second.expr is not None
        error = _any(
            condition.error,
            _when(condition.expr, first.error),
            _when(sa.not_(condition.expr), second.error),
        )
        value = sa.case((condition.expr, first.expr), else_=second.expr)
        return _Sql(first.kind, value, error, first.nullable or second.nullable)

    def unify(self, first: _Sql, second: _Sql, node: Any) -> tuple[_Sql, _Sql]:
        """Two values of one kind (a constant takes the kind of the other side)."""
        if first.is_constant and second.is_constant:
            return self.as_sql(first, first.kind), self.as_sql(second, second.kind)
        if first.is_constant:
            first = self.as_sql(first, second.kind)
        if second.is_constant:
            second = self.as_sql(second, first.kind)
        if first.kind == "null" or second.kind == "null" or first.kind == second.kind:
            kind = second.kind if first.kind == "null" else first.kind
            return replace(first, kind=kind), replace(second, kind=kind)
        if {first.kind, second.kind} <= {"int", "exact"}:
            return replace(first, kind="exact"), replace(second, kind="exact")
        raise NotPushable(f"values of two types in one expression ({unparse(node)})")

    def coalesce(self, node: Any) -> _Sql:
        left, right = self.value(node.left), self.value(node.right)
        if left.is_constant:
            return self.value(node.left if left.constant is not None else node.right)
        left, right = self.unify(left, right, node)
        assert left.expr is not None
        assert right.expr is not None
        if not left.nullable:
            return left
        error = _any(left.error, _when(left.expr.is_(None), right.error))
        return _Sql(left.kind, sa.func.coalesce(left.expr, right.expr), error, right.nullable)

    # -- comparisons ---------------------------------------------------------------------------------

    def comparison(self, node: Any) -> _Sql:
        operator = _ORDER.get(node.type, node.type)
        operator = {"eq": "==", "ne": "!="}.get(operator, operator)
        window = self.window(operator, node)
        if window is not None:
            return window
        left, right = self.value(node.left), self.value(node.right)
        if left is _FAILED or left.constant is _FOLD_FAILED:
            return _Sql("bool", sa.false(), sa.true())
        if right.constant is _FOLD_FAILED:
            return _Sql("bool", sa.false(), _any(left.error, sa.true()))
        if left.is_constant:
            operator, left, right = mirror(operator), right, left
        return self.compare(operator, left, right, node)

    def window(self, operator: str, node: Any) -> _Sql | None:
        """A window against a time that reads no field, ``C - F op D`` (``$now - last_order_at >
        t'P180D'``) or ``F - C op D``, as the column compared with one bound constant, ``F op' C - D``
        (``last_order_at < :cutoff``): no arithmetic per row, and an engine may use its statistics.
        Exact: datetimes and timedeltas subtract in whole microseconds. ``None`` for other forms."""
        difference, bound = node.left, node.right
        if not _reads_nothing(bound):
            difference, bound, operator = node.right, node.left, mirror(operator)
        if not isinstance(difference, re_ast.SubtractExpression) or not _reads_nothing(bound):
            return None
        if _reads_nothing(difference.left) and isinstance(difference.right, re_ast.SymbolExpression):
            moment, field_node, sign = difference.left, difference.right, -1
        elif _reads_nothing(difference.right) and isinstance(difference.left, re_ast.SymbolExpression):
            moment, field_node, sign = difference.right, difference.left, 1
        else:
            return None
        when, span = self.fold(moment).constant, self.fold(bound).constant
        if not isinstance(when, datetime.datetime) or not isinstance(span, datetime.timedelta):
            return None
        field = self.value(field_node)
        if field.kind != "datetime" or field.is_constant or field.nullable:
            return None
        try:
            # C - F op D  <=>  F mirror(op) C - D;   F - C op D  <=>  F op C + D
            threshold = when - span if sign < 0 else when + span
        except OverflowError:
            return None
        if sign < 0:
            operator = mirror(operator)
        return self.compare_constant(operator, field, threshold, field.error, node)

    def compare(self, operator: str, left: _Sql, right: _Sql, node: Any) -> _Sql:
        ordering = operator not in ("==", "!=")
        errors = _any(left.error, right.error)
        if right.is_constant:
            return self.compare_constant(operator, left, right.constant, errors, node)
        if _family(left.kind) != _family(right.kind) and "null" not in (left.kind, right.kind):
            if ordering:
                return _Sql("bool", sa.false(), sa.true() if errors is None else _any(errors, sa.true()))
            return _Sql("bool", sa.true() if operator == "!=" else sa.false(), errors)
        left, right = self.unify(left, right, node)
        if {left.kind, right.kind} == {"int", "float"}:
            raise NotPushable(f"an integer compared with a float ({unparse(node)})")
        assert left.expr is not None
        assert right.expr is not None
        plain = self.plain_compare(operator, left, right.expr)
        if not left.nullable and not right.nullable:
            return _Sql("bool", plain, errors)
        left_null, right_null = left.expr.is_(None), right.expr.is_(None)
        both_null = sa.and_(left_null, right_null)
        one_null = sa.or_(sa.and_(left_null, sa.not_(right_null)), sa.and_(sa.not_(left_null), right_null))
        if not ordering:
            value = sa.case(
                (both_null, sa.true() if operator == "==" else sa.false()),
                (one_null, sa.false() if operator == "==" else sa.true()),
                else_=plain,
            )
            return _Sql("bool", value, errors)
        value = sa.case((both_null, sa.true() if operator in (">=", "<=") else sa.false()), else_=plain)
        return _Sql("bool", value, _any(errors, one_null))

    def plain_compare(self, operator: str, left: _Sql, right: Expression) -> Expression:
        assert left.expr is not None
        if left.kind == "str":
            return _COMPARE[operator](self.text(left.expr), self.text(right))  # type: ignore[no-any-return]
        return _COMPARE[operator](left.expr, right)  # type: ignore[no-any-return]

    def compare_constant(
        self, operator: str, left: _Sql, constant: Any, errors: Expression | None, node: Any
    ) -> _Sql:
        """``left operator constant`` with rule-engine's rules for types and nulls."""
        assert left.expr is not None
        ordering = operator not in ("==", "!=")
        is_null = left.expr.is_(None) if left.nullable else None
        if constant is None:
            if not ordering:
                if is_null is None:
                    return _Sql("bool", sa.false() if operator == "==" else sa.true(), errors)
                return _Sql("bool", is_null if operator == "==" else sa.not_(is_null), errors)
            result = sa.true() if operator in (">=", "<=") else sa.false()
            return _Sql("bool", result, _any(errors, sa.true() if is_null is None else sa.not_(is_null)))
        kind = _kind_of_constant(constant)
        same = kind == _family(left.kind) or (kind == "bool" and left.kind == "bool")
        if not same:
            if ordering:
                return _Sql("bool", sa.false(), _any(errors, sa.true()))
            return _Sql("bool", sa.true() if operator == "!=" else sa.false(), errors)
        if kind == "number":
            plain = self.number_threshold(operator, left, constant, node)
        else:
            right = self.as_sql(_Sql(kind, constant=constant), left.kind)
            assert right.expr is not None
            plain = self.plain_compare(operator, left, right.expr)
        if is_null is None:
            return _Sql("bool", plain, errors)
        if ordering:
            return _Sql("bool", plain, _any(errors, is_null))
        if operator == "==":
            return _Sql("bool", sa.and_(sa.not_(is_null), plain), errors)
        return _Sql("bool", sa.or_(is_null, plain), errors)

    def number_threshold(self, operator: str, left: _Sql, literal: decimal.Decimal, node: Any) -> Expression:
        """``left operator literal`` exactly as rule-engine's decimals compare."""
        assert left.expr is not None
        if left.kind == "float":
            plan = plan_float_comparison(operator, literal)
        else:
            plan = plan_int_comparison(operator, literal)
        if plan is None:
            raise NotPushable(f"a comparison with NaN ({unparse(node)})")
        if isinstance(plan, bool):
            return sa.true() if plan else sa.false()
        native, threshold = plan
        if left.kind == "float":
            assert isinstance(threshold, float)
            parameter = self.float_parameter(threshold)
            if isinstance(parameter, bool) or parameter is None:
                # the column holds no infinities: compare a finite stand-in beyond every value
                return _infinite_comparison(native, threshold)
            return _COMPARE[native](left.expr, parameter)  # type: ignore[no-any-return]
        assert isinstance(threshold, int)
        bound = 2**64 if left.kind == "exact" else 2**63
        if not -bound < threshold < bound:
            return _infinite_comparison(native, math.inf if threshold > 0 else -math.inf)
        if left.kind == "exact":
            parameter = self.exact_parameter(threshold)
        else:
            parameter = sa.bindparam(None, threshold, type_=sa.BigInteger())
        return _COMPARE[native](left.expr, parameter)  # type: ignore[no-any-return]

    # -- arithmetic ----------------------------------------------------------------------------------

    def arithmetic(self, node: Any) -> _Sql:
        symbol = {"add": "+", "sub": "-", "fdiv": "//", "mod": "%"}.get(node.type)
        if symbol is None:
            raise NotPushable(
                f"the operator {_OPERATOR_NAMES.get(node.type, node.type)} on a field "
                f"(rule-engine rounds it to 28 digits) ({unparse(node)})"
            )
        left, right = self.value(node.left), self.value(node.right)
        if left.constant is _FOLD_FAILED:
            return _FAILED
        for part in (left, right):
            if part.is_constant and not (
                isinstance(part.constant, decimal.Decimal)
                and part.constant == part.constant.to_integral_value()
                and abs(part.constant) < 2**63
            ):
                raise NotPushable(f"arithmetic with {part.constant!r} ({unparse(node)})")
            if not part.is_constant and part.kind not in ("int", "exact"):
                raise NotPushable(f"arithmetic on a {part.kind} value ({unparse(node)})")
        left, right = self.as_sql(left, "int"), self.as_sql(right, "int")
        assert left.expr is not None
        assert right.expr is not None
        errors = _any(
            left.error,
            right.error,
            left.expr.is_(None) if left.nullable else None,
            right.expr.is_(None) if right.nullable else None,
        )
        if symbol in ("+", "-"):
            if left.kind == "exact" or right.kind == "exact":
                raise NotPushable(f"nested integer arithmetic ({unparse(node)})")
            operation = (
                self.exact(left.expr) + right.expr if symbol == "+" else self.exact(left.expr) - right.expr
            )
            return _Sql("exact", operation, errors)
        zero = right.expr == 0
        guarded = sa.case((zero, sa.null()), else_=right.expr)
        value = self.divide(left.expr, guarded) if symbol == "//" else self.modulo(left.expr, guarded)
        return _Sql(left.kind if left.kind == "exact" else "int", value, _any(errors, zero))

    # -- membership, attributes, regex ---------------------------------------------------------------

    def contains(self, node: Any) -> _Sql:
        container, member_node = node.container, node.member
        if (
            isinstance(container, re_ast.SymbolExpression)
            and container.name == "tags"
            and container.scope is None
        ):
            member = self.value(member_node)
            if not member.is_constant or not isinstance(member.constant, str):
                raise NotPushable(f"a tag looked up by a computed key ({unparse(node)})")
            state = self.tag_state(member.constant)
            if state is None:
                return _Sql("bool", sa.false())
            return _Sql("bool", sa.func.coalesce(state, 0) == 1)
        holder = self.value(container)
        if holder.constant is _FOLD_FAILED:
            return _FAILED
        if not holder.is_constant or not isinstance(holder.constant, (tuple, frozenset, set)):
            raise NotPushable(f"membership in a value read from a field ({unparse(node)})")
        member = self.value(member_node)
        assert member.expr is not None
        # Python's ``in``: equality element by element, where a decimal equals a boolean of its value
        matches: list[Expression] = []
        for element in holder.constant:
            element_kind = _kind_of_constant(element)
            if member.kind in _NUMBER_KINDS and element_kind in ("number", "bool"):
                number = decimal.Decimal(int(element)) if isinstance(element, bool) else element
                matches.append(self.number_threshold("==", member, number, node))
            elif member.kind == "bool" and element_kind in ("number", "bool"):
                if isinstance(element, bool) or element in (0, 1):
                    matches.append(member.expr if bool(element) else sa.not_(member.expr))
            elif member.kind == element_kind and member.kind in ("str", "datetime"):
                right = self.as_sql(_Sql(element_kind, constant=element), member.kind)
                assert right.expr is not None
                matches.append(self.plain_compare("==", member, right.expr))
        found: Expression = sa.or_(*matches) if matches else sa.false()
        if member.nullable:
            holds_null = any(element is None for element in holder.constant)
            found = sa.case((member.expr.is_(None), sa.true() if holds_null else sa.false()), else_=found)
        return _Sql("bool", found, member.error)

    def get_attribute(self, node: Any) -> _Sql:
        if node.name == "length" and isinstance(node.object, re_ast.ComprehensionExpression):
            return self.comprehension_length(node.object)
        if node.name != "length":
            raise NotPushable(f"the attribute .{node.name} ({unparse(node)})")
        target = self.value(node.object)
        if target.kind != "str":
            raise NotPushable(f".length of a {target.kind} value ({unparse(node)})")
        assert target.expr is not None
        if not target.nullable:
            return _Sql("int", self.text_length(target.expr), target.error)
        if node.safe:
            return _Sql("int", self.text_length(target.expr), target.error, nullable=True)
        return _Sql("int", self.text_length(target.expr), _any(target.error, target.expr.is_(None)))

    def get_item(self, node: Any) -> _Sql:
        """``field[key]`` and ``field&[key]`` on a ``dict[str, T]`` field whose values are numbers,
        strings or booleans; other indexing stays in Python."""
        container = node.container
        if not isinstance(container, re_ast.SymbolExpression) or container.scope is not None:
            return self.unsupported(node)
        column = self.fields.get(container.name)
        if column is None:
            return self.symbol(container)
        field_type = column.field_type
        item = field_type.item
        if (
            field_type.kind != "dict"
            or field_type.key is None
            or field_type.key.kind != "str"
            or item is None
            or item.kind not in _DICT_ITEM_KINDS
        ):
            raise NotPushable(f"indexing a {field_type} field ({unparse(node)})")
        key = self.value(node.item)
        key_errors: Expression | None = None
        key_is_null: Expression | None = None
        lookup_key: str | Expression
        if key.is_constant:
            if not isinstance(key.constant, str):
                shown = "a key that fails" if key.constant is _FOLD_FAILED else repr(key.constant)
                raise NotPushable(f"a dict looked up by {shown} ({unparse(node)})")
            lookup_key = key.constant
        elif key.kind == "str":
            assert key.expr is not None
            lookup_key, key_errors = key.expr, key.error
            key_is_null = key.expr.is_(None) if key.nullable else None
        else:
            raise NotPushable(f"a dict looked up by a {key.kind} key ({unparse(node)})")
        expression = column.expression
        plain = None if column.problem is None else column.problem.is_(None)
        lookup = self.dict_lookup(expression, column.sql_type, lookup_key, item, plain)
        is_null = lookup.is_null
        stored = sa.not_(is_null)
        problem = lookup.problem if column.problem is None else sa.func.coalesce(column.problem, sa.false())
        # the key is evaluated only once the dict is known not null (rule-engine's order)
        errors: list[Expression | None] = [
            None if field_type.nullable else is_null,
            sa.and_(stored, problem),
            _when(stored, key_errors),
        ]
        if not node.safe:
            errors.append(is_null if field_type.nullable else None)
            errors.append(sa.and_(stored, sa.not_(lookup.present)))
        value = lookup.value
        if key_is_null is not None:
            # a null key is a missing one
            value = sa.case((key_is_null, sa.null()), else_=value)
            if not node.safe:
                errors.append(sa.and_(stored, key_is_null))
        nullable = node.safe or field_type.nullable or item.nullable
        return _Sql(item.kind, value, _any(*errors), nullable=nullable)

    def fuzzy(self, node: Any) -> _Sql:
        subject = self.value(node.left)
        pattern = self.value(node.right)
        if not pattern.is_constant or not isinstance(pattern.constant, str):
            raise NotPushable(f"a regular expression that is not a literal ({unparse(node)})")
        if subject.kind != "str":
            raise NotPushable(f"a regular expression on a {subject.kind} value ({unparse(node)})")
        search = node.type in ("eq_fzs", "ne_fzs")
        negated = node.type in ("ne_fzm", "ne_fzs")
        translated = translate_regex(pattern.constant, self.regex_flavour(), anchored=not search)
        if translated is None:
            raise NotPushable(
                f"the regular expression {pattern.constant!r} on {self.dialect} ({unparse(node)})"
            )
        assert subject.expr is not None
        found = self.regex(subject.expr, translated)
        value = sa.not_(found) if negated else found
        if subject.nullable:
            value = sa.case((subject.expr.is_(None), sa.true() if negated else sa.false()), else_=value)
        return _Sql("bool", value, subject.error)


_OPERATOR_NAMES = {"mul": "*", "tdiv": "/", "pow": "**"}


def _construct(node: Any) -> str:
    if isinstance(node, re_ast.ComprehensionExpression):
        return "a comprehension"
    if isinstance(node, re_ast.FunctionCallExpression):
        return "a function call"
    if isinstance(node, (re_ast.GetItemExpression, re_ast.GetSliceExpression)):
        return "indexing"
    if isinstance(node, (re_ast.BitwiseExpression, re_ast.BitwiseShiftExpression)):
        return "a bitwise operator"
    return type(node).__name__


def _truth(value: Any) -> bool:
    return bool(value)


def _reads_nothing(node: Any) -> bool:
    for part, _ in walk(node):
        if isinstance(part, re_ast.SymbolExpression) and (part.scope is None or part.name == "re_groups"):
            return False
        if isinstance(part, re_ast.ComprehensionExpression):
            return False
    return True


def _require(name: str, sql_type: Any, wanted: tuple[type, ...], what: str) -> None:
    if not isinstance(sql_type, wanted):
        raise NotPushable(f"the field {name!r} in a {sql_type} column ({what} is needed)")


def _infinite_comparison(operator: str, threshold: float) -> Expression:
    """``x operator ±inf`` for finite ``x``."""
    positive = threshold > 0
    below = {">=": False, ">": False, "<=": True, "<": True, "==": False, "!=": True}
    above = {">=": True, ">": True, "<=": False, "<": False, "==": False, "!=": True}
    return sa.true() if (below if positive else above)[operator] else sa.false()


RuleCompiler.TRANSFORMS = {
    re_ast.SymbolExpression: RuleCompiler.symbol,
    re_ast.LogicExpression: RuleCompiler.logic,
    re_ast.UnaryExpression: RuleCompiler.unary,
    re_ast.TernaryExpression: RuleCompiler.ternary,
    re_ast.CoalesceExpression: RuleCompiler.coalesce,
    re_ast.FuzzyComparisonExpression: RuleCompiler.fuzzy,
    re_ast.ArithmeticComparisonExpression: RuleCompiler.comparison,
    re_ast.ComparisonExpression: RuleCompiler.comparison,
    re_ast.ArithmeticExpression: RuleCompiler.arithmetic,
    re_ast.AddExpression: RuleCompiler.arithmetic,
    re_ast.SubtractExpression: RuleCompiler.arithmetic,
    re_ast.ContainsExpression: RuleCompiler.contains,
    re_ast.GetAttributeExpression: RuleCompiler.get_attribute,
    re_ast.ComprehensionExpression: RuleCompiler.unsupported,
    re_ast.FunctionCallExpression: RuleCompiler.function_call,
    re_ast.GetItemExpression: RuleCompiler.get_item,
    re_ast.GetSliceExpression: RuleCompiler.unsupported,
    re_ast.BitwiseExpression: RuleCompiler.unsupported,
    re_ast.BitwiseShiftExpression: RuleCompiler.unsupported,
}
