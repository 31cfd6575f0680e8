"""Properties of evaluation and diffs over random catalogs and snapshots (hypothesis)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tagrules import Catalog, Evaluation, Evaluator, diff

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
FIELDS = ("x0", "x1", "x2")
SCHEMA = {**dict.fromkeys(FIELDS, "int"), "d": "int"}


@dataclass
class RandomTag:
    key: str
    column: str
    threshold: int
    greater: bool
    group: str | None = None
    priority: int = 0
    dependencies: list[str] = field(default_factory=list)
    divides: bool = False

    def rule(self) -> str:
        parts = [f"{self.column} {'>=' if self.greater else '<'} {self.threshold}"]
        if self.divides:
            parts.append("x0 / d > 1")
        parts.extend(f"'{dependency}' in tags" for dependency in self.dependencies)
        return " and ".join(parts)

    def definition(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "rule": self.rule(), "priority": self.priority}
        if self.group:
            data["group"] = self.group
        return data


@st.composite
def random_catalogs(draw: st.DrawFn) -> list[RandomTag]:
    tags: list[RandomTag] = []
    for index in range(draw(st.integers(1, 5))):
        tags.append(
            RandomTag(
                key=f"b{index}",
                column=draw(st.sampled_from(FIELDS)),
                threshold=draw(st.integers(-3, 3)),
                greater=draw(st.booleans()),
                group=draw(st.sampled_from([None, "g0", "g1"])),
                priority=index,
                divides=draw(st.booleans()),
            )
        )
    for index in range(draw(st.integers(0, 4))):
        earlier = [tag.key for tag in tags]
        tags.append(
            RandomTag(
                key=f"d{index}",
                column=draw(st.sampled_from(FIELDS)),
                threshold=draw(st.integers(-3, 3)),
                greater=draw(st.booleans()),
                dependencies=draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True)),
                divides=draw(st.booleans()),
            )
        )
    return tags


snapshots = st.fixed_dictionaries({**{name: st.integers(-4, 4) for name in FIELDS}, "d": st.integers(0, 2)})


def rule_outcome(tag: RandomTag, values: dict[str, int], assigned: set[str]) -> bool | None:
    """The rule's value with short-circuiting, or None when it fails (division by zero)."""
    if (values[tag.column] >= tag.threshold) != tag.greater:
        return False
    if tag.divides:
        if values["d"] == 0:
            return None
        if not values["x0"] / values["d"] > 1:
            return False
    return all(dependency in assigned for dependency in tag.dependencies)


def reference(tags: list[RandomTag], values: dict[str, int]) -> tuple[set[str], set[str]]:
    """The documented semantics, written plainly: (assigned, unknown).

    Base tags (which hold every grouped tag) come before derived ones, so every group is resolved
    before any tag that depends on it.
    """
    assigned: set[str] = set()
    unknown: set[str] = set()
    outcomes: dict[str, bool | None] = {}

    def evaluate(tag: RandomTag) -> None:
        if any(dependency in unknown for dependency in tag.dependencies):
            unknown.add(tag.key)
            return
        outcomes[tag.key] = outcome = rule_outcome(tag, values, assigned)
        if outcome is None:
            unknown.add(tag.key)
        elif tag.group is None and outcome:
            assigned.add(tag.key)

    for tag in tags:
        if tag.key.startswith("b"):
            evaluate(tag)
    for group in ("g0", "g1"):
        members = sorted((tag for tag in tags if tag.group == group), key=lambda tag: -tag.priority)
        if any(member.key in unknown for member in members):
            unknown.update(member.key for member in members)
        else:
            winner = next((member.key for member in members if outcomes[member.key]), None)
            assigned.update([winner] if winner else [])
    for tag in tags:
        if tag.key.startswith("d"):
            evaluate(tag)
    return assigned, unknown


class TestEvaluationProperties:
    @given(random_catalogs(), snapshots)
    def test_matches_the_reference_semantics(self, tags: list[RandomTag], values: dict[str, int]) -> None:
        """Evaluation agrees with a plain re-statement of tiers, dependencies and the error policy."""
        result = Evaluator(Catalog([tag.definition() for tag in tags], SCHEMA)).evaluate(values, now=NOW)
        assigned, unknown = reference(tags, values)
        assert set(result.errors) == unknown
        assert set(result.tags) == assigned

    @given(random_catalogs(), snapshots)
    def test_invariants(self, tags: list[RandomTag], values: dict[str, int]) -> None:
        """At most one tag per group; dependents only with their dependencies; failures never assigned."""
        catalog = Catalog([tag.definition() for tag in tags], SCHEMA)
        result = Evaluator(catalog).evaluate(values, now=NOW)
        for members in catalog.groups.values():
            assert len(result.tags & set(members)) <= 1
        for tag in tags:
            if tag.key in result.tags:
                assert set(tag.dependencies) <= result.tags
            if any(dependency in result.errors for dependency in tag.dependencies):
                assert tag.key in result.errors
        for members in catalog.groups.values():
            failed = [member for member in members if member in result.errors]
            assert not failed or set(members) <= set(result.errors)
        assert not result.tags & set(result.errors)


keys = st.sampled_from([f"t{index}" for index in range(8)])


@st.composite
def evaluations(draw: st.DrawFn) -> Evaluation:
    tags = draw(st.frozensets(keys))
    errors = draw(st.dictionaries(keys.filter(lambda key: key not in tags), st.text(max_size=5)))
    return Evaluation(tags, errors, NOW)


class TestDiffAlgebra:
    @given(st.frozensets(keys), evaluations())
    def test_algebra(self, previous: frozenset[str], evaluation: Evaluation) -> None:
        """new == previous - removed + added; nothing both added and removed; unknown tags never move."""
        change = diff(previous, evaluation)
        assert change.tags == (previous - change.removed) | change.added
        assert not change.added & change.removed
        assert change.added <= evaluation.tags
        assert not change.removed & evaluation.tags
        for key in evaluation.errors:
            assert (key in previous) == (key in change.tags)
            assert key not in change.added
            assert key not in change.removed
        assert change.tags == evaluation.tags | (previous & set(evaluation.errors))
        assert change.unchanged == previous - change.removed
        assert change.changed == bool(change.added or change.removed)

    @given(st.frozensets(keys), evaluations())
    def test_diff_against_itself_is_empty(self, previous: frozenset[str], evaluation: Evaluation) -> None:
        """Applying a diff and diffing again changes nothing."""
        first = diff(previous, evaluation)
        second = diff(first.tags, evaluation)
        assert not second.changed
        assert second.tags == first.tags

    def test_accepts_any_iterable(self) -> None:
        """previous_tags may be any iterable of keys."""
        change = diff(["a", "b"], Evaluation(frozenset({"b", "c"}), {}, NOW))
        assert (change.added, change.removed, change.unchanged) == (
            frozenset("c"),
            frozenset("a"),
            frozenset("b"),
        )
