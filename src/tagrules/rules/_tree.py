"""Walking rule-engine syntax trees: children of each node kind, and a printer back to rule text."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from typing import Any

from rule_engine import ast

__all__ = ["children", "describe_type", "format_value", "unparse", "walk"]


def children(node: Any) -> list[Any]:
    """The direct sub-expressions of a rule-engine node, in evaluation order."""
    if isinstance(node, ast.Statement):
        return [node.expression]
    if isinstance(node, ast.MappingExpression):
        return [part for pair in node.value for part in pair]
    if isinstance(node, (ast.ArrayExpression, ast.SetExpression)):
        return list(node.value)
    if isinstance(node, ast.LiteralExpressionBase):
        return []
    if isinstance(node, (ast.BinaryExpressionBase, ast.CoalesceExpression)):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryExpression):
        return [node.right]
    if isinstance(node, ast.TernaryExpression):
        return [node.condition, node.case_true, node.case_false]
    if isinstance(node, ast.ContainsExpression):
        return [node.container, node.member]
    if isinstance(node, ast.GetAttributeExpression):
        return [node.object]
    if isinstance(node, ast.GetItemExpression):
        return [node.container, node.item]
    if isinstance(node, ast.GetSliceExpression):
        return [node.container, node.start, node.stop]
    if isinstance(node, ast.ComprehensionExpression):
        found = [node.iterable, node.result]
        if node.condition is not None:
            found.append(node.condition)
        return found
    if isinstance(node, ast.FunctionCallExpression):
        return [node.function, *node.arguments]
    return []


def walk(node: Any) -> Iterator[tuple[Any, int]]:
    """Every node below ``node`` (itself included) with its depth, parents before children."""
    stack: list[tuple[Any, int]] = [(node, 0)]
    while stack:
        current, depth = stack.pop()
        yield current, depth
        stack.extend((child, depth + 1) for child in reversed(children(current)))


_OPERATORS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "tdiv": "/",
    "fdiv": "//",
    "mod": "%",
    "pow": "**",
    "bwand": "&",
    "bwor": "|",
    "bwxor": "^",
    "eq": "==",
    "ne": "!=",
    "gt": ">",
    "ge": ">=",
    "lt": "<",
    "le": "<=",
    "eq_fzm": "=~",
    "eq_fzs": "=~~",
    "ne_fzm": "!~",
    "ne_fzs": "!~~",
    "and": "and",
    "or": "or",
}


def format_value(value: Any, *, limit: int = 60) -> str:
    """A value as rule text: ``'text'``, ``81234.5``, ``true``, ``null``, ``d'2026-01-01T00:00:00+00:00'``."""
    text = _format(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return "nan"
        if value.is_infinite():
            return "-inf" if value < 0 else "inf"
        return _format_decimal(value)
    if isinstance(value, (int, float)):
        return _format_decimal(decimal.Decimal(repr(value)))
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, datetime.datetime):
        return f"d'{value.isoformat()}'"
    if isinstance(value, datetime.timedelta):
        return f"t'{_iso_duration(value)}'"
    if isinstance(value, bytes):
        return "b" + repr(value)[1:]
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_format(item) for item in value) + "]"
    if isinstance(value, (set, frozenset)):
        if not value:
            return "{}"
        return "{" + ", ".join(sorted(_format(item) for item in value)) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_format(key)}: {_format(item)}" for key, item in value.items()) + "}"
    return repr(value)


def _format_decimal(value: decimal.Decimal) -> str:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0 and value.adjusted() < 21:
        return str(value.quantize(decimal.Decimal(1)))
    return f"{value:f}" if -7 < value.adjusted() < 21 else str(value)


def _iso_duration(value: datetime.timedelta) -> str:
    days, seconds = value.days, value.seconds
    text = "P"
    if days:
        text += f"{days}D"
    if seconds or value.microseconds:
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        text += "T"
        if hours:
            text += f"{hours}H"
        if minutes:
            text += f"{minutes}M"
        if secs or value.microseconds:
            text += f"{secs + value.microseconds / 1_000_000:g}S"
    return text if text != "P" else "PT0S"


# binding strength, weakest first, as in rule-engine's grammar
_PRECEDENCE = {
    "ternary": 1,
    "or": 2,
    "and": 3,
    "not": 4,
    "coalesce": 5,
    "eq": 6,
    "ne": 6,
    "compare": 7,
    "bwor": 8,
    "bwxor": 9,
    "bwand": 10,
    "add": 12,
    "sub": 12,
    "mul": 13,
    "tdiv": 13,
    "fdiv": 13,
    "mod": 13,
    "uminus": 14,
    "pow": 15,
}
_ATOM = 20


def _precedence(node: Any) -> int:
    if isinstance(node, ast.TernaryExpression):
        return _PRECEDENCE["ternary"]
    if isinstance(node, ast.CoalesceExpression):
        return _PRECEDENCE["coalesce"]
    if isinstance(node, ast.UnaryExpression):
        if node.type == "not" and isinstance(node.right, ast.ContainsExpression):
            return _PRECEDENCE["compare"]
        return _PRECEDENCE["not" if node.type == "not" else "uminus"]
    if isinstance(node, ast.ContainsExpression):
        return _PRECEDENCE["compare"]
    if isinstance(node, ast.BinaryExpressionBase):
        return _PRECEDENCE.get(node.type, _PRECEDENCE["compare"])
    return _ATOM


def _wrap(node: Any, parent: int, tight: bool = False) -> str:
    """``node`` as an operand of an operator of precedence ``parent``; ``tight`` for a side where an
    operator of equal precedence needs parentheses (the right of a left-associative operator)."""
    text = unparse(node)
    own = _precedence(node)
    return f"({text})" if own < parent or (tight and own == parent) else text


def unparse(node: Any) -> str:
    """Rule text for a node: normalised spacing, parentheses where an operand is compound."""
    if isinstance(node, ast.Statement):
        return unparse(node.expression)
    if isinstance(node, ast.SymbolExpression):
        return ("$" if node.scope else "") + node.name
    if isinstance(node, ast.StringExpression):
        return repr(node.value)
    if isinstance(node, (ast.ArrayExpression, ast.SetExpression)):
        members = ", ".join(unparse(member) for member in node.value)
        return f"[{members}]" if isinstance(node, ast.ArrayExpression) else "{" + members + "}"
    if isinstance(node, ast.MappingExpression):
        return "{" + ", ".join(f"{unparse(key)}: {unparse(value)}" for key, value in node.value) + "}"
    if isinstance(node, ast.LiteralExpressionBase):
        return format_value(node.value, limit=10_000)
    own = _precedence(node)
    if isinstance(node, ast.UnaryExpression):
        if node.type == "not":
            inner = node.right
            if isinstance(inner, ast.ContainsExpression):
                return f"{_wrap(inner.member, own, True)} not in {_wrap(inner.container, own, True)}"
            return f"not {_wrap(inner, own)}"
        return f"-{_wrap(node.right, own)}"
    if isinstance(node, ast.BinaryExpressionBase):
        operator = _OPERATORS.get(node.type, node.type)
        left_tight = own in (_PRECEDENCE["eq"], _PRECEDENCE["compare"])
        right_tight = True
        return f"{_wrap(node.left, own, left_tight)} {operator} {_wrap(node.right, own, right_tight)}"
    if isinstance(node, ast.CoalesceExpression):
        return f"{_wrap(node.left, own, True)} ?? {_wrap(node.right, own)}"
    if isinstance(node, ast.TernaryExpression):
        condition = _wrap(node.condition, own, True)
        return f"{condition} ? {_wrap(node.case_true, own, True)} : {_wrap(node.case_false, own)}"
    if isinstance(node, ast.ContainsExpression):
        return f"{_wrap(node.member, own, True)} in {_wrap(node.container, own, True)}"
    if isinstance(node, ast.GetAttributeExpression):
        return f"{_wrap(node.object, _ATOM)}{'&.' if node.safe else '.'}{node.name}"
    if isinstance(node, ast.GetItemExpression):
        return f"{_wrap(node.container, _ATOM)}{'&[' if node.safe else '['}{unparse(node.item)}]"
    if isinstance(node, ast.GetSliceExpression):
        start = (
            ""
            if isinstance(node.start, ast.FloatExpression) and node.start.value == 0
            else unparse(node.start)
        )
        stop = "" if isinstance(node.stop, ast.NullExpression) else unparse(node.stop)
        return f"{_wrap(node.container, _ATOM)}{'&[' if node.safe else '['}{start}:{stop}]"
    if isinstance(node, ast.ComprehensionExpression):
        text = f"[{unparse(node.result)} for {node.variable} in {unparse(node.iterable)}"
        if node.condition is not None:
            text += f" if {unparse(node.condition)}"
        return text + "]"
    if isinstance(node, ast.FunctionCallExpression):
        return f"{_wrap(node.function, _ATOM)}({', '.join(unparse(argument) for argument in node.arguments)})"
    return type(node).__name__


_TYPE_WORDS = {
    "FLOAT": "a number",
    "STRING": "text",
    "BOOLEAN": "true or false",
    "DATETIME": "a datetime",
    "TIMEDELTA": "a duration",
    "ARRAY": "a list",
    "SET": "a set",
    "MAPPING": "a dict",
    "NULL": "null",
    "OBJECT": "an object",
    "BYTES": "bytes",
    "FUNCTION": "a function",
}


def describe_type(data_type: Any) -> str:
    """A rule-engine data type in words: ``a number``, ``text``, ``a list``."""
    name = getattr(data_type, "name", "UNDEFINED")
    if name == "NULLABLE":
        return describe_type(data_type.inner_type) + " or null"
    if getattr(data_type, "is_object", False):
        return "an object"
    return _TYPE_WORDS.get(name, "a value")
