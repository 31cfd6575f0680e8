"""Comprehensions over the values of a JSON dict on PostgreSQL, as SQL/JSON path queries.

``[v for v in views.values if v >= 10].length`` over a ``jsonb`` column becomes::

    jsonb_array_length(jsonb_path_query_array(views, '$.* ? (@ >= $c0)', '{"c0": 10}'))

The form pushed down is narrow, and exact:

* the comprehension's ``.length`` is what the rule reads (its items never leave the database), and
  it is the rule's only comprehension (comprehensions share the rule's step budget);
* it iterates the values of a ``dict[str, int]`` field held in a ``json`` or ``jsonb`` column;
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
from typing import Any

import sqlalchemy as sa
from rule_engine import ast as re_ast
from sqlalchemy.dialects import postgresql

from tagrules.errors import NotPushable
from tagrules.rules._language import MAX_STEPS
from tagrules.rules._numbers import mirror
from tagrules.rules._tree import unparse
from tagrules.rules.to_sql import Expression, FieldColumn, _reads_nothing

__all__ = ["dict_values_count"]

_OPERATORS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


class _Path:
    """The filter of one path query, and the literals it binds."""

    def __init__(self, variable: str) -> None:
        self.variable = variable
        self.values: list[decimal.Decimal | int] = []

    def literal(self, value: Any, node: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
            raise NotPushable(f"a comprehension condition comparing with {value!r} ({unparse(node)})")
        if isinstance(value, decimal.Decimal) and (not value.is_finite() or abs(value.adjusted()) > 1000):
            raise NotPushable(f"a comprehension condition comparing with {value} ({unparse(node)})")
        self.values.append(value)
        return f"$c{len(self.values) - 1}"

    def is_variable(self, node: Any) -> bool:
        return isinstance(node, re_ast.SymbolExpression) and node.scope is None and node.name == self.variable

    def condition(self, node: Any, fold: Any) -> str:
        if isinstance(node, re_ast.LogicExpression):
            joiner = "&&" if node.type == "and" else "||"
            return f"({self.condition(node.left, fold)} {joiner} {self.condition(node.right, fold)})"
        if isinstance(node, re_ast.UnaryExpression) and node.type == "not":
            return f"!({self.condition(node.right, fold)})"
        if isinstance(node, (re_ast.ComparisonExpression, re_ast.ArithmeticComparisonExpression)):
            operator = _OPERATORS.get(node.type)
            if operator is not None:
                left, right = node.left, node.right
                if self.is_variable(right) and not self.is_variable(left):
                    operator, left, right = mirror(operator), right, left
                if self.is_variable(left) and _reads_nothing(right):
                    return f"(@ {operator} {self.literal(fold(right), node)})"
        raise NotPushable(f"a comprehension condition other than comparisons with numbers ({unparse(node)})")


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
    """``[v for v in D.values if C].length`` over a JSON column: the count and the error condition.

    ``fold`` evaluates a sub-expression that reads no field (a literal) to its rule-engine value;
    ``problem(column)`` gives where the schema refuses the column's value, a null dict included
    (true; false or NULL otherwise), or ``None`` where it cannot tell.

    Raises:
        NotPushable: the comprehension is not of the form this module pushes down.
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
    if not path.is_variable(node.result):
        raise NotPushable(f"a comprehension whose result is not its variable ({unparse(node)})")
    text = "$.*" if node.condition is None else f"$.* ? ({path.condition(node.condition, fold)})"
    # the literals as one JSON object, a bound parameter: exact decimals, written as JSON numbers
    literals = ", ".join(f'"c{index}": {value}' for index, value in enumerate(path.values))
    variables = sa.cast(sa.bindparam(None, "{" + literals + "}", type_=sa.String()), postgresql.JSONB())
    count = sa.func.jsonb_array_length(sa.func.jsonb_path_query_array(document, _jsonpath(text), variables))
    members = sa.func.jsonb_array_length(sa.func.jsonb_path_query_array(document, _jsonpath("$.*")))
    # (the check also refuses a null dict and anything but an object, which fail in Python too)
    refused = sa.or_(sa.func.coalesce(refused_value, sa.false()), members > MAX_STEPS)
    return count, refused


def _jsonpath(text: str) -> Expression:
    return sa.cast(sa.bindparam(None, text, type_=sa.String()), postgresql.JSONPATH())
