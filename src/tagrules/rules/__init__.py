"""The rule language: parsing and checking rules against a schema, and where each problem is."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, final

from rule_engine import Rule
from rule_engine import errors as re_errors
from rule_engine.ast import Statement
from rule_engine.types import _DataTypeDef

from tagrules.rules._checks import check_statement
from tagrules.rules._language import (
    MAX_RULE_LENGTH,
    RefusedConstruct,
    RuleContext,
    current_span,
    parse_statement,
)
from tagrules.schema import Schema, suggest

__all__ = ["ParsedRule", "RuleLanguage", "RuleProblem", "line_and_column"]


@final
@dataclass(frozen=True, slots=True)
class RuleProblem:
    """A problem in one rule: the message and its 0-based offset in the rule text (if known)."""

    message: str
    position: int | None = None


@final
@dataclass(frozen=True, slots=True)
class ParsedRule:
    """A rule that parsed and passed every check.

    Attributes:
        text: the rule as written.
        statement: rule-engine's syntax tree, typed against the schema.
        dependencies: the tag keys the rule tests with ``'key' in tags``.
        fields: the snapshot fields the rule reads.
        builtins: the ``$`` builtins the rule uses.
    """

    text: str
    statement: Statement
    dependencies: frozenset[str]
    fields: frozenset[str]
    builtins: frozenset[str]


def line_and_column(text: str, position: int) -> tuple[int, int]:
    """The 1-based line and column of a 0-based ``position`` in ``text``."""
    position = max(0, min(position, len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


_NULLABLE_ROLE = re.compile(r"\((?:data type mismatch \()?(.+?) is nullable;")


@final
class RuleLanguage:
    """Parses rules against one schema (and optional extra builtins) and checks them.

    Args:
        schema: the snapshot schema rules are typed against.
        functions: extra ``$`` builtins, name -> (value, rule-engine data type).
    """

    def __init__(
        self, schema: Schema, functions: Mapping[str, tuple[Any, _DataTypeDef]] | None = None
    ) -> None:
        self.schema = schema
        self.context = RuleContext(schema.rule_types(), functions=functions)
        self._builtin_names = frozenset(self.context.builtins.keys())
        self._field_names = frozenset(schema.fields)

    def parse(self, text: str) -> tuple[ParsedRule | None, list[RuleProblem]]:
        """Parse and check ``text``; return the rule and every problem found.

        The rule is ``None`` when the text could not be parsed at all; when it parsed but has
        problems, it is returned too (its ``dependencies`` are still worth checking), and must not
        be evaluated.
        """
        if not isinstance(text, str):
            return None, [RuleProblem("the rule must be text")]
        if len(text) > MAX_RULE_LENGTH:
            return None, [
                RuleProblem(f"the rule is {len(text):,} characters long; the limit is {MAX_RULE_LENGTH:,}")
            ]
        if not text.strip():
            return None, [RuleProblem("the rule is empty")]
        unknown: list[RuleProblem] = []
        candidates = [*self._field_names, "tags"]

        def record(name: str) -> None:
            span = current_span()
            message = f"unknown field {name!r}{suggest(name, candidates)}"
            unknown.append(RuleProblem(message, span[0] if span else None))

        self.context.unknown_symbol = record
        try:
            statement = parse_statement(text, self.context)
        except RecursionError:
            return None, [*unknown, RuleProblem("the rule nests too deeply to read")]
        except re_errors.RuleSyntaxError as error:
            return None, [*unknown, _syntax_problem(text, error)]
        except Exception as error:
            return None, [*unknown, self._build_problem(text, error)]
        finally:
            self.context.unknown_symbol = None
        facts = check_statement(statement, self._builtin_names, self._field_names)
        problems = unknown + [
            RuleProblem(message, span[0] if span else None) for message, span in facts.problems
        ]
        parsed = ParsedRule(
            text=text,
            statement=statement,
            dependencies=frozenset(facts.dependencies),
            fields=frozenset(facts.fields),
            builtins=frozenset(facts.builtins),
        )
        return parsed, problems

    def _build_problem(self, text: str, error: Exception) -> RuleProblem:
        span = getattr(error, "tagrules_span", None)
        position = span[0] if span else None
        return RuleProblem(_describe_error(text, error, span), position)


def _syntax_problem(text: str, error: re_errors.RuleSyntaxError) -> RuleProblem:
    token = error.token
    message = error.message.split(" at: ")[0]
    if token is None:
        return RuleProblem(f"{message}: the rule ends too early", len(text))
    if message == "syntax error":
        message = f"syntax error at {str(token.value)[:30]!r}"
    return RuleProblem(message + _syntax_hint(text, token.lexpos), token.lexpos)


# operators of other languages, by the characters around a syntax error
_OTHER_OPERATORS = {"&&": "and", "||": "or", "=": "=="}


def _syntax_hint(text: str, position: int) -> str:
    for written, meant in _OTHER_OPERATORS.items():
        around = text[max(position - len(written) + 1, 0) : position + len(written)]
        if written in around and (written != "=" or text[position : position + 2] not in ("==", "=~")):
            return f"; did you mean {meant!r}?"
    return ""


def _fragment(text: str, span: tuple[int, int] | None) -> str | None:
    if span is None:
        return None
    lexer = Rule.parser._lexer.clone()
    end = span[1]
    try:
        lexer.input(text)
        lexer.lexpos = span[1]
        if lexer.token() is not None:
            end = lexer.lexpos
    except Exception:
        end = span[1] + 1
    fragment = " ".join(text[span[0] : end].split())
    return fragment if len(fragment) <= 60 else fragment[:57] + "..."


def _describe_error(text: str, error: Exception, span: tuple[int, int] | None) -> str:
    fragment = _fragment(text, span)
    where = f"in {fragment!r}: " if fragment else ""
    if isinstance(error, re_errors.RegexSyntaxError):
        return (
            f"invalid regular expression {error.value!r}: {error.error.msg} (at position {error.error.pos})"
        )
    if isinstance(error, re_errors.SyntaxError) and hasattr(error, "value"):
        return f"{error.message} {error.value!r}"
    if isinstance(error, RefusedConstruct):
        return error.message
    if isinstance(error, re_errors.AttributeResolutionError):
        hint = f"; did you mean {error.suggestion!r}?" if error.suggestion else ""
        return f"{where}unknown attribute {error.attribute_name!r}{hint}"
    if isinstance(error, re_errors.FunctionCallError) and error.function_name:
        name = str(error.function_name).rstrip("?")
        match = re.fullmatch(r"data type mismatch \(argument #(\d+)\)", error.message)
        if match:
            return f"{where}argument #{match.group(1)} of ${name} is not of the type the function declares"
        return f"{where}${name}: {error.message}"
    if isinstance(error, re_errors.EngineError):
        message = error.message
        match = _NULLABLE_ROLE.search(message)
        if match:
            return (
                f"{where}the {match.group(1)} may be null; give it a default with '??', "
                "for example '(field ?? 0)', or navigate safely with '&.' / '&['"
            )
        if message == "data type mismatch":
            types = getattr(error, "tagrules_operand_types", None)
            if types:
                left, right = (f"{'an' if name[0] in 'aeiou' else 'a'} {name}" for name in types)
                return f"{where}data type mismatch: {left} and {right} cannot be used together"
            return f"{where}data type mismatch: the operands cannot be used together"
        return f"{where}{message}"
    return f"{where}{type(error).__name__}: {error}"
