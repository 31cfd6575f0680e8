"""When a snapshot's tags change by time alone: the instants a catalog's comparisons with ``$now``
and ``$today`` turn, and the first of them at which the tags differ.

A comparison such as ``registered_at >= $now - t'P30D'`` compares a side that time does not change
(``registered_at``) with one that moves with ``$now`` or ``$today`` at a fixed rate (``$now`` plus or
minus values time does not change). On a snapshot it turns at one instant, found by arithmetic: the
instant ``t`` at which both sides are equal (for ``$today``, the midnight at or after it), and the
instant just after (a microsecond; for ``$today``, a day). Between consecutive such instants of all
the catalog's comparisons no comparison changes, so no rule does; evaluating at each instant in turn
finds the first at which the tags or the failed rules differ — exactly the end of the current tags.

The arithmetic is compiled per catalog, into the catalog's own evaluation function (one call gives
the tags and the turning instants, the fields read once): which of the two instants turns follows
from the operator and the direction of the moving side, and a moving side ``$now`` plus a literal
duration makes the instant the still side plus a constant. Confirming is cheap because until the
first change every tag is as at ``now``: at an instant only the evaluation units holding a
comparison that turns there can change first, so those units alone are evaluated there.
"""

from __future__ import annotations

import ast as ast_
import contextlib
import datetime
import decimal
import operator as operator_
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

from rule_engine import ast

from tagrules._compiled import compile_catalog
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
    _field_local,
    _function,
    _name,
    _Pool,
    _store,
    _today_expression,
    _with_decimal_context,
    field_reads,
)

__all__ = ["TimeWindows", "confirm", "lapses", "moved_with", "valid_until"]

_MICROSECOND = datetime.timedelta(microseconds=1)
_DAY = datetime.timedelta(days=1)
_TIME_SYMBOLS = ("now", "today")
_FAILED = object()  # a side that failed

#: an instant at which a comparison may turn, and the comparison's index
Turn = tuple[datetime.datetime, int]
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


def _reads_tags(node: Any) -> bool:
    if isinstance(node, ast.SymbolExpression) and node.scope is None and node.name == "tags":
        return True
    return any(_reads_tags(child) for child in children(node))


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
                    if _reads_tags(still):
                        raise TimeUnknown(f"tag {key!r}: a comparison with time reads tags on its other side")
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
        readers: list[str] = []  # per comparison, the tag whose rule holds it
        try:
            for definition in catalog.active:
                expression = catalog.rule(definition.key).statement.expression
                before = len(self.comparisons)
                _comparisons(expression, definition.key, self.comparisons, timed)
                if len(self.comparisons) > before:
                    reading.add(definition.key)
                    readers.extend([definition.key] * (len(self.comparisons) - before))
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
        self._compiled: Callable[[Any, datetime.datetime], list[Turn]] | None = (
            None if self.unknown else _compiled_instants(catalog, self.comparisons)
        )
        # the moving tags alone, the steady ones they test standing in as given tags: its compiled
        # function, ``(snapshot, now, given, suppressed) -> (assigned, errors)``
        self.function: Any = None
        self.evaluate: Any = None
        #: the whole catalog's evaluation function, returning the turning instants third
        self.fused: Any = None
        if self.moving and self.unknown is None:
            moving_evaluator = evaluator(_moving_catalog(catalog, self.moving, self.steady))
            self.function = moving_evaluator._function
            self.evaluate = moving_evaluator.evaluate
            if self.function is not None and self._compiled is not None:
                with contextlib.suppress(Unsupported):
                    self.fused = compile_catalog(catalog, tail=_tail(self.comparisons)).function
        # per comparison, the evaluation unit holding it; per such unit, its tags alone
        self.unit_of: list[int] = []
        self.units: dict[int, _Unit] = {}
        if self.function is not None:
            position = {
                key: index for index, unit in enumerate(catalog.evaluation_order) for key in unit.keys
            }
            for key in readers:
                index = position[key]
                self.unit_of.append(index)
                if index not in self.units:
                    self.units[index] = _unit(catalog, catalog.evaluation_order[index].keys, evaluator)

    def instants(self, snapshot: Mapping[str, Any], now: datetime.datetime) -> list[Turn]:
        """Every instant after ``now`` at which a comparison may turn on this snapshot, in order, with
        the index of the comparison turning there."""
        if self._compiled is not None:
            return self._compiled(snapshot, now)
        found: set[tuple[datetime.datetime, int]] = set()
        previous = evaluation_state.now
        evaluation_state.now = now
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            values, bad = self.catalog.schema.read(snapshot)
            pairs = _interpreted_sides(self.comparisons, Scope(values, bad, set()))
            for index, (comparison, pair) in enumerate(zip(self.comparisons, pairs, strict=True)):
                if pair is not None:
                    base = now if comparison.base == "now" else today
                    found.update((moment, index) for moment in _turns(comparison, *pair, now, base))
        finally:
            evaluation_state.now = previous
        return sorted(turn for turn in found if turn[0] > now)


@final
@dataclass(frozen=True, slots=True)
class _Unit:
    """One evaluation unit alone: its compiled function (the tags it tests given), its tags, and the
    tags it tests outside itself."""

    function: Callable[..., Any]
    keys: frozenset[str]
    tested: frozenset[str]


def _unit(catalog: Catalog, keys: tuple[str, ...], evaluator: Callable[[Catalog], Any]) -> _Unit:
    own = frozenset(keys)
    tested = frozenset(dependency for key in keys for dependency in catalog.dependencies.get(key, ()))
    tested -= own
    function = evaluator(_moving_catalog(catalog, own, tested))._function
    return _Unit(function, own, tested)


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


#: (still-first operator, sign) -> whether the truth turns at the level (the base at which both
#: sides are equal) and whether it turns one step after it, for sides of exact arithmetic and total
#: order (UTC datetimes, durations): the moving side rises with the base when the sign is positive
_TURNS_AT = {
    ("eq", 1): (True, True),
    ("ne", 1): (True, True),
    ("lt", 1): (False, True),
    ("le", 1): (True, False),
    ("gt", 1): (True, False),
    ("ge", 1): (False, True),
    ("eq", -1): (True, True),
    ("ne", -1): (True, True),
    ("lt", -1): (True, False),
    ("le", -1): (False, True),
    ("gt", -1): (False, True),
    ("ge", -1): (True, False),
}


def _operator_name(comparison: _Moving) -> str:
    return next(name for name, function in _COMPARE.items() if function is comparison.compare)


def _offset(comparison: _Moving) -> datetime.timedelta | None:
    """``c`` when the moving side is ``base + c`` for a literal duration ``c``, else ``None``."""
    node = comparison.moving
    if comparison.sign < 0:
        return None
    if _is_time_symbol(node):
        return datetime.timedelta(0)
    if isinstance(node, (ast.AddExpression, ast.SubtractExpression)):
        for symbol, literal in ((node.left, node.right), (node.right, node.left)):
            if _is_time_symbol(symbol) and isinstance(literal, ast.TimedeltaExpression):
                if isinstance(node, ast.SubtractExpression):
                    return -literal.value if symbol is node.left else None
                return literal.value  # type: ignore[no-any-return]
    return None


def _turn_lines(comparison: _Moving, base: str, indent: str) -> list[str]:
    """Source appending the turning instants, from ``_lp_l``, the base at which both sides are equal."""
    at_level, after_level = _TURNS_AT[(_operator_name(comparison), comparison.sign)]
    lines: list[str] = []
    if base == "now":
        if at_level:
            lines += ["if _lp_l > now:", "    _lp_found.append((_lp_l, {index}))"]
        if after_level:
            lines += ["_lp_l = _lp_l + {micro}", "if _lp_l > now:", "    _lp_found.append((_lp_l, {index}))"]
    else:
        lines += ["_lp_r = (_lp_l - _lp_today) % {day}", "if _lp_r:"]
        if comparison.compare in (operator_.eq, operator_.ne):
            lines += ["    pass"]  # equal at no midnight: it never turns
        else:
            lines += [
                "    _lp_l = _lp_l - _lp_r + {day}",
                "    if _lp_l > now:",
                "        _lp_found.append((_lp_l, {index}))",
            ]
        lines += ["else:"]
        if at_level:
            lines += ["    if _lp_l > now:", "        _lp_found.append((_lp_l, {index}))"]
        if after_level:
            lines += [
                "    _lp_l = _lp_l + {day}",
                "    if _lp_l > now:",
                "        _lp_found.append((_lp_l, {index}))",
            ]
    return [indent + line for line in lines]


def _turn_source(comparison: _Moving, offset: bool) -> str:
    """Python source appending to ``_lp_found`` the instants after ``now`` at which the comparison
    turns: worked out inline for sides of exact arithmetic (UTC datetimes, durations), by
    :func:`_turns` otherwise. A moving side ``base + c`` (``c`` a literal duration, ``offset``) needs
    only the still side's type checked: the level is the still side minus ``c``, a constant."""
    base = "now" if comparison.base == "now" else "_lp_today"
    turns = f"{{turns}}({{comparison}}, _lp_v, _lp_m, now, {base})"
    generic = f"_lp_found.extend([(_lp_x, {{index}}) for _lp_x in {turns}])"
    if offset:
        lines = [
            "try:",
            "    _lp_v = {still}",
            "except Exception:",
            "    _lp_v = {failed}",  # a side that fails fails at every instant
            "if type(_lp_v) is {datetime} and _lp_v.tzinfo is _lp_tz:",
            "    try:",
            "        _lp_l = _lp_v + {offset}",
            *_turn_lines(comparison, base, "        "),
            "    except OverflowError:",
            "        pass",  # beyond the last datetime: never reached
            "elif _lp_v is not {failed}:",
            "    try:",
            "        _lp_m = {moving}",
            "    except Exception:",
            "        pass",
            "    else:",
            f"        {generic}",
        ]
        return "\n".join(lines)
    level = f"{base} + (_lp_v - _lp_m)" if comparison.sign > 0 else f"{base} + (_lp_m - _lp_v)"
    lines = [
        "try:",
        "    _lp_v = {still}",
        "    _lp_m = {moving}",
        "    _lp_k = type(_lp_v)",
        "    _lp_fast = _lp_k is type(_lp_m) and (_lp_k is {timedelta} or (_lp_k is {datetime}"
        " and _lp_v.tzinfo is _lp_tz and _lp_m.tzinfo is _lp_tz))",
        "except Exception:",
        "    _lp_fast = None",  # a side that fails fails at every instant
        "if _lp_fast:",
        "    try:",
        f"        _lp_l = {level}",
        *_turn_lines(comparison, base, "        "),
        "    except OverflowError:",
        "        pass",
        "elif _lp_fast is not None:",
        f"    {generic}",
    ]
    return "\n".join(lines)


def _instant_statements(comparisons: list[_Moving], compiler: _Compiler, pool: _Pool) -> list[ast_.stmt]:
    """Statements leaving in ``_lp_found`` every instant after ``now`` at which a comparison may
    turn, as ``(instant, comparison index)`` in order and once each (reading the field locals of the
    code around them).

    Raises:
        Unsupported: a side is not compiled.
    """
    names = {
        "micro": pool.add(_MICROSECOND, "microsecond").id,
        "day": pool.add(_DAY, "day").id,
        "datetime": pool.add(datetime.datetime, "datetime").id,
        "timedelta": pool.add(datetime.timedelta, "timedelta").id,
        "failed": pool.add(_FAILED, "failed").id,
        "turns": pool.add(_turns, "turns").id,
        "sorted": pool.add(sorted, "sorted").id,
    }
    head = "_lp_tz = now.tzinfo\n_lp_found = []"
    if any(comparison.base != "now" for comparison in comparisons):
        head += "\n_lp_today = now.replace(hour=0, minute=0, second=0, microsecond=0)"
    statements = ast_.parse(head).body
    for index, comparison in enumerate(comparisons):
        # the sides go in as format values: braces in their source are not placeholders
        names["still"] = ast_.unparse(compiler.rule_value(comparison.still))
        names["moving"] = ast_.unparse(compiler.rule_value(comparison.moving))
        offset = _offset(comparison)
        names["comparison"] = pool.add(comparison, "comparison").id
        names["index"] = str(index)
        if offset is not None:
            names["offset"] = pool.add(-offset, "offset").id
        source = _turn_source(comparison, offset is not None)
        statements.extend(ast_.parse(source.format(**names)).body)
    ending = "if len(_lp_found) > 1:\n    _lp_found = {sorted}(set(_lp_found))"
    statements.extend(ast_.parse(ending.format(**names)).body)
    return statements


def _compiled_instants(
    catalog: Catalog, comparisons: list[_Moving]
) -> Callable[[Any, datetime.datetime], list[Turn]] | None:
    """One Python function giving, on a raw snapshot, every instant after ``now`` at which a
    comparison may turn, in order and once each; ``None`` if a side is not compiled."""
    if not comparisons:
        return None
    pool = _Pool()
    compiler = _Compiler(catalog.language.context, catalog.schema.fields, pool, _field_local)
    try:
        blocks = _instant_statements(comparisons, compiler, pool)
    except Unsupported:
        return None
    requirements = compiler.requirements
    body = field_reads(sorted(requirements.fields), catalog.schema, pool, "snapshot")
    if requirements.today:
        body.append(ast_.Assign(targets=[_store("today")], value=_today_expression(pool)))
    body.extend(_with_decimal_context(pool, blocks, requirements.decimal_context))
    body.append(ast_.Return(value=_name("_lp_found")))
    function = _function("_instants", ["snapshot", "now"], body)
    namespace = _compile(ast_.Module(body=[function], type_ignores=[]), "<time comparisons>", pool)
    instants: Callable[[Any, datetime.datetime], list[Turn]] = namespace["_instants"]
    return instants


def _tail(comparisons: list[_Moving]) -> Callable[[_Compiler, _Pool], tuple[list[ast_.stmt], ast_.expr]]:
    def tail(compiler: _Compiler, pool: _Pool) -> tuple[list[ast_.stmt], ast_.expr]:
        return _instant_statements(comparisons, compiler, pool), _name("_lp_found")

    return tail


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
    tags: frozenset[str],
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
    return confirm(
        windows, snapshot, instants, evaluation.tags, evaluation.errors, tags, suppressed, evaluate
    )


def confirm(
    windows: TimeWindows,
    snapshot: Any,
    instants: list[Turn],
    tags: frozenset[str],
    errors: Mapping[str, str],
    manual: frozenset[str],
    suppressed: frozenset[str],
    evaluate: Callable[..., Any],
) -> datetime.datetime | None:
    """The first of ``instants`` (in order) at which the catalog gives ``snapshot`` other tags or
    other failed rules than ``tags`` and ``errors`` (those at ``now``), or ``None``.

    Until the first change every tag is as at ``now``; at an instant only the evaluation units whose
    rules hold a comparison turning there can change first, so those alone are evaluated there (in
    evaluation order, the tags they test given as at ``now``), and the first whose tags or failures
    differ ends the search. When a unit tests a tag that failed, the whole catalog is evaluated
    with ``evaluate`` instead.
    """
    if not windows.units:
        return _confirm_whole(
            (turn[0] for turn in instants), snapshot, tags, errors, manual, suppressed, evaluate
        )
    count = len(instants)
    position = 0
    units = windows.units
    unit_of = windows.unit_of
    while position < count:
        moment, index = instants[position]
        position += 1
        if position < count and instants[position][0] == moment:
            turning = {unit_of[index]}
            while position < count and instants[position][0] == moment:
                turning.add(unit_of[instants[position][1]])
                position += 1
            order = sorted(turning)
        else:
            order = [unit_of[index]]
        for number in order:
            unit = units[number]
            tested = unit.tested
            if errors and not tested.isdisjoint(errors):
                rest = [moment, *(turn[0] for turn in instants[position:])]
                return _confirm_whole(rest, snapshot, tags, errors, manual, suppressed, evaluate)
            given = tags & tested if tested else manual
            if manual and tested:
                given = given.union(manual)
            found_there = unit.function(snapshot, moment, given, suppressed)
            assigned, failures = found_there.tags, found_there.errors
            keys = unit.keys
            if assigned != tags & keys:
                return moment
            if (failures or errors) and failures.keys() != keys.intersection(errors):
                return moment
    return None


def _confirm_whole(
    instants: Iterable[datetime.datetime],
    snapshot: Any,
    tags: frozenset[str],
    errors: Mapping[str, str],
    manual: frozenset[str],
    suppressed: frozenset[str],
    evaluate: Callable[..., Any],
) -> datetime.datetime | None:
    given = set(manual)
    start = (tags, frozenset(errors))
    previous = None
    for moment in instants:
        if moment == previous:
            continue
        previous = moment
        later = evaluate(snapshot, moment, given, suppressed=suppressed)
        if (later.tags, frozenset(later.errors)) != start:
            return moment
    return None


def lapses(
    windows: TimeWindows,
    snapshot: Any,
    now: datetime.datetime,
    tags: frozenset[str],
    errors: Mapping[str, str],
    manual: frozenset[str],
    suppressed: frozenset[str],
    evaluate: Callable[..., Any],
) -> tuple[datetime.datetime | None, dict[str, datetime.datetime]]:
    """``valid_until`` of the evaluation at ``now`` that gave ``tags`` and ``errors``, and for each
    of ``tags`` the first instant after ``now`` at which the catalog neither assigns it nor fails its
    rule (the instant a store would drop it), if time alone brings one.

    Every instant a comparison may turn is evaluated in order (the moving tags alone, the steady
    ones given as at ``now``, or the whole catalog when one of those failed) until both are known.

    Raises:
        TimeUnknown: the catalog reads time in a way the instants cannot be derived from.
    """
    if windows.unknown is not None:
        raise TimeUnknown(windows.unknown)
    instants = windows.instants(snapshot, now)
    found: dict[str, datetime.datetime] = {}
    if not instants:
        return None, found
    function = windows.function
    whole = function is None or bool(errors and not windows.steady.isdisjoint(errors))
    moving = windows.moving
    pending = set(tags) if whole else set(tags & moving)
    start = tags if whole else tags & moving
    start_errors = frozenset(errors) if whole else moving.intersection(errors)
    given: frozenset[str] = tags & windows.steady
    if manual:
        given = given.union(manual)
    until = None
    previous = None
    for moment, _ in instants:
        if moment == previous:
            continue
        previous = moment
        if whole:
            later = evaluate(snapshot, moment, set(manual), suppressed=suppressed)
            assigned, failures = later.tags, later.errors
        else:
            later = function(snapshot, moment, given, suppressed)
            assigned, failures = later.tags, later.errors
        if until is None and (assigned != start or failures.keys() != start_errors):
            until = moment
        for tag in [tag for tag in pending if tag not in assigned and tag not in failures]:
            found[tag] = moment
            pending.discard(tag)
        if until is not None and not pending:
            break
    return until, found


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
