"""Thresholds: the comparisons of a snapshot field with a constant that a rule makes.

``spend_365d >= 100000``, ``100000 <= spend_365d``, ``(age ?? 0) > 45``,
``(category_spend_365d&['beauty'] ?? 0) >= 3000`` and ``registered_at >= $now - t'P30D'`` are all
thresholds: one side reads one field (or one key of a dict field), the other is a constant, possibly
relative to ``$now``. Static checks and the boundary snapshots of the testing kit are built on them.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, final

from rule_engine import ast

from tagrules.rules._language import DECIMAL_CONTEXT, evaluation_state
from tagrules.rules._tree import walk

__all__ = [
    "OPERATORS",
    "FieldPath",
    "Threshold",
    "constant_value",
    "field_path",
    "is_unset",
    "threshold_of",
    "thresholds",
]

#: rule-engine's comparison types and the operator each stands for.
OPERATORS = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_MIRROR = {"==": "==", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}

#: A place in a snapshot: ``(field,)`` or ``(field, key)`` for one key of a dict field.
FieldPath = tuple[str, ...]


@final
@dataclass(frozen=True, slots=True)
class Threshold:
    """One comparison of a field with a constant, written with the field on the left.

    Attributes:
        path: the field, or the field and the dict key, that is compared.
        operator: ``==``, ``!=``, ``<``, ``<=``, ``>`` or ``>=``.
        value: the constant, as rule-engine holds it (``Decimal``, ``datetime``, ``str`` ...).
        default: the value ``??`` gives when the field is null or the key missing, if any.
        node: the comparison in the rule's syntax tree.
    """

    path: FieldPath
    operator: str
    value: Any
    default: Any
    node: Any


def _is_constant(node: Any, allow_now: bool) -> bool:
    for current, _ in walk(node):
        if isinstance(current, ast.SymbolExpression):
            if current.scope is None:
                return False
            if not allow_now or current.name not in ("now", "today"):
                return False
        elif isinstance(current, (ast.ComprehensionExpression, ast.FunctionCallExpression)):
            return False
    return True


_UNSET = object()


def constant_value(node: Any, now: datetime.datetime | None = None) -> Any:
    """The value of a constant expression; see :func:`is_unset` for expressions that read fields.

    ``$now`` and ``$today`` count as constants when ``now`` is given.
    """
    if not _is_constant(node, allow_now=now is not None):
        return _UNSET
    previous = evaluation_state.now
    evaluation_state.now = now
    try:
        with decimal.localcontext(DECIMAL_CONTEXT):
            return node.evaluate(None)
    except Exception:
        return _UNSET
    finally:
        evaluation_state.now = previous


def field_path(node: Any, fields: frozenset[str]) -> tuple[FieldPath, Any] | None:
    """The field a side of a comparison reads, and the ``??`` default it falls back to (or ``None``)."""
    default: Any = None
    if isinstance(node, ast.CoalesceExpression):
        default = constant_value(node.right)
        if default is _UNSET:
            return None
        node = node.left
    if isinstance(node, ast.SymbolExpression) and node.scope is None and node.name in fields:
        return (node.name,), default
    if (
        isinstance(node, ast.GetItemExpression)
        and isinstance(node.container, ast.SymbolExpression)
        and node.container.scope is None
        and node.container.name in fields
        and isinstance(node.item, ast.StringExpression)
    ):
        return (node.container.name, node.item.value), default
    return None


def threshold_of(node: Any, fields: frozenset[str], now: datetime.datetime | None = None) -> Threshold | None:
    """The threshold ``node`` is, if it is a comparison of a field with a constant."""
    if not isinstance(node, ast.ComparisonExpression) or isinstance(node, ast.FuzzyComparisonExpression):
        return None
    operator = OPERATORS.get(node.type)
    if operator is None:
        return None
    for target, other, flipped in ((node.left, node.right, False), (node.right, node.left, True)):
        found = field_path(target, fields)
        if found is None:
            continue
        value = constant_value(other, now)
        if value is _UNSET or value is None:
            continue
        path, default = found
        return Threshold(path, _MIRROR[operator] if flipped else operator, value, default, node)
    return None


def thresholds(
    statement: ast.Statement, fields: frozenset[str], now: datetime.datetime | None = None
) -> Iterator[Threshold]:
    """Every threshold of a rule, in the order of the rule text.

    Comparisons with ``$now`` in the constant count only when ``now`` is given.
    """
    for node, _ in walk(statement.expression):
        found = threshold_of(node, fields, now)
        if found is not None:
            yield found


def is_unset(value: Any) -> bool:
    """Whether :func:`constant_value` found no constant."""
    return value is _UNSET
