"""Hypothesis strategies for the compiler's differential tests: random typed schemas, random rules
drawn from the whole grammar, and snapshots full of edge values."""

from __future__ import annotations

import datetime
import decimal
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tagrules.schema import FieldType, Schema, parse_type

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 1, 12, 30, tzinfo=UTC)

#: Field types the schemas are drawn from (type name -> the kind of values rules see).
FIELD_TYPES = {
    "int": "num",
    "float": "num",
    "int | None": "num?",
    "float | None": "num?",
    "str": "str",
    "str | None": "str?",
    "bool": "bool",
    "bool | None": "bool?",
    "datetime": "dt",
    "datetime | None": "dt?",
    "date": "dt",
    "timedelta": "td",
    "list[int]": "list_num",
    "list[float]": "list_num",
    "list[str]": "list_str",
    "set[str]": "set_str",
    "set[int]": "set_num",
    "set[float]": "set_num",
    "list[str] | None": "list_str?",
    "set[str] | None": "set_str?",
    "dict[str, float]": "map_num",
    "dict[str, int]": "map_num",
    "dict[str, float] | None": "map_num?",
    "dict[str, str]": "map_str",
    "dict[str, bool | None]": "map_bool",
    "dict": "map_any",
    "Item": "obj",
    "Item | None": "obj?",
    "list[Item]": "list_obj",
}

#: A nested model: rules read its fields with ``.``; snapshots give it as a mapping.
ITEM = FieldType(
    "object",
    name="Item",
    fields=(
        ("amount", FieldType("float")),
        ("label", FieldType("str", nullable=True)),
        ("count", FieldType("int")),
    ),
)
_OBJECT_TYPES = {
    "Item": ITEM,
    "Item | None": ITEM.with_nullable(True),
    "list[Item]": FieldType("list", item=ITEM),
}


def field_type_of(type_name: str) -> FieldType:
    """The field type a schema type name stands for (``Item`` is the nested model)."""
    return _OBJECT_TYPES.get(type_name) or parse_type(type_name)


TAG_KEYS = ("vip", "churned", "freq_high")

_INTS = [0, 1, -1, 2, 3, 10, 100, 2**31, -(2**31), 2**53 + 1, 2**62, -(2**62), 7]
_FLOATS = [
    0.0,
    -0.0,
    0.1,
    0.2,
    0.3,
    1.5,
    -2.5,
    100000.0,
    99999.99,
    30000.0,
    1e-300,
    1e300,
    1.7976931348623157e308,
    5e-324,
    2.0**60,
    float("inf"),
    float("-inf"),
    3.141592653589793,
    1 / 3,
]
_STRINGS = ["", "a", "A", "abc", "ABC", "tier1", "Tier1", "é", "straße", "  x ", "vip", "12", "a.b", "北京"]
_DATETIMES = [
    NOW,
    NOW - datetime.timedelta(days=90),
    NOW - datetime.timedelta(days=90, microseconds=1),
    NOW - datetime.timedelta(days=180),
    NOW + datetime.timedelta(seconds=1),
    datetime.datetime(1970, 1, 1, tzinfo=UTC),
    datetime.datetime(2026, 6, 1, tzinfo=UTC),
    datetime.datetime(2026, 6, 1, 20, tzinfo=datetime.timezone(datetime.timedelta(hours=8))),
    datetime.datetime(2026, 5, 31, 23, 59, 59, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
    datetime.datetime(2024, 2, 29, tzinfo=UTC),
]
_DELTAS = [
    datetime.timedelta(0),
    datetime.timedelta(days=30),
    datetime.timedelta(days=90),
    datetime.timedelta(hours=-5),
    datetime.timedelta(microseconds=1),
]


@dataclass(frozen=True)
class Hints:
    """Values worth putting in snapshots: the rule's thresholds and their neighbours."""

    floats: list[float]
    ints: list[int]
    strings: list[str]


NO_HINTS = Hints([], [], [])


@dataclass(frozen=True)
class RandomSchema:
    """A schema and the kind of values each field holds."""

    types: dict[str, str]

    @property
    def schema(self) -> Schema:
        built, problems = Schema.parse(
            {name: field_type_of(type_name) for name, type_name in self.types.items()}
        )
        assert not problems, problems
        assert built is not None
        return built

    def fields_of(self, kind: str) -> list[str]:
        return [name for name, type_name in self.types.items() if FIELD_TYPES[type_name] == kind]


@st.composite
def schemas(draw: st.DrawFn) -> RandomSchema:
    """A schema of 3 to 8 fields of random types (always one number, one text and one list)."""
    names = list(FIELD_TYPES)
    chosen = draw(st.lists(st.sampled_from(names), min_size=3, max_size=8))
    chosen += [
        draw(st.sampled_from(["int", "float"])),
        "str",
        draw(st.sampled_from(["list[int]", "list[str]"])),
    ]
    return RandomSchema({f"f{index}": type_name for index, type_name in enumerate(chosen)})


def _float_value(draw: st.DrawFn, hints: Hints) -> float:
    options = [
        st.sampled_from(_FLOATS),
        st.floats(allow_nan=False, width=64),
        st.integers(-1000, 1000).map(lambda value: value / 4),
    ]
    if hints.floats:
        options = [st.sampled_from(hints.floats)] * 3 + options
    return draw(st.one_of(options))


def _int_value(draw: st.DrawFn, hints: Hints) -> int:
    options = [st.sampled_from(_INTS), st.integers(-5, 5), st.integers(-(2**63) + 1, 2**63 - 1)]
    if hints.ints:
        options = [st.sampled_from(hints.ints)] * 3 + options
    return draw(st.one_of(options))


def value_of(draw: st.DrawFn, type_name: str, hints: Hints = NO_HINTS) -> Any:
    """A raw snapshot value for a field type, edge values favoured."""
    field_type = field_type_of(type_name)
    if field_type.nullable and draw(st.integers(0, 3)) == 0:
        return None
    return _value(draw, field_type.with_nullable(False), hints)


def _value(draw: st.DrawFn, field_type: FieldType, hints: Hints) -> Any:
    kind = field_type.kind
    if kind == "int":
        return _int_value(draw, hints)
    if kind == "float":
        return _float_value(draw, hints)
    if kind == "str":
        strings = st.sampled_from(_STRINGS + hints.strings)
        return draw(st.one_of(strings, strings, st.text(max_size=4)))
    if kind == "bool":
        return draw(st.booleans())
    if kind == "datetime":
        return draw(st.sampled_from(_DATETIMES))
    if kind == "date":
        return draw(st.sampled_from(_DATETIMES)).date()
    if kind == "timedelta":
        return draw(st.sampled_from(_DELTAS))
    if kind == "object":
        item = {"amount": _float_value(draw, hints), "label": draw(st.sampled_from([None, "a", "tier1", ""]))}
        item["count"] = _int_value(draw, hints)
        if draw(st.integers(0, 9)) == 0:
            del item[draw(st.sampled_from(["amount", "label", "count"]))]
        return item
    if kind in ("list", "set"):
        assert field_type.item is not None
        return [_value(draw, field_type.item, hints) for _ in range(draw(st.integers(0, 4)))]
    if kind == "dict":
        if field_type.item is None:
            leaf = st.one_of(
                st.integers(-3, 3), st.sampled_from(["a", "b"]), st.none(), st.booleans(), st.just(1.5)
            )
            return draw(st.dictionaries(st.sampled_from(["a", "b", "c"]), leaf, max_size=3))
        keys = draw(st.lists(st.sampled_from(["a", "b", "c", "é"]), unique=True, max_size=3))
        return {key: _value(draw, field_type.item, hints) for key in keys}
    raise AssertionError(kind)


@st.composite
def raw_snapshots(draw: st.DrawFn, schema: RandomSchema, hints: Hints = NO_HINTS) -> dict[str, Any]:
    """A raw snapshot: mostly good values, sometimes a missing field or a value of the wrong type."""
    snapshot: dict[str, Any] = {}
    for name, type_name in schema.types.items():
        roll = draw(st.integers(0, 19))
        if roll == 0:
            continue
        if roll == 1:
            snapshot[name] = draw(st.sampled_from(["oops", 1.5, None, [1], {"x": 1}, True]))
            continue
        snapshot[name] = value_of(draw, type_name, hints)
    return snapshot


# ---------------------------------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------------------------------

_NUMBER_LITERALS = [
    "0",
    "1",
    "2",
    "3",
    "10",
    "0.1",
    "0.2",
    "0.3",
    "1.5",
    "-1",
    "100000",
    "99999.99",
    "30000",
    "1e300",
    "1e-300",
    "0.1000000000000000055511151231257827",
    "9007199254740993",
    "1.7976931348623157e308",
    "inf",
    "0x10",
    "2.5e3",
    "1152921504606846976",
]
_STRING_LITERALS = ["''", "'a'", "'abc'", "'ABC'", "'tier1'", "'12'", "'é'", "'北京'", "'vip'"]
#: Keys rules look up in dicts (snapshots hold some of them).
_MAP_KEYS = ["a", "b", "é"]
_LIST_DEFAULTS = ["[]", "['a']", "['a', 'tier1']"]
_REGEXES = ["'^a'", "'b'", "'[0-9]+'", "'^$'", "'(?i)abc'", "'t[a-z]+1'", "'.'"]


class RuleWriter:
    """Writes random rule text of a wanted kind over a schema (type-directed, depth-bounded)."""

    def __init__(self, draw: st.DrawFn, schema: RandomSchema) -> None:
        self.draw = draw
        self.schema = schema
        self.variables: list[tuple[str, str]] = []
        self.numbers: list[str] = []
        self.strings: list[str] = []

    def pick(self, options: list[str]) -> str:
        choice = self.draw(st.sampled_from(options))
        if choice in _NUMBER_LITERALS:
            self.numbers.append(choice)
        elif choice in _STRING_LITERALS:
            self.strings.append(choice[1:-1])
        return choice

    def hints(self) -> Hints:
        """Values on and around the literals the rule used, for snapshots to probe its edges."""
        floats: list[float] = []
        ints: list[int] = []
        for text in self.numbers:
            value = decimal.Decimal(int(text, 16)) if text.startswith("0x") else decimal.Decimal(text)
            nearest = float(value)
            floats.extend([nearest, math.nextafter(nearest, math.inf), math.nextafter(nearest, -math.inf)])
            if value.is_finite() and abs(value) < 2**62:
                whole = int(value)
                ints.extend([whole - 1, whole, whole + 1])
        return Hints([value for value in floats if not math.isnan(value)], ints, list(self.strings))

    def field(self, kind: str) -> str | None:
        names = self.schema.fields_of(kind) + [name for name, var_kind in self.variables if var_kind == kind]
        return self.pick(names) if names else None

    def boolean(self, depth: int) -> str:
        options = ["compare_num", "compare_num", "compare_str", "literal", "in_list", "tags"]
        if depth > 0:
            options += [
                "and",
                "or",
                "not",
                "ternary",
                "compare_dt",
                "regex",
                "in_field",
                "length",
                "starts",
                "any",
            ]
            options += ["compare_num", "nullable", "equal_any", "compare_td", "map_get"]
            # the constructs compiled to plain Python by their declared types, weighted high
            options += ["member"] * 4 + ["set_op"] * 2 + ["is_empty", "map_has", "safe_text"]
        choice = self.pick(options)
        if choice == "literal":
            return self.pick(["true", "false"])
        if choice == "compare_num":
            operator = self.pick([">", ">=", "<", "<=", "==", "!="])
            return f"{self.number(depth - 1)} {operator} {self.number(depth - 1)}"
        if choice == "compare_str":
            operator = self.pick(["==", "!=", "<", ">="])
            return f"{self.text(depth - 1)} {operator} {self.text(depth - 1)}"
        if choice == "compare_dt":
            operator = self.pick([">", ">=", "<", "<=", "==", "!="])
            return f"{self.datetime(depth - 1)} {operator} {self.datetime(depth - 1)}"
        if choice == "compare_td":
            return f"{self.timedelta(depth - 1)} {self.pick(['>', '==', '<='])} {self.timedelta(depth - 1)}"
        if choice == "in_list":
            literal = "[" + ", ".join(self.pick([*_NUMBER_LITERALS, "true", "null"]) for _ in range(3)) + "]"
            if self.draw(st.booleans()):
                return f"{self.number(depth - 1)} {self.pick(['in', 'not in'])} {literal}"
            strings = "[" + ", ".join(self.pick(_STRING_LITERALS) for _ in range(3)) + "]"
            return f"{self.text(depth - 1)} {self.pick(['in', 'not in'])} {strings}"
        if choice == "in_field":
            container = self.field(self.pick(["list_str", "set_str", "list_num", "set_num", "str"]))
            if container is None:
                return "true"
            kind = FIELD_TYPES.get(self.schema.types.get(container, ""), "")
            member = self.number(depth - 1) if kind in ("list_num", "set_num") else self.text(depth - 1)
            return f"{member} in {container}"
        if choice == "tags":
            return f"'{self.pick(list(TAG_KEYS))}' {self.pick(['in', 'not in'])} tags"
        if choice in ("and", "or"):
            return f"({self.boolean(depth - 1)} {choice} {self.boolean(depth - 1)})"
        if choice == "not":
            return f"not ({self.boolean(depth - 1)})"
        if choice == "ternary":
            return f"({self.boolean(depth - 1)} ? {self.boolean(depth - 1)} : {self.boolean(depth - 1)})"
        if choice == "regex":
            return f"{self.text(depth - 1)} {self.pick(['=~', '=~~', '!~', '!~~'])} {self.pick(_REGEXES)}"
        if choice == "length":
            operator = self.pick([">", "==", ">="])
            return f"{self.collection(depth - 1)}.length {operator} {self.pick(['0', '1', '2'])}"
        if choice == "starts":
            return f"{self.text(depth - 1)}.{self.pick(['starts_with', 'ends_with'])}({self.text(depth - 1)})"
        if choice == "any":
            return f"$any([{self.boolean(depth - 1)}, {self.boolean(depth - 1)}])"
        if choice == "nullable":
            name = self.field("bool?")
            return f"({name} ?? {self.pick(['true', 'false'])})" if name else "false"
        if choice == "map_get":
            name = self.field("map_bool")
            return (
                f"({name}&['{self.pick(_MAP_KEYS)}'] ?? {self.pick(['true', 'false'])})" if name else "true"
            )
        if choice == "equal_any":
            return f"{self.anything(depth - 1)} {self.pick(['==', '!='])} {self.anything(depth - 1)}"
        if choice == "member":
            return self.membership(depth - 1)
        if choice == "set_op":
            combined = (
                f"({self.set_value(depth - 1)} {self.pick(['&', '|', '^'])} {self.set_value(depth - 1)})"
            )
            if self.draw(st.booleans()):
                return f"{combined}.length {self.pick(['>', '==', '>='])} {self.pick(['0', '1', '2'])}"
            member = self.pick([*_STRING_LITERALS, "1", "2", "1.5"])
            return f"{member} {self.pick(['in', 'not in'])} {combined}"
        if choice == "is_empty":
            return f"{self.pick([self.collection(depth - 1), self.text(depth - 1)])}.is_empty"
        if choice == "map_has":
            name = self.field("map_num") or self.field("map_str") or self.field("map_any")
            return f"{self.text(depth - 1)} {self.pick(['in', 'not in'])} {name}" if name else "true"
        if choice == "safe_text":
            name = self.field("str?")
            if name is None:
                return "false"
            attribute = self.pick(["as_lower", "as_upper", "length", "is_empty"])
            if attribute == "length":
                return f"({name}&.length ?? 0) {self.pick(['>', '=='])} {self.pick(['0', '1', '3'])}"
            if attribute == "is_empty":
                return f"({name}&.is_empty ?? {self.pick(['true', 'false'])})"
            return f"({name}&.{attribute} ?? {self.pick(_STRING_LITERALS)}) == {self.text(depth - 1)}"
        raise AssertionError(choice)

    def membership(self, depth: int) -> str:
        """``member in container`` over typed lists, sets, dicts and text: literal members of the
        container's kind (and of other kinds), fields and expressions."""
        kind = self.pick(
            ["list_str", "set_str", "list_num", "set_num", "str", "map_num", "map_str", "list_str?"]
        )
        name = self.field(kind)
        if name is None:
            return "true"
        container = f"({name} ?? {self.pick(_LIST_DEFAULTS)})" if kind.endswith("?") else name
        if kind in ("list_num", "set_num"):
            member = self.pick([*_NUMBER_LITERALS, "null", "'a'", "field", "field"])
            if member == "field":
                member = self.number(depth)
        else:
            member = self.pick([*_STRING_LITERALS, "null", "1", "text", "text"])
            if member == "text":
                member = self.text(depth)
        return f"{member} {self.pick(['in', 'not in', 'in'])} {container}"

    def set_value(self, depth: int) -> str:
        name = self.field(self.pick(["set_str", "set_num"]))
        nullable = self.field("set_str?")
        options = [name or "{'a'}", name or "{1, 2}", "{'a', 'b'}", "{1, 2}", "{'vip'}"]
        if nullable is not None:
            options.append(f"({nullable} ?? {{'a'}})")
        return self.pick(options)

    def number(self, depth: int) -> str:
        options = ["literal", "field", "field"]
        if depth > 0:
            options += [
                "arith",
                "arith",
                "neg",
                "coalesce",
                "length",
                "ternary",
                "index",
                "year",
                "sum",
                "abs",
            ]
            options += ["map_get", "untyped", "days", "object", "list_length", "map_key"]
        choice = self.pick(options)
        if choice == "literal":
            return self.pick(_NUMBER_LITERALS)
        if choice == "field":
            return self.field("num") or self.pick(_NUMBER_LITERALS)
        if choice == "arith":
            operator = self.pick(["+", "-", "*", "/", "//", "%", "**"])
            return f"({self.number(depth - 1)} {operator} {self.number(depth - 1)})"
        if choice == "neg":
            return f"-({self.number(depth - 1)})"
        if choice == "coalesce":
            name = self.field("num?")
            return f"({name} ?? {self.pick(_NUMBER_LITERALS)})" if name else "0"
        if choice == "length":
            return f"{self.collection(depth - 1)}.length"
        if choice == "ternary":
            return f"({self.boolean(depth - 1)} ? {self.number(depth - 1)} : {self.number(depth - 1)})"
        if choice == "index":
            name = self.field("list_num")
            return f"{name}[{self.pick(['0', '1', '-1', '5'])}]" if name else "1"
        if choice == "year":
            return f"{self.datetime(depth - 1)}.{self.pick(['year', 'month', 'day', 'hour'])}"
        if choice == "sum":
            name = self.field("list_num")
            return f"${self.pick(['sum', 'max', 'min'])}({name})" if name else "2"
        if choice == "abs":
            return f"$abs({self.number(depth - 1)})"
        if choice == "map_get":
            name = self.field("map_num")
            if name is not None and self.draw(st.booleans()):
                return f"{name}['{self.pick(_MAP_KEYS)}']"
            name = name or self.field("map_num?")
            return f"({name}&['{self.pick(_MAP_KEYS)}'] ?? {self.pick(_NUMBER_LITERALS)})" if name else "3"
        if choice == "untyped":
            name = self.field("map_any")
            return f"({name}&['{self.pick(['a', 'b', 'c'])}'] ?? 0)" if name else "4"
        if choice == "days":
            return f"{self.timedelta(depth - 1)}.days"
        if choice == "list_length":
            name = self.field("list_str?")
            if name is not None:
                return f"({name} ?? {self.pick(_LIST_DEFAULTS)}).length"
            name = self.field("set_str?")
            return f"({name} ?? {{'a'}}).length" if name else "6"
        if choice == "map_key":
            name = self.field("map_num")
            return f"{name}{self.pick(['[', '&['])}{self.text(depth - 1)}]" if name else "7"
        if choice == "object":
            name = self.field("obj")
            if name is not None:
                return f"{name}.{self.pick(['amount', 'count'])}"
            nullable = self.field("obj?")
            if nullable is not None:
                return f"({nullable}&.{self.pick(['amount', 'count'])} ?? {self.pick(_NUMBER_LITERALS)})"
            return "5"
        raise AssertionError(choice)

    def text(self, depth: int) -> str:
        options = ["literal", "field", "field"]
        if depth > 0:
            options += [
                "lower",
                "concat",
                "coalesce",
                "slice",
                "ternary",
                "index",
                "to_str",
                "label",
                "map_get",
            ]
        choice = self.pick(options)
        if choice == "literal":
            return self.pick(_STRING_LITERALS)
        if choice == "field":
            return self.field("str") or self.pick(_STRING_LITERALS)
        if choice == "lower":
            return f"{self.text(depth - 1)}.{self.pick(['as_lower', 'as_upper'])}"
        if choice == "concat":
            return f"({self.text(depth - 1)} + {self.text(depth - 1)})"
        if choice == "coalesce":
            name = self.field("str?")
            return f"({name} ?? {self.pick(_STRING_LITERALS)})" if name else "'z'"
        if choice == "slice":
            return f"{self.text(depth - 1)}[{self.pick(['1:', ':2', '1:3', '-1:'])}]"
        if choice == "ternary":
            return f"({self.boolean(depth - 1)} ? {self.text(depth - 1)} : {self.text(depth - 1)})"
        if choice == "index":
            name = self.field("list_str")
            return f"{name}[{self.pick(['0', '-1', '3'])}]" if name else "'q'"
        if choice == "to_str":
            return f"{self.number(depth - 1)}.to_str"
        if choice == "label":
            name = self.field("obj")
            return f"({name}.label ?? 'none')" if name else "'w'"
        if choice == "map_get":
            name = self.field("map_str")
            if name is None:
                return "'m'"
            if self.draw(st.booleans()):
                return f"{name}['{self.pick(_MAP_KEYS)}']"
            return f"({name}&['{self.pick(_MAP_KEYS)}'] ?? {self.pick(_STRING_LITERALS)})"
        raise AssertionError(choice)

    def datetime(self, depth: int) -> str:
        options = ["now", "literal", "field"]
        if depth > 0:
            options += ["window", "coalesce", "date", "plus"]
        choice = self.pick(options)
        if choice == "now":
            return self.pick(["$now", "$today"])
        if choice == "literal":
            return self.pick(
                ["d'2026-06-01'", "d'2026-03-03T10:00:00+08:00'", "d'1970-01-01'", "d'2026-06-01T12:30:00Z'"]
            )
        if choice == "field":
            return self.field("dt") or "$now"
        if choice == "window":
            return f"($now - {self.timedelta(depth - 1)})"
        if choice == "coalesce":
            name = self.field("dt?")
            return f"({name} ?? d'1970-01-01')" if name else "$today"
        if choice == "date":
            return f"{self.datetime(depth - 1)}.date"
        if choice == "plus":
            return f"({self.datetime(depth - 1)} + {self.timedelta(depth - 1)})"
        raise AssertionError(choice)

    def timedelta(self, depth: int) -> str:
        options = ["literal", "literal"] + (["field"] if self.field("td") else [])
        if depth > 0:
            options += ["difference"]
        choice = self.pick(options)
        if choice == "literal":
            return self.pick(["t'P90D'", "t'P30D'", "t'PT1H'", "t'P1W'", "t'P0D'", "t'PT0.5S'"])
        if choice == "field":
            return self.field("td") or "t'P1D'"
        return f"({self.datetime(depth - 1)} - {self.datetime(depth - 1)})"

    def collection(self, depth: int) -> str:
        options = ["field", "literal"]
        if depth > 0:
            options += ["comprehension", "filter", "slice", "keys"]
        choice = self.pick(options)
        if choice == "field":
            kind = self.pick(
                ["list_num", "list_str", "set_str", "set_num", "map_num", "map_any", "str", "list_obj"]
            )
            if kind == "set_str" and self.draw(st.booleans()):
                return f"({self.set_value(depth)} {self.pick(['&', '|', '^'])} {self.set_value(depth)})"
            return self.field(kind) or "[1, 2]"
        if choice == "literal":
            return self.pick(["[1, 2, 3]", "[]", "['a', 'b']", "{1, 2}", "{'a': 1}"])
        if choice in ("comprehension", "filter") and self.field("list_obj") and self.draw(st.booleans()):
            source = self.field("list_obj")
            variable = self.pick(["o", "order"])
            self.variables.append((variable, "obj"))
            try:
                if choice == "filter":
                    return f"[{variable} for {variable} in {source} if {self.boolean(depth - 1)}]"
                return f"[{variable}.{self.pick(['amount', 'count'])} for {variable} in {source}]"
            finally:
                self.variables.pop()
        if choice in ("comprehension", "filter"):
            source_kind = self.pick(["list_num", "list_str", "set_str", "set_num"])
            source = self.field(source_kind)
            if source is None:
                return "[1]"
            variable = self.pick(["x", "item", "v"])
            member_kind = "num" if source_kind in ("list_num", "set_num") else "str"
            self.variables.append((variable, member_kind))
            try:
                if choice == "filter":
                    return f"[{variable} for {variable} in {source} if {self.boolean(depth - 1)}]"
                value = self.number(depth - 1) if member_kind == "num" else self.text(depth - 1)
                return f"[{value} for {variable} in {source}]"
            finally:
                self.variables.pop()
        if choice == "slice":
            name = self.field("list_num") or self.field("list_str")
            return f"{name}[{self.pick(['1:', ':1', ':'])}]" if name else "[3]"
        name = self.field("map_num") or self.field("map_any")
        return f"{name}.{self.pick(['keys', 'values'])}" if name else "[4]"

    def anything(self, depth: int) -> str:
        kind = self.pick(["num", "str", "dt", "bool", "collection", "null", "object"])
        if kind == "object":
            return self.field("obj") or self.field("list_obj") or "null"
        if kind == "num":
            return self.number(depth)
        if kind == "str":
            return self.text(depth)
        if kind == "dt":
            return self.datetime(depth)
        if kind == "bool":
            return self.boolean(depth)
        if kind == "collection":
            return self.collection(depth)
        nullable = [
            name
            for kind_name in ("num?", "str?", "dt?", "bool?")
            for name in self.schema.fields_of(kind_name)
        ]
        return self.pick([*nullable, "null"])


@st.composite
def written_rules(draw: st.DrawFn, schema: RandomSchema) -> tuple[str, Hints]:
    """Random rule text over ``schema`` (it may still fail rule-engine's type checks), and the
    values around its literals."""
    writer = RuleWriter(draw, schema)
    depth = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["bool", "bool", "bool", "num", "str", "dt", "collection", "any"]))
    if kind == "bool":
        text = writer.boolean(depth)
    elif kind == "num":
        text = writer.number(depth)
    elif kind == "str":
        text = writer.text(depth)
    elif kind == "dt":
        text = writer.datetime(depth)
    elif kind == "collection":
        text = writer.collection(depth)
    else:
        text = writer.anything(depth)
    return text, writer.hints()


def rules_for(schema: RandomSchema) -> st.SearchStrategy[str]:
    """Random rule text over ``schema``."""
    return written_rules(schema).map(lambda written: written[0])


def same(first: Any, second: Any) -> bool:
    """Strict equality: same types all the way down, decimals with the same digits and exponent."""
    if type(first) is not type(second):
        return False
    if isinstance(first, (tuple, list)):
        return len(first) == len(second) and all(same(a, b) for a, b in zip(first, second, strict=True))
    if isinstance(first, dict):
        return list(first) == list(second) and all(same(first[key], second[key]) for key in first)
    if isinstance(first, float) and math.isnan(first):
        return math.isnan(second)
    if hasattr(first, "as_tuple"):
        return bool(first.as_tuple() == second.as_tuple())
    return bool(first == second)
