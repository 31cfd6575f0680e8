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

import datetime
import decimal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

from rule_engine import ast

from tagrules.catalog import Catalog
from tagrules.errors import TimeUnknown
from tagrules.rules._bounds import OPERATORS
from tagrules.rules._language import DECIMAL_CONTEXT, Scope, evaluation_state
from tagrules.rules._tree import children

__all__ = ["TimeWindows", "valid_until"]

_MICROSECOND = datetime.timedelta(microseconds=1)
_DAY = datetime.timedelta(days=1)
_TIME_SYMBOLS = ("now", "today")


@final
@dataclass(frozen=True, slots=True)
class _Moving:
    """One comparison with a side moving with time: ``moving`` is ``sign * base + offset``, where
    ``base`` is ``$now`` or ``$today``; ``still`` is the side time does not change."""

    moving: Any
    still: Any
    base: str
    sign: int


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
                    found.append(_Moving(moving, still, *form))
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
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.comparisons: list[_Moving] = []
        self.unknown: str | None = None
        used = {name for definition in catalog.active for name in catalog.rule(definition.key).fields}
        timed = frozenset(name for name, function in catalog.functions.items() if function.uses_now)
        try:
            for definition in catalog.active:
                expression = catalog.rule(definition.key).statement.expression
                _comparisons(expression, definition.key, self.comparisons, timed)
            derived = sorted(name for name in catalog.derived_fields if name in used)
            if derived:
                raise TimeUnknown(f"the derived field {derived[0]!r} is computed at the evaluation time")
        except TimeUnknown as reason:
            self.unknown = str(reason)

    def instants(
        self, values: Mapping[str, Any], bad: Mapping[str, str], now: datetime.datetime
    ) -> list[datetime.datetime]:
        """Every instant after ``now`` at which a comparison may turn on this snapshot, in order."""
        scope = Scope(values, bad, set())
        found: set[datetime.datetime] = set()
        previous = evaluation_state.now
        evaluation_state.now = now
        try:
            with decimal.localcontext(DECIMAL_CONTEXT):
                for comparison in self.comparisons:
                    found.update(_turns(comparison, scope, now))
        finally:
            evaluation_state.now = previous
        return sorted(moment for moment in found if moment > now)


def _turns(comparison: _Moving, scope: Scope, now: datetime.datetime) -> Iterable[datetime.datetime]:
    try:
        still = comparison.still.evaluate(scope)
        moving = comparison.moving.evaluate(scope)
        base = now if comparison.base == "now" else now.replace(hour=0, minute=0, second=0, microsecond=0)
        # the base at which both sides are equal
        level = still - (moving - base) if comparison.sign > 0 else (moving + base) - still
    except Exception:
        return ()  # a side that fails, or values of other types: the same at every instant
    if not isinstance(level, datetime.datetime):
        return ()
    if level.tzinfo is None:
        level = level.replace(tzinfo=now.tzinfo)
    level = level.astimezone(now.tzinfo)
    if comparison.base == "now":
        return (level, level + _MICROSECOND)
    midnight = level.replace(hour=0, minute=0, second=0, microsecond=0)
    if midnight < level:
        midnight += _DAY
    return (midnight, midnight + _DAY)


def valid_until(
    windows: TimeWindows,
    values: Mapping[str, Any],
    bad: Mapping[str, str],
    now: datetime.datetime,
    state: tuple[frozenset[str], frozenset[str]],
    evaluate_at: Callable[[datetime.datetime], tuple[frozenset[str], frozenset[str]]],
) -> datetime.datetime | None:
    """The first instant after ``now`` at which ``evaluate_at`` gives a state other than ``state``
    (the tags and the failed rules at ``now``), or ``None`` if time alone never changes them.

    Raises:
        TimeUnknown: the catalog reads time in a way the instants cannot be derived from.
    """
    if windows.unknown is not None:
        raise TimeUnknown(windows.unknown)
    for moment in windows.instants(values, bad, now):
        if evaluate_at(moment) != state:
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
