"""A whole catalog compiled into one Python function.

The function reads each snapshot field once (with a fast type check, falling back to the schema's
reader), evaluates the active tags in the catalog's evaluation order — dependencies first, exclusive
groups resolved, short-circuiting kept — and contains each rule's errors as the error policy says.
It returns the assigned tags and the errors; :class:`~tagrules.Evaluator` wraps them.
"""

from __future__ import annotations

import ast
import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, final

from pydantic import BaseModel
from rule_engine import ast as re_ast

from tagrules.catalog import Catalog, EvaluationUnit
from tagrules.rules import _runtime
from tagrules.rules._explain import describe_failure
from tagrules.rules._language import Scope, evaluation_state
from tagrules.rules._tree import walk
from tagrules.rules.to_python import (
    Unsupported,
    _attribute,
    _call,
    _compile,
    _Compiler,
    _constant,
    _field_local,
    _function,
    _name,
    _Pool,
    _refuse_unsupported,
    _store,
    _today_expression,
    _with_decimal_context,
    field_reads,
)
from tagrules.schema import Schema

__all__ = ["CompiledCatalog", "ResultType", "compile_catalog"]

#: The most tiers of an exclusive group chosen by one ``if``/``elif`` chain (a loop chooses beyond).
_LONGEST_CHAIN = 32

#: ``(compiler, pool) -> (statements, result)``: code run after the rules, and a value returned with theirs
Tail = Callable[[_Compiler, _Pool], tuple[list[ast.stmt], ast.expr]]

EvaluateFunction = Callable[[Any, datetime.datetime, Iterable[str], frozenset[str]], Any]


@final
@dataclass(frozen=True)
class ResultType:
    """What the evaluation function returns instead of ``(assigned, errors)``: an instance of
    ``cls``, a class with ``tags``, ``errors`` and ``now`` slots, made without calling ``__init__``
    (``tags`` a frozenset, ``errors`` read-only or ``no_errors``), one call less per snapshot."""

    cls: type
    no_errors: Mapping[str, str]


@final
@dataclass(frozen=True)
class CompiledCatalog:
    """A catalog's evaluation function, and which rules run in the interpreter.

    Attributes:
        function: ``(snapshot, now, manual_tags, suppressed) -> (assigned, errors)``, or an instance
            of the :class:`ResultType` the catalog was compiled with.
        interpreted: tag key -> why its rule runs in rule-engine's interpreter instead.
        tree: the generated Python, as a syntax tree (``source`` prints it).
    """

    function: EvaluateFunction
    interpreted: Mapping[str, str]
    tree: ast.Module

    @property
    def source(self) -> str:
        """The generated Python, for reading."""
        return ast.unparse(self.tree)


def _source_of(schema: Schema) -> Callable[[Any], Mapping[str, Any]]:
    fields = tuple(schema.fields)
    # model class -> whether every schema field is one of its fields (then its instances' __dict__
    # holds exactly what reading the attributes would give, without copying anything)
    direct: dict[type, bool] = {}

    def source(snapshot: Any) -> Mapping[str, Any]:
        if isinstance(snapshot, Mapping):
            return snapshot
        if isinstance(snapshot, BaseModel):
            model = type(snapshot)
            plain = direct.get(model)
            if plain is None:
                plain = direct[model] = set(fields) <= model.model_fields.keys()
            if plain:
                return snapshot.__dict__
            return {name: getattr(snapshot, name) for name in fields if hasattr(snapshot, name)}
        raise TypeError(f"a snapshot must be a mapping or a pydantic model, not {type(snapshot).__name__}")

    return source


def _dependency_failure(errors: Mapping[str, str], dependencies: tuple[str, ...]) -> str | None:
    for dependency in dependencies:
        failure = errors.get(dependency)
        if failure is not None:
            return f"depends on {dependency!r}, which failed: {failure}"
    return None


def _group_failed(errors: dict[str, str], keys: tuple[str, ...], group: str) -> None:
    failed = next(key for key in keys if key in errors)
    message = f"the exclusive group {group!r} is unknown because {failed!r} failed: {errors[failed]}"
    for key in keys:
        errors.setdefault(key, message)


def _interpret(statement: Any, context: Any, scope: Scope, now: datetime.datetime) -> Any:
    evaluation_state.now = now
    evaluation_state.steps = 0
    context._tls.reset()
    return statement.evaluate(scope)


class _CatalogCompiler:
    """Writes the evaluation function of one catalog, unit by unit."""

    def __init__(self, catalog: Catalog, result: ResultType | None = None) -> None:
        self.catalog = catalog
        self.result = result
        self.pool = _Pool()
        self.compiler = _Compiler(catalog.language.context, catalog.schema.fields, self.pool, _field_local)
        self.interpreted: dict[str, str] = {}
        self.uses_scope = False
        self.unit_index = 0

    def helper(self, function: Callable[..., Any], hint: str) -> ast.Name:
        return self.pool.add(function, hint)

    def rule_truth(self, key: str) -> ast.expr:
        statement = self.catalog.rule(key).statement
        try:
            _refuse_unsupported(statement)
            return self.compiler.truth(statement.expression)
        except Unsupported as reason:
            self.interpreted[key] = str(reason)
        self.uses_scope = True
        scope = ast.IfExp(
            test=ast.Compare(left=_name("_scope"), ops=[ast.IsNot()], comparators=[_constant(None)]),
            body=_name("_scope"),
            orelse=ast.NamedExpr(
                target=_store("_scope"),
                value=_call(self.helper(self._make_scope, "make_scope"), _name("snapshot"), _name("visible")),
            ),
        )
        interpret = self.helper(_interpret, "interpret")
        context = self.pool.add(self.catalog.language.context, "context")
        return _call(interpret, self.pool.add(statement, "statement"), context, scope, _name("now"))

    def _make_scope(self, snapshot: Any, visible: set[str]) -> Scope:
        values, bad = self.catalog.schema.read(snapshot)
        return Scope(values, bad, visible)

    def guarded(self, key: str, body: list[ast.stmt], on_error: list[ast.stmt]) -> list[ast.stmt]:
        """``body`` with the rule's errors recorded against ``key``."""
        record = ast.Assign(
            targets=[ast.Subscript(value=_name("errors"), slice=_constant(key), ctx=ast.Store())],
            value=_call(self.helper(describe_failure, "describe"), _name("_error")),
        )
        handler = ast.ExceptHandler(type=_name("Exception"), name="_error", body=[record, *on_error])
        steps = []
        statement = self.catalog.rule(key).statement
        if any(_needs_steps(node) for node, _ in walk(statement)):
            steps = [ast.Expr(_call(self.helper(_runtime.steps_reset, "steps_reset")))]
        return [ast.Try(body=[*steps, *body], handlers=[handler], orelse=[], finalbody=[])]

    def _additions(self, key: str | ast.expr) -> list[ast.stmt]:
        """Assign ``key``: rules see it in ``visible``; ``assigned`` is the same set unless there are
        manual tags (which rules see, but which are not computed)."""
        value = _constant(key) if isinstance(key, str) else key
        add_visible = ast.Expr(_call(_attribute(_name("visible"), "add"), value))
        add_assigned = ast.Expr(_call(_attribute(_name("assigned"), "add"), value))
        return [add_visible, ast.If(test=_name("has_manual"), body=[add_assigned], orelse=[])]

    def assign(self, key: str) -> list[ast.stmt]:
        allowed = ast.Compare(left=_constant(key), ops=[ast.NotIn()], comparators=[_name("suppressed")])
        return [ast.If(test=allowed, body=self._additions(key), orelse=[])]

    def dependency_check(
        self, key: str, otherwise: list[ast.stmt], on_failure: list[ast.stmt]
    ) -> list[ast.stmt]:
        dependencies = tuple(sorted(self.catalog.dependencies.get(key, ())))
        if not dependencies:
            return otherwise
        failure = ast.IfExp(
            test=_name("errors"),
            body=_call(
                self.helper(_dependency_failure, "dependency_failure"),
                _name("errors"),
                _constant(dependencies),
            ),
            orelse=_constant(None),
        )
        store = ast.Assign(targets=[_store("_failure")], value=failure)
        record = ast.Assign(
            targets=[ast.Subscript(value=_name("errors"), slice=_constant(key), ctx=ast.Store())],
            value=_name("_failure"),
        )
        test = ast.Compare(left=_name("_failure"), ops=[ast.IsNot()], comparators=[_constant(None)])
        return [store, ast.If(test=test, body=[record, *on_failure], orelse=otherwise)]

    def single(self, key: str) -> list[ast.stmt]:
        truth = self.rule_truth(key)
        body: list[ast.stmt] = [ast.If(test=truth, body=self.assign(key), orelse=[])]
        return self.dependency_check(key, self.guarded(key, body, []), [])

    def group(self, unit: EvaluationUnit) -> list[ast.stmt]:
        assert unit.group is not None
        statements: list[ast.stmt] = []
        results = []
        for index, key in enumerate(unit.keys):
            result = f"_r{self.unit_index}_{index}"
            results.append(result)
            evaluate: list[ast.stmt] = [ast.Assign(targets=[_store(result)], value=self.rule_truth(key))]
            statements.extend(self.dependency_check(key, self.guarded(key, evaluate, []), []))
        failed = ast.Expr(
            _call(
                self.helper(_group_failed, "group_failed"),
                _name("errors"),
                _constant(unit.keys),
                _constant(unit.group),
            )
        )
        tests: list[ast.expr] = [
            ast.Compare(left=_constant(key), ops=[ast.In()], comparators=[_name("errors")])
            for key in unit.keys
        ]
        any_failed = tests[0] if len(tests) == 1 else ast.BoolOp(op=ast.Or(), values=tests)
        check = ast.BoolOp(op=ast.And(), values=[_name("errors"), any_failed])
        statements.append(ast.If(test=check, body=[failed], orelse=self.choice(unit.keys, results)))
        return statements

    def choice(self, keys: tuple[str, ...], results: list[str]) -> list[ast.stmt]:
        """Assign the first of ``keys`` (highest priority first) whose result is true and which is
        not suppressed. A small group is one ``if``/``elif`` chain; a bigger one is a loop, because
        Python's compiler refuses an ``elif`` chain nested some hundreds deep."""
        if len(keys) > _LONGEST_CHAIN:
            allowed = ast.Compare(left=_name("_key"), ops=[ast.NotIn()], comparators=[_name("suppressed")])
            test = ast.BoolOp(op=ast.And(), values=[_name("_result"), allowed])
            pairs = _call(
                self.helper(zip, "zip"),
                _constant(keys),
                ast.Tuple(elts=[_name(result) for result in results], ctx=ast.Load()),
            )
            body: list[ast.stmt] = [
                ast.If(test=test, body=[*self._additions(_name("_key")), ast.Break()], orelse=[])
            ]
            target = ast.Tuple(elts=[_store("_key"), _store("_result")], ctx=ast.Store())
            return [ast.For(target=target, iter=pairs, body=body, orelse=[])]
        choice: list[ast.stmt] = []
        for key, result in reversed(list(zip(keys, results, strict=True))):
            allowed = ast.Compare(left=_constant(key), ops=[ast.NotIn()], comparators=[_name("suppressed")])
            test = ast.BoolOp(op=ast.And(), values=[_name(result), allowed])
            choice = [ast.If(test=test, body=self._additions(key), orelse=choice)]
        return choice

    def result_statements(self, results: list[ast.expr]) -> list[ast.stmt]:
        if self.result is None:
            return [ast.Return(value=ast.Tuple(elts=results, ctx=ast.Load()))]
        cls = self.result.cls
        result = self.pool.add(cls, "result")
        errors = ast.IfExp(
            test=_name("errors"),
            body=_call(self.helper(MappingProxyType, "read_only"), _name("errors")),
            orelse=self.pool.add(self.result.no_errors, "no_errors"),
        )
        frozen = _call(self.helper(frozenset, "frozenset"), _name("assigned"))
        values = {"tags": frozen, "errors": errors, "now": _name("now")}
        statements: list[ast.stmt] = [
            ast.Assign(targets=[_store("_result")], value=_call(self.helper(object.__new__, "new"), result))
        ]
        for name, value in values.items():
            setter = self.pool.add(cls.__dict__[name].__set__, f"set_{name}")
            statements.append(ast.Expr(_call(setter, _name("_result"), value)))
        statements.append(ast.Return(value=_name("_result")))
        return statements

    def build(self, tail: Tail | None = None) -> CompiledCatalog:
        units: list[ast.stmt] = []
        for index, unit in enumerate(self.catalog.evaluation_order):
            self.unit_index = index
            units.extend(self.single(unit.keys[0]) if unit.group is None else self.group(unit))
        results: list[ast.expr] = [_name("assigned"), _name("errors")]
        if tail is not None:
            statements, result = tail(self.compiler, self.pool)
            units.extend(statements)
            results.append(result)
        requirements = self.compiler.requirements
        body: list[ast.stmt] = [
            ast.Assign(
                targets=[_store("src")],
                value=ast.IfExp(
                    test=ast.Compare(
                        left=_call("type", _name("snapshot")), ops=[ast.Is()], comparators=[_name("dict")]
                    ),
                    body=_name("snapshot"),
                    orelse=_call(self.helper(_source_of(self.catalog.schema), "source"), _name("snapshot")),
                ),
            ),
        ]
        body.extend(field_reads(sorted(requirements.fields), self.catalog.schema, self.pool, "src"))
        manual = ast.IfExp(test=_name("manual"), body=_call("set", _name("manual")), orelse=_call("set"))
        body.append(ast.Assign(targets=[_store("visible")], value=manual))
        body.append(ast.Assign(targets=[_store("has_manual")], value=_call("bool", _name("visible"))))
        if requirements.today:
            body.append(ast.Assign(targets=[_store("today")], value=_today_expression(self.pool)))
        if self.uses_scope:
            body.append(ast.Assign(targets=[_store("_scope")], value=_constant(None)))
        body.append(
            ast.Assign(
                targets=[_store("assigned")],
                value=ast.IfExp(test=_name("has_manual"), body=_call("set"), orelse=_name("visible")),
            )
        )
        body.append(ast.Assign(targets=[_store("errors")], value=ast.Dict(keys=[], values=[])))
        needs_context = requirements.decimal_context or self.uses_scope
        body.extend(_with_decimal_context(self.pool, units or [ast.Pass()], needs_context))
        body.extend(self.result_statements(results))
        function = _function("_evaluate", ["snapshot", "now", "manual", "suppressed"], body)
        tree = ast.Module(body=[function], type_ignores=[])
        namespace = _compile(tree, f"<catalog {self.catalog.name or ''}>", self.pool)
        return CompiledCatalog(namespace["_evaluate"], MappingProxyType(self.interpreted), tree)


def _needs_steps(node: Any) -> bool:
    if isinstance(node, re_ast.ComprehensionExpression):
        return True
    return isinstance(node, re_ast.SymbolExpression) and node.scope is not None and node.name == "range"


def compile_catalog(
    catalog: Catalog, result: ResultType | None = None, tail: Tail | None = None
) -> CompiledCatalog:
    """Compile every active rule of ``catalog`` into one evaluation function, returning
    ``(assigned, errors)`` or, given ``result`` (and no ``tail``), an instance of its class.

    ``tail``, given the rules' compiler and constant pool, returns statements to run after the rules
    (reading the same field locals) and an expression the function returns third.

    Raises:
        Unsupported: ``tail`` refused to compile.
    """
    return _CatalogCompiler(catalog, None if tail is not None else result).build(tail)
