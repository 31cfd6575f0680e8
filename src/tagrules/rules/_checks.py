"""Checks tagrules adds on top of rule-engine's type checker, run on every parsed rule at load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rule_engine import DataType, ast

from tagrules.rules._linear_regex import linear_pattern
from tagrules.rules._regex import regex_risk, sequential_risk
from tagrules.rules._tree import describe_type, unparse, walk
from tagrules.schema import suggest

__all__ = ["MAX_DEPTH", "RuleFacts", "check_statement"]

#: How deeply a rule's expressions may nest.
MAX_DEPTH = 100

#: Builtins a tag rule may not use, and why.
_REFUSED_BUILTINS = {"random": "$random makes the tag change at random; tags must follow from the snapshot"}


@dataclass
class RuleFacts:
    """What a parsed rule reads and refers to, and the problems found: (message, span) pairs."""

    dependencies: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    builtins: set[str] = field(default_factory=set)
    problems: list[tuple[str, tuple[int, int] | None]] = field(default_factory=list)

    def refuse(self, message: str, node: Any) -> None:
        self.problems.append((message, getattr(node, "tagrules_span", None)))


def _unwrap(data_type: Any) -> Any:
    return DataType.NULLABLE.unwrap(data_type)


def _is_nullable(data_type: Any) -> bool:
    return bool(DataType.is_type(data_type, DataType.NULLABLE))


def _is_tags_symbol(node: Any) -> bool:
    return isinstance(node, ast.SymbolExpression) and node.name == "tags" and node.scope is None


def _boolean_operands(node: Any) -> list[Any]:
    if isinstance(node, ast.LogicExpression):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryExpression) and node.type == "not":
        return [node.right]
    if isinstance(node, ast.TernaryExpression):
        return [node.condition]
    if isinstance(node, ast.ComprehensionExpression) and node.condition is not None:
        return [node.condition]
    return []


def _check_nullable_condition(node: Any, facts: RuleFacts) -> None:
    if _is_nullable(node.result_type):
        text = unparse(node)
        facts.refuse(f"{text!r} may be null; write '({text} ?? false)' to say what null means here", node)


def check_statement(
    statement: ast.Statement, builtin_names: frozenset[str], field_names: frozenset[str]
) -> RuleFacts:
    """Check a parsed rule; return the tags, fields and builtins it uses and the problems found."""
    facts = RuleFacts()
    tag_containers: set[int] = set()
    expression = statement.expression
    for node, depth in walk(expression):
        if depth > MAX_DEPTH:
            facts.refuse(f"the rule nests more than {MAX_DEPTH} levels deep", node)
            return facts
        if isinstance(node, ast.ContainsExpression) and _is_tags_symbol(node.container):
            tag_containers.add(id(node.container))
            if isinstance(node.member, ast.StringExpression):
                facts.dependencies.add(node.member.value)
            else:
                facts.refuse(
                    "the tag tested with 'in tags' must be written as text, for example 'vip' in tags", node
                )
        elif isinstance(node, ast.SymbolExpression):
            _check_symbol(node, facts, tag_containers, builtin_names, field_names)
        elif isinstance(node, ast.ComparisonExpression) and node.type in ("eq", "ne"):
            _check_equality(node, facts)
        elif isinstance(node, ast.ContainsExpression):
            _check_containment(node, facts)
        elif isinstance(node, ast.FuzzyComparisonExpression):
            _check_regex(node, facts)
        for operand in _boolean_operands(node):
            _check_nullable_condition(operand, facts)
    _check_result(expression, facts)
    return facts


# a custom function reaches a catalog only through what it is loaded with (see docs/plugins.md)
_FUNCTION_HINT = (
    " (if a plugin provides it: is the plugin installed, and the catalog loaded with plugins=?"
    " see docs/plugins.md)"
)


def _check_symbol(
    node: ast.SymbolExpression,
    facts: RuleFacts,
    tag_containers: set[int],
    builtin_names: frozenset[str],
    field_names: frozenset[str],
) -> None:
    if node.scope is not None:
        if node.name in _REFUSED_BUILTINS:
            facts.refuse(_REFUSED_BUILTINS[node.name], node)
        elif node.name not in builtin_names:
            names = [f"${name}" for name in builtin_names]
            hint = suggest("$" + node.name, names) or _FUNCTION_HINT
            facts.refuse(f"unknown builtin '${node.name}'{hint}", node)
        facts.builtins.add(node.name)
    elif node.name == "tags":
        if id(node) not in tag_containers:
            facts.refuse("'tags' can only be tested as 'key' in tags or 'key' not in tags", node)
    elif node.name in field_names:
        facts.fields.add(node.name)


def _check_equality(node: Any, facts: RuleFacts) -> None:
    left, right = _unwrap(node.left.result_type), _unwrap(node.right.result_type)
    if DataType.UNDEFINED in (left, right) or DataType.NULL in (left, right):
        return
    if DataType.is_compatible(left, right):
        return
    outcome = "false" if node.type == "eq" else "true"
    facts.refuse(
        f"{unparse(node.left)} is {describe_type(left)} and {unparse(node.right)} is {describe_type(right)}, "
        f"so '{unparse(node)}' is always {outcome}",
        node,
    )


def _check_containment(node: Any, facts: RuleFacts) -> None:
    container = node.container.result_type
    member = _unwrap(node.member.result_type)
    if not (DataType.is_type(container, DataType.ARRAY) or DataType.is_type(container, DataType.SET)):
        return
    value_type = _unwrap(container.value_type)
    if DataType.UNDEFINED in (value_type, member) or member == DataType.NULL:
        return
    if not DataType.is_compatible(value_type, member):
        facts.refuse(
            f"{unparse(node.member)} is {describe_type(member)} but {unparse(node.container)} holds "
            f"{describe_type(value_type)} values, so '{unparse(node)}' is always false",
            node,
        )


def _check_regex(node: Any, facts: RuleFacts) -> None:
    if not isinstance(node.right, ast.StringExpression):
        facts.refuse("a regular expression must be written as a string literal", node)
        return
    pattern = linear_pattern(node._right)
    reason = regex_risk(node.right.value) or (None if pattern.linear else sequential_risk(node.right.value))
    if reason:
        facts.refuse(f"regular expression {node.right.value!r} refused: {reason}", node)
    else:
        # rule-engine compiled the pattern with Python's re; both the compiled code and the
        # interpreter call it through this attribute, which now runs it on RE2 where it can
        node._right = pattern


def _check_result(expression: Any, facts: RuleFacts) -> None:
    result = expression.result_type
    if _is_nullable(result) and _unwrap(result) == DataType.BOOLEAN:
        _check_nullable_condition(expression, facts)
    elif result == DataType.NULL:
        facts.refuse("the rule is always null; a rule must be true or false", expression)
    elif result not in (DataType.BOOLEAN, DataType.UNDEFINED):
        text = unparse(expression)
        facts.refuse(
            f"the rule gives {describe_type(result)}, not true or false; compare it, for example '{text} > 0'"
            if _unwrap(result) == DataType.FLOAT
            else f"the rule gives {describe_type(result)}, not true or false",
            expression,
        )
