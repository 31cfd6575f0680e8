"""Tag definitions: the pydantic model, its defaults and its lossless YAML/JSON round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tagrules import Catalog, TagDefinition

_text = st.text(st.characters(codec="utf-8"), max_size=40)
_slug = st.from_regex(r"[a-z0-9]([a-z0-9_-]{0,10}[a-z0-9])?", fullmatch=True)
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
definitions = st.builds(
    TagDefinition,
    key=_slug,
    name=_text,
    description=_text,
    category=_text,
    rule=_text.filter(lambda text: bool(text.strip())),
    group=st.none() | _slug,
    priority=st.integers(-1000, 1000),
    status=st.sampled_from(["draft", "active", "retired"]),
    metadata=st.dictionaries(_text, _json, max_size=4),
)


class TestTagDefinition:
    def test_name_defaults_to_key(self) -> None:
        """A tag without a name shows its key."""
        assert TagDefinition(key="vip", rule="true").name == "vip"

    def test_defaults(self) -> None:
        """Unset fields take the documented defaults: active, no group, priority 0."""
        tag = TagDefinition(key="vip", rule="true")
        assert (tag.status, tag.group, tag.priority, tag.metadata) == ("active", None, 0, {})

    @pytest.mark.parametrize("key", ["VIP", "-vip", "vip-", "vi p", "", "x" * 65, "vip!"])
    def test_key_must_be_a_slug(self, key: str) -> None:
        """Keys are lowercase slugs; anything else is refused with a pattern error."""
        with pytest.raises(ValidationError, match="key"):
            TagDefinition(key=key, rule="true")

    def test_unknown_fields_are_refused(self) -> None:
        """A misspelt field is an error, not silently ignored."""
        with pytest.raises(ValidationError, match="extra"):
            TagDefinition.model_validate({"key": "vip", "rule": "true", "priorty": 3})

    def test_status_is_checked(self) -> None:
        """Only draft, active and retired are statuses."""
        with pytest.raises(ValidationError, match="status"):
            TagDefinition.model_validate({"key": "vip", "rule": "true", "status": "enabled"})

    def test_definitions_are_frozen(self) -> None:
        """A definition cannot be changed after it is made."""
        tag = TagDefinition(key="vip", rule="true")
        with pytest.raises(ValidationError):
            tag.rule = "false"  # type: ignore[misc]

    def test_rule_version_follows_the_rule(self) -> None:
        """The rule version changes with the rule text and only with it."""
        first = TagDefinition(key="vip", rule="spend_365d >= 100000")
        renamed = first.model_copy(update={"name": "Very important"})
        changed = first.model_copy(update={"rule": "spend_365d >= 90000"})
        assert first.rule_version == renamed.rule_version != changed.rule_version

    def test_yaml_keeps_dates_as_text(self) -> None:
        """An unquoted date in metadata stays the text it was written as."""
        tag = TagDefinition.from_yaml("key: vip\nrule: 'true'\nmetadata: {reviewed: 2026-01-10}\n")
        assert tag.metadata == {"reviewed": "2026-01-10"}

    @given(definitions)
    def test_yaml_round_trip(self, tag: TagDefinition) -> None:
        """Any definition survives YAML unchanged."""
        assert TagDefinition.from_yaml(tag.to_yaml()) == tag

    @given(definitions)
    def test_json_round_trip(self, tag: TagDefinition) -> None:
        """Any definition survives JSON unchanged."""
        assert TagDefinition.from_json(tag.to_json()) == tag
        assert json.loads(tag.to_json())["key"] == tag.key


class TestCatalogRoundTrip:
    @given(st.lists(definitions, max_size=5, unique_by=lambda tag: tag.key))
    def test_catalog_round_trips(self, tags: list[TagDefinition]) -> None:
        """A catalog written to YAML or JSON loads back equal (rules kept valid: all retired)."""
        retired = [tag.model_copy(update={"status": "retired", "group": None}) for tag in tags]
        catalog = Catalog(retired, {"age": "int | None", "seen": "list[str]"}, name="x", description="y")
        assert Catalog.loads(catalog.to_yaml()) == catalog
        assert Catalog.loads(catalog.to_json(), format="json") == catalog

    def test_dump_and_load(self, tmp_path: Any) -> None:
        """dump writes YAML or JSON by extension and load reads it back."""
        catalog = Catalog([{"key": "adult", "rule": "age >= 18"}], {"age": "int"})
        for name in ("catalog.yaml", "catalog.json"):
            catalog.dump(tmp_path / name)
            assert Catalog.load(tmp_path / name) == catalog
