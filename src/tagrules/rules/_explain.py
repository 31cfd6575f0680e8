"""Explaining a rule on one snapshot: the value each part of the rule took, as a tree."""

from __future__ import annotations

import decimal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, final

from rule_engine import ast

from tagrules.rules._language import DECIMAL_CONTEXT, RuleContext, Scope, evaluation_state
from tagrules.rules._tree import format_value, unparse, walk

__all__ = ["Explanation", "describe_failure", "explain_statement"]


@final
@dataclass(frozen=True)
class Explanation:
    """One part of a rule and what it came to on a snapshot.

    Attributes:
        text: the part of the rule, as rule text.
        value: the value it took, as rule text (``true``, ``81234.5``, ``'tier1'``), or ``None``.
        error: why it failed, when it failed.
        evaluated: ``False`` for parts short-circuiting skipped (``false and ...``).
        inputs: the fields and builtins it read, name -> value as rule text.
        children: the parts of an ``and``, ``or``, ``not`` or ``?:``.
        note: why a part was not evaluated.
        unknown: why the part is unknown although it evaluated: it tests a tag whose rule failed
            (the tag is neither held nor absent), directly or through its parts.
    """

    text: str
    value: str | None = None
    error: str | None = None
    evaluated: bool = True
    inputs: tuple[tuple[str, str], ...] = ()
    children: tuple[Explanation, ...] = ()
    note: str | None = None
    unknown: str | None = None

    def lines(self, prefix: str = "", last: bool = True, root: bool = True) -> Iterator[str]:
        """The tree as text lines, drawn with box characters."""
        if not self.evaluated:
            outcome = "not evaluated" + (f" ({self.note})" if self.note else "")
        elif self.error is not None:
            outcome = f"error: {self.error}"
        elif self.unknown is not None:
            outcome = f"unknown ({self.unknown})"
        else:
            outcome = str(self.value)
        shown = ", ".join(f"{name} = {value}" for name, value in self.inputs)
        detail = f" ({shown})" if shown and self.evaluated else ""
        branch = "" if root else ("└── " if last else "├── ")
        yield f"{prefix}{branch}{self.text} -> {outcome}{detail}"
        deeper = prefix if root else prefix + ("    " if last else "│   ")
        for index, child in enumerate(self.children):
            yield from child.lines(deeper, index == len(self.children) - 1, root=False)

    def __str__(self) -> str:
        return "\n".join(self.lines())


def describe_failure(error: BaseException) -> str:
    """A message a rule author understands for an error raised while a rule ran."""
    message = getattr(error, "message", None)
    if isinstance(error, decimal.DivisionByZero):
        return "division by zero"
    if isinstance(error, decimal.InvalidOperation):
        return "invalid arithmetic (an operation on NaN or an undefined result)"
    if isinstance(error, decimal.Overflow):
        return "a number grew too large"
    if isinstance(message, str) and message:
        if message.startswith("arithmetic error: "):
            return message[len("arithmetic error: ") :]
        if message == "lookup operation failed":
            item = getattr(error, "item", None)
            return f"no item {format_value(item)} (use '&[' to get null instead of an error)"
        if message.startswith("data type mismatch"):
            return message + " (a value in the snapshot does not have the type the rule expects)"
        function = getattr(error, "function_name", None)
        cause = getattr(error, "error", None)
        if function:
            name = function.rstrip("?")
            if isinstance(cause, BaseException):
                return f"${name}: {describe_failure(cause)}"
            return f"${name}: {message}"
        return message
    return f"{type(error).__name__}: {error}"


def _evaluate(node: Any, context: RuleContext, scope: Scope) -> tuple[Any, str | None]:
    evaluation_state.steps = 0
    context._tls.reset()
    try:
        with decimal.localcontext(DECIMAL_CONTEXT):
            return node.evaluate(scope), None
    except Exception as error:
        return None, describe_failure(error)


def _inputs(node: Any, context: RuleContext, scope: Scope) -> tuple[tuple[str, str], ...]:
    seen: dict[str, str] = {}
    bound: set[str] = set()
    for current, _ in walk(node):
        if isinstance(current, ast.ComprehensionExpression):
            bound.add(current.variable)
        if not isinstance(current, ast.SymbolExpression) or current.name in bound:
            continue
        name = ("$" if current.scope else "") + current.name
        if name in seen or (current.scope and current.name not in ("now", "today")):
            continue
        value, error = _evaluate(current, context, scope)
        seen[name] = f"error: {error}" if error else format_value(value)
    return tuple(seen.items())


def _skipped(node: Any, note: str) -> Explanation:
    return Explanation(unparse(node), evaluated=False, note=note)


def explain_statement(
    statement: ast.Statement, context: RuleContext, scope: Scope, failed: Mapping[str, str] | None = None
) -> Explanation:
    """Explain ``statement`` on ``scope``: each ``and``/``or``/``not``/``?:`` opens into its parts.

    ``failed`` maps the tags whose rules failed to why: a part testing one of them is unknown.
    """
    return _explain(statement.expression, context, scope, failed or {})


def _failed_tag(node: Any, failed: Mapping[str, str]) -> str | None:
    """Why ``node`` is unknown: the first failed tag it tests with ``'key' in tags``."""
    for current, _ in walk(node):
        if (
            isinstance(current, ast.ContainsExpression)
            and isinstance(current.container, ast.SymbolExpression)
            and current.container.name == "tags"
            and isinstance(current.member, ast.StringExpression)
            and current.member.value in failed
        ):
            return f"{current.member.value!r} failed: {failed[current.member.value]}"
    return None


def _combined_unknown(parts: list[Explanation]) -> str | None:
    """A part testing a failed tag makes the whole unknown, as it makes the tag unknown (no Kleene
    logic: the evaluator leaves a tag that depends on a failed one unknown, whatever the rest)."""
    return next((part.unknown for part in parts if part.unknown is not None), None)


def _explain(node: Any, context: RuleContext, scope: Scope, failed: Mapping[str, str]) -> Explanation:
    value, error = _evaluate(node, context, scope)
    shown = None if error else format_value(value)
    parts: list[Explanation] = []
    if isinstance(node, ast.LogicExpression):
        left = _explain(node.left, context, scope, failed)
        parts.append(left)
        left_value, left_error = _evaluate(node.left, context, scope)
        stops = (
            left_error is None
            and left.unknown is None
            and (bool(left_value) if node.type == "or" else not bool(left_value))
        )
        if left_error is not None:
            parts.append(_skipped(node.right, "the left side failed"))
        elif stops:
            parts.append(_skipped(node.right, f"the left side is {'true' if node.type == 'or' else 'false'}"))
        else:
            parts.append(_explain(node.right, context, scope, failed))
    elif isinstance(node, ast.UnaryExpression) and node.type == "not" and _opens(node.right):
        parts.append(_explain(node.right, context, scope, failed))
    elif isinstance(node, ast.TernaryExpression):
        condition, condition_error = _evaluate(node.condition, context, scope)
        parts.append(_explain(node.condition, context, scope, failed))
        if condition_error is None:
            taken, skipped = (
                (node.case_true, node.case_false) if condition else (node.case_false, node.case_true)
            )
            parts.append(_explain(taken, context, scope, failed))
            parts.append(_skipped(skipped, "the other branch was taken"))
    if parts:
        unknown = _combined_unknown(parts)
        return Explanation(unparse(node), shown, error, children=tuple(parts), unknown=unknown)
    return Explanation(
        unparse(node), shown, error, inputs=_inputs(node, context, scope), unknown=_failed_tag(node, failed)
    )


def _opens(node: Any) -> bool:
    return isinstance(node, (ast.LogicExpression, ast.TernaryExpression)) or (
        isinstance(node, ast.UnaryExpression) and node.type == "not"
    )
