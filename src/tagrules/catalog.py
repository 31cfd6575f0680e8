"""The catalog: tag definitions and the snapshot schema, validated together at load."""

from __future__ import annotations

import hashlib
import heapq
import json
import types
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

from pydantic import BaseModel, ValidationError

from tagrules._files import dump_yaml, load_document, parse_document
from tagrules._ignored_checks import IgnoredCheck, read_ignored_checks
from tagrules.definitions import TagDefinition
from tagrules.errors import DefinitionError, Problem
from tagrules.extensions import DerivedField, Extensions, RuleFunction, check_functions, extension_lists
from tagrules.rules import ParsedRule, RuleLanguage, RuleProblem, line_and_column
from tagrules.rules._language import MAX_RULE_LENGTH
from tagrules.schema import Schema, suggest

__all__ = ["MAX_RULE_TEXT", "MAX_TAGS", "Catalog", "EvaluationUnit"]

#: The most tags a catalog may have (and so the most tiers of an exclusive group), and the most
#: characters of rule text in all: the limits the library's load, checks and compilation are
#: measured at (docs/performance.md).
MAX_TAGS = 5_000
MAX_RULE_TEXT = 500_000

_TOP_LEVEL_KEYS = ("name", "description", "schema", "listeners", "tags", "checks")


@final
@dataclass(frozen=True, slots=True)
class EvaluationUnit:
    """A step of evaluation: one ungrouped tag, or every active tag of an exclusive group.

    ``keys`` of a group are ordered by priority, highest first.
    """

    keys: tuple[str, ...]
    group: str | None = None


@final
class Catalog:
    """Tag definitions and the snapshot schema they are written against, validated at load.

    Building a catalog checks everything a rule author can get wrong (syntax, unknown fields,
    type mismatches, nullable fields, duplicate keys, tiers with equal priorities, references to
    unknown tags, dependency cycles) and reports every problem at once in one
    :class:`~tagrules.DefinitionError`. A catalog that exists is valid, and it never changes.

    Args:
        tags: the definitions, as :class:`TagDefinition` or plain mappings.
        schema: the snapshot schema: a :class:`~tagrules.schema.Schema`, a mapping of type names,
            a pydantic model, or a ``"package.module:Model"`` reference.
        name: a name for the catalog.
        description: what the catalog is for.
        source: the file the catalog came from; problems name it.
        functions: custom functions rules may call as ``$name(...)``
            (:class:`~tagrules.extensions.RuleFunction`).
        derived: fields computed from the snapshot before rules run
            (:class:`~tagrules.extensions.DerivedField`); each joins the schema when the schema has
            every field it reads and no field of its name.
        listeners: the names of the plugin listeners that hear this catalog's changes (``listeners:``
            in a catalog file); plugin listeners run only for catalogs that name them.
        known_listeners: the listener names that exist (those of the installed plugins, as
            :meth:`~tagrules.plugins.PluginRegistry.load_catalog` passes them); when given, a name in
            ``listeners`` that is not among them is a problem. Without it, names are checked when the
            registry resolves them (:meth:`~tagrules.plugins.PluginRegistry.listeners_for`).
        plugins: where more functions and derived fields come from, before those given directly:
            a :class:`~tagrules.plugins.PluginRegistry` such as ``installed_plugins()``, or one
            :class:`~tagrules.plugins.Plugin`. A catalog sees no plugin it is not given: only the
            ``tagrules`` command and the pytest plugin load with the installed plugins by themselves.
        checks: the catalog file's ``checks`` section: ``{"ignore": [{"group": ..., "check": ...}]}``
            silences static-check warnings per group or tag (see ``docs/catalog.md``).

    Raises:
        DefinitionError: the catalog is not valid; ``problems`` lists every problem.

    Examples:
        >>> catalog = Catalog(
        ...     tags=[{"key": "adult", "rule": "age >= 18"}],
        ...     schema={"age": "int"},
        ... )
        >>> [tag.key for tag in catalog]
        ['adult']
    """

    __slots__ = (
        "_by_key",
        "_dependencies",
        "_derived",
        "_functions",
        "_groups",
        "_ignored_checks",
        "_language",
        "_order",
        "_rules",
        "_snapshot_schema",
        "_tags",
        "description",
        "listeners",
        "name",
        "schema",
        "source",
    )

    def __init__(
        self,
        tags: Iterable[TagDefinition | Mapping[str, Any]],
        schema: Schema | Mapping[str, str] | str | type[BaseModel],
        *,
        name: str | None = None,
        description: str = "",
        source: str | None = None,
        functions: Iterable[RuleFunction] = (),
        derived: Iterable[DerivedField] = (),
        listeners: Iterable[str] = (),
        known_listeners: Collection[str] | None = None,
        plugins: Extensions | None = None,
        checks: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.source = source
        problems: list[Problem] = []
        self.listeners = self._listener_names(listeners, known_listeners, problems)
        functions, derived = extension_lists(plugins, functions, derived)
        self._functions = types.MappingProxyType(check_functions(list(functions), source))
        snapshot_schema = self._schema(schema, problems)
        self._snapshot_schema = snapshot_schema
        self._derived: Mapping[str, DerivedField] = types.MappingProxyType({})
        resolved_schema = snapshot_schema
        if snapshot_schema is not None:
            resolved_schema = self._with_derived(snapshot_schema, derived)
        definitions = self._definitions(tags, problems)
        self._refuse_oversized(definitions)
        self._tags = tuple(definitions)
        self._by_key: dict[str, TagDefinition] = {}
        for definition in definitions:
            if definition.key in self._by_key:
                problems.append(
                    self._problem(definition.key, f"the key {definition.key!r} is used by two tags")
                )
            else:
                self._by_key[definition.key] = definition
        self._check_groups(problems)
        groups = {definition.group for definition in definitions if definition.group is not None}
        self._ignored_checks, found = read_ignored_checks(checks, groups, self._by_key, source)
        problems.extend(found)
        self._rules: dict[str, ParsedRule] = {}
        self._groups = self._active_groups()
        self._dependencies: Mapping[str, frozenset[str]] = types.MappingProxyType({})
        self._order: tuple[EvaluationUnit, ...] = ()
        if resolved_schema is not None:
            self.schema = resolved_schema
            self._language = RuleLanguage(
                resolved_schema, {name: function.builtin() for name, function in self._functions.items()}
            )
            parsed = self._parse_rules(problems)
            self._check_dependencies(parsed, problems)
            self._dependencies = types.MappingProxyType(
                {key: rule.dependencies for key, rule in self._rules.items()}
            )
            self._order = self._evaluation_order(problems)
        if problems:
            raise DefinitionError(self._in_file_order(problems))

    # -- loading and saving ------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        functions: Iterable[RuleFunction] = (),
        derived: Iterable[DerivedField] = (),
        known_listeners: Collection[str] | None = None,
        plugins: Extensions | None = None,
    ) -> Catalog:
        """Load a catalog file (YAML, or JSON for ``.json`` files).

        ``functions``, ``derived``, ``known_listeners`` and ``plugins`` are passed to the
        constructor: a catalog using a plugin's functions is loaded with ``plugins=installed_plugins()``.

        Raises:
            DefinitionError: the file cannot be read or the catalog is not valid.
        """
        return cls.from_data(
            load_document(path),
            source=str(path),
            functions=functions,
            derived=derived,
            known_listeners=known_listeners,
            plugins=plugins,
        )

    @classmethod
    def loads(
        cls,
        text: str,
        *,
        format: str = "yaml",
        source: str | None = None,
        functions: Iterable[RuleFunction] = (),
        derived: Iterable[DerivedField] = (),
        known_listeners: Collection[str] | None = None,
        plugins: Extensions | None = None,
    ) -> Catalog:
        """Load a catalog from YAML or JSON text; the other arguments are those of :meth:`load`."""
        return cls.from_data(
            parse_document(text, file=source or f"<{format}>", format=format),
            source=source,
            functions=functions,
            derived=derived,
            known_listeners=known_listeners,
            plugins=plugins,
        )

    @classmethod
    def from_data(
        cls,
        data: Any,
        *,
        source: str | None = None,
        functions: Iterable[RuleFunction] = (),
        derived: Iterable[DerivedField] = (),
        known_listeners: Collection[str] | None = None,
        plugins: Extensions | None = None,
    ) -> Catalog:
        """Build a catalog from plain data shaped like a catalog file (``schema``, ``tags``, ...)."""
        problems: list[Problem] = []
        if not isinstance(data, Mapping):
            raise DefinitionError(
                [Problem("a catalog must be a mapping with 'schema' and 'tags'", file=source)]
            )
        for key in data:
            if key not in _TOP_LEVEL_KEYS:
                hint = suggest(str(key), _TOP_LEVEL_KEYS)
                problems.append(Problem(f"unknown entry {key!r}{hint}", file=source, section="catalog"))
        for required in ("schema", "tags"):
            if required not in data:
                problems.append(Problem(f"the catalog has no {required!r}", file=source, section="catalog"))
        tags = data.get("tags", [])
        if not isinstance(tags, list):
            problems.append(
                Problem("'tags' must be a list of tag definitions", file=source, section="catalog")
            )
            tags = []
        name = data.get("name")
        description = data.get("description", "")
        if name is not None and not isinstance(name, str):
            problems.append(Problem("'name' must be text", file=source, section="catalog"))
            name = None
        if not isinstance(description, str):
            problems.append(Problem("'description' must be text", file=source, section="catalog"))
            description = ""
        listeners = data.get("listeners", [])
        if not isinstance(listeners, list):
            problems.append(
                Problem("'listeners' must be a list of listener names", file=source, section="catalog")
            )
            listeners = []
        try:
            catalog = cls(
                tags,
                data.get("schema", {}),
                name=name,
                description=description,
                source=source,
                functions=functions,
                derived=derived,
                listeners=listeners,
                known_listeners=known_listeners,
                plugins=plugins,
                checks=data.get("checks"),
            )
        except DefinitionError as error:
            raise DefinitionError([*problems, *error.problems]) from None
        if problems:
            raise DefinitionError(problems)
        return catalog

    def to_data(self) -> dict[str, Any]:
        """The catalog as plain data, in the shape of a catalog file."""
        data: dict[str, Any] = {}
        if self.name is not None:
            data["name"] = self.name
        if self.description:
            data["description"] = self.description
        schema = self.schema.to_data()
        if isinstance(schema, dict):
            schema = {name: text for name, text in schema.items() if name not in self._derived}
        data["schema"] = schema
        if self.listeners:
            data["listeners"] = list(self.listeners)
        data["tags"] = [definition.to_data() for definition in self._tags]
        if self._ignored_checks:
            data["checks"] = {"ignore": [ignored.to_data() for ignored in self._ignored_checks]}
        return data

    def to_yaml(self) -> str:
        """The catalog as a YAML document."""
        return dump_yaml(self.to_data())

    def to_json(self, *, indent: int | None = 2) -> str:
        """The catalog as a JSON document."""
        return json.dumps(self.to_data(), ensure_ascii=False, indent=indent)

    def dump(self, path: str | Path) -> None:
        """Write the catalog to ``path``, as JSON for ``.json`` files and YAML otherwise."""
        target = Path(path)
        text = self.to_json() if target.suffix.lower() == ".json" else self.to_yaml()
        target.write_text(text, encoding="utf-8")

    # -- reading -----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[TagDefinition]:
        return iter(self._tags)

    def __len__(self) -> int:
        return len(self._tags)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __getitem__(self, key: str) -> TagDefinition:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"no tag {key!r} in the catalog{suggest(key, self._by_key)}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Catalog):
            return NotImplemented
        return self.to_data() == other.to_data()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_data(), sort_keys=True, default=str))

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Catalog{label} with {len(self._tags)} tags>"

    @property
    def version(self) -> str:
        """A digest of the catalog's content (12 hex digits): equal catalogs have equal versions.

        Run records keep it, so that statistics know which definitions a run evaluated.
        """
        text = json.dumps(self.to_data(), sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    @property
    def tags(self) -> tuple[TagDefinition, ...]:
        """Every definition, in file order."""
        return self._tags

    @property
    def functions(self) -> Mapping[str, RuleFunction]:
        """The custom functions rules may call, by name (without the ``$``)."""
        return self._functions

    @property
    def snapshot_schema(self) -> Schema:
        """The schema of the snapshots themselves: :attr:`schema` without the derived fields."""
        assert self._snapshot_schema is not None  # a catalog that exists has a schema
        return self._snapshot_schema

    @property
    def derived_fields(self) -> Mapping[str, DerivedField]:
        """The derived fields in the schema, by name; the evaluator computes them before rules run."""
        return self._derived

    @property
    def active(self) -> tuple[TagDefinition, ...]:
        """The active definitions, in file order."""
        return tuple(definition for definition in self._tags if definition.is_active)

    @property
    def groups(self) -> Mapping[str, tuple[str, ...]]:
        """Exclusive group -> keys of its active tags, highest priority first."""
        return types.MappingProxyType(self._groups)

    @property
    def ignored_checks(self) -> tuple[IgnoredCheck, ...]:
        """The static-check warnings the catalog silences (its ``checks: {ignore: [...]}``)."""
        return self._ignored_checks

    @property
    def dependencies(self) -> Mapping[str, frozenset[str]]:
        """Tag key -> the tag keys its rule tests with ``'key' in tags`` (drafts and active tags)."""
        return self._dependencies

    @property
    def evaluation_order(self) -> tuple[EvaluationUnit, ...]:
        """The active tags in the order evaluation takes them: dependencies first, groups together."""
        return self._order

    @property
    def language(self) -> RuleLanguage:
        """The rule language of this catalog (its schema's types and builtins)."""
        return self._language

    def rule(self, key: str) -> ParsedRule:
        """The parsed rule of a draft or active tag."""
        if key not in self._rules:
            definition = self[key]
            raise KeyError(f"tag {key!r} is {definition.status}; its rule is not parsed")
        return self._rules[key]

    # -- validation --------------------------------------------------------------------------------

    def _problem(self, tag: str | None, message: str, **where: Any) -> Problem:
        return Problem(message, file=self.source, tag=tag, **where)

    def _in_file_order(self, problems: list[Problem]) -> list[Problem]:
        """Catalog and schema problems first, then each tag's problems in the order of the tags."""
        place: dict[str, int] = {}
        for index, definition in enumerate(self._tags):
            place.setdefault(definition.key, index + 1)
        return sorted(problems, key=lambda problem: place.get(problem.tag, 0) if problem.tag else 0)

    def _listener_names(
        self, names: Iterable[str], known: Collection[str] | None, problems: list[Problem]
    ) -> tuple[str, ...]:
        """The listener names, each a non-empty text named once and, when ``known`` is given, known."""
        found: list[str] = []
        for name in names:
            if not isinstance(name, str) or not name:
                problems.append(
                    Problem(
                        f"listener {name!r}: a listener is named by text",
                        file=self.source,
                        section="listeners",
                    )
                )
            elif name in found:
                problems.append(
                    Problem(f"listener {name!r} is named twice", file=self.source, section="listeners")
                )
            elif known is not None and name not in known:
                available = ", ".join(sorted(known)) if known else "none"
                problems.append(
                    Problem(
                        f"unknown listener {name!r}{suggest(name, known)} (the installed plugins' "
                        f"listeners: {available})",
                        file=self.source,
                        section="listeners",
                    )
                )
            else:
                found.append(name)
        return tuple(found)

    def _with_derived(self, schema: Schema, derived: Iterable[DerivedField]) -> Schema:
        """The schema plus each derived field whose inputs it has; problems for name clashes."""
        offered = {
            field.name: field
            for field in derived
            if field.name not in schema.fields and all(name in schema.fields for name in field.reads)
        }
        if not offered:
            return schema
        self._derived = types.MappingProxyType(offered)
        fields = {**schema.fields, **{name: field.field_type for name, field in offered.items()}}
        return Schema(fields, model=schema.model, reference=schema.reference)

    def _schema(self, schema: Any, problems: list[Problem]) -> Schema | None:
        if isinstance(schema, Schema):
            return schema
        resolved, found = Schema.parse(schema, file=self.source)
        problems.extend(found)
        return resolved

    def _definitions(self, tags: Iterable[Any], problems: list[Problem]) -> list[TagDefinition]:
        definitions = []
        for number, entry in enumerate(tags, start=1):
            if isinstance(entry, TagDefinition):
                definitions.append(entry)
                continue
            if not isinstance(entry, Mapping):
                problems.append(self._problem(None, f"tag #{number} must be a mapping with 'key' and 'rule'"))
                continue
            label = entry.get("key") if isinstance(entry.get("key"), str) else f"#{number}"
            try:
                definitions.append(TagDefinition.model_validate(dict(entry)))
            except ValidationError as error:
                for detail in error.errors():
                    problems.append(self._problem(label, _pydantic_message(detail)))
        return definitions

    def _refuse_oversized(self, definitions: list[TagDefinition]) -> None:
        """Refuse, before any rule is parsed, a catalog past the limits the library is measured at."""
        problems = []
        if len(definitions) > MAX_TAGS:
            problems.append(f"the catalog has {len(definitions):,} tags; the limit is {MAX_TAGS:,}")
        # a rule past its own limit is refused by itself, unread, and counts for nothing here
        text = sum(
            len(definition.rule) for definition in definitions if len(definition.rule) <= MAX_RULE_LENGTH
        )
        if text > MAX_RULE_TEXT:
            problems.append(
                f"the rules are {text:,} characters long in all; the limit is {MAX_RULE_TEXT:,} for a catalog"
            )
        if problems:
            raise DefinitionError(
                [Problem(message, file=self.source, section="catalog") for message in problems]
            )

    def _check_groups(self, problems: list[Problem]) -> None:
        by_group: dict[str, list[TagDefinition]] = {}
        for definition in self._by_key.values():
            if definition.group is not None and definition.status != "retired":
                by_group.setdefault(definition.group, []).append(definition)
        for group, members in by_group.items():
            seen: dict[int, str] = {}
            for member in members:
                other = seen.get(member.priority)
                if other is not None:
                    problems.append(
                        self._problem(
                            member.key,
                            f"has priority {member.priority}, like {other!r} "
                            f"in the exclusive group {group!r}; "
                            "tiers of a group need different priorities",
                        )
                    )
                else:
                    seen[member.priority] = member.key

    def _parse_rules(self, problems: list[Problem]) -> dict[str, ParsedRule]:
        """Parse every rule that is not retired; keep the sound ones, return all that parsed."""
        parsed_all: dict[str, ParsedRule] = {}
        for definition in self._by_key.values():
            if definition.status == "retired":
                continue
            parsed, found = self._language.parse(definition.rule)
            for rule_problem in found:
                problems.append(self._rule_problem(definition, rule_problem))
            if parsed is not None:
                parsed_all[definition.key] = parsed
                if not found:
                    self._rules[definition.key] = parsed
        return parsed_all

    def _rule_problem(self, definition: TagDefinition, problem: RuleProblem) -> Problem:
        if problem.position is None:
            return self._problem(definition.key, problem.message)
        line, column = line_and_column(definition.rule, problem.position)
        return self._problem(definition.key, problem.message, line=line, column=column)

    def _check_dependencies(self, parsed: Mapping[str, ParsedRule], problems: list[Problem]) -> None:
        for key, rule in parsed.items():
            definition = self._by_key[key]
            for dependency in sorted(rule.dependencies):
                target = self._by_key.get(dependency)
                if target is None:
                    message = f"refers to unknown tag {dependency!r}{suggest(dependency, self._by_key)}"
                elif dependency == key:
                    message = f"refers to itself ({dependency!r} in tags)"
                elif definition.is_active and not target.is_active:
                    message = f"refers to tag {dependency!r}, which is {target.status} and never assigned"
                else:
                    continue
                position = _literal_position(definition.rule, dependency)
                problems.append(self._rule_problem(definition, RuleProblem(message, position)))

    def _active_groups(self) -> dict[str, tuple[str, ...]]:
        groups: dict[str, list[TagDefinition]] = {}
        for definition in self._tags:
            if definition.is_active and definition.group is not None:
                groups.setdefault(definition.group, []).append(definition)
        return {
            group: tuple(member.key for member in sorted(members, key=lambda member: -member.priority))
            for group, members in groups.items()
        }

    def _evaluation_order(self, problems: list[Problem]) -> tuple[EvaluationUnit, ...]:
        units: list[EvaluationUnit] = []
        unit_of: dict[str, int] = {}
        for definition in self._tags:
            if not definition.is_active or definition.key in unit_of:
                continue
            if definition.group is None:
                unit_of[definition.key] = len(units)
                units.append(EvaluationUnit((definition.key,)))
            else:
                members = self._groups[definition.group]
                for member in members:
                    unit_of[member] = len(units)
                units.append(EvaluationUnit(members, definition.group))
        edges: list[set[int]] = [set() for _ in units]
        for index, unit in enumerate(units):
            for key in unit.keys:
                edges[index].update(
                    unit_of[dependency]
                    for dependency in self._dependencies.get(key, ())
                    if dependency in unit_of
                )
        for cycle in _cycles(edges):
            problems.append(self._cycle_problem([units[index] for index in cycle], unit_of))
        if problems:
            return ()
        return tuple(units[index] for index in _topological(edges))

    def _cycle_problem(self, cycle: list[EvaluationUnit], unit_of: dict[str, int]) -> Problem:
        steps = []
        for position, unit in enumerate(cycle):
            following = cycle[(position + 1) % len(cycle)]
            for key in unit.keys:
                targets = [
                    dependency
                    for dependency in sorted(self._dependencies.get(key, ()))
                    if dependency in following.keys
                ]
                if targets:
                    steps.append((key, targets[0]))
                    break
        path = " -> ".join([steps[0][0]] + [target for _, target in steps])
        joins = []
        for (_, target), (source, _) in zip(steps, steps[1:] + steps[:1], strict=False):
            if target != source:
                group = self._by_key[target].group
                joins.append(
                    f"{target!r} and {source!r} are resolved together in the exclusive group {group!r}"
                )
        detail = f" ({'; '.join(joins)})" if joins else ""
        first = steps[0][0]
        return self._problem(first, f"dependency cycle: {path}{detail}")


#: tagrules' words for pydantic's errors: what the field must be
_EXPECTED = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "invalid-json-value": "must be plain JSON data (text, numbers, true/false, null, lists, mappings)",
}


def _given(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (dict, list, tuple, set)):
        return {dict: "a mapping", list: "a list", tuple: "a list", set: "a set"}.get(
            type(value), "a collection"
        )
    return f"{'text' if isinstance(value, str) else type(value).__name__} {repr(value)[:40]}"


def _pydantic_message(detail: Mapping[str, Any]) -> str:
    """A pydantic error in tagrules' words (pydantic's own would read "Input should be ...")."""
    location = ".".join(str(part) for part in detail.get("loc", ()))
    kind = str(detail.get("type"))
    message = str(detail.get("msg", "invalid")).removeprefix("Value error, ")
    if kind in _EXPECTED:
        message = _EXPECTED[kind]
        if "input" in detail:
            message += f", not {_given(detail['input'])}"
    elif kind == "literal_error":
        message = f"must be one of {detail.get('ctx', {}).get('expected', '')}, not {detail.get('input')!r}"
    if detail.get("type") == "string_pattern_mismatch" and location in ("key", "group"):
        message = (
            "must be a slug: lowercase letters, digits, '-' and '_', "
            "starting and ending with a letter or digit"
        )
    elif detail.get("type") == "extra_forbidden":
        known = ", ".join(TagDefinition.model_fields)
        return (
            f"unknown field {location!r}{suggest(location, TagDefinition.model_fields)} (a tag has: {known})"
        )
    elif detail.get("type") == "missing":
        return f"field {location!r} is required"
    return f"field {location!r}: {message}" if location else message


def _literal_position(text: str, value: str) -> int | None:
    for quote in ("'", '"'):
        position = text.find(f"{quote}{value}{quote}")
        if position >= 0:
            return position
    return None


def _cycles(edges: list[set[int]]) -> list[list[int]]:
    """One cycle (as a list of node indices) per strongly connected component that has one (Tarjan)."""
    index_of: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    found: list[list[int]] = []
    counter = 0
    for root in range(len(edges)):
        if root in index_of:
            continue
        work: list[tuple[int, Iterator[int]]] = [(root, iter(sorted(edges[root])))]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index_of:
                    index_of[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(edges[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index_of[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    found.append(_cycle_in(sorted(component), edges))
    return found


def _cycle_in(component: list[int], edges: list[set[int]]) -> list[int]:
    """A cycle through the first node of a strongly connected component, following the lowest edges."""
    members = set(component)
    path = [component[0]]
    while True:
        successor = min(edge for edge in edges[path[-1]] if edge in members)
        if successor in path:
            return path[path.index(successor) :]
        path.append(successor)


def _topological(edges: list[set[int]]) -> list[int]:
    """Indices in dependency order (a node after everything it depends on), ties in original order."""
    waiting = [len(targets) for targets in edges]
    dependents: list[list[int]] = [[] for _ in edges]
    for index, targets in enumerate(edges):
        for target in targets:
            dependents[target].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for dependent in dependents[index]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    return order
