"""When a snapshot's tags change by time alone: the instants a catalog's comparisons with ``$now``
and ``$today`` turn, and the first of them at which the tags differ.

A comparison such as ``registered_at >= $now - t'P30D'`` compares a side that time does not change
(``registered_at``) with one that moves with ``$now`` or ``$today`` at a fixed rate (``$now`` plus or
minus values time does not change). On a snapshot it turns at one instant, found by arithmetic: the
instant ``t`` at which both sides are equal (for ``$today``, the midnight at or after it), and the
instant just after (a microsecond; for ``$today``, a day). Between consecutive such instants of all
the catalog's comparisons no comparison changes, so no rule does; evaluating at each instant in turn
finds the first at which the tags or the failed rules differ — exactly the end of the current tags.
"""

from __future__ import annotations

import ast as ast_
import datetime
import decimal
import operator as operator_
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

from rule_engine import ast

from tagrules.catalog import Catalog
from tagrules.definitions import TagDefinition
from tagrules.errors import TimeUnknown
from tagrules.rules._bounds import OPERATORS
from tagrules.rules._language import DECIMAL_CONTEXT, Scope, evaluation_state
from tagrules.rules._tree import children
from tagrules.rules.to_python import (
    Unsupported,
    _compile,
    _Compiler,
    _constant,
    _field_local,
    _function,
    _name,
    _Pool,
    _store,
    _today_expression,
    _with_decimal_context,
    field_reads,
)

__all__ = ["TimeWindows", "moved_with", "valid_until"]

_MICROSECOND = datetime.timedelta(microseconds=1)
_DAY = datetime.timedelta(days=1)
_TIME_SYMBOLS = ("now", "today")
_COMPARE = {
    "eq": operator_.eq,
    "ne": operator_.ne,
    "gt": operator_.gt,
    "ge": operator_.ge,
    "lt": operator_.lt,
    "le": operator_.le,
}
_FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


@final
@dataclass(frozen=True, slots=True)
class _Moving:
    """One comparison with a side moving with time: ``moving`` is ``sign * base + offset``, where
    ``base`` is ``$now`` or ``$today``; ``still`` is the side time does not change."""

    moving: Any
    still: Any
    base: str
    sign: int
    compare: Callable[[Any, Any], Any]  # the comparison, the still side first


def _is_time_symbol(node: Any) -> bool:
    return isinstance(node, ast.SymbolExpression) and node.scope is not None and node.name in _TIME_SYMBOLS


def _reads_time(node: Any) -> bool:
    if _is_time_symbol(node):
        return True
    return any(_reads_time(child) for child in children(node))


def _linear(node: Any) -> tuple[str, int] | None:
    """``(base, sign)`` when ``node`` is ``$now``/``$today`` plus or minus values time does not change."""
    if _is_time_symbol(node):
        return node.name, 1
    if isinstance(node, (ast.AddExpression, ast.SubtractExpression)):
        left, right = _reads_time(node.left), _reads_time(node.right)
        if left and not right:
            return _linear(node.left)
        if right and not left:
            found = _linear(node.right)
            if found is None:
                return None
            return found if isinstance(node, ast.AddExpression) else (found[0], -found[1])
    return None


def _comparisons(
    node: Any, key: str, found: list[_Moving], timed: frozenset[str], inside: str | None = None
) -> None:
    """The moving comparisons below ``node``; :class:`TimeUnknown` for any other use of time (``timed``:
    the functions that read the evaluation time)."""
    if isinstance(node, ast.SymbolExpression) and node.scope is not None and node.name in timed:
        raise TimeUnknown(f"tag {key!r}: the function ${node.name} reads the evaluation time")
    if _is_time_symbol(node):
        where = f" inside {inside}" if inside else ""
        raise TimeUnknown(
            f"tag {key!r}: ${node.name} is read{where} other than in a comparison with a fixed rate"
        )
    if (
        inside is None
        and isinstance(node, ast.ComparisonExpression)
        and not isinstance(node, ast.FuzzyComparisonExpression)
        and node.type in OPERATORS
    ):
        for moving, still in ((node.left, node.right), (node.right, node.left)):
            if _reads_time(moving) and not _reads_time(still):
                form = _linear(moving)
                if form is not None:
                    operator = _FLIPPED[node.type] if moving is node.left else node.type
                    found.append(_Moving(moving, still, *form, _COMPARE[operator]))
                    return
    if isinstance(node, ast.ComprehensionExpression):
        inside = "a comprehension"
    elif isinstance(node, ast.FunctionCallExpression):
        inside = inside or "a function call"
    for child in children(node):
        _comparisons(child, key, found, timed, inside)


@final
class TimeWindows:
    """A catalog's comparisons with time, ready to give a snapshot's turning instants.

    Attributes:
        comparisons: the moving comparisons of the active rules.
        unknown: why the instants cannot be derived, or ``None``.
        moving: the tags whose state time can change: those comparing with time, the tags depending
            on them and their exclusive groups, transitively.
        steady: the tags outside ``moving`` that tags in it test (time never changes their state).
    """

    def __init__(self, catalog: Catalog, evaluator: Callable[[Catalog], Any]) -> None:
        self.catalog = catalog
        self.comparisons: list[_Moving] = []
        self.unknown: str | None = None
        used = {name for definition in catalog.active for name in catalog.rule(definition.key).fields}
        timed = frozenset(name for name, function in catalog.functions.items() if function.uses_now)
        reading: set[str] = set()
        try:
            for definition in catalog.active:
                expression = catalog.rule(definition.key).statement.expression
                before = len(self.comparisons)
                _comparisons(expression, definition.key, self.comparisons, timed)
                if len(self.comparisons) > before:
                    reading.add(definition.key)
            derived = sorted(name for name in catalog.derived_fields if name in used)
            if derived:
                raise TimeUnknown(f"the derived field {derived[0]!r} is computed at the evaluation time")
        except TimeUnknown as reason:
            self.unknown = str(reason)
        self.moving = moved_with(catalog, reading)
        self.steady = frozenset(
            dependency
            for key in self.moving
            for dependency in catalog.dependencies.get(key, ())
            if dependency not in self.moving
        )
        self.sides = _compiled_sides(catalog, self.comparisons)
        # the moving tags alone, the steady ones they test standing in as given tags
        self.evaluate = (
            evaluator(_moving_catalog(catalog, self.moving, self.steady)).evaluate if self.moving else None
        )

    def instants(self, snapshot: Mapping[str, Any], now: datetime.datetime) -> list[datetime.datetime]:
        """Every instant after ``now`` at which a comparison may turn on this snapshot, in order."""
        found: set[datetime.datetime] = set()
        previous = evaluation_state.now
        evaluation_state.now = now
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            if self.sides is not None:
                pairs = self.sides(snapshot, now)
            else:
                values, bad = self.catalog.schema.read(snapshot)
                pairs = _interpreted_sides(self.comparisons, Scope(values, bad, set()))
            for comparison, pair in zip(self.comparisons, pairs, strict=True):
                if pair is not None:
                    base = now if comparison.base == "now" else today
                    found.update(_turns(comparison, *pair, now, base))
        finally:
            evaluation_state.now = previous
        return sorted(moment for moment in found if moment > now)


def moved_with(catalog: Catalog, keys: Iterable[str]) -> frozenset[str]:
    """``keys`` and the active tags whose state may move with theirs: the tags testing them and the
    members of their exclusive groups, transitively."""
    active = {definition.key for definition in catalog.active}
    moving = set(keys)
    while True:
        grown = set(moving)
        for key in active:
            if catalog.dependencies.get(key, frozenset()) & moving:
                grown.add(key)
        for members in catalog.groups.values():
            if grown.intersection(members):
                grown.update(members)
        if grown == moving:
            return frozenset(moving)
        moving = grown


def _moving_catalog(catalog: Catalog, moving: frozenset[str], steady: frozenset[str]) -> Catalog:
    """The moving tags as they are, and each steady tag they test as a tag that is never computed
    (its state comes in as a given tag)."""
    definitions = [
        definition if definition.key in moving else TagDefinition(key=definition.key, rule="false")
        for definition in catalog.tags
        if definition.key in moving or definition.key in steady
    ]
    return Catalog(
        definitions,
        catalog.snapshot_schema,
        name=catalog.name,
        functions=catalog.functions.values(),
        derived=catalog.derived_fields.values(),
    )


def _interpreted_sides(comparisons: list[_Moving], scope: Scope) -> list[tuple[Any, Any] | None]:
    pairs: list[tuple[Any, Any] | None] = []
    with decimal.localcontext(DECIMAL_CONTEXT):
        for comparison in comparisons:
            try:
                pairs.append((comparison.still.evaluate(scope), comparison.moving.evaluate(scope)))
            except Exception:
                pairs.append(None)  # a side that fails fails at every instant
    return pairs


def _compiled_sides(
    catalog: Catalog, comparisons: list[_Moving]
) -> Callable[[Any, datetime.datetime], list[tuple[Any, Any] | None]] | None:
    """One Python function giving both sides of every comparison on a raw snapshot (``None`` for a
    comparison whose side fails), or ``None`` if a side is not compiled."""
    if not comparisons:
        return None
    pool = _Pool()
    compiler = _Compiler(catalog.language.context, catalog.schema.fields, pool, _field_local)
    computed: list[ast_.stmt] = []
    try:
        for index, comparison in enumerate(comparisons):
            pair = ast_.Tuple(
                elts=[compiler.rule_value(comparison.still), compiler.rule_value(comparison.moving)],
                ctx=ast_.Load(),
            )
            fail = ast_.ExceptHandler(
                type=_name("Exception"),
                name=None,
                body=[ast_.Assign(targets=[_store(f"_p{index}")], value=_constant(None))],
            )
            computed.append(
                ast_.Try(
                    body=[ast_.Assign(targets=[_store(f"_p{index}")], value=pair)],
                    handlers=[fail],
                    orelse=[],
                    finalbody=[],
                )
            )
    except Unsupported:
        return None
    requirements = compiler.requirements
    body = field_reads(sorted(requirements.fields), catalog.schema, pool, "snapshot")
    if requirements.today:
        body.append(ast_.Assign(targets=[_store("today")], value=_today_expression(pool)))
    result = ast_.List(elts=[_name(f"_p{index}") for index in range(len(comparisons))], ctx=ast_.Load())
    body.extend(
        _with_decimal_context(pool, [*computed, ast_.Return(value=result)], requirements.decimal_context)
    )
    function = _function("_sides", ["snapshot", "now"], body)
    namespace = _compile(ast_.Module(body=[function], type_ignores=[]), "<time comparisons>", pool)
    sides: Callable[[Any, datetime.datetime], list[tuple[Any, Any] | None]] = namespace["_sides"]
    return sides


def _turns(
    comparison: _Moving, still: Any, moving: Any, now: datetime.datetime, base: datetime.datetime
) -> Iterable[datetime.datetime]:
    """The instants after ``now`` at which the comparison's truth changes (``base``: the value of
    ``$now`` or ``$today`` at ``now``; the moving side is ``moving`` there)."""
    try:
        # the base at which both sides are equal
        level = still - (moving - base) if comparison.sign > 0 else (moving + base) - still
    except Exception:
        return ()  # a side that fails, or values of other types: the same at every instant
    if not isinstance(level, datetime.datetime):
        return ()
    if level.tzinfo is not now.tzinfo:
        level = level.replace(tzinfo=now.tzinfo) if level.tzinfo is None else level.astimezone(now.tzinfo)
    step = _MICROSECOND
    if comparison.base != "now":
        step = _DAY
        midnight = level.replace(hour=0, minute=0, second=0, microsecond=0)
        level = midnight if midnight == level else midnight + _DAY
    turns = []
    for instant in (level, level + step):
        if instant <= now:
            continue
        try:  # the truth at this value of the base and at the one before: whether it turns here
            after = moving + (instant - base) * comparison.sign
            before = moving + (instant - step - base) * comparison.sign
            if bool(comparison.compare(still, after)) == bool(comparison.compare(still, before)):
                continue
        except Exception:
            pass  # not comparable in Python: the instant is checked by evaluation
        turns.append(instant)
    return turns


def valid_until(
    windows: TimeWindows,
    snapshot: Mapping[str, Any],
    now: datetime.datetime,
    evaluation: Any,
    tags: Iterable[str],
    suppressed: frozenset[str],
    evaluate: Callable[..., Any],
) -> datetime.datetime | None:
    """The first instant after ``now`` at which the catalog gives ``snapshot`` other tags or other
    failed rules than ``evaluation`` (made at ``now``), or ``None`` if time alone never changes them.

    Each instant is checked by evaluating there: the moving tags alone, the steady ones they test
    given as they are at ``now`` — or, when one of those failed, the whole catalog with ``evaluate``.

    Raises:
        TimeUnknown: the catalog reads time in a way the instants cannot be derived from.
    """
    if windows.unknown is not None:
        raise TimeUnknown(windows.unknown)
    instants = windows.instants(snapshot, now)
    if not instants:
        return None
    given = set(tags)
    if windows.evaluate is None or windows.steady.intersection(evaluation.errors):
        start = (evaluation.tags, frozenset(evaluation.errors))
        for moment in instants:
            later = evaluate(snapshot, moment, given, suppressed=suppressed)
            if (later.tags, frozenset(later.errors)) != start:
                return moment
        return None
    moving = windows.moving
    start = (evaluation.tags & moving, frozenset(evaluation.errors).intersection(moving))
    given |= evaluation.tags & windows.steady
    for moment in instants:
        later = windows.evaluate(snapshot, moment, given, suppressed=suppressed)
        if (later.tags & moving, frozenset(later.errors).intersection(moving)) != start:
            return moment
    return None


#: ``Evaluation.valid_until`` of an evaluation made without asking for it
NOT_ASKED: Any = type("NotAsked", (), {"__repr__": lambda self: "<not asked>"})()


def asked(value: Any) -> datetime.datetime | None:
    """``value``, unless it is :data:`NOT_ASKED` (then an ``AttributeError`` saying how to ask)."""
    if value is NOT_ASKED:
        raise AttributeError(
            "valid_until is computed when asked for: Evaluator.evaluate(snapshot, now, valid_until=True)"
        )
    result: datetime.datetime | None = value
    return result
