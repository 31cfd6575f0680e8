"""Tag definitions: the declarative pydantic model every tag is written as."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from tagrules._files import dump_yaml, parse_document

__all__ = ["TagDefinition", "TagStatus"]

#: ``draft`` tags are validated but never assigned; ``active`` tags are assigned; ``retired`` tags are kept
#: for the record only (their rules are not checked, and stores close their memberships).
TagStatus = Literal["draft", "active", "retired"]

_SLUG = r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$"
Slug = Annotated[str, StringConstraints(pattern=_SLUG)]


class TagDefinition(BaseModel):
    """One tag: a key, words for people, and the boolean rule that assigns it.

    Attributes:
        key: the tag's identity, a slug (lowercase letters, digits, ``-`` and ``_``), unique in a catalog.
        name: the name people see; defaults to the key.
        description: what the tag means, for people.
        category: a family the tag belongs to (``value``, ``behaviour``, ...), for people and reports.
        rule: the rule, a rule-engine expression over the snapshot's fields that is true or false.
        group: tags sharing a group are mutually exclusive tiers: at most one of them is assigned.
        priority: inside a group, the matching tag with the highest priority is the one assigned.
        status: ``draft``, ``active`` or ``retired``; only active tags are assigned.
        metadata: free data (owner, review date, source policy, ...), kept as given.

    Examples:
        >>> tag = TagDefinition(key="spend_high", rule="spend_365d >= 100000", group="spend", priority=3)
        >>> tag.name
        'spend_high'
        >>> TagDefinition.from_yaml(tag.to_yaml()) == tag
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    key: Slug
    name: str = ""
    description: str = ""
    category: str = ""
    rule: str
    group: Slug | None = None
    priority: int = 0
    status: TagStatus = "active"
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _name_defaults_to_key(self) -> TagDefinition:
        if not self.name:
            object.__setattr__(self, "name", self.key)
        return self

    @property
    def rule_version(self) -> str:
        """A short fingerprint of the rule text: it changes exactly when the rule does."""
        return hashlib.sha256(self.rule.encode("utf-8")).hexdigest()[:12]

    @property
    def is_active(self) -> bool:
        """Whether the tag is assigned by evaluation."""
        return self.status == "active"

    def to_data(self) -> dict[str, Any]:
        """The definition as plain data, fields in declaration order, defaults left out."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["key"] = self.key
        data["rule"] = self.rule
        if self.name == self.key:
            data.pop("name", None)
        order = list(type(self).model_fields)
        return {name: data[name] for name in order if name in data}

    def to_yaml(self) -> str:
        """The definition as a YAML mapping."""
        return dump_yaml(self.to_data())

    def to_json(self, *, indent: int | None = None) -> str:
        """The definition as a JSON object."""
        return json.dumps(self.to_data(), ensure_ascii=False, indent=indent)

    @classmethod
    def from_yaml(cls, text: str) -> TagDefinition:
        """Read one definition from YAML text (safe loader: plain data only)."""
        return cls.model_validate(parse_document(text, file="<yaml>", format="yaml"))

    @classmethod
    def from_json(cls, text: str) -> TagDefinition:
        """Read one definition from JSON text."""
        return cls.model_validate(parse_document(text, file="<json>", format="json"))
