"""Hypothesis strategies: valid snapshots of a schema, and snapshots on the edges of a tag's rule."""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import strategies as st

from tagrules.catalog import Catalog
from tagrules.rules._bounds import FieldPath
from tagrules.schema import FieldType, Schema
from tagrules.testing._boundaries import boundary_values, collect_boundaries

__all__ = ["boundary_snapshots", "snapshots"]

UTC = datetime.timezone.utc
_INT_LIMIT = 2**63 - 1
_TIMEZONES = [
    UTC,
    datetime.timezone(datetime.timedelta(hours=8)),
    datetime.timezone(datetime.timedelta(hours=-5)),
]
_JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(allow_nan=False), st.text(max_size=8)
)


def _values(field: FieldType) -> st.SearchStrategy[Any]:
    """Valid values of one field type."""
    base = _base_values(field)
    return st.one_of(st.none(), base) if field.nullable else base


def _base_values(field: FieldType) -> st.SearchStrategy[Any]:
    kind = field.kind
    if kind == "int":
        return st.one_of(st.integers(0, 200), st.integers(-_INT_LIMIT, _INT_LIMIT))
    if kind == "float":
        return st.one_of(st.integers(0, 200_000).map(float), st.floats(allow_nan=False, allow_infinity=False))
    if kind == "str":
        return st.text(max_size=12)
    if kind == "bool":
        return st.booleans()
    if kind == "datetime":
        return st.datetimes(
            min_value=datetime.datetime(1970, 1, 2),
            max_value=datetime.datetime(2100, 1, 1),
            timezones=st.sampled_from(_TIMEZONES),
        )
    if kind == "date":
        return st.dates(min_value=datetime.date(1970, 1, 1), max_value=datetime.date(2100, 1, 1))
    if kind == "timedelta":
        return st.timedeltas(
            min_value=datetime.timedelta(days=-3650), max_value=datetime.timedelta(days=3650)
        )
    if kind == "enum":
        return st.sampled_from(field.choices)
    if kind in ("list", "set"):
        assert field.item is not None
        items = st.lists(_values(field.item), max_size=4)
        return items.map(set) if kind == "set" else items
    if kind == "dict":
        if field.key is None or field.item is None:
            return st.dictionaries(st.text(max_size=8), _JSON_LEAVES, max_size=4)
        return st.dictionaries(_base_values(field.key), _values(field.item), max_size=4)
    if kind == "object":
        return st.fixed_dictionaries({name: _values(member) for name, member in field.fields})
    return st.none()


def _schema(source: Catalog | Schema) -> Schema:
    return source.schema if isinstance(source, Catalog) else source


def snapshots(source: Catalog | Schema) -> st.SearchStrategy[dict[str, Any]]:
    """Snapshots that fit the schema of ``source``: every field present, every value of its type.

    Given a catalog, values on and around the thresholds of its rules come up often.
    """
    schema = _schema(source)
    hints: dict[FieldPath, list[Any]] = {}
    if isinstance(source, Catalog):
        for definition in source.active:
            collect_boundaries(source, [definition.key], hints, None)
    fields = {}
    for name, field in schema.fields.items():
        strategy = _values(field)
        wanted = hints.get((name,))
        if wanted:
            strategy = st.one_of(st.sampled_from(wanted), strategy)
        fields[name] = strategy
    return st.fixed_dictionaries(fields)


def boundary_snapshots(
    catalog: Catalog, key: str, *, now: datetime.datetime | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid snapshots whose fields sit on and just around the thresholds that decide tag ``key``.

    Every field a threshold reads takes one of its :func:`boundary_values`; the other fields are
    drawn as by :func:`snapshots`. A property test over them probes the edges of every tier.

    Raises:
        KeyError: the catalog has no tag ``key``.
    """
    edges = boundary_values(catalog, key, now=now)
    base = snapshots(catalog.schema)
    if not edges:
        return base
    choices = {path: st.sampled_from(values) for path, values in edges.items()}

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        snapshot = draw(base)
        for path, strategy in choices.items():
            value = draw(strategy)
            if len(path) == 1:
                snapshot[path[0]] = value
            else:
                container = snapshot.get(path[0])
                snapshot[path[0]] = {**(container or {}), path[1]: value}
        return snapshot

    return build()
