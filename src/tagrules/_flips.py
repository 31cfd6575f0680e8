"""What would flip a tag: single-field changes to a snapshot that change whether a tag is assigned.

The candidates come from the rule trees: for numbers, dates and datetimes, the values on and just
around each constant a field is compared with (``$now`` and ``$today`` taken at the evaluation's
``now``), the nearest kept among those that flip; for text, the values compared against; for
booleans, the other value; for lists and sets, a compared value added or removed. The tags read
are the tag's own rule, the rules of the tags it depends on and of their exclusive groups,
transitively. Every candidate is evaluated before it is kept: no suggestion is a guess.
"""

from __future__ import annotations

import datetime
import decimal
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, final

from rule_engine import ast

from tagrules.catalog import Catalog
from tagrules.rules._bounds import thresholds
from tagrules.rules._tree import walk
from tagrules.schema import FieldType

__all__ = ["Flip", "flips"]

_INT_LIMIT = 2**63 - 1
_NUMBERS = ("int", "float")
_TIMES = ("datetime", "date")


@final
@dataclass(frozen=True, slots=True)
class Flip:
    """One change to one field that flips a tag.

    Attributes:
        field: the field changed.
        before: its value in the snapshot, as JSON Lines input writes it (``None`` if missing or bad).
        after: the value that flips the tag, written the same way.
        difference: ``after - before`` for numbers (a number), dates and datetimes (a ``timedelta``);
            ``None`` for other fields or when the field had no value.
    """

    field: str
    before: Any
    after: Any
    difference: Any = None

    def to_data(self) -> dict[str, Any]:
        """``{"field", "from", "to"}``, as ``tagrules explain --flip --json`` prints each change."""
        return {"field": self.field, "from": self.before, "to": self.after}


def deciding_tags(catalog: Catalog, key: str) -> list[str]:
    """``key``, the tags its rule tests and the members of their exclusive groups, transitively."""
    found: list[str] = []
    pending = [key]
    while pending:
        current = pending.pop()
        if current in found or current not in catalog or catalog[current].status == "retired":
            continue
        found.append(current)
        pending.extend(sorted(catalog.dependencies.get(current, ())))
        group = catalog[current].group
        pending.extend(catalog.groups.get(group, ()) if group is not None else ())
    return found


def json_value(value: Any) -> Any:
    """A field value as JSON Lines input writes it."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    return value


def _near_number(constant: Any, kind: str) -> list[Any]:
    if not isinstance(constant, decimal.Decimal) or not constant.is_finite():
        return []
    if kind == "int":
        if abs(constant) >= _INT_LIMIT - 1:
            return []
        low = math.floor(constant)
        return [low - 1, low, low + 1] if constant == low else [low, low + 1]
    nearest = float(constant)
    if not math.isfinite(nearest):
        return []
    return [math.nextafter(nearest, -math.inf), nearest, math.nextafter(nearest, math.inf)]


def _near_time(constant: Any, kind: str, tz: datetime.tzinfo | None) -> list[Any]:
    if not isinstance(constant, datetime.datetime):
        return []
    if kind == "date":
        day = constant.astimezone(tz).date() if tz is not None else constant.date()
        return [day - datetime.timedelta(days=1), day, day + datetime.timedelta(days=1)]
    step = datetime.timedelta(microseconds=1)
    return [constant - step, constant, constant + step]


def _literals(catalog: Catalog, keys: list[str]) -> tuple[list[str], list[Any]]:
    """The text and the numbers written in the rules (tag keys tested with ``in tags`` left out)."""
    texts: list[str] = []
    numbers: list[Any] = []
    for key in keys:
        tested = catalog.dependencies.get(key, frozenset())
        for node, _ in walk(catalog.rule(key).statement.expression):
            if (
                isinstance(node, ast.StringExpression)
                and node.value not in tested
                and node.value not in texts
            ):
                texts.append(node.value)
            elif isinstance(node, ast.FloatExpression) and node.value not in numbers:
                numbers.append(node.value)
    return texts, numbers


def _candidates(
    catalog: Catalog, keys: list[str], name: str, field: FieldType, current: Any, now: datetime.datetime
) -> Iterator[Any]:
    names = frozenset(catalog.snapshot_schema.fields)
    kind = "int" if field.kind == "enum" and field.is_number else field.kind
    if kind in _NUMBERS or kind in _TIMES:
        for key in keys:
            for threshold in thresholds(catalog.rule(key).statement, names, now):
                if threshold.path != (name,):
                    continue
                if kind in _NUMBERS:
                    yield from _near_number(threshold.value, kind)
                else:
                    yield from _near_time(threshold.value, kind, now.tzinfo)
        return
    texts, numbers = _literals(catalog, keys)
    if kind == "bool" and isinstance(current, bool):
        yield not current
    elif kind == "str":
        yield from texts
    elif kind == "enum":
        yield from field.choices
    elif (
        kind in ("list", "set")
        and field.item is not None
        and isinstance(current, (list, tuple, set, frozenset))
    ):
        if field.item.kind == "str":
            members: list[Any] = list(texts)
        elif field.item.kind == "int":
            # an int member equals only a whole literal within 64 bits (inf and 0.5 name no int)
            members = [
                int(n) for n in numbers if n.is_finite() and n == n.to_integral_value() and abs(n) < 2**63
            ]
        else:
            members = [float(n) for n in numbers if n.is_finite()]
        for member in members:
            if member in current:
                yield [item for item in current if item != member]
            else:
                yield [*current, member]


def _distance(candidate: Any, current: Any) -> Any:
    try:
        return abs(candidate - current)
    except TypeError:
        return None


def flips(
    catalog: Catalog,
    snapshot: Mapping[str, Any],
    key: str,
    now: datetime.datetime,
    assigned_in: Callable[[Mapping[str, Any]], bool | None],
) -> list[Flip]:
    """The single-field changes to ``snapshot`` that flip ``key``, each checked with ``assigned_in``
    (which gives the tag's state on a snapshot: assigned, not assigned, or ``None`` if unknown)."""
    assigned = assigned_in(snapshot) is True
    values, _ = catalog.snapshot_schema.read(snapshot)
    keys = deciding_tags(catalog, key)
    read = {name for tag in keys for name in catalog.rule(tag).fields}
    found: list[Flip] = []
    for name in sorted(read & set(catalog.snapshot_schema.fields)):
        field = catalog.snapshot_schema.fields[name]
        current = values.get(name)
        seen: list[Any] = []
        kept: list[tuple[Any, Any]] = []
        for candidate in _candidates(catalog, keys, name, field, current, now):
            if candidate in seen or candidate == current:
                continue
            seen.append(candidate)
            state = assigned_in({**snapshot, name: candidate})
            if state is None or state == assigned:
                continue
            kept.append((candidate, _distance(candidate, current) if current is not None else None))
        if not kept:
            continue
        if field.kind in _NUMBERS or field.kind in _TIMES or field.is_number:
            measured = [item for item in kept if item[1] is not None]
            candidate = min(measured, key=lambda item: item[1])[0] if measured else kept[0][0]
            difference = candidate - current if measured else None
            found.append(Flip(name, json_value(current), json_value(candidate), difference))
            continue
        found.extend(Flip(name, json_value(current), json_value(candidate)) for candidate, _ in kept)
    return found
