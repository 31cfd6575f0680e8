"""The values on and just around the thresholds that decide a tag: where tiers change."""

from __future__ import annotations

import datetime
import decimal
import math
from collections.abc import Iterable
from typing import Any

from tagrules.catalog import Catalog
from tagrules.rules._bounds import FieldPath, Threshold, thresholds
from tagrules.schema import FieldType, Schema

__all__ = ["boundary_values", "collect_boundaries"]

_INT_LIMIT = 2**63 - 1


def _deciding_tags(catalog: Catalog, key: str) -> list[str]:
    """The tag, the tags its rule tests, and the higher tiers of their groups: all that decides it."""
    order: list[str] = []
    pending = [key]
    while pending:
        current = pending.pop(0)
        if current in order or current not in catalog:
            continue
        order.append(current)
        definition = catalog[current]
        pending.extend(sorted(catalog.dependencies.get(current, ())))
        if definition.group is not None and definition.group in catalog.groups:
            members = catalog.groups[definition.group]
            if current in members:
                pending.extend(members[: members.index(current)])
    return order


def _field_type(schema: Schema, path: FieldPath) -> FieldType | None:
    field = schema.fields.get(path[0])
    if field is None or len(path) == 1:
        return field
    if field.kind == "dict":
        return field.item if field.item is not None else FieldType("float")
    return None


def _around(threshold: Threshold, field: FieldType) -> list[Any]:
    value = threshold.value
    kind = field.kind
    found: list[Any] = []
    if isinstance(value, decimal.Decimal) and value.is_finite():
        if kind == "int" or (kind == "enum" and field.is_number):
            if abs(value) < _INT_LIMIT - 1:
                low = math.floor(value)
                found = [int(value), low - 1, low + 1] if value == low else [low, low + 1]
        elif kind == "float":
            nearest = float(value)
            if math.isfinite(nearest):
                found = [nearest, math.nextafter(nearest, -math.inf), math.nextafter(nearest, math.inf)]
    elif isinstance(value, datetime.datetime):
        step = datetime.timedelta(microseconds=1)
        if kind == "datetime":
            found = [value, value - step, value + step]
        elif kind == "date":
            day = value.date()
            found = [day, day - datetime.timedelta(days=1), day + datetime.timedelta(days=1)]
    elif isinstance(value, datetime.timedelta) and kind == "timedelta":
        step = datetime.timedelta(microseconds=1)
        found = [value, value - step, value + step]
    elif isinstance(value, str) and kind in ("str", "enum"):
        found = [value] if kind == "str" or value in field.choices else []
    if kind == "enum":  # only the enum's own values are valid; all of them are worth trying
        found = [value for value in found if value in field.choices]
        found += [choice for choice in field.choices if choice not in found]
    if field.nullable and len(threshold.path) == 1:
        found.append(None)
    return found


def collect_boundaries(
    catalog: Catalog, keys: Iterable[str], into: dict[FieldPath, list[Any]], now: datetime.datetime | None
) -> None:
    schema = catalog.schema
    names = frozenset(schema.fields)
    for key in keys:
        if catalog[key].status == "retired":
            continue
        for threshold in thresholds(catalog.rule(key).statement, names, now):
            field = _field_type(schema, threshold.path)
            if field is None:
                continue
            values = into.setdefault(threshold.path, [])
            for value in _around(threshold, field):
                if value not in values:
                    values.append(value)
    for values in into.values():
        if None in values:  # null last: it stands for the '??' default rather than for an edge
            values.remove(None)
            values.append(None)


def boundary_values(
    catalog: Catalog, key: str, *, now: datetime.datetime | None = None
) -> dict[FieldPath, list[Any]]:
    """The values on and just around every threshold that decides tag ``key``, per field.

    The thresholds are those of the tag's rule, of the rules of the tags it tests, and of the higher
    tiers of their exclusive groups. Numbers give the threshold and its neighbours (``n - 1``, ``n``,
    ``n + 1`` for ints; the nearest floats for floats), datetimes one microsecond either side, text
    the compared value; nullable fields also give ``None``. Comparisons with ``$now`` count only
    when ``now`` is given. A path is ``(field,)``, or ``(field, key)`` for a key of a dict field.

    Raises:
        KeyError: the catalog has no tag ``key``.
    """
    catalog[key]
    found: dict[FieldPath, list[Any]] = {}
    collect_boundaries(catalog, _deciding_tags(catalog, key), found, now)
    return {path: values for path, values in found.items() if values}
