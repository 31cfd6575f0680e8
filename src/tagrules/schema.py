"""The snapshot schema: the typed fields a rule can read.

A schema is written inline, field name -> type name (``int``, ``list[str]``, ``datetime | None``),
or taken from a pydantic model (``"package.module:Model"``). Each field type knows three things:
its rule-engine data type (for type-checking rules at load), how to read a snapshot value into the
form rules see (``normalize``), and how to print itself.

Normalised values are what rule-engine expects: ints and floats stay Python numbers (rule-engine
turns them into ``Decimal``), datetimes are timezone-aware (naive ones are UTC), lists become
tuples, sets are ``set``, nested models and enums become plain dicts and their values.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import difflib
import enum
import importlib
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, final

from pydantic import BaseModel
from rule_engine import DataType
from rule_engine.parser.utilities import parse_timedelta
from rule_engine.types import _DataTypeDef

from tagrules.errors import Problem

__all__ = [
    "RESERVED_NAMES",
    "BadValue",
    "FailedValue",
    "FieldType",
    "Record",
    "Schema",
    "SchemaError",
    "parse_type",
    "suggest",
]

UTC = datetime.timezone.utc

#: Names a schema field may not take: rule-engine's keywords and the reserved ``tags`` symbol.
RESERVED_NAMES = frozenset(
    {
        "tags",
        "true",
        "false",
        "null",
        "inf",
        "nan",
        "and",
        "or",
        "not",
        "in",
        "for",
        "if",
        "elif",
        "else",
        "while",
    }
)
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SCALAR_KINDS = ("int", "float", "str", "bool", "datetime", "date", "timedelta", "dict")
_GENERIC_KINDS = ("list", "set", "dict")
#: ints beyond 64 bits are refused: databases cannot hold them and rule-engine's Decimal maths slows down.
_INT_LIMIT = 2**63


class SchemaError(ValueError):
    """A type name or a model field that cannot be mapped; ``str()`` is the message for the author."""


class BadValue(ValueError):
    """A snapshot value that does not fit its field type; ``str()`` says why."""


Normalizer = Callable[[Any], Any]


@final
class FailedValue:
    """Stands for a value that could not be computed (a derived field whose function raised).

    A snapshot may carry one in place of a field's value: the field then counts as bad, with
    ``reason`` as its message, and only the rules reading it fail.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"FailedValue({self.reason!r})"


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


@final
@dataclasses.dataclass(frozen=True)
class FieldType:
    """The type of one snapshot field.

    Attributes:
        kind: ``int``, ``float``, ``str``, ``bool``, ``datetime``, ``date``, ``timedelta``, ``dict``,
            ``list``, ``set``, ``object`` (a nested model) or ``enum``; ``unknown`` stands in for a
            field whose type could not be read, in a schema that has problems.
        nullable: whether the field may be null (written ``T | None``).
        item: the member type of a list or set, the value type of a typed dict.
        key: the key type of a typed dict.
        fields: the fields of a nested model, in order.
        name: the name of a nested model or enum.
        choices: the values an enum field may take.
    """

    kind: str
    nullable: bool = False
    item: FieldType | None = None
    key: FieldType | None = None
    fields: tuple[tuple[str, FieldType], ...] = ()
    name: str | None = None
    choices: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        if self.kind in ("list", "set"):
            text = f"{self.kind}[{self.item}]"
        elif self.kind == "dict" and self.key is not None:
            text = f"dict[{self.key}, {self.item}]"
        elif self.kind in ("object", "enum"):
            text = self.name or self.kind
        else:
            text = self.kind
        return f"{text} | None" if self.nullable else text

    @property
    def is_number(self) -> bool:
        """Whether values of this type are numbers (int, float or a numeric enum)."""
        return self.kind in ("int", "float") or (self.kind == "enum" and self._enum_is_numeric)

    @property
    def _enum_is_numeric(self) -> bool:
        return bool(self.choices) and all(isinstance(choice, int) for choice in self.choices)

    def with_nullable(self, nullable: bool) -> FieldType:
        """The same type, nullable or not."""
        return dataclasses.replace(self, nullable=nullable)

    def rule_type(self) -> _DataTypeDef:
        """The rule-engine data type rules see for this field."""
        base = self._base_rule_type()
        return DataType.NULLABLE(base) if self.nullable else base

    def _base_rule_type(self) -> _DataTypeDef:
        kind = self.kind
        if kind in ("int", "float"):
            return DataType.FLOAT
        if kind == "str":
            return DataType.STRING
        if kind == "bool":
            return DataType.BOOLEAN
        if kind in ("datetime", "date"):
            return DataType.DATETIME
        if kind == "timedelta":
            return DataType.TIMEDELTA
        if kind == "enum":
            return DataType.FLOAT if self._enum_is_numeric else DataType.STRING
        if kind == "list":
            assert self.item is not None
            return DataType.ARRAY(self.item.rule_type())
        if kind == "set":
            assert self.item is not None
            return DataType.SET(self.item.rule_type())
        if kind == "dict":
            if self.key is None or self.item is None:
                return DataType.MAPPING
            return DataType.MAPPING(self.key.rule_type(), self.item.rule_type())
        if kind == "object":
            attributes = {name: field.rule_type() for name, field in self.fields}
            return DataType.OBJECT(self.name or "object", attributes=attributes, accessor=_object_accessor)
        if kind == "unknown":
            return DataType.UNDEFINED
        raise SchemaError(f"unknown type {kind!r}")  # pragma: no cover - kinds are checked on creation

    def normalizer(self) -> Normalizer:
        """A function reading a snapshot value into the form rules see; raises on a bad value."""
        base = self._base_normalizer()
        if self.nullable:

            def nullable(value: Any) -> Any:
                return None if value is None else base(value)

            return nullable

        def required(value: Any) -> Any:
            if value is None:
                raise BadValue(f"is null, but its type {self} is not nullable")
            return base(value)

        return required

    def _base_normalizer(self) -> Normalizer:
        kind = self.kind
        if kind in _SIMPLE_NORMALIZERS:
            return _SIMPLE_NORMALIZERS[kind]
        if kind == "enum":
            return _enum_normalizer(self.choices, self.name or "enum")
        if kind in ("list", "set"):
            assert self.item is not None
            return _collection_normalizer(kind, self.item.normalizer())
        if kind == "dict":
            return _dict_normalizer(
                self.key.normalizer() if self.key else None, self.item.normalizer() if self.item else None
            )
        if kind == "object":
            return _object_normalizer(tuple((name, field.normalizer()) for name, field in self.fields))
        if kind == "unknown":
            return _untyped
        raise SchemaError(f"unknown type {kind!r}")  # pragma: no cover


@final
class Record:
    """A nested object of a snapshot, as rules see it: named fields, read with ``.`` in rules.

    Snapshots may give nested objects as mappings or pydantic models; the schema reads them into
    records, so that rules see one kind of value whatever the source. A record is not a mapping
    (rules read its fields as attributes), though ``record["name"]`` reads a field in Python.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self._fields = dict(fields)

    def __getitem__(self, name: str) -> Any:
        return self._fields[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "Record(" + ", ".join(f"{name}={value!r}" for name, value in self._fields.items()) + ")"

    def to_dict(self) -> dict[str, Any]:
        """The record's fields as a dict."""
        return dict(self._fields)


def _object_accessor(value: Any, name: str) -> Any:
    if isinstance(value, Record):
        return value._fields[name]
    if isinstance(value, Mapping):
        return value[name]
    return getattr(value, name)


def _int(value: Any) -> int:
    if type(value) is int and -_INT_LIMIT < value < _INT_LIMIT:
        return value
    if isinstance(value, bool):
        raise BadValue(f"expected int, got {_describe(value)}")
    if isinstance(value, int):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise BadValue("integer out of range (ints are limited to 64 bits)")
        return int(value)
    if isinstance(value, (float, decimal.Decimal)) and math.isfinite(value) and value == int(value):
        return _int(int(value))
    raise BadValue(f"expected int, got {_describe(value)}")


def _float(value: Any) -> float:
    if type(value) is float and value == value:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        raise BadValue(f"expected float, got {_describe(value)}")
    if isinstance(value, int) and not -(2**1023) < value < 2**1023:
        raise BadValue("number out of range for float")
    result = float(value)
    if math.isnan(result):
        raise BadValue("NaN is not a number a rule can compare")
    return result


def _str(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(value, str):
        raise BadValue(f"expected str, got {_describe(value)}")
    return str.__str__(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadValue(f"expected bool, got {_describe(value)}")
    return value


def _parse_iso_datetime(text: str) -> datetime.datetime:
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        return datetime.datetime.fromisoformat(candidate)
    except ValueError:
        raise BadValue(f"{text!r} is not an ISO 8601 datetime") from None


def _plain_datetime(value: datetime.datetime) -> datetime.datetime:
    """The same moment as a plain ``datetime`` (not a subclass such as a dataframe timestamp)."""
    if type(value) is datetime.datetime:
        return value
    return datetime.datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=value.tzinfo,
        fold=value.fold,
    )


def _datetime(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        result = _plain_datetime(value)
    elif isinstance(value, datetime.date):
        result = datetime.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        result = _parse_iso_datetime(value)
    else:
        raise BadValue(f"expected datetime, got {_describe(value)}")
    return result.replace(tzinfo=UTC) if result.tzinfo is None else result


def _date(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        raise BadValue(f"expected date, got {_describe(value)}")
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.date.fromisoformat(value.strip())
        except ValueError:
            raise BadValue(f"{value!r} is not an ISO 8601 date") from None
        return datetime.datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
    raise BadValue(f"expected date, got {_describe(value)}")


def _timedelta(value: Any) -> datetime.timedelta:
    if isinstance(value, datetime.timedelta):
        return datetime.timedelta(value.days, value.seconds, value.microseconds)
    if isinstance(value, str):
        try:
            return parse_timedelta(value.strip())
        except Exception:
            raise BadValue(f"{value!r} is not an ISO 8601 duration such as 'P30D'") from None
    raise BadValue(f"expected timedelta, got {_describe(value)}")


def _untyped(value: Any) -> Any:
    """A value inside an untyped dict: JSON-like data, with nested models turned into dicts."""
    if value is None or isinstance(value, (str, bool, int, float, decimal.Decimal)):
        if isinstance(value, float) and math.isnan(value):
            raise BadValue("NaN is not a number a rule can compare")
        return value
    if isinstance(value, (datetime.datetime, datetime.date)):
        return _datetime(value)
    if isinstance(value, datetime.timedelta):
        return value
    if isinstance(value, BaseModel):
        return {name: _untyped(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, enum.Enum):
        return _untyped(value.value)
    if isinstance(value, Mapping):
        return {_untyped_key(key): _untyped(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_untyped(item) for item in value)
    if isinstance(value, (set, frozenset)):
        return {_untyped(item) for item in value}
    raise BadValue(f"a {type(value).__name__} value cannot be used in a rule")


def _untyped_key(key: Any) -> Any:
    if isinstance(key, (str, int, float, bool, decimal.Decimal)) or key is None:
        return key
    raise BadValue(f"a {type(key).__name__} cannot be a dict key in a rule")


def _dict_untyped(value: Any) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise BadValue(f"expected dict, got {_describe(value)}")
    result = _untyped(value)
    assert isinstance(result, dict)
    return result


_SIMPLE_NORMALIZERS: dict[str, Normalizer] = {
    "int": _int,
    "float": _float,
    "str": _str,
    "bool": _bool,
    "datetime": _datetime,
    "date": _date,
    "timedelta": _timedelta,
}


def _enum_normalizer(choices: tuple[str | int, ...], name: str) -> Normalizer:
    allowed = frozenset(choices)
    shown = ", ".join(repr(choice) for choice in choices)

    def normalize(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value not in allowed:
            raise BadValue(f"{value!r} is not one of the {name} values ({shown})")
        return str.__str__(value) if isinstance(value, str) else int(value)

    return normalize


def _collection_normalizer(kind: str, item: Normalizer) -> Normalizer:
    expected = "list" if kind == "list" else "set"

    def normalize(value: Any) -> Any:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise BadValue(f"expected {expected}, got {_describe(value)}")
        members = []
        for position, member in enumerate(value):
            try:
                members.append(item(member))
            except BadValue as error:
                raise BadValue(f"item {position}: {error}") from None
        if kind == "list":
            return tuple(members)
        try:
            return set(members)
        except TypeError:
            raise BadValue("set members must be hashable") from None

    return normalize


def _dict_normalizer(key: Normalizer | None, item: Normalizer | None) -> Normalizer:
    if key is None or item is None:
        return _dict_untyped

    def normalize(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise BadValue(f"expected dict, got {_describe(value)}")
        result = {}
        for member_key, member in value.items():
            try:
                result[key(member_key)] = item(member)
            except BadValue as error:
                raise BadValue(f"key {member_key!r}: {error}") from None
        return result

    return normalize


def _object_normalizer(fields: tuple[tuple[str, Normalizer], ...]) -> Normalizer:
    def normalize(value: Any) -> Any:
        if isinstance(value, Record):
            value = value.to_dict()
        if isinstance(value, Mapping):
            get: Callable[[str], Any] = value.__getitem__
            has: Callable[[str], bool] = value.__contains__
        elif isinstance(value, BaseModel):
            get = value.__getattribute__

            def has(name: str) -> bool:
                return hasattr(value, name)
        else:
            raise BadValue(f"expected an object with fields, got {_describe(value)}")
        result = {}
        for name, normalizer in fields:
            if not has(name):
                raise BadValue(f"missing field {name!r}")
            try:
                result[name] = normalizer(get(name))
            except BadValue as error:
                raise BadValue(f"field {name!r}: {error}") from None
        return Record(result)

    return normalize


# ---------------------------------------------------------------------------------------------------
# type names
# ---------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_.]*)|(?P<punct>[\[\],|]))")
_KNOWN_NAMES = (*_SCALAR_KINDS, "list", "set", "None")


def parse_type(text: str) -> FieldType:
    """Parse a type name such as ``int``, ``list[str]``, ``dict[str, float]`` or ``datetime | None``.

    Raises:
        SchemaError: the name is not a type tagrules knows; the message suggests the nearest one.
    """
    if not isinstance(text, str):
        raise SchemaError(f"a type must be written as text such as 'int', not {type(text).__name__}")
    if len(text) > 200:
        raise SchemaError("type name is too long")
    tokens: list[str] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None:
            raise SchemaError(f"cannot read type {text!r} (unexpected {stripped[position:].strip()[:1]!r})")
        tokens.append(match.group("name") or match.group("punct"))
        position = match.end()
    if not tokens:
        raise SchemaError("empty type name")
    parser = _TypeParser(text, tokens)
    result = parser.union()
    if parser.position != len(tokens):
        raise SchemaError(f"cannot read type {text!r} (unexpected {tokens[parser.position]!r})")
    return result


class _TypeParser:
    def __init__(self, text: str, tokens: list[str]) -> None:
        self.text = text
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if token is None or (expected is not None and token != expected):
            wanted = repr(expected) if expected else "a type"
            raise SchemaError(f"cannot read type {self.text!r} (expected {wanted})")
        self.position += 1
        return token

    def union(self) -> FieldType:
        members = [self.atom()]
        while self._peek() == "|":
            self._take("|")
            members.append(self.atom())
        nones = [member for member in members if member.kind == "None"]
        others = [member for member in members if member.kind != "None"]
        if len(others) != 1:
            if not others:
                raise SchemaError(f"type {self.text!r} holds only None")
            raise SchemaError(
                f"type {self.text!r} joins several types; a field has one type, optionally '| None'"
            )
        return others[0].with_nullable(bool(nones) or others[0].nullable)

    def atom(self) -> FieldType:
        name = self._take()
        if name in ("[", "]", ",", "|"):
            raise SchemaError(f"cannot read type {self.text!r} (unexpected {name!r})")
        if name == "None":
            return FieldType("None")
        if self._peek() == "[":
            if name not in _GENERIC_KINDS:
                raise SchemaError(f"type {name!r} takes no parameters in {self.text!r}")
            self._take("[")
            first = self.union()
            if name == "dict":
                self._take(",")
                second = self.union()
                self._take("]")
                if first.nullable or first.kind not in ("str", "int", "float", "bool"):
                    raise SchemaError(f"dict keys must be str, int, float or bool, not {first}")
                return FieldType("dict", key=first, item=second)
            self._take("]")
            if name == "set" and first.kind in ("list", "set", "dict", "object"):
                raise SchemaError(f"set members must be simple values, not {first}")
            return FieldType(name, item=first)
        if name in ("list", "set"):
            raise SchemaError(f"{name} needs a member type, for example '{name}[str]'")
        if name not in _SCALAR_KINDS:
            raise SchemaError(f"unknown type {name!r}{suggest(name, _KNOWN_NAMES)}")
        return FieldType(name)


def suggest(name: str, candidates: Iterable[str]) -> str:
    """The ``; did you mean 'x'?`` suffix for the nearest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------------------------------------------
# pydantic models
# ---------------------------------------------------------------------------------------------------


def _type_from_annotation(annotation: Any, seen: tuple[type, ...]) -> FieldType:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_from_annotation(args[0], seen)
    if origin is typing.Union or origin is types.UnionType:
        members = [arg for arg in args if arg is not type(None)]
        if len(members) != 1:
            raise SchemaError(
                f"the union {annotation!r} has several types; a field has one type, optionally None"
            )
        return _type_from_annotation(members[0], seen).with_nullable(len(members) != len(args))
    if origin is typing.Literal:
        if all(isinstance(arg, str) for arg in args) or all(
            isinstance(arg, int) and not isinstance(arg, bool) for arg in args
        ):
            return FieldType("enum", name="Literal", choices=tuple(args))
        raise SchemaError(f"{annotation!r} mixes value types")
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
        kind = "set" if (origin or annotation) in (set, frozenset) else "list"
        if not args:
            raise SchemaError(f"{annotation!r} needs a member type")
        if (origin or annotation) is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise SchemaError(f"only tuple[T, ...] is supported, not {annotation!r}")
        return FieldType(kind, item=_type_from_annotation(args[0], seen))
    if origin is dict or annotation is dict or origin is Mapping:
        if not args:
            return FieldType("dict")
        key = _type_from_annotation(args[0], seen)
        if key.kind not in ("str", "int", "float", "bool"):
            raise SchemaError(f"dict keys must be str, int, float or bool in {annotation!r}")
        if args[1] is Any:
            return FieldType("dict")
        return FieldType("dict", key=key, item=_type_from_annotation(args[1], seen))
    if annotation is Any:
        raise SchemaError("fields typed Any cannot be type-checked; give the field a type")
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return FieldType("bool")
        if issubclass(annotation, enum.Enum):
            values = tuple(member.value for member in annotation)
            if not (
                all(isinstance(value, str) for value in values)
                or all(isinstance(value, int) and not isinstance(value, bool) for value in values)
            ):
                raise SchemaError(f"enum {annotation.__name__} must have only str or only int values")
            return FieldType("enum", name=annotation.__name__, choices=values)
        if issubclass(annotation, int):
            return FieldType("int")
        if issubclass(annotation, (float, decimal.Decimal)):
            return FieldType("float")
        if issubclass(annotation, str):
            return FieldType("str")
        if issubclass(annotation, datetime.datetime):
            return FieldType("datetime")
        if issubclass(annotation, datetime.date):
            return FieldType("date")
        if issubclass(annotation, datetime.timedelta):
            return FieldType("timedelta")
        if issubclass(annotation, BaseModel):
            if annotation in seen:
                raise SchemaError(
                    f"model {annotation.__name__} contains itself; recursive models are not supported"
                )
            return FieldType(
                "object",
                name=f"{annotation.__module__}.{annotation.__qualname__}",
                fields=tuple(_model_fields(annotation, (*seen, annotation))),
            )
    raise SchemaError(f"type {annotation!r} is not supported in a snapshot schema")


def _model_fields(model: type[BaseModel], seen: tuple[type, ...]) -> list[tuple[str, FieldType]]:
    result = []
    for name, info in model.model_fields.items():
        try:
            result.append((name, _type_from_annotation(info.annotation, seen)))
        except SchemaError as error:
            raise SchemaError(f"field {name!r}: {error}") from None
    return result


def _import_model(reference: str) -> type[BaseModel]:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute or not all(part.isidentifier() for part in module_name.split(".")):
        raise SchemaError(f"schema reference {reference!r} must look like 'package.module:Model'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise SchemaError(f"cannot import module {module_name!r}: {error}") from error
    target: Any = module
    for part in attribute.split("."):
        if not part.isidentifier() or part.startswith("__"):
            raise SchemaError(f"schema reference {reference!r} must look like 'package.module:Model'")
        if not hasattr(target, part):
            raise SchemaError(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise SchemaError(f"{reference!r} is not a pydantic model")
    return target


# ---------------------------------------------------------------------------------------------------
# the schema
# ---------------------------------------------------------------------------------------------------


@final
class Schema:
    """The typed fields of a customer snapshot.

    Build one with :meth:`from_mapping` (inline type names), :meth:`from_model` (a pydantic model)
    or :meth:`parse` (either, as found in a catalog file). A schema is immutable.

    Examples:
        >>> schema = Schema.from_mapping({"age": "int", "last_order_at": "datetime | None"})
        >>> str(schema.fields["last_order_at"])
        'datetime | None'
    """

    __slots__ = ("_normalizers", "_rule_types", "fields", "model", "reference")

    fields: Mapping[str, FieldType]
    model: type[BaseModel] | None
    reference: str | None

    def __init__(
        self,
        fields: Mapping[str, FieldType],
        *,
        model: type[BaseModel] | None = None,
        reference: str | None = None,
    ) -> None:
        problems = [message for name in fields if (message := _check_field_name(name))]
        if problems:
            raise SchemaError("; ".join(problems))
        self.fields = types.MappingProxyType(dict(fields))
        self.model = model
        self.reference = reference
        self._rule_types = {name: field.rule_type() for name, field in self.fields.items()}
        self._normalizers = {name: field.normalizer() for name, field in self.fields.items()}

    def __repr__(self) -> str:
        if self.reference:
            return f"Schema(reference={self.reference!r})"
        return f"Schema({ {name: str(field) for name, field in self.fields.items()}!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schema):
            return NotImplemented
        return dict(self.fields) == dict(other.fields) and self.reference == other.reference

    def __hash__(self) -> int:
        return hash((tuple(self.fields.items()), self.reference))

    @classmethod
    def from_mapping(cls, fields: Mapping[str, str]) -> Schema:
        """A schema from field name -> type name; raises :class:`SchemaError` on the first bad entry.

        Use :meth:`parse` to collect every problem of a schema instead.
        """
        schema, problems = cls.parse(dict(fields))
        if problems:
            raise SchemaError("; ".join(problem.message for problem in problems))
        assert schema is not None
        return schema

    @classmethod
    def from_model(cls, model: type[BaseModel], *, reference: str | None = None) -> Schema:
        """A schema with one field per field of the pydantic ``model``.

        Optional fields become nullable, Enums become their values (str or int), nested models
        become objects whose attributes rules read with ``.``.
        """
        return cls(dict(_model_fields(model, (model,))), model=model, reference=reference)

    @classmethod
    def parse(cls, raw: Any, *, file: str | None = None) -> tuple[Schema | None, list[Problem]]:
        """Read a schema as written in a catalog: a mapping of type names, or a model reference.

        Returns the schema and every problem found. When there are problems the schema is partial
        (fields whose type could not be read have the ``unknown`` type, so rules that read them can
        still be checked); it is ``None`` when nothing could be read.
        """
        problems: list[Problem] = []

        def problem(message: str) -> None:
            problems.append(Problem(message, file=file, section="schema"))

        if isinstance(raw, str):
            try:
                model = _import_model(raw)
                return cls.from_model(model, reference=raw), []
            except SchemaError as error:
                problem(str(error))
                return None, problems
        if isinstance(raw, type) and issubclass(raw, BaseModel):
            try:
                return cls.from_model(raw), []
            except SchemaError as error:
                problem(str(error))
                return None, problems
        if not isinstance(raw, Mapping):
            problem("the schema must map field names to types, or name a model as 'package.module:Model'")
            return None, problems
        fields: dict[str, FieldType] = {}
        for name, type_name in raw.items():
            if not isinstance(name, str):
                problem(f"field name {name!r} must be text")
                continue
            message = _check_field_name(name)
            if message:
                problem(message)
                continue
            try:
                fields[name] = type_name if isinstance(type_name, FieldType) else parse_type(type_name)
            except SchemaError as error:
                problem(f"field {name!r}: {error}")
                fields[name] = FieldType("unknown")
        return cls(fields), problems

    def to_data(self) -> str | dict[str, str]:
        """The schema as written in a catalog file: the model reference, or name -> type name."""
        if self.reference is not None:
            return self.reference
        return {name: str(field) for name, field in self.fields.items()}

    def normalizer(self, name: str) -> Normalizer:
        """The reader of field ``name``: value -> rule value, raising :class:`BadValue` on a bad value."""
        return self._normalizers[name]

    def rule_types(self) -> dict[str, _DataTypeDef]:
        """Field name -> rule-engine data type."""
        return dict(self._rule_types)

    def read(self, snapshot: Any) -> tuple[dict[str, Any], dict[str, str]]:
        """Read a snapshot (a mapping or a pydantic model instance) into rule values.

        Returns the values of the fields that fit, and a message for each field that does not.
        Fields the snapshot lacks are in neither; fields the schema does not name are ignored.

        Raises:
            TypeError: the snapshot is neither a mapping nor a pydantic model instance.
        """
        if isinstance(snapshot, Mapping):
            source: Mapping[str, Any] = snapshot
        elif isinstance(snapshot, BaseModel):
            source = {name: getattr(snapshot, name) for name in self.fields if hasattr(snapshot, name)}
        else:
            raise TypeError(
                f"a snapshot must be a mapping or a pydantic model, not {type(snapshot).__name__}"
            )
        values: dict[str, Any] = {}
        bad: dict[str, str] = {}
        for name, normalize in self._normalizers.items():
            if name not in source:
                continue
            value = source[name]
            if type(value) is FailedValue:
                bad[name] = value.reason
                continue
            try:
                values[name] = normalize(value)
            except BadValue as error:
                bad[name] = str(error)
        return values, bad


def _check_field_name(name: str) -> str | None:
    if name == "tags":
        return "field 'tags' is reserved: rules use 'tags' for the tags assigned so far; rename the field"
    if name in RESERVED_NAMES:
        return f"field {name!r} is a keyword of the rule language; rename the field"
    if not _FIELD_NAME.match(name):
        return f"field name {name!r} must start with a letter or '_' and hold only letters, digits and '_'"
    if name.startswith("__"):
        return f"field name {name!r} may not start with '__'"
    return None
