"""The rule language as tagrules runs it: rule-engine's grammar, a typed context, and safety bounds.

rule-engine parses and type-checks; this module adds what tagrules needs around it:

* a parser that remembers where in the rule text each node came from, so every problem has a column;
* a :class:`RuleContext` with the snapshot schema as type information, UTC for naive datetimes, a fixed
  decimal context, ``$now``/``$today`` bound to the evaluation's ``now``, and bounded builtins;
* the errors a rule raises when a snapshot lacks a field or holds a bad value;
* an evaluation budget: comprehensions and ranges count their steps, so no rule runs unbounded.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import functools
import re
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, final

import rule_engine
from rule_engine import errors as re_errors
from rule_engine.ast import Assignment, Statement
from rule_engine.builtins import Builtins, BuiltinValueGenerator
from rule_engine.engine.context import _tls_getter
from rule_engine.parser import Parser, _DeferredAstNode
from rule_engine.types import DataType, _DataTypeDef, is_integer_number

__all__ = [
    "DECIMAL_CONTEXT",
    "MAX_RANGE",
    "MAX_RULE_LENGTH",
    "MAX_STEPS",
    "UTC",
    "BudgetExceeded",
    "FieldInvalid",
    "FieldMissing",
    "RefusedConstruct",
    "RuleContext",
    "Scope",
    "evaluation_state",
    "parse_statement",
    "span_of",
]

UTC = datetime.timezone.utc

#: The decimal context every rule runs in, whatever the calling thread's context is (rule-engine's
#: default: 28 digits, exponents within +-999999, and errors for invalid operations, division by zero
#: and overflow).
DECIMAL_CONTEXT = decimal.Context(
    prec=28,
    rounding=decimal.ROUND_HALF_EVEN,
    Emin=-999999,
    Emax=999999,
    capitals=1,
    clamp=0,
    flags=[],
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

#: The longest rule text accepted, in characters.
MAX_RULE_LENGTH = 65_536
#: The most steps (comprehension items, range members) one rule may take on one snapshot.
MAX_STEPS = 100_000
#: The longest ``$range`` a rule may build.
MAX_RANGE = MAX_STEPS


class FieldMissing(re_errors.SymbolResolutionError):
    """The snapshot has no value for a field the rule reads."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.message = f"the snapshot has no field {name!r}"


class FieldInvalid(re_errors.EvaluationError):
    """The snapshot's value for a field the rule reads does not fit the field's type."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"field {name!r}: {problem}")
        self.field = name


class BudgetExceeded(re_errors.EvaluationError):
    """The rule took more steps than :data:`MAX_STEPS` on one snapshot."""

    def __init__(self) -> None:
        super().__init__(f"the rule took more than {MAX_STEPS:,} steps on this snapshot")


class RefusedConstruct(re_errors.EngineError):
    """A construct tagrules does not accept in rules, raised while parsing."""


@final
class _State(threading.local):
    """Per-thread evaluation state: the evaluation's ``now`` and the steps taken so far."""

    def __init__(self) -> None:
        self.now: datetime.datetime | None = None
        self.steps = 0


evaluation_state = _State()


def charge(steps: int) -> None:
    """Count ``steps`` against the current rule's budget; raises :class:`BudgetExceeded` past it."""
    evaluation_state.steps += steps
    if evaluation_state.steps > MAX_STEPS:
        raise BudgetExceeded()


def _now(_builtins: Builtins) -> datetime.datetime:
    now = evaluation_state.now
    return now if now is not None else datetime.datetime.now(UTC)


def _today(builtins: Builtins) -> datetime.datetime:
    return _now(builtins).replace(hour=0, minute=0, second=0, microsecond=0)


def _integer(value: Any, position: int, name: str) -> int:
    if not is_integer_number(value):
        raise re_errors.FunctionCallError(f"argument #{position} ({name}) must be an integer number")
    if abs(value) > 2**63:
        raise re_errors.FunctionCallError(f"argument #{position} ({name}) is too large")
    return int(value)


def bounded_range(start: Any, stop: Any = None, step: Any = None) -> list[int]:
    """rule-engine's ``$range``, refusing ranges longer than :data:`MAX_RANGE` and counting its steps."""
    first = _integer(start, 1, "start")
    if stop is None:
        members = range(first)
    else:
        last = _integer(stop, 2, "stop")
        members = range(first, last) if step is None else range(first, last, _integer(step, 3, "step"))
    if len(members) > MAX_RANGE:
        raise re_errors.FunctionCallError(f"a range of {len(members):,} numbers is longer than {MAX_RANGE:,}")
    charge(len(members))
    return list(members)


@final
class Scope:
    """What a rule sees while it runs: the snapshot's field values and the tags assigned so far."""

    __slots__ = ("bad", "tags", "values")

    def __init__(self, values: Mapping[str, Any], bad: Mapping[str, str], tags: set[str]) -> None:
        self.values = values
        self.bad = bad
        self.tags = tags


def _resolve_symbol(thing: Any, name: str) -> Any:
    if not isinstance(thing, Scope):
        return rule_engine.resolve_item(thing, name)
    if name == "tags":
        return thing.tags
    try:
        return thing.values[name]
    except KeyError:
        problem = thing.bad.get(name)
        if problem is not None:
            raise FieldInvalid(name, problem) from None
        raise FieldMissing(name) from None


class RuleContext(rule_engine.Context):
    """The rule-engine context of one catalog: field types, UTC, a fixed decimal context, safe builtins.

    ``functions`` adds builtins: name -> (value, rule-engine data type).
    """

    TAGS_TYPE: ClassVar[_DataTypeDef] = DataType.SET(DataType.STRING)

    def __init__(
        self,
        field_types: Mapping[str, _DataTypeDef],
        *,
        functions: Mapping[str, tuple[Any, _DataTypeDef]] | None = None,
    ) -> None:
        super().__init__(
            type_resolver=self._resolve_type,
            resolver=_resolve_symbol,
            default_timezone=UTC,
            decimal_context=DECIMAL_CONTEXT,
            mapping_attribute_lookup=False,
        )
        self.field_types = types.MappingProxyType(dict(field_types))
        self.unknown_symbol: Callable[[str], None] | None = None
        extra = dict(functions or {})
        values: dict[str, Any] = {
            "now": BuiltinValueGenerator(_now),
            "today": BuiltinValueGenerator(_today),
            "range": bounded_range,
            "re_groups": BuiltinValueGenerator(
                functools.partial(_tls_getter, self._thread_local, "regex_groups")
            ),
            **{name: value for name, (value, _) in extra.items()},
        }
        value_types: dict[str, _DataTypeDef] = {
            "re_groups": DataType.ARRAY(DataType.STRING),
            **{name: data_type for name, (_, data_type) in extra.items()},
        }
        self.builtins = Builtins.from_defaults(values=values, value_types=value_types, timezone=UTC)

    def _resolve_type(self, name: str) -> _DataTypeDef:
        if name == "tags":
            return self.TAGS_TYPE
        found = self.field_types.get(name)
        if found is not None:
            return found
        if self.unknown_symbol is not None:
            self.unknown_symbol(name)
            return DataType.UNDEFINED
        raise re_errors.SymbolResolutionError(name)

    @contextlib.contextmanager
    def assignments(self, *assignments: Assignment) -> Iterator[None]:
        charge(1)
        with super().assignments(*assignments):
            yield

    def resolve_attribute(self, thing: Any, object_: Any, name: str) -> Any:
        # rule-engine turns the number into a Python int first: for 1e999999 that takes minutes
        if (
            name in ("ceiling", "floor")
            and isinstance(object_, decimal.Decimal)
            and object_.is_finite()
            and object_.adjusted() > 308
        ):
            raise re_errors.EvaluationError(f"the number is too large for .{name}")
        return super().resolve_attribute(thing, object_, name)


# ---------------------------------------------------------------------------------------------------
# a parser that remembers positions
# ---------------------------------------------------------------------------------------------------

_build_spans = threading.local()


class _Spanned(_DeferredAstNode):
    """A deferred node that knows its place in the rule text and passes it on to what it builds."""

    __slots__ = ("span",)
    span: tuple[int, int]

    def build(self) -> Any:
        stack: list[tuple[int, int]] = _build_spans.__dict__.setdefault("stack", [])
        stack.append(self.span)
        try:
            node = super().build()
        except Exception as error:
            if not hasattr(error, "tagrules_span"):
                with contextlib.suppress(AttributeError):  # exceptions without a __dict__ keep no span
                    error.tagrules_span = self.span  # type: ignore[attr-defined]
                    error.tagrules_operand_types = self._operand_types()  # type: ignore[attr-defined]
            raise
        finally:
            stack.pop()
        if not hasattr(node, "tagrules_span"):
            node.tagrules_span = self.span
        return node

    def _operand_types(self) -> tuple[str, str] | None:
        """The types of a binary operator's operands, built again, for a message naming them."""
        if len(self.args) != 4 or not isinstance(self.args[1], str):
            return None
        names = []
        for operand in self.args[2:]:
            try:
                built = operand.build() if isinstance(operand, _DeferredAstNode) else operand
                name = str(built.result_type.name).lower()
                names.append("number" if name == "float" else name)  # rule-engine's FLOAT holds every number
            except Exception:
                return None
        return names[0], names[1]


def current_span() -> tuple[int, int] | None:
    """The span of the node being built right now, if any (used to place unknown-symbol problems)."""
    stack: list[tuple[int, int]] = _build_spans.__dict__.get("stack", [])
    return stack[-1] if stack else None


def span_of(node: Any) -> tuple[int, int] | None:
    """Where in the rule text a built node came from: (start, start of its last token)."""
    span = getattr(node, "tagrules_span", None)
    return span if isinstance(span, tuple) else None


_REFUSED_OPERATORS = {
    "BWLSH": "the shift operator << is not supported in tag rules",
    "BWRSH": "the shift operator >> is not supported in tag rules",
}


# a backslash before anything but a Python string escape (or another backslash)
_UNKNOWN_ESCAPE = re.compile(r"""\\(?:([\\'"abfnrtv0-7xNuU\n])|(.))""", re.DOTALL)


def keep_unknown_escapes(literal: str) -> str:
    """A string literal with each backslash that starts no escape doubled, so that it stays a backslash.

    ``'.*@example\\.com'`` is a regex meant to match a dot; Python's escape decoding (which
    rule-engine uses) keeps the backslash too, but warns, and will refuse it in a later version.
    Raw (``r'...'``) literals are left alone.
    """
    if literal[:1] == "r":
        return literal
    return _UNKNOWN_ESCAPE.sub(
        lambda match: match.group(0) if match.group(1) else "\\" + match.group(0), literal
    )


def _wrap_production(function: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    def production(self: Any, p: Any) -> None:
        if function.__name__ == "p_expression_string":
            p[1] = keep_unknown_escapes(p[1])
        function(self, p)
        value = p[0]
        if type(value) is not _DeferredAstNode or (len(p) > 1 and value is p[1]):
            return
        span = (p.lexspan(1)[0], p.lexspan(len(p) - 1)[1])
        if len(value.args) > 1 and value.args[1] in _REFUSED_OPERATORS:
            error = RefusedConstruct(_REFUSED_OPERATORS[value.args[1]])
            error.tagrules_span = span  # type: ignore[attr-defined]
            raise error
        spanned = _Spanned(value.cls, args=value.args, kwargs=value.kwargs, method=value.method)
        spanned.span = span
        p[0] = spanned

    production.__doc__ = function.__doc__
    production.__name__ = function.__name__
    return production


class _SpanParser(Parser):
    """rule-engine's parser with position tracking; it reuses the grammar tables rule-engine built."""

    def __init__(self) -> None:
        base = rule_engine.Rule.parser
        self.debug = False
        self.context = None
        self._lexer = base._lexer.clone()
        tables = base._parser
        parser = object.__new__(type(tables))
        parser.__dict__.update(tables.__dict__)
        productions = []
        for production in tables.productions:
            copy = object.__new__(type(production))
            copy.__dict__.update(production.__dict__)
            if copy.func:
                copy.callable = types.MethodType(_wrap_production(getattr(Parser, copy.func)), self)
            productions.append(copy)
        parser.productions = productions
        parser.errorfunc = self.p_error
        self._parser = parser


_parser_lock = threading.Lock()
_parser: _SpanParser | None = None


def _span_parser() -> _SpanParser:
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = _SpanParser()
        return _parser


def parse_statement(text: str, context: RuleContext) -> Statement:
    """Parse and type-check ``text``; errors carry ``tagrules_span`` where the position is known."""
    with decimal.localcontext(DECIMAL_CONTEXT):
        evaluation_state.steps = 0
        return _span_parser().parse(text, context, tracking=True)
