"""Comparing snapshot numbers with rule literals natively, with rule-engine's exact answers.

rule-engine holds every number as a ``Decimal``: an int ``i`` as ``Decimal(i)`` and a float ``f`` as
``Decimal(repr(f))``. A compiled rule keeps snapshot numbers as Python ints and floats and compares
them with thresholds computed once here, chosen so that the native comparison gives the same
answer as the decimal one for every possible value.

For floats this rests on ``repr`` being monotone: the shortest decimal that reads back as ``f`` grows
with ``f``, so ``{f : Decimal(repr(f)) >= L}`` is ``{f : f >= v}`` for the smallest such float ``v``.
"""

from __future__ import annotations

import decimal
import math

__all__ = ["ComparisonPlan", "plan_float_comparison", "plan_int_comparison"]

#: Either a native comparison ``(operator, threshold)``, or the constant answer for every value.
ComparisonPlan = tuple[str, int | float] | bool

_MIRROR = {">=": "<=", "<=": ">=", ">": "<", "<": ">", "==": "==", "!=": "!="}
_INT_BOUND = decimal.Decimal(2**64)


def mirror(operator: str) -> str:
    """The operator with its operands swapped (``L < x`` is ``x > L``)."""
    return _MIRROR[operator]


def _infinite_plan(operator: str, positive: bool) -> ComparisonPlan:
    # every finite value is below +inf and above -inf
    below = {">=": False, ">": False, "<=": True, "<": True, "==": False, "!=": True}
    above = {">=": True, ">": True, "<=": False, "<": False, "==": False, "!=": True}
    return (below if positive else above)[operator]


def plan_int_comparison(operator: str, literal: decimal.Decimal) -> ComparisonPlan | None:
    """How to compare a Python int ``x`` with ``literal`` as rule-engine would; ``None`` if it cannot
    be done natively (a NaN literal, whose ordering raises)."""
    if literal.is_nan():
        return {"==": False, "!=": True}.get(operator)
    if literal.is_infinite() or abs(literal) > _INT_BOUND:
        return _infinite_plan(operator, literal > 0)
    integral = literal == literal.to_integral_value()
    if operator in ("==", "!="):
        if not integral:
            return operator == "!="
        return operator, int(literal)
    ceiling = int(literal.to_integral_value(rounding=decimal.ROUND_CEILING))
    floor = int(literal.to_integral_value(rounding=decimal.ROUND_FLOOR))
    return operator, ceiling if operator in (">=", "<") else floor


def _decimal(value: float) -> decimal.Decimal:
    return decimal.Decimal(repr(value))


def _smallest_at_least(literal: decimal.Decimal) -> float:
    """The smallest float whose decimal is >= literal (``inf`` at worst)."""
    value = float(literal)
    while _decimal(value) < literal:
        value = math.nextafter(value, math.inf)
    while True:
        lower = math.nextafter(value, -math.inf)
        if lower == value or _decimal(lower) < literal:
            return value
        value = lower


def _largest_at_most(literal: decimal.Decimal) -> float:
    """The largest float whose decimal is <= literal (``-inf`` at worst)."""
    value = float(literal)
    while _decimal(value) > literal:
        value = math.nextafter(value, -math.inf)
    while True:
        higher = math.nextafter(value, math.inf)
        if higher == value or _decimal(higher) > literal:
            return value
        value = higher


def plan_float_comparison(operator: str, literal: decimal.Decimal) -> ComparisonPlan | None:
    """How to compare a Python float ``x`` (never NaN) with ``literal`` as rule-engine would."""
    if literal.is_nan():
        return {"==": False, "!=": True}.get(operator)
    if literal.is_infinite():
        return operator, math.inf if literal > 0 else -math.inf
    if operator in (">=", "<"):
        return operator, _smallest_at_least(literal)
    if operator in (">", "<="):
        return operator, _largest_at_most(literal)
    nearest = float(literal)
    if math.isinf(nearest) or _decimal(nearest) != literal:
        return operator == "!="
    return operator, nearest
