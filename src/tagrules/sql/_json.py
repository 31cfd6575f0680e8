"""Comprehensions over the values of a JSON dict: SQL/JSON path queries on PostgreSQL, ``json_each``
on SQLite.

``[v for v in views.values if v >= 10].length`` over a ``jsonb`` column becomes::

    jsonb_array_length(jsonb_path_query_array(views, '$.* ? (@ >= $c0)', '{"c0": 10}'))

and over JSON text on SQLite a count of the members ``json_each`` lists (the last of a key written
twice, as Python reads it) whose value, a 64-bit integer, is at least 10.

The form pushed down is narrow, and exact:

* the comprehension's ``.length`` is what the rule reads (its items never leave the database), and
  it is the rule's only comprehension (comprehensions share the rule's step budget);
* it iterates the values of a ``dict[str, int]`` field held in a ``json`` or ``jsonb`` column
  (PostgreSQL) or as JSON text (SQLite);
* the result is the loop variable itself, and the condition (optional) compares the loop variable
  with numeric literals, combined with ``and``, ``or`` and ``not``.

JSON numbers compare as exact decimals in a path query, as rule-engine compares its numbers. The
path text is made here from the rule's operators only; the literals travel in the ``vars`` object, a
bound parameter like every other literal. A row on which Python fails is an error here too: a value
the schema refuses (not an object, a member that is not a 64-bit integer), a null dict, and a dict
of more members than the rule's step budget (each member iterated is a step).
"""

from __future__ import annotations

import decimal
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from rule_engine import ast as re_ast
from sqlalchemy.dialects import postgresql

from tagrules.errors import NotPushable
from tagrules.rules._language import MAX_STEPS
from tagrules.rules._numbers import mirror, plan_int_comparison
from tagrules.rules._tree import unparse
from tagrules.sql.compiler import Expression, FieldColumn, _reads_nothing

__all__ = ["dict_values_count", "sqlite_dict_values_count", "sqlite_members"]

T = TypeVar("T")
#: 2**63: the members of an int dict lie strictly between its negative and itself
_INT_LIMIT = 2**63
_OPERATORS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


class _Condition(Generic[T]):
    """A comprehension's condition on its loop variable: comparisons of the variable with numbers,
    joined by ``and``, ``or`` and ``not``, built by a subclass's ``both``, ``either``, ``negated``
    and ``compared``."""

    def __init__(self, variable: str) -> None:
        self.variable = variable

    def is_variable(self, node: Any) -> bool:
        return isinstance(node, re_ast.SymbolExpression) and node.scope is None and node.name == self.variable

    def build(self, node: Any, fold: Any) -> T:
        if isinstance(node, re_ast.LogicExpression):
            first, second = self.build(node.left, fold), self.build(node.right, fold)
            return self.both(first, second) if node.type == "and" else self.either(first, second)
        if isinstance(node, re_ast.UnaryExpression) and node.type == "not":
            return self.negated(self.build(node.right, fold))
        if isinstance(node, (re_ast.ComparisonExpression, re_ast.ArithmeticComparisonExpression)):
            operator = _OPERATORS.get(node.type)
            if operator is not None:
                left, right = node.left, node.right
                if self.is_variable(right) and not self.is_variable(left):
                    operator, left, right = mirror(operator), right, left
                if self.is_variable(left) and _reads_nothing(right):
                    return self.compared(operator, _number(fold(right), node))
        raise NotPushable(f"a comprehension condition other than comparisons with numbers ({unparse(node)})")

    def both(self, left: T, right: T) -> T:
        raise NotImplementedError

    def either(self, left: T, right: T) -> T:
        raise NotImplementedError

    def negated(self, condition: T) -> T:
        raise NotImplementedError

    def compared(self, operator: str, value: decimal.Decimal) -> T:
        raise NotImplementedError


def _number(value: Any, node: Any) -> decimal.Decimal:
    """A comparison's literal, if it is a number a condition can hold."""
    if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
        raise NotPushable(f"a comprehension condition comparing with {value!r} ({unparse(node)})")
    number = decimal.Decimal(value)
    if not number.is_finite() or abs(number.adjusted()) > 1000:
        raise NotPushable(f"a comprehension condition comparing with {value} ({unparse(node)})")
    return number


class _Path(_Condition[str]):
    """The filter of one path query, and the literals it binds (PostgreSQL)."""

    def __init__(self, variable: str) -> None:
        super().__init__(variable)
        self.values: list[decimal.Decimal] = []

    def both(self, left: str, right: str) -> str:
        return f"({left} && {right})"

    def either(self, left: str, right: str) -> str:
        return f"({left} || {right})"

    def negated(self, condition: str) -> str:
        return f"!({condition})"

    def compared(self, operator: str, value: decimal.Decimal) -> str:
        self.values.append(value)
        return f"(@ {operator} $c{len(self.values) - 1})"


class _Members(_Condition[Expression]):
    """The condition as SQL over a member's value, a 64-bit integer (SQLite): each comparison with
    a decimal made the comparison with an integer that gives the same answer for every integer."""

    def __init__(self, variable: str, member: Expression) -> None:
        super().__init__(variable)
        self.member = member

    def both(self, left: Expression, right: Expression) -> Expression:
        return sa.and_(left, right)

    def either(self, left: Expression, right: Expression) -> Expression:
        return sa.or_(left, right)

    def negated(self, condition: Expression) -> Expression:
        return sa.not_(condition)

    def compared(self, operator: str, value: decimal.Decimal) -> Expression:
        plan = plan_int_comparison(operator, value)
        if isinstance(plan, tuple):
            operator, threshold = plan
            # members are above -2**63 and below 2**63 (the schema's check refuses the others)
            if threshold >= _INT_LIMIT:
                plan = operator in ("<", "<=", "!=")
            elif threshold <= -_INT_LIMIT:
                plan = operator in (">", ">=", "!=")
            else:
                return self.member.op(operator, is_comparison=True)(
                    sa.bindparam(None, int(threshold), type_=sa.BigInteger())
                )
        return sa.true() if plan else sa.false()


def _comprehension_column(node: Any, fields: Any) -> FieldColumn:
    """The ``dict[str, int]`` column a ``[v for v in D.values if C]`` counting its items reads.

    Raises:
        NotPushable: the comprehension is not of that form.
    """
    column = _dict_column(node, fields)
    if column is None:
        raise NotPushable(
            f"a comprehension over anything but the values of a dict held as JSON ({unparse(node)})"
        )
    field_type = column.field_type
    item = field_type.item
    if item is None or item.kind != "int" or item.nullable:
        raise NotPushable(f"a comprehension over {field_type} values (integers only) ({unparse(node)})")
    if not _Path(node.variable).is_variable(node.result):
        raise NotPushable(f"a comprehension whose result is not its variable ({unparse(node)})")
    return column


def _dict_column(node: Any, fields: Any) -> FieldColumn | None:
    """The ``dict[str, ...]`` field whose ``.values`` the comprehension iterates, if that is what it does."""
    iterable = node.iterable
    if (
        isinstance(iterable, re_ast.GetAttributeExpression)
        and iterable.name == "values"
        and not iterable.safe
        and isinstance(iterable.object, re_ast.SymbolExpression)
        and iterable.object.scope is None
    ):
        column: FieldColumn | None = fields.get(iterable.object.name)
        if column is not None and column.field_type.kind == "dict":
            key = column.field_type.key
            if key is not None and key.kind == "str":
                return column
    return None


def dict_values_count(node: Any, fields: Any, fold: Any, problem: Any) -> tuple[Expression, Expression]:
    """``[v for v in D.values if C].length`` over a JSON column on PostgreSQL: the count and the
    error condition.

    ``fold`` evaluates a sub-expression that reads no field (a literal) to its rule-engine value;
    ``problem(column)`` gives where the schema refuses the column's value, a null dict included
    (true; false or NULL otherwise), or ``None`` where it cannot tell.

    Raises:
        NotPushable: the comprehension is not of the form this module pushes down.
    """
    column = _comprehension_column(node, fields)
    sql_type = column.sql_type
    if isinstance(sql_type, postgresql.JSONB):
        document: Expression = column.expression
    elif isinstance(sql_type, sa.JSON):
        document = sa.cast(column.expression, postgresql.JSONB())
    else:
        raise NotPushable(
            f"a comprehension over a {sql_type} column (json or jsonb is needed) ({unparse(node)})"
        )
    refused_value = problem(column)
    if refused_value is None:
        raise NotPushable(f"a comprehension over a {sql_type} column it cannot check ({unparse(node)})")
    path = _Path(node.variable)
    text = "$.*" if node.condition is None else f"$.* ? ({path.build(node.condition, fold)})"
    # the literals as one JSON object, a bound parameter: exact decimals, written as JSON numbers
    literals = ", ".join(f'"c{index}": {value}' for index, value in enumerate(path.values))
    variables = sa.cast(sa.bindparam(None, "{" + literals + "}", type_=sa.String()), postgresql.JSONB())
    count = sa.func.jsonb_array_length(sa.func.jsonb_path_query_array(document, _jsonpath(text), variables))
    members = sa.func.jsonb_array_length(sa.func.jsonb_path_query_array(document, _jsonpath("$.*")))
    # (the check also refuses a null dict and anything but an object, which fail in Python too)
    refused = sa.or_(sa.func.coalesce(refused_value, sa.false()), members > MAX_STEPS)
    return count, refused


def sqlite_dict_values_count(
    node: Any, fields: Any, fold: Any, problem: Any
) -> tuple[Expression, Expression]:
    """``[v for v in D.values if C].length`` over JSON text on SQLite: members counted by
    ``json_each``, read only from rows holding a JSON object; the count and the error condition.

    ``problem(column)`` gives where the schema refuses the column's value (true; false or NULL for a
    null column, which this adds), or ``None`` where it cannot tell.

    Raises:
        NotPushable: the comprehension is not of the form this module pushes down.
    """
    column = _comprehension_column(node, fields)
    sql_type = column.sql_type
    if not isinstance(sql_type, (sa.JSON, sa.String)):
        raise NotPushable(
            f"a comprehension over a {sql_type} column (JSON or text is needed) ({unparse(node)})"
        )
    refused_value = problem(column)
    if refused_value is None:
        raise NotPushable(f"a comprehension over a {sql_type} column it cannot check ({unparse(node)})")
    text = sa.type_coerce(column.expression, sa.Text())
    is_object = sa.and_(
        sa.func.json_valid(text) == 1,
        sa.func.json_type(text) == sa.bindparam(None, "object", type_=sa.String()),
    )

    def counted(condition: Any) -> Expression:
        members = sqlite_members(text)
        number = sa.select(sa.func.count()).select_from(members)
        if condition is not None:
            member = sa.cast(members.c.value, sa.BigInteger())
            number = number.where(_Members(node.variable, member).build(condition, fold))
        # json_each fails on text that is not JSON: read only once the row holds an object
        return sa.case((is_object, number.scalar_subquery()), else_=sa.null())

    refused = sa.or_(
        column.expression.is_(None),
        sa.func.coalesce(refused_value, sa.false()),
        counted(None) > MAX_STEPS,
    )
    return counted(node.condition), refused


def sqlite_members(text: Expression) -> sa.Subquery:
    """The members of the JSON object ``text`` as Python reads it: of a key written more than once,
    the last (``json_each`` lists them all, and SQLite's JSON paths find the first), keys with their
    escapes decoded. Columns ``key``, ``type`` and ``value``."""
    each = sa.func.json_each(text).table_valued("key", "type", "value", "id").alias("each_member")
    rank = sa.func.row_number().over(partition_by=each.c.key, order_by=each.c.id.desc())
    ranked = sa.select(each.c.key, each.c.type, each.c.value, rank.label("rank")).subquery("ranked")
    return (
        sa.select(ranked.c.key, ranked.c.type, ranked.c.value).where(ranked.c.rank == 1).subquery("members")
    )


def _jsonpath(text: str) -> Expression:
    return sa.cast(sa.bindparam(None, text, type_=sa.String()), postgresql.JSONPATH())
