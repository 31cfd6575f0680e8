"""Compiling rules to Python: rule-engine's syntax tree -> Python ``ast`` -> one code object.

rule-engine interprets its tree node by node. tagrules keeps rule-engine as the language (its parser,
type checker and messages) and compiles the typed tree to Python, built as ``ast`` nodes — rule text
is never pasted into source — and compiled with :func:`compile`.

Values flow through the compiled code in one of two representations:

* **rule-engine's**: numbers as ``Decimal``, lists as tuples, mappings as ``OrderedDict`` — exactly
  what the interpreter computes;
* **native**: a snapshot value as the schema read it (ints and floats as Python numbers). Field reads
  produce native values; comparisons, membership tests, lengths and attributes use them directly
  where that provably gives rule-engine's answer (see :mod:`tagrules.rules._numbers`), and convert
  them (:func:`~tagrules.rules._runtime.coerce`) where it does not.

Everything else goes through :mod:`tagrules.rules._runtime`, which repeats rule-engine's checks in
rule-engine's order. A construct the compiler does not handle (``$re_groups``, a regex that is not a
literal, the shift operators) makes its rule run in the interpreter; :attr:`CompiledCatalog.interpreted`
says which and why.

The compiler is a table from node class to handler (``_HANDLERS``); a new node kind is one entry.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import decimal
import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, final

from rule_engine import ast as re_ast
from rule_engine.types import DataType

from tagrules.rules import _runtime
from tagrules.rules._language import RuleContext
from tagrules.rules._numbers import mirror, plan_float_comparison, plan_int_comparison
from tagrules.rules._tree import walk
from tagrules.schema import BadValue, FailedValue, FieldType

__all__ = [
    "CompiledRule",
    "Unsupported",
    "compile_predicate",
    "compile_rule",
    "field_fast_check",
    "field_reads",
]


class Unsupported(Exception):
    """A construct the compiler leaves to the interpreter; ``str()`` says which."""


_NO_LITERAL: Final = object()
#: A literal member no native member can equal (``1.5 in`` a ``list[int]``).
_NEVER: Final = object()
_NATIVE_SCALARS = frozenset({"str", "bool", "datetime", "date", "timedelta"})
_ORDER_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_ORDER_FUNCTIONS = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}
_AST_COMPARE = {
    "==": ast.Eq,
    "!=": ast.NotEq,
    ">": ast.Gt,
    ">=": ast.GtE,
    "<": ast.Lt,
    "<=": ast.LtE,
}
_ARITHMETIC = {
    "mul": operator.mul,
    "tdiv": operator.truediv,
    "fdiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
}
_BITWISE = {"bwand": operator.and_, "bwor": operator.or_, "bwxor": operator.xor}
_DATETIME_INTS = ("year", "month", "day", "hour", "minute", "second", "microsecond")
_DATETIME = FieldType("datetime")
_TIMEDELTA = FieldType("timedelta")


def _name(identifier: str) -> ast.Name:
    return ast.Name(id=identifier, ctx=ast.Load())


def _store(identifier: str) -> ast.Name:
    return ast.Name(id=identifier, ctx=ast.Store())


def _call(function: ast.expr | str, *arguments: ast.expr) -> ast.Call:
    target = _name(function) if isinstance(function, str) else function
    return ast.Call(func=target, args=list(arguments), keywords=[])


def _attribute(value: ast.expr, name: str) -> ast.Attribute:
    return ast.Attribute(value=value, attr=name, ctx=ast.Load())


def _compare(left: ast.expr, symbol: str, right: ast.expr) -> ast.Compare:
    return ast.Compare(left=left, ops=[_AST_COMPARE[symbol]()], comparators=[right])


def _is(left: ast.expr, right: ast.expr, negated: bool = False) -> ast.Compare:
    return ast.Compare(left=left, ops=[ast.IsNot() if negated else ast.Is()], comparators=[right])


def _constant(value: Any) -> ast.Constant:
    return ast.Constant(value=value)


def _then(first: ast.expr, result: ast.expr) -> ast.expr:
    """Evaluate ``first`` (for its errors), then give ``result``."""
    return ast.Subscript(
        value=ast.Tuple(elts=[first, result], ctx=ast.Load()), slice=_constant(1), ctx=ast.Load()
    )


@final
@dataclass(frozen=True)
class _Out:
    """A compiled expression and how its value is represented.

    ``native`` values are snapshot values as the schema read them, of type ``ftype``; the others are
    in rule-engine's representation. ``literal`` holds the value of a literal. ``simple`` marks an
    expression that is cheap and pure enough to evaluate twice. ``rule_expr``, when set, computes
    the value in rule-engine's representation where converting ``expr`` would not be exact (a
    native number equal in value but not in digits, such as ``0.0`` for the literal ``0``).
    """

    expr: ast.expr
    native: bool = False
    ftype: FieldType | None = None
    literal: Any = _NO_LITERAL
    simple: bool = False
    rule_expr: ast.expr | None = None

    @property
    def number_kind(self) -> str | None:
        """``int`` or ``float`` for a native number, else ``None``."""
        if not self.native or self.ftype is None:
            return None
        if self.ftype.kind in ("int", "float"):
            return self.ftype.kind
        if self.ftype.kind == "enum" and self.ftype.is_number:
            return "int"
        return None


@final
class _Pool:
    """Constants the compiled code refers to by name (decimals, datetimes, patterns, helpers)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._by_identity: dict[int, str] = {}
        self._counter = itertools.count()

    def add(self, value: Any, hint: str = "k") -> ast.Name:
        key = id(value)
        name = self._by_identity.get(key)
        if name is None:
            name = f"_{hint}{next(self._counter)}"
            self.values[name] = value
            self._by_identity[key] = name
        return _name(name)

    def constant(self, value: Any) -> ast.expr:
        """A literal value: inline when Python can hold it as a constant, else pooled."""
        if value is None or type(value) in (bool, str, int):
            return _constant(value)
        return self.add(value)


@dataclass
class _Requirements:
    """What a compiled rule needs from the function around it."""

    fields: set[str] = field(default_factory=set)
    tags: bool = False
    today: bool = False
    decimal_context: bool = False
    steps: bool = False


class _Compiler:
    """Compiles the expressions of rules over one schema; one instance per generated function."""

    def __init__(
        self,
        context: RuleContext,
        field_types: Mapping[str, FieldType],
        pool: _Pool,
        field_local: Callable[[str], str],
    ) -> None:
        self.context = context
        self.field_types = field_types
        self.pool = pool
        self.field_local = field_local
        self.requirements = _Requirements()
        self._scopes: list[dict[str, _Out]] = []
        self._counter = itertools.count()
        self._no_walrus = 0

    # -- helpers -------------------------------------------------------------------------------------

    def helper(self, name: str) -> ast.Name:
        return self.pool.add(getattr(_runtime, name), name)

    def temporary(self) -> str:
        return f"_t{next(self._counter)}"

    def bind(self, value: ast.expr, use: Callable[[ast.expr], ast.expr], simple: bool = False) -> ast.expr:
        """``use(x)`` with ``x`` bound to ``value`` once (a walrus, or a lambda where walrus is illegal)."""
        if simple or isinstance(value, ast.Name):
            return use(value)
        name = self.temporary()
        if self._no_walrus:
            lambda_ = ast.Lambda(
                args=ast.arguments(
                    posonlyargs=[], args=[ast.arg(arg=name)], kwonlyargs=[], kw_defaults=[], defaults=[]
                ),
                body=use(_name(name)),
            )
            return _call(lambda_, value)
        placeholder = _name(name)
        bound = use(placeholder)
        # the first use of the name becomes the assignment: evaluation order puts it first
        return _Rebinder(name, value).visit(bound)  # type: ignore[no-any-return]

    def _keep_rule_form(self, out: _Out, operands: list[_Out], rule_form: Callable[[], ast.expr]) -> _Out:
        """``out`` computed natively from ``operands``; when an operand's native value only equals
        rule-engine's (``x ?? 1.0`` read as an int), keep the rule-engine form beside it."""
        if all(operand.rule_expr is None for operand in operands):
            return out
        self.requirements.decimal_context = True
        return dataclasses.replace(out, rule_expr=rule_form())

    def to_rule_engine(self, out: _Out) -> ast.expr:
        """The expression giving rule-engine's representation of ``out``'s value."""
        if out.rule_expr is not None:
            return out.rule_expr
        if not out.native or out.ftype is None:
            return out.expr
        kind = out.ftype.kind
        if kind in _NATIVE_SCALARS or (kind == "enum" and not out.ftype.is_number):
            return out.expr
        if _holds_objects(out.ftype):
            # raw mappings that passed their fast check become the records the interpreter sees
            reader = self.pool.add(out.ftype.normalizer(), "normalize")
            return _call(self.helper("coerce"), _call(reader, out.expr))
        if not out.ftype.nullable and kind in ("int", "enum"):
            return _call(self.pool.add(decimal.Decimal, "Decimal"), out.expr)
        if not out.ftype.nullable and kind == "float":
            return _call(self.helper("decimal_of_float"), out.expr)
        return _call(self.helper("coerce"), out.expr)

    # -- entry points --------------------------------------------------------------------------------

    def value(self, node: Any) -> _Out:
        handler = _HANDLERS.get(type(node))
        if handler is None:
            for kind, candidate in _HANDLERS.items():
                if isinstance(node, kind):
                    handler = candidate
                    break
            else:
                raise Unsupported(f"{type(node).__name__} is not compiled")
        return handler(self, node)

    def rule_value(self, node: Any) -> ast.expr:
        """The node's value in rule-engine's representation."""
        return self.to_rule_engine(self.value(node))

    def truth(self, node: Any) -> ast.expr:
        """An expression whose truth is the node's truth (native and rule-engine truth agree)."""
        if isinstance(node, re_ast.LogicExpression):
            op: ast.boolop = ast.And() if node.type == "and" else ast.Or()
            return ast.BoolOp(op=op, values=[self.truth(node.left), self.truth(node.right)])
        if isinstance(node, re_ast.UnaryExpression) and node.type == "not":
            return ast.UnaryOp(op=ast.Not(), operand=self.truth(node.right))
        return self.value(node).expr

    # -- literals and symbols ------------------------------------------------------------------------

    def literal(self, node: Any) -> _Out:
        if node.is_reduced:
            value = node.evaluate(None)
            return _Out(self.pool.constant(value), literal=value, simple=True)
        if isinstance(node, re_ast.MappingExpression):
            pairs: list[ast.expr] = [
                ast.Tuple(
                    elts=[
                        self.rule_value(key),
                        ast.Lambda(
                            args=ast.arguments(
                                posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]
                            ),
                            body=self.rule_value(value),
                        ),
                    ],
                    ctx=ast.Load(),
                )
                for key, value in node.value
            ]
            return _Out(_call(self.helper("mapping_literal"), ast.List(elts=pairs, ctx=ast.Load())))
        members = [self.rule_value(member) for member in node.value]
        if isinstance(node, re_ast.SetExpression):
            return _Out(ast.Set(elts=members))
        return _Out(ast.Tuple(elts=members, ctx=ast.Load()))

    def symbol(self, node: Any) -> _Out:
        name = node.name
        if node.scope is not None:
            if name == "now":
                return _Out(_name("now"), native=True, ftype=_DATETIME, simple=True)
            if name == "today":
                self.requirements.today = True
                return _Out(_name("today"), native=True, ftype=_DATETIME, simple=True)
            if name == "re_groups":
                raise Unsupported("$re_groups depends on the last regex match")
            value = self.context.builtins[name]
            return _Out(self.pool.constant(_runtime.new_value(value)), simple=True)
        for scope in reversed(self._scopes):
            if name in scope:
                return scope[name]
        if name == "tags":
            self.requirements.tags = True
            return _Out(_name("visible"), simple=True)
        field_type = self.field_types.get(name)
        if field_type is None:
            raise Unsupported(f"unknown symbol {name!r}")
        self.requirements.fields.add(name)
        local = self.field_local(name)
        guarded = ast.IfExp(
            test=_is(_name(local), self.pool.add(_runtime.ABSENT, "ABSENT"), negated=True),
            body=_name(local),
            orelse=_call(self.helper("fail_field"), _constant(name), _name("problems")),
        )
        return _Out(guarded, native=True, ftype=field_type, simple=True)

    # -- logic ---------------------------------------------------------------------------------------

    def logic(self, node: Any) -> _Out:
        expression = self.truth(node)
        both_boolean = (
            node.left.result_type == DataType.BOOLEAN and node.right.result_type == DataType.BOOLEAN
        )
        return _Out(expression if both_boolean else _call("bool", expression))

    def unary(self, node: Any) -> _Out:
        if node.type == "not":
            return _Out(ast.UnaryOp(op=ast.Not(), operand=self.truth(node.right)))
        operand = self.value(node.right)
        if operand.number_kind is not None and operand.ftype is not None and not operand.ftype.nullable:
            negated: ast.expr = ast.UnaryOp(op=ast.USub(), operand=operand.expr)
            if operand.number_kind == "float":
                # Decimal negation turns -0.0 and 0.0 into 0.0; so must the native one
                negated = self.bind(
                    operand.expr,
                    lambda value: ast.IfExp(
                        test=value, body=ast.UnaryOp(op=ast.USub(), operand=value), orelse=_constant(0.0)
                    ),
                    simple=operand.simple,
                )
            return self._keep_rule_form(
                _Out(negated, native=True, ftype=operand.ftype),
                [operand],
                lambda: _call(self.helper("negate"), self.to_rule_engine(operand)),
            )
        if _is_plain(operand, "timedelta"):
            return _Out(ast.UnaryOp(op=ast.USub(), operand=operand.expr), native=True, ftype=operand.ftype)
        self.requirements.decimal_context = True
        return _Out(_call(self.helper("negate"), self.to_rule_engine(operand)))

    def ternary(self, node: Any) -> _Out:
        condition = self.truth(node.condition)
        first, second = self.value(node.case_true), self.value(node.case_false)
        if first.native and second.native and _same_type(first.ftype, second.ftype):
            merged = _merge_nullable(first.ftype, second.ftype)
            return self._keep_rule_form(
                _Out(
                    ast.IfExp(test=condition, body=first.expr, orelse=second.expr), native=True, ftype=merged
                ),
                [first, second],
                lambda: ast.IfExp(
                    test=condition, body=self.to_rule_engine(first), orelse=self.to_rule_engine(second)
                ),
            )
        body, orelse = self.to_rule_engine(first), self.to_rule_engine(second)
        return _Out(ast.IfExp(test=condition, body=body, orelse=orelse))

    def coalesce(self, node: Any) -> _Out:
        left = self.value(node.left)
        right = self.value(node.right)

        def coalesced(left_expr: ast.expr, right_expr: ast.expr) -> ast.expr:
            def use(bound: ast.expr) -> ast.expr:
                return ast.IfExp(
                    test=_is(bound, _constant(None), negated=True), body=bound, orelse=right_expr
                )

            # a conversion of a simple value is not simple: bind it rather than convert twice
            return self.bind(left_expr, use, simple=left.simple and left_expr is left.expr)

        rule_form = coalesced(self.to_rule_engine(left), self.to_rule_engine(right))
        native_type = _coalesced_native_type(left, right)
        if native_type is None:
            return _Out(rule_form)
        native_right, exact = self._native_literal(right, native_type)
        native_form = coalesced(left.expr, native_right)
        return _Out(native_form, native=True, ftype=native_type, rule_expr=None if exact else rule_form)

    def _native_literal(self, out: _Out, ftype: FieldType) -> tuple[ast.expr, bool]:
        """A literal as a native value of ``ftype``, and whether converting it back gives the very
        same decimal (digits and exponent), or only an equal one."""
        literal = out.literal
        if literal is _NO_LITERAL or not isinstance(literal, decimal.Decimal):
            return out.expr, True
        if ftype.kind == "float":
            native: float | int = float(literal)
            back = decimal.Decimal(repr(native))
        else:
            native = int(literal)
            back = decimal.Decimal(native)
        return _constant(native), back.as_tuple() == literal.as_tuple()

    # -- comparisons ---------------------------------------------------------------------------------

    def comparison(self, node: Any) -> _Out:
        if node.type in ("eq", "ne"):
            return self.equality(node)
        return self.ordering(node)

    def equality(self, node: Any) -> _Out:
        left, right = self.value(node.left), self.value(node.right)
        symbol = "==" if node.type == "eq" else "!="
        native = self._numeric_against_literal(left, right, symbol)
        if native is not None:
            return _Out(native)
        if left.literal is None or right.literal is None:
            other = right if left.literal is None else left
            if other.literal is None:
                return _Out(_constant(symbol == "=="))
            return _Out(_is(other.expr, _constant(None), negated=symbol == "!="))
        if _natively_comparable(left, right):
            return _Out(_compare(left.expr, symbol, right.expr))
        function = "equal" if node.type == "eq" else "unequal"
        return _Out(_call(self.helper(function), self.to_rule_engine(left), self.to_rule_engine(right)))

    def ordering(self, node: Any) -> _Out:
        left, right = self.value(node.left), self.value(node.right)
        symbol = _ORDER_SYMBOLS[node.type]
        # ordering a null against anything but null is rule-engine's error, not Python's TypeError
        if not _nullable(left) and not _nullable(right):
            native = self._numeric_against_literal(left, right, symbol)
            if native is not None:
                return _Out(native)
            if _natively_comparable(left, right):
                return _Out(_compare(left.expr, symbol, right.expr))
        self.requirements.decimal_context = True
        function = self.pool.add(_ORDER_FUNCTIONS[node.type], node.type)
        return _Out(
            _call(self.helper("order"), function, self.to_rule_engine(left), self.to_rule_engine(right))
        )

    def _numeric_against_literal(self, left: _Out, right: _Out, symbol: str) -> ast.expr | None:
        """``x OP literal`` for a native number ``x``, natively, or ``None`` when that is not exact."""
        if isinstance(right.literal, decimal.Decimal) and left.number_kind is not None:
            value, literal, operator_symbol = left, right.literal, symbol
        elif isinstance(left.literal, decimal.Decimal) and right.number_kind is not None:
            value, literal, operator_symbol = right, left.literal, mirror(symbol)
        else:
            return None
        if value.number_kind == "int":
            plan = plan_int_comparison(operator_symbol, literal)
        else:
            plan = plan_float_comparison(operator_symbol, literal)
        if plan is None:
            return None
        if isinstance(plan, bool):
            return _then(value.expr, _constant(plan))
        operator_name, threshold = plan
        return _compare(value.expr, operator_name, _constant(threshold))

    # -- arithmetic ----------------------------------------------------------------------------------

    def arithmetic(self, node: Any) -> _Out:
        self.requirements.decimal_context = True
        check = self.helper("check_numeric")
        left = _call(check, self.rule_value(node.left))
        right = _call(check, self.rule_value(node.right))
        function = self.pool.add(_ARITHMETIC[node.type], node.type)
        return _Out(_call(self.helper("arithmetic"), function, left, right))

    def add_or_subtract(self, node: Any) -> _Out:
        left, right = self.value(node.left), self.value(node.right)
        python_operator = ast.Add() if node.type == "add" else ast.Sub()
        native = _native_sum(left, right)
        if native is not None:
            helper_name = "add" if node.type == "add" else "subtract"
            return self._keep_rule_form(
                _Out(
                    ast.BinOp(left=left.expr, op=python_operator, right=right.expr), native=True, ftype=native
                ),
                [left, right],
                lambda: _call(
                    self.helper(helper_name), self.to_rule_engine(left), self.to_rule_engine(right)
                ),
            )
        if node.type == "add" and _is_text(left) and _is_text(right):
            concatenated = ast.BinOp(left=left.expr, op=ast.Add(), right=right.expr)
            return _Out(concatenated, native=True, ftype=FieldType("str"))
        result_kind = _time_arithmetic(left, right, node.type)
        if result_kind is not None:
            result_type = _DATETIME if result_kind == "datetime" else _TIMEDELTA
            return _Out(
                ast.BinOp(left=left.expr, op=python_operator, right=right.expr),
                native=True,
                ftype=result_type,
            )
        self.requirements.decimal_context = True
        helper = self.helper("add" if node.type == "add" else "subtract")
        return _Out(_call(helper, self.to_rule_engine(left), self.to_rule_engine(right)))

    def bitwise(self, node: Any) -> _Out:
        if node.type not in _BITWISE:
            raise Unsupported(f"the {node.type} operator is not compiled")
        left, right = self.value(node.left), self.value(node.right)
        item = _native_set_operands(left, right)
        if item is not None:
            # two sets of one kind of member: Python's set operators are rule-engine's
            python_operator = {"bwand": ast.BitAnd, "bwor": ast.BitOr, "bwxor": ast.BitXor}[node.type]()
            operation = ast.BinOp(left=left.expr, op=python_operator, right=right.expr)
            return _Out(operation, native=True, ftype=FieldType("set", item=item))
        self.requirements.decimal_context = True
        checked_left = _call(self.helper("bitwise_left"), self.to_rule_engine(left))
        function = self.pool.add(_BITWISE[node.type], node.type)
        return _Out(_call(self.helper("bitwise"), function, checked_left, self.to_rule_engine(right)))

    # -- text ----------------------------------------------------------------------------------------

    def regex(self, node: Any) -> _Out:
        if not isinstance(node.right, re_ast.StringExpression):
            raise Unsupported("a regular expression that is not a literal")
        search = node.type.endswith("fzs")
        negated = node.type.startswith("ne")
        pattern = self.pool.add(node._right, "regex")
        left = self.value(node.left)
        if left.native and left.ftype is not None and left.ftype.kind == "str" and not left.ftype.nullable:
            found = _call(_attribute(pattern, "search" if search else "match"), left.expr)
            return _Out(_is(found, _constant(None), negated=not negated))
        flags = (_constant(search), _constant(negated))
        return _Out(_call(self.helper("regex"), *flags, self.to_rule_engine(left), pattern))

    # -- containers ----------------------------------------------------------------------------------

    def contains(self, node: Any) -> _Out:
        container = self.value(node.container)
        member = self.value(node.member)
        fast = self._native_membership(container, member)
        if fast is not None:
            return _Out(fast)
        return _Out(
            _call(self.helper("contains"), self.to_rule_engine(container), self.to_rule_engine(member))
        )

    def _native_membership(self, container: _Out, member: _Out) -> ast.expr | None:
        in_: list[ast.cmpop] = [ast.In()]
        if isinstance(node_expr := container.expr, ast.Name) and node_expr.id == "visible":
            return ast.Compare(left=self.to_rule_engine(member), ops=in_, comparators=[container.expr])
        if container.literal is not _NO_LITERAL and isinstance(container.literal, (tuple, set)):
            members = _native_members(container.literal, member)
            if members is None:
                return None
            return ast.Compare(left=member.expr, ops=in_, comparators=[self.pool.add(members, "members")])
        if not container.native or container.ftype is None or container.ftype.nullable:
            return None
        kind = container.ftype.kind
        if kind == "str":
            # rule-engine refuses a member that is not text (null included): the checked path raises
            if _is_text(member):
                return self._container_first(container.expr, member)
            return None
        if kind in ("list", "set"):
            key_type = container.ftype.item
        elif kind == "dict":
            key_type = container.ftype.key
            if key_type is None:
                # an untyped dict's keys are of any type, but text only ever equals text
                if not _is_text(member):
                    return None
                key_type = FieldType("str")
        else:
            return None
        if key_type is None:
            return None
        # rule-engine leaves a set's members as they are (a float is not its decimal there)
        native_member = self._member_as(member, key_type, raw_floats=kind == "set")
        if native_member is None:
            return None
        if native_member is _NEVER:
            return _then(container.expr, _constant(False))
        return self._container_first(container.expr, replace(member, expr=native_member))

    def _member_as(self, member: _Out, item: FieldType, raw_floats: bool = False) -> Any:
        """``member`` as a value that equals a native member of type ``item`` exactly when
        rule-engine's values are equal: the member's own expression, a literal in the native
        representation, ``_NEVER`` for a literal no member can equal, or ``None`` (no native form).
        ``raw_floats``: rule-engine compares the member with the floats themselves, not their
        decimals (``0.1 in`` a set holding ``0.1`` is false there)."""
        kind = _equality_kind(item)
        if kind is None:
            return None
        if raw_floats and kind == "float":
            literal = member.literal
            if not isinstance(literal, decimal.Decimal):
                return None
            if literal.is_nan():
                return _NEVER
            exact = float(literal)
            return _constant(exact) if literal.is_infinite() or decimal.Decimal(exact) == literal else _NEVER
        if member.native and member.ftype is not None:
            return member.expr if _equality_kind(member.ftype) == kind and member.rule_expr is None else None
        literal = member.literal
        if literal is _NO_LITERAL:
            return None
        if literal is None:
            return _constant(None)
        if isinstance(literal, decimal.Decimal):
            native = _native_number(literal, kind)
            if native is None:
                return None
            return _NEVER if native is _NEVER else _constant(native)
        literal_kinds = {
            bool: "bool",
            str: "str",
            datetime.datetime: "datetime",
            datetime.timedelta: "timedelta",
        }
        if literal_kinds.get(type(literal)) == kind:
            return self.pool.constant(literal)
        return None

    def _container_first(self, container: ast.expr, member: _Out) -> ast.expr:
        """``member in container`` evaluating the container first, as rule-engine does."""
        if member.literal is not _NO_LITERAL or isinstance(member.expr, ast.Constant):
            # a literal cannot fail: the order is not observable
            return ast.Compare(left=member.expr, ops=[ast.In()], comparators=[container])
        if self._no_walrus:
            return _call(self.helper("contains"), container, member.expr)
        name = self.temporary()
        bound = ast.NamedExpr(target=_store(name), value=container)
        test = ast.Compare(left=member.expr, ops=[ast.In()], comparators=[_name(name)])
        return _then(bound, test)

    def get_attribute(self, node: Any) -> _Out:
        target = self.value(node.object)
        nullable_type = DataType.is_type(node.object.result_type, DataType.NULLABLE)
        guarded_target = node.safe or nullable_type
        if guarded_target and target.native and target.ftype is not None:
            # past the null test the value is of the base type: read it natively
            target = replace(target, ftype=target.ftype.with_nullable(False))
        if node._object_type is not None:
            field_type = _object_field(target, node.name)

            def read(value: ast.expr) -> _Out:
                if field_type is not None:
                    # a record, or a raw mapping that passed its fast check: both read by key
                    lookup = ast.Subscript(value=value, slice=_constant(node.name), ctx=ast.Load())
                    return _Out(lookup, native=True, ftype=field_type)
                return _Out(_call(self.helper("get_object_attribute"), self.pool.add(node, "node"), value))

        else:

            def read(value: ast.expr) -> _Out:
                fast = self._native_attribute(target, value, node.name)
                if fast is not None:
                    return fast
                if target.native:
                    value = self.to_rule_engine(replace(target, expr=value))
                helper = self.helper("get_attribute")
                return _Out(
                    _call(helper, self.pool.add(self.context, "context"), value, _constant(node.name))
                )

        if not guarded_target:
            return read(target.expr)
        holder: list[_Out] = []

        def use(bound: ast.expr) -> ast.expr:
            result = read(bound)
            holder.append(result)
            on_null: ast.expr = _constant(None) if node.safe else _call(self.helper("null_attribute"))
            body = result.expr if _stays_native(result) else self.to_rule_engine(result)
            return ast.IfExp(test=_is(bound, _constant(None)), body=on_null, orelse=body)

        guarded = self.bind(target.expr, use, simple=target.simple)
        result = holder[0]
        if _stays_native(result):
            assert result.ftype is not None
            return _Out(
                guarded, native=True, ftype=result.ftype.with_nullable(result.ftype.nullable or node.safe)
            )
        return _Out(guarded)

    def _native_attribute(self, target: _Out, value: ast.expr, name: str) -> _Out | None:
        if not target.native or target.ftype is None or target.ftype.nullable:
            return None
        kind = target.ftype.kind
        integer = FieldType("int")
        if name == "length" and kind in ("str", "list", "set", "dict"):
            return _Out(_call("len", value), native=True, ftype=integer)
        if name == "is_empty" and kind in ("str", "list", "set", "dict"):
            return _Out(ast.UnaryOp(op=ast.Not(), operand=value), native=True, ftype=FieldType("bool"))
        if kind == "str" and name in ("as_lower", "as_upper"):
            method = "lower" if name == "as_lower" else "upper"
            return _Out(_call(_attribute(value, method)), native=True, ftype=FieldType("str"))
        if kind == "str" and name == "to_str":
            return _Out(value, native=True, ftype=target.ftype)
        if kind in ("datetime", "date") and name in _DATETIME_INTS:
            return _Out(_attribute(value, name), native=True, ftype=integer)
        if kind == "dict" and name in ("keys", "values") and target.ftype.key is not None:
            item = target.ftype.key if name == "keys" else target.ftype.item
            members = _call("tuple", _call(_attribute(value, name)))
            return _Out(members, native=True, ftype=FieldType("list", item=item))
        return None

    def get_item(self, node: Any) -> _Out:
        container = self.value(node.container)
        if (
            node.safe
            and container.native
            and container.ftype is not None
            and container.ftype.kind == "dict"
            and container.ftype.key is not None
            and container.ftype.key.kind == "str"
            and isinstance(node.item, re_ast.StringExpression)
            and container.ftype.item is not None
        ):
            item_type = container.ftype.item.with_nullable(True)

            def lookup(bound: ast.expr) -> ast.expr:
                found = _call(_attribute(bound, "get"), _constant(node.item.value))
                return ast.IfExp(test=_is(bound, _constant(None)), body=_constant(None), orelse=found)

            if not container.ftype.nullable:
                found = _call(_attribute(container.expr, "get"), _constant(node.item.value))
                return _Out(found, native=True, ftype=item_type)
            return _Out(
                self.bind(container.expr, lookup, simple=container.simple), native=True, ftype=item_type
            )
        native = self._native_item(container, node)
        if native is not None:
            return native
        get_item = self.helper("get_item")
        container_expr = self.to_rule_engine(container)
        if not node.safe:
            checked = _call(self.helper("nonnull_container"), container_expr)
            return _Out(_call(get_item, checked, self.rule_value(node.item), _constant(False)))

        item = self.rule_value(node.item)

        def use(bound: ast.expr) -> ast.expr:
            return ast.IfExp(
                test=_is(bound, _constant(None)),
                body=_constant(None),
                orelse=_call(get_item, bound, item, _constant(True)),
            )

        return _Out(self.bind(container_expr, use))

    def _native_item(self, container: _Out, node: Any) -> _Out | None:
        """``dict[key]`` on a typed dict and ``sequence[index]`` on a list or text, read natively
        (a missing key or index raises rule-engine's error, or gives null with ``&[``)."""
        if not container.native or container.ftype is None or container.ftype.nullable:
            return None
        kind, item_type = container.ftype.kind, container.ftype.item
        if kind == "str":
            item_type = container.ftype
        if item_type is None or kind not in ("dict", "list", "str"):
            return None
        item = self.value(node.item)
        if kind == "dict":
            if container.ftype.key is None or _equality_kind(container.ftype.key) != "str":
                return None
            if not _is_text(item):
                return None
            key = item.expr
        else:
            literal = item.literal
            if not isinstance(literal, decimal.Decimal) or _native_number(literal, "int") in (None, _NEVER):
                return None
            key = _constant(int(literal))
        result_type = item_type.with_nullable(item_type.nullable or node.safe)
        lookup = _call(self.helper("native_item"), container.expr, key, _constant(node.safe))
        return _Out(lookup, native=True, ftype=result_type)

    def get_slice(self, node: Any) -> _Out:
        container = self.rule_value(node.container)
        bound_start = _call(self.helper("slice_bound"), self.rule_value(node.start))
        bound_stop = _call(self.helper("slice_bound"), self.rule_value(node.stop))
        get_slice = self.helper("get_slice")
        if not node.safe:
            checked = _call(self.helper("slice_container"), container)
            return _Out(_call(get_slice, checked, bound_start, bound_stop))

        def use(bound: ast.expr) -> ast.expr:
            return ast.IfExp(
                test=_is(bound, _constant(None)),
                body=_constant(None),
                orelse=_call(get_slice, bound, bound_start, bound_stop),
            )

        return _Out(self.bind(container, use))

    def comprehension(self, node: Any) -> _Out:
        self.requirements.steps = True
        self._no_walrus += 1
        try:
            iterable = self.value(node.iterable)
        finally:
            self._no_walrus -= 1
        statically_iterable = _statically_iterable(node.iterable.result_type)
        variable_type = None
        if iterable.native and iterable.ftype is not None and not iterable.ftype.nullable:
            variable_type = _iteration_type(iterable.ftype)
        if variable_type is not None:
            source = iterable.expr
        else:
            source = self.to_rule_engine(iterable)
            variable_type = None
            if not statically_iterable:
                source = _call(self.helper("comprehension_iterable"), source)
        variable = f"_v{next(self._counter)}"
        bound = _Out(_name(variable), native=variable_type is not None, ftype=variable_type, simple=True)
        self._scopes.append({node.variable: bound})
        try:
            condition = self.truth(node.condition) if node.condition is not None else None
            result = self.value(node.result)
        finally:
            self._scopes.pop()
        tick = _call(self.helper("tick"))
        test = tick if condition is None else ast.BoolOp(op=ast.And(), values=[tick, condition])
        # a member whose native value only equals rule-engine's (x ?? 0 for a float x) is kept in
        # rule-engine's representation, so the list holds exactly what the interpreter's would
        native_members = result.native and result.rule_expr is None
        element = result.expr if native_members else self.to_rule_engine(result)

        def list_of(members: ast.expr, ifs: list[ast.expr]) -> ast.ListComp:
            generator = ast.comprehension(target=_store(variable), iter=members, ifs=ifs, is_async=0)
            return ast.ListComp(elt=element, generators=[generator])

        if _counts_no_steps(node.condition) and _counts_no_steps(node.result):
            # only this comprehension counts steps: when all its members fit the budget, count them
            # at once (the same total, and no member could have exceeded it) and test no tick each
            def use(members: ast.expr) -> ast.expr:
                return ast.IfExp(
                    test=_call(self.helper("ticks"), members),
                    body=list_of(members, [] if condition is None else [condition]),
                    orelse=list_of(members, [test]),
                )

            comprehension: ast.expr = self.bind(source, use)
        else:
            comprehension = list_of(source, [test])
        if native_members and result.ftype is not None:
            # a native list stands for rule-engine's tuple (coerce turns it into one)
            return _Out(comprehension, native=True, ftype=FieldType("list", item=result.ftype))
        return _Out(_call("tuple", comprehension))

    def function_call(self, node: Any) -> _Out:
        function = node.function
        if (
            isinstance(function, re_ast.GetAttributeExpression)
            and function.name in ("starts_with", "ends_with")
            and len(node.arguments) == 1
            and not function.safe
        ):
            receiver = self.value(function.object)
            argument = self.value(node.arguments[0])
            if _is_plain(receiver, "str") and (
                _is_plain(argument, "str") or isinstance(argument.literal, str)
            ):
                method = "startswith" if function.name == "starts_with" else "endswith"
                return _Out(_call(_attribute(receiver.expr, method), argument.expr))
        if any(
            isinstance(current, re_ast.SymbolExpression) and current.name == "range"
            for current, _ in walk(function)
        ):
            self.requirements.steps = True
        callee = _call(self.helper("check_callable"), self.rule_value(function))
        arguments = ast.Tuple(elts=[self.rule_value(argument) for argument in node.arguments], ctx=ast.Load())
        return _Out(_call(self.helper("call"), self.pool.add(node, "node"), callee, arguments))


class _Rebinder(ast.NodeTransformer):
    """Turn the first read of a placeholder name into a walrus that binds it."""

    def __init__(self, name: str, value: ast.expr) -> None:
        self.name = name
        self.value: ast.expr | None = value

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id == self.name and self.value is not None:
            value, self.value = self.value, None
            return ast.NamedExpr(target=_store(self.name), value=value)
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        node.test = self.visit(node.test)
        node.body = self.visit(node.body)
        node.orelse = self.visit(node.orelse)
        return node


def _counts_no_steps(node: Any) -> bool:
    """Whether evaluating ``node`` can count no step of the budget (no comprehension, no call)."""
    if node is None:
        return True
    return not any(
        isinstance(current, (re_ast.ComprehensionExpression, re_ast.FunctionCallExpression))
        or (isinstance(current, re_ast.SymbolExpression) and current.scope is not None)
        for current, _ in walk(node)
    )


def _stays_native(out: _Out) -> bool:
    """Whether ``out`` can stay native through a null test: a native value whose rule-engine form
    is not needed beside it."""
    return out.native and out.ftype is not None and out.rule_expr is None


def _holds_objects(field_type: FieldType) -> bool:
    if field_type.kind == "object":
        return True
    return any(_holds_objects(part) for part in (field_type.item, field_type.key) if part is not None)


def _nullable(out: _Out) -> bool:
    return out.native and out.ftype is not None and out.ftype.nullable


def _same_type(first: FieldType | None, second: FieldType | None) -> bool:
    if first is None or second is None:
        return False
    return first.with_nullable(False) == second.with_nullable(False)


def _merge_nullable(first: FieldType | None, second: FieldType | None) -> FieldType | None:
    if first is None or second is None:
        return None
    return first.with_nullable(first.nullable or second.nullable)


def _is_plain(out: _Out, kind: str) -> bool:
    return out.native and out.ftype is not None and out.ftype.kind == kind and not out.ftype.nullable


def _is_text(out: _Out) -> bool:
    return _is_plain(out, "str") or isinstance(out.literal, str)


def _natively_comparable(left: _Out, right: _Out) -> bool:
    """Whether ``==``/``<`` on the two expressions as they are gives rule-engine's answer."""
    sides = []
    for side in (left, right):
        if side.native and side.ftype is not None:
            kind = side.ftype.kind
            if kind == "enum":
                kind = "int" if side.ftype.is_number else "str"
            if kind == "date":
                kind = "datetime"
            sides.append(kind)
        elif side.literal is not _NO_LITERAL:
            literal = side.literal
            if isinstance(literal, bool):
                sides.append("bool")
            elif isinstance(literal, str):
                sides.append("str")
            elif isinstance(literal, datetime.datetime):
                sides.append("datetime")
            elif isinstance(literal, datetime.timedelta):
                sides.append("timedelta")
            else:
                return False
        else:
            return False
    first, second = sides
    return first == second and first in ("str", "bool", "datetime", "timedelta", "int", "float")


def _coalesced_native_type(left: _Out, right: _Out) -> FieldType | None:
    if not left.native or left.ftype is None:
        return None
    base = left.ftype.with_nullable(False)
    if right.native and right.ftype is not None and _same_type(left.ftype, right.ftype):
        return right.ftype if right.ftype.nullable else base
    literal = right.literal
    if literal is _NO_LITERAL:
        return None
    kind = left.number_kind
    if kind is not None and isinstance(literal, decimal.Decimal) and literal.is_finite():
        if kind == "int" and literal == literal.to_integral_value() and abs(literal) < 2**63:
            return base
        if kind == "float" and decimal.Decimal(repr(float(literal))) == literal:
            return base
        return None
    if base.kind == "str" and isinstance(literal, str):
        return base
    # an empty collection, or text members beside text members, is the same natively
    if (
        (base.kind, type(literal)) in (("list", tuple), ("set", set))
        and base.item is not None
        and (not literal or (_equality_kind(base.item) == "str" and all(type(m) is str for m in literal)))
    ):
        return base
    if base.kind == "bool" and isinstance(literal, bool):
        return base
    if base.kind in ("datetime", "date") and isinstance(literal, datetime.datetime):
        return FieldType("datetime")
    if base.kind == "timedelta" and isinstance(literal, datetime.timedelta):
        return base
    return None


def _native_sum(left: _Out, right: _Out) -> FieldType | None:
    """int + int and int - int are exact natively: 64-bit ints stay far below 28 digits."""
    if left.number_kind == "int" and right.number_kind == "int" and not (_nullable(left) or _nullable(right)):
        return FieldType("int")
    return None


def _time_kind(out: _Out) -> str | None:
    if out.native and out.ftype is not None and not out.ftype.nullable:
        kind = out.ftype.kind
        return "datetime" if kind == "date" else kind if kind in ("datetime", "timedelta") else None
    if isinstance(out.literal, datetime.datetime):
        return "datetime"
    if isinstance(out.literal, datetime.timedelta):
        return "timedelta"
    return None


_TIME_RESULTS = {
    ("datetime", "add", "timedelta"): "datetime",
    ("timedelta", "add", "datetime"): "datetime",
    ("timedelta", "add", "timedelta"): "timedelta",
    ("datetime", "sub", "timedelta"): "datetime",
    ("datetime", "sub", "datetime"): "timedelta",
    ("timedelta", "sub", "timedelta"): "timedelta",
}


def _time_arithmetic(left: _Out, right: _Out, operation: str) -> str | None:
    """The kind of a datetime/timedelta sum or difference Python computes exactly as rule-engine."""
    return _TIME_RESULTS.get((_time_kind(left) or "", operation, _time_kind(right) or ""))


def _native_set_operands(left: _Out, right: _Out) -> FieldType | None:
    """The member type of ``left OP right`` for two native sets (or a literal set of text) whose
    members are of one kind, computed natively; ``None`` when that is not rule-engine's result.
    Float members are left out: their decimals hash differently, so a set of them iterates in
    another order."""
    kinds = []
    items = []
    for side in (left, right):
        if side.native and side.ftype is not None and side.ftype.kind == "set" and not side.ftype.nullable:
            assert side.ftype.item is not None
            kinds.append(_equality_kind(side.ftype.item))
            items.append(side.ftype.item)
        elif isinstance(side.literal, set) and all(type(member) is str for member in side.literal):
            kinds.append("str")
        else:
            return None
    if kinds[0] != kinds[1] or kinds[0] in (None, "float"):
        return None
    nullable = any(item.nullable for item in items)
    return items[0].with_nullable(nullable)


def _equality_kind(field_type: FieldType) -> str | None:
    """The kind of native value whose Python ``==`` (and hash) gives rule-engine's equality among
    values of that same kind: text, booleans, times, and ints or floats (never ints against floats:
    ``2**60 == float(2**60)`` natively, not as rule-engine's decimals)."""
    kind = field_type.kind
    if kind == "enum":
        return "int" if field_type.is_number else "str"
    if kind == "date":
        return "datetime"
    if kind in ("str", "int", "float", "bool", "datetime", "timedelta"):
        return kind
    return None


def _native_number(literal: decimal.Decimal, kind: str) -> Any:
    """A number literal as a native ``int`` or ``float`` equal to it, ``_NEVER`` when no native value
    of that kind equals it, ``None`` for any other kind."""
    if literal.is_nan():
        return _NEVER if kind in ("int", "float") else None
    if kind == "int":
        return int(literal) if literal.is_finite() and literal == literal.to_integral_value() else _NEVER
    if kind == "float":
        native = float(literal)
        # rule-engine holds a float as the decimal of its repr: only such a decimal can equal it
        if literal.is_infinite() or decimal.Decimal(repr(native)) == literal:
            return native
        return _NEVER
    return None


def _native_members(literal: Any, member: _Out) -> frozenset[Any] | None:
    """The members of a literal collection a native ``member`` can equal, in its own representation."""
    kind = member.number_kind
    if member.native and member.ftype is not None and member.ftype.kind == "str":
        found: set[Any] = {value for value in literal if isinstance(value, str)}
    elif kind is not None:
        found = set()
        for value in literal:
            if isinstance(value, bool):
                found.add(int(value) if kind == "int" else float(value))
            elif isinstance(value, decimal.Decimal) and not value.is_nan():
                if kind == "float" and (value.is_infinite() or decimal.Decimal(repr(float(value))) == value):
                    found.add(float(value))
                elif kind == "int" and value.is_finite() and value == value.to_integral_value():
                    found.add(int(value))
    else:
        return None
    if member.ftype is not None and member.ftype.nullable and None in literal:
        found.add(None)
    return frozenset(found)


def _object_field(target: _Out, name: str) -> FieldType | None:
    if (
        target.native
        and target.ftype is not None
        and target.ftype.kind == "object"
        and not target.ftype.nullable
    ):
        return dict(target.ftype.fields).get(name)
    return None


def _iteration_type(container: FieldType) -> FieldType | None:
    if container.kind in ("list", "set"):
        return container.item
    if container.kind == "dict" and container.key is not None:
        return container.key
    if container.kind == "str":
        return FieldType("str")
    return None


def _statically_iterable(data_type: Any) -> bool:
    return any(
        DataType.is_type(data_type, kind) for kind in (DataType.ARRAY, DataType.SET, DataType.MAPPING)
    ) or data_type in (DataType.STRING, DataType.BYTES)


_HANDLERS: dict[type, Callable[[_Compiler, Any], _Out]] = {
    re_ast.SymbolExpression: _Compiler.symbol,
    re_ast.LogicExpression: _Compiler.logic,
    re_ast.UnaryExpression: _Compiler.unary,
    re_ast.TernaryExpression: _Compiler.ternary,
    re_ast.CoalesceExpression: _Compiler.coalesce,
    re_ast.FuzzyComparisonExpression: _Compiler.regex,
    re_ast.ArithmeticComparisonExpression: _Compiler.comparison,
    re_ast.ComparisonExpression: _Compiler.comparison,
    re_ast.ArithmeticExpression: _Compiler.arithmetic,
    re_ast.AddExpression: _Compiler.add_or_subtract,
    re_ast.SubtractExpression: _Compiler.add_or_subtract,
    re_ast.BitwiseShiftExpression: _Compiler.bitwise,
    re_ast.BitwiseExpression: _Compiler.bitwise,
    re_ast.ContainsExpression: _Compiler.contains,
    re_ast.GetAttributeExpression: _Compiler.get_attribute,
    re_ast.GetItemExpression: _Compiler.get_item,
    re_ast.GetSliceExpression: _Compiler.get_slice,
    re_ast.ComprehensionExpression: _Compiler.comprehension,
    re_ast.FunctionCallExpression: _Compiler.function_call,
    re_ast.LiteralExpressionBase: _Compiler.literal,
}


# ---------------------------------------------------------------------------------------------------
# one rule, giving its value (used to test the compiler against the interpreter)
# ---------------------------------------------------------------------------------------------------


@final
@dataclass(frozen=True)
class CompiledRule:
    """One rule compiled to a function of ``(values, problems, visible, now)`` giving its value.

    ``values`` are a snapshot read by the schema, ``problems`` the messages of its bad fields,
    ``visible`` the tags assigned so far, ``now`` the evaluation time. The value is the one
    rule-engine's interpreter gives, or the same error class is raised.
    """

    function: Callable[[Mapping[str, Any], Mapping[str, str], set[str], datetime.datetime], Any]
    tree: ast.Module

    @property
    def source(self) -> str:
        """The generated Python, for reading."""
        return ast.unparse(self.tree)


def _field_local(name: str) -> str:
    return f"f_{name}"


def compile_rule(statement: Any, context: RuleContext, field_types: Mapping[str, FieldType]) -> CompiledRule:
    """Compile one parsed rule (``statement``) to a function giving its value.

    Raises:
        Unsupported: the rule uses a construct the compiler leaves to the interpreter.
    """
    pool = _Pool()
    compiler = _Compiler(context, field_types, pool, _field_local)
    _refuse_unsupported(statement)
    value = compiler.rule_value(statement.expression)
    requirements = compiler.requirements
    body: list[ast.stmt] = []
    absent = pool.add(_runtime.ABSENT, "ABSENT")
    for name in sorted(requirements.fields):
        read = _call(_attribute(_name("values"), "get"), _constant(name), absent)
        body.append(ast.Assign(targets=[_store(_field_local(name))], value=read))
    if requirements.today:
        body.append(ast.Assign(targets=[_store("today")], value=_today_expression(pool)))
    if requirements.steps:
        body.append(ast.Expr(_call(pool.add(_runtime.steps_reset, "steps_reset"))))
    body.extend(_with_decimal_context(pool, [ast.Return(value=value)], requirements.decimal_context))
    function = _function("_rule", ["values", "problems", "visible", "now"], body)
    tree = ast.Module(body=[function], type_ignores=[])
    code = _compile(tree, "<rule>", pool)
    return CompiledRule(function=code["_rule"], tree=tree)


def compile_predicate(
    statement: Any, context: RuleContext, schema: Any
) -> Callable[[Mapping[str, Any], datetime.datetime, set[str]], bool]:
    """Compile one parsed rule to ``(snapshot, now, visible_tags) -> bool`` reading a raw mapping.

    The predicate reads and checks the fields it needs as the catalog function does; a failing rule
    raises as it would in the interpreter.

    Raises:
        Unsupported: the rule uses a construct the compiler leaves to the interpreter.
    """
    pool = _Pool()
    compiler = _Compiler(context, schema.fields, pool, _field_local)
    _refuse_unsupported(statement)
    truth = compiler.truth(statement.expression)
    requirements = compiler.requirements
    body = field_reads(sorted(requirements.fields), schema, pool, "snapshot")
    if requirements.today:
        body.append(ast.Assign(targets=[_store("today")], value=_today_expression(pool)))
    if requirements.steps:
        body.append(ast.Expr(_call(pool.add(_runtime.steps_reset, "steps_reset"))))
    result = ast.Return(value=ast.IfExp(test=truth, body=_constant(True), orelse=_constant(False)))
    body.extend(_with_decimal_context(pool, [result], requirements.decimal_context))
    function = _function("_predicate", ["snapshot", "now", "visible"], body)
    namespace = _compile(ast.Module(body=[function], type_ignores=[]), "<predicate>", pool)
    predicate: Callable[[Mapping[str, Any], datetime.datetime, set[str]], bool] = namespace["_predicate"]
    return predicate


def field_reads(names: Sequence[str], schema: Any, pool: _Pool, source: str) -> list[ast.stmt]:
    """Statements reading each field from the mapping named ``source`` into its local, once: a fast
    type check, falling back to the schema's reader (a bad or missing field becomes ``ABSENT``)."""
    absent = pool.add(_runtime.ABSENT, "ABSENT")
    reader = pool.add(_read_field, "read_field")
    statements: list[ast.stmt] = [
        ast.Assign(targets=[_store("problems")], value=pool.add(_NO_PROBLEMS, "no_problems"))
    ]
    for name in names:
        local = _field_local(name)
        read = ast.Subscript(value=_name(source), slice=_constant(name), ctx=ast.Load())
        missing = ast.ExceptHandler(
            type=pool.add(KeyError, "KeyError"),
            name=None,
            body=[ast.Assign(targets=[_store(local)], value=absent)],
        )
        statements.append(
            ast.Try(
                body=[ast.Assign(targets=[_store(local)], value=read)],
                handlers=[missing],
                orelse=[],
                finalbody=[],
            )
        )
        normalize = pool.add(schema.normalizer(name), "normalize")
        slow = ast.Assign(
            targets=[ast.Tuple(elts=[_store(local), _store("problems")], ctx=ast.Store())],
            value=_call(reader, _constant(name), normalize, _name(local), _name("problems")),
        )
        field_type = schema.fields[name]
        fast = field_fast_check(field_type, _name(local), pool)
        if fast is None:
            statements.append(slow)
            continue
        if _holds_objects(field_type):
            # nested pydantic models become the mappings the fast check knows, without a reader
            flatten = pool.add(_model_flattener(field_type), "flatten")
            flattened = ast.Assign(targets=[_store(local)], value=_call(flatten, _name(local)))
            retry = ast.If(test=ast.UnaryOp(op=ast.Not(), operand=fast), body=[slow], orelse=[])
            statements.append(
                ast.If(test=ast.UnaryOp(op=ast.Not(), operand=fast), body=[flattened, retry], orelse=[])
            )
        else:
            statements.append(ast.If(test=ast.UnaryOp(op=ast.Not(), operand=fast), body=[slow], orelse=[]))
    return statements


def _model_flattener(field_type: FieldType) -> Callable[[Any], Any]:
    """A function turning the pydantic models in a value of ``field_type`` (nested objects, members
    of lists and sets of them) into dicts of their field values, for the fast check to judge. A model
    whose class does not declare every field of the object type is left as it is (the schema's reader
    reads it); so is anything else."""
    from pydantic import BaseModel

    kind = field_type.kind
    if kind == "object":
        parts = tuple((name, _model_flattener(part)) for name, part in field_type.fields)
        names = {name for name, _ in parts}
        declared: dict[type, bool] = {}

        def flatten_object(value: Any) -> Any:
            if not isinstance(value, BaseModel):
                return value
            model = type(value)
            plain = declared.get(model)
            if plain is None:
                plain = declared[model] = names <= model.model_fields.keys()
            if not plain:
                return value
            values = value.__dict__
            return {name: flatten(values[name]) for name, flatten in parts if name in values}

        return flatten_object
    if kind in ("list", "set") and field_type.item is not None and _holds_objects(field_type.item):
        flatten_member = _model_flattener(field_type.item)

        def flatten_members(value: Any) -> Any:
            if type(value) is list or type(value) is tuple:
                return [flatten_member(member) for member in value]
            return value

        return flatten_members
    return _unchanged


def _unchanged(value: Any) -> Any:
    return value


_NO_PROBLEMS: Mapping[str, str] = MappingProxyType({})


def _read_field(
    name: str, normalize: Callable[[Any], Any], value: Any, problems: Mapping[str, str]
) -> tuple[Any, Mapping[str, str]]:
    """Read a field that failed the fast check with the schema's reader; a bad value becomes
    ``ABSENT`` and its message is noted in ``problems`` (a new mapping the first time)."""
    if value is _runtime.ABSENT:
        return value, problems
    try:
        if type(value) is FailedValue:
            raise BadValue(value.reason)
        return normalize(value), problems
    except BadValue as error:
        noted = dict(problems)
        noted[name] = str(error)
        return _runtime.ABSENT, noted


def _refuse_unsupported(statement: Any) -> None:
    for node, _ in walk(statement):
        if isinstance(node, re_ast.SymbolExpression) and node.scope is not None and node.name == "re_groups":
            raise Unsupported("$re_groups depends on the last regex match")
        if isinstance(node, re_ast.BitwiseShiftExpression):
            raise Unsupported("the shift operators are not compiled")


def _today_expression(pool: _Pool) -> ast.expr:
    return _call(pool.add(_runtime.today_of, "today_of"), _name("now"))


def _with_decimal_context(pool: _Pool, body: list[ast.stmt], needed: bool) -> list[ast.stmt]:
    """Run ``body`` in the rules' decimal context (only when it does decimal arithmetic)."""
    if not needed:
        return body
    import decimal as decimal_module

    saved = ast.Assign(
        targets=[_store("_saved_context")], value=_call(pool.add(decimal_module.getcontext, "getcontext"))
    )
    switch = ast.Expr(
        _call(
            pool.add(decimal_module.setcontext, "setcontext"),
            _call(pool.add(_runtime.rule_context, "rule_context")),
        )
    )
    restore = ast.Expr(_call(pool.add(decimal_module.setcontext, "setcontext"), _name("_saved_context")))
    return [saved, switch, ast.Try(body=body, handlers=[], orelse=[], finalbody=[restore])]


def _function(name: str, parameters: Sequence[str], body: list[ast.stmt]) -> ast.FunctionDef:
    arguments = ast.arguments(
        posonlyargs=[],
        args=[ast.arg(arg=parameter) for parameter in parameters],
        kwonlyargs=[],
        kw_defaults=[],
        defaults=[],
    )
    extra: dict[str, Any] = {"type_params": []} if "type_params" in ast.FunctionDef._fields else {}
    return ast.FunctionDef(name=name, args=arguments, body=body, decorator_list=[], returns=None, **extra)


#: The only Python builtins generated code can reach.
_GENERATED_BUILTINS = {
    "len": len,
    "tuple": tuple,
    "bool": bool,
    "set": set,
    "type": type,
    "int": int,
    "float": float,
    "str": str,
    "dict": dict,
    "list": list,
    "Exception": Exception,
}


def _locate(tree: ast.Module) -> None:
    """Give every node the position compile() wants (generated code has no source lines to point to;
    one pass, cheaper than ``ast.fix_missing_locations`` on large catalogs)."""
    for node in ast.walk(tree):
        if "lineno" in node._attributes:
            node.lineno = node.end_lineno = 1  # type: ignore[attr-defined]
            node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]


def _compile(tree: ast.Module, filename: str, pool: _Pool) -> dict[str, Any]:
    _locate(tree)
    namespace: dict[str, Any] = {"__builtins__": dict(_GENERATED_BUILTINS)}
    namespace.update(pool.values)
    exec(compile(tree, filename, "exec"), namespace)
    return namespace


def field_fast_check(field_type: FieldType, value: ast.expr, pool: _Pool) -> ast.expr | None:
    """An expression true when ``value`` is already what the schema's reader would return for it."""
    kind = field_type.kind
    type_of = _call("type", value)
    check: ast.expr | None
    if kind == "int":
        limit = 2**63
        check = ast.BoolOp(
            op=ast.And(),
            values=[
                _is(type_of, _name("int")),
                ast.Compare(
                    left=_constant(-limit), ops=[ast.Lt(), ast.Lt()], comparators=[value, _constant(limit)]
                ),
            ],
        )
    elif kind == "float":
        check = ast.BoolOp(op=ast.And(), values=[_is(type_of, _name("float")), _compare(value, "==", value)])
    elif kind in ("str", "bool"):
        check = _is(type_of, _name(kind))
    elif kind == "datetime":
        check = ast.BoolOp(
            op=ast.And(),
            values=[
                _is(type_of, pool.add(datetime.datetime, "datetime")),
                _is(_attribute(value, "tzinfo"), _constant(None), negated=True),
            ],
        )
    elif kind == "object":
        parts: list[ast.expr] = [_is(type_of, _name("dict"))]
        for name, part_type in field_type.fields:
            member = ast.Subscript(value=value, slice=_constant(name), ctx=ast.Load())
            part = field_fast_check(part_type, member, pool)
            if part is None:
                return None
            parts.append(ast.Compare(left=_constant(name), ops=[ast.In()], comparators=[value]))
            parts.append(part)
        check = ast.BoolOp(op=ast.And(), values=parts)
    elif kind in ("list", "set", "dict"):
        checker = _collection_check(field_type)
        if checker is None:
            return None
        check = _call(pool.add(checker, "plain"), value)
    elif kind == "enum" and field_type.choices:
        plain = "int" if field_type.is_number else "str"
        check = ast.BoolOp(
            op=ast.And(),
            values=[
                _is(type_of, _name(plain)),
                ast.Compare(
                    left=value,
                    ops=[ast.In()],
                    comparators=[pool.add(frozenset(field_type.choices), "choices")],
                ),
            ],
        )
    else:
        return None
    if field_type.nullable:
        return ast.BoolOp(op=ast.Or(), values=[_is(value, _constant(None)), check])
    return check


def _collection_check(field_type: FieldType) -> Callable[[Any], bool] | None:
    """A compiled function telling whether a raw collection is already what the schema's reader makes
    of it (up to a list standing for a tuple): its members pass their own fast checks."""
    kind = field_type.kind
    pool = _Pool()
    item = _name("item")
    if kind == "dict":
        if field_type.key is None or field_type.item is None:
            return None
        key_check = field_fast_check(field_type.key, _name("key"), pool)
        value_check = field_fast_check(field_type.item, item, pool)
        if key_check is None or value_check is None:
            return None
        members: ast.expr = _call(_attribute(_name("value"), "items"))
        target: ast.expr = ast.Tuple(elts=[_store("key"), _store("item")], ctx=ast.Store())
        member_check: ast.expr = ast.BoolOp(op=ast.And(), values=[key_check, value_check])
        container: ast.expr = _is(_call("type", _name("value")), _name("dict"))
    else:
        if field_type.item is None:
            return None
        item_check = field_fast_check(field_type.item, item, pool)
        if item_check is None:
            return None
        members, target, member_check = _name("value"), _store("item"), item_check
        if kind == "set":
            container = _is(_call("type", _name("value")), _name("set"))
        else:
            container = ast.BoolOp(
                op=ast.Or(),
                values=[_is(_call("type", _name("value")), _name(name)) for name in ("tuple", "list")],
            )
    body: list[ast.stmt] = [
        ast.If(
            test=ast.UnaryOp(op=ast.Not(), operand=container), body=[ast.Return(_constant(False))], orelse=[]
        ),
        ast.For(
            target=target,
            iter=members,
            body=[
                ast.If(
                    test=ast.UnaryOp(op=ast.Not(), operand=member_check),
                    body=[ast.Return(_constant(False))],
                    orelse=[],
                )
            ],
            orelse=[],
        ),
        ast.Return(_constant(True)),
    ]
    function = _function("_check", ["value"], body)
    namespace = _compile(ast.Module(body=[function], type_ignores=[]), f"<check {field_type}>", pool)
    check: Callable[[Any], bool] = namespace["_check"]
    return check
