"""Snapshot schemas: type names, pydantic models, and reading snapshot values."""

from __future__ import annotations

import datetime
import decimal
import enum
from typing import Literal

import pytest
from pydantic import BaseModel

from tagrules import FieldType, Schema
from tagrules.schema import Record, SchemaError, parse_type

UTC = datetime.timezone.utc


class TestTypeNames:
    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            ("int", "int"),
            ("float", "float"),
            ("str", "str"),
            ("bool", "bool"),
            ("datetime", "datetime"),
            ("date", "date"),
            ("timedelta", "timedelta"),
            ("dict", "dict"),
            ("list[str]", "list[str]"),
            ("set[int]", "set[int]"),
            ("datetime | None", "datetime | None"),
            ("None | int", "int | None"),
            ("list[int | None]", "list[int | None]"),
            ("list[str] | None", "list[str] | None"),
            ("dict[str, float]", "dict[str, float]"),
            (" list[ list[int] ] ", "list[list[int]]"),
        ],
    )
    def test_known_names_parse(self, text: str, shown: str) -> None:
        """Every documented type name parses and prints back in canonical form."""
        assert str(parse_type(text)) == shown

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("strng", "unknown type 'strng'; did you mean 'str'?"),
            ("integer", "unknown type 'integer'"),
            ("list", "list needs a member type"),
            ("list[str", "expected ']'"),
            ("int | str", "joins several types"),
            ("None", "holds only None"),
            ("int[str]", "takes no parameters"),
            ("set[list[int]]", "set members must be simple values"),
            ("dict[list[int], int]", "dict keys must be"),
            ("", "empty type name"),
            ("int!", "unexpected"),
        ],
    )
    def test_bad_names_are_explained(self, text: str, message: str) -> None:
        """A type name that cannot be read says why, with the nearest known name."""
        with pytest.raises(SchemaError, match=message.replace("[", r"\[").replace("|", r"\|")):
            parse_type(text)

    def test_parse_collects_every_problem(self) -> None:
        """Schema.parse reports each bad field, including the reserved name 'tags'."""
        schema, problems = Schema.parse(
            {"tags": "int", "age": "integr", "ok": "str", "1x": "int"}, file="c.yaml"
        )
        messages = [problem.message for problem in problems]
        assert any("'tags' is reserved" in message for message in messages)
        assert any("unknown type 'integr'; did you mean 'int'?" in message for message in messages)
        assert any("must start with a letter" in message for message in messages)
        assert schema is not None
        assert "ok" in schema.fields
        assert all(str(problem).startswith("c.yaml: schema: ") for problem in problems)

    def test_keywords_cannot_be_fields(self) -> None:
        """A field named like a keyword of the rule language is refused."""
        _, problems = Schema.parse({"and": "int", "null": "str"})
        assert len(problems) == 2


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


class Colour(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    city: str
    zip_code: str | None = None


class Person(BaseModel):
    age: int
    name: str | None = None
    level: Level
    colour: Colour | None = None
    kind: Literal["a", "b"] = "a"
    address: Address
    past: list[Address] = []
    scores: dict[str, float] = {}
    seen: set[str] = set()
    amount: decimal.Decimal = decimal.Decimal(0)
    born: datetime.date | None = None


class TestModels:
    def test_model_fields_map_to_rule_types(self) -> None:
        """Optional, Enum, Literal, nested models, collections and Decimal all map to fitting types."""
        schema = Schema.from_model(Person)
        shown = {name: str(field) for name, field in schema.fields.items()}
        assert shown["age"] == "int"
        assert shown["name"] == "str | None"
        assert shown["level"] == "Level"
        assert schema.fields["level"].is_number
        assert shown["colour"] == "Colour | None"
        assert shown["scores"] == "dict[str, float]"
        assert shown["seen"] == "set[str]"
        assert shown["amount"] == "float"
        assert shown["born"] == "date | None"
        assert schema.fields["address"].kind == "object"
        assert schema.fields["past"].item is not None
        assert schema.fields["past"].item.kind == "object"

    def test_reference_imports_the_model(self) -> None:
        """A 'package.module:Model' reference loads the model."""
        schema, problems = Schema.parse("tagrules.packs.retail.model:Customer")
        assert not problems
        assert schema is not None
        assert "spend_365d" in schema.fields

    @pytest.mark.parametrize(
        ("reference", "message"),
        [
            ("no_such_module_x:Model", "cannot import module"),
            ("tagrules.packs.retail.model:Nothing", "has no attribute"),
            ("tagrules.packs.retail.model:Gender", "is not a pydantic model"),
            ("not a reference", "must look like"),
            ("os:__builtins__", "must look like"),
        ],
    )
    def test_bad_references_are_explained(self, reference: str, message: str) -> None:
        """A reference that does not lead to a pydantic model says why."""
        schema, problems = Schema.parse(reference)
        assert schema is None
        assert message in problems[0].message

    def test_snapshot_of_a_model_instance(self) -> None:
        """A model instance is read field by field; nested models become plain dicts."""
        schema = Schema.from_model(Person)
        person = Person(
            age=40, level=Level.HIGH, address=Address(city="Shanghai"), past=[Address(city="Xi'an")]
        )
        values, bad = schema.read(person)
        assert not bad
        assert values["level"] == 2
        assert values["address"] == Record({"city": "Shanghai", "zip_code": None})
        assert values["past"] == (Record({"city": "Xi'an", "zip_code": None}),)


class TestReadingSnapshots:
    schema = Schema.from_mapping(
        {
            "age": "int",
            "spend": "float",
            "name": "str | None",
            "flag": "bool",
            "at": "datetime | None",
            "day": "date",
            "gap": "timedelta",
            "items": "list[str]",
            "codes": "set[int]",
            "extra": "dict",
            "scores": "dict[str, float]",
        }
    )

    def test_good_values_are_normalised(self) -> None:
        """Values are read into what rules see: aware datetimes, tuples, sets, floats."""
        values, bad = self.schema.read(
            {
                "age": 30,
                "spend": 10,
                "name": None,
                "flag": True,
                "at": "2026-05-01T10:00:00Z",
                "day": "2026-05-01",
                "gap": "P3D",
                "items": ["a", "b"],
                "codes": [1, 2, 2],
                "extra": {"a": [1, {"b": None}]},
                "scores": {"x": 1},
                "unknown": object(),
            }
        )
        assert not bad
        assert values["spend"] == 10.0
        assert isinstance(values["spend"], float)
        assert values["at"] == datetime.datetime(2026, 5, 1, 10, tzinfo=UTC)
        assert values["day"] == datetime.datetime(2026, 5, 1, tzinfo=UTC)
        assert values["gap"] == datetime.timedelta(days=3)
        assert values["items"] == ("a", "b")
        assert values["codes"] == {1, 2}
        assert values["extra"] == {"a": (1, {"b": None})}
        assert "unknown" not in values

    def test_naive_datetimes_are_utc(self) -> None:
        """A datetime without a timezone is taken as UTC."""
        values, _ = self.schema.read({"at": datetime.datetime(2026, 5, 1, 10)})
        assert values["at"].tzinfo is UTC

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("age", "forty", "expected int, got str 'forty'"),
            ("age", True, "expected int, got bool True"),
            ("age", 1.5, "expected int, got float 1.5"),
            ("age", 2**70, "out of range"),
            ("age", None, "is null, but its type int is not nullable"),
            ("spend", "1", "expected float"),
            ("spend", float("nan"), "NaN"),
            ("flag", 1, "expected bool"),
            ("at", "yesterday", "not an ISO 8601 datetime"),
            ("day", "2026-13-01", "not an ISO 8601 date"),
            ("gap", "3 days", "not an ISO 8601 duration"),
            ("items", "abc", "expected list"),
            ("items", ["a", 1], "item 1: expected str"),
            ("codes", [[1]], "item 0: expected int"),
            ("scores", {"x": "high"}, "key 'x': expected float"),
            ("extra", [1], "expected dict"),
        ],
    )
    def test_bad_values_name_the_problem(self, field: str, value: object, message: str) -> None:
        """A value that does not fit is reported for its field, with what was expected and found."""
        values, bad = self.schema.read({field: value})
        assert field not in values
        assert message in bad[field]

    def test_other_snapshots_are_refused(self) -> None:
        """A snapshot must be a mapping or a model instance."""
        with pytest.raises(TypeError, match="mapping or a pydantic model"):
            self.schema.read([1, 2])

    def test_field_type_prints_itself(self) -> None:
        """FieldType's str is its type name."""
        assert str(FieldType("list", item=FieldType("int", nullable=True))) == "list[int | None]"
