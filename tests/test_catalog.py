"""Catalog validation at load: every problem kind, all problems at once, and hostile input."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tagrules import Catalog, DefinitionError, Problem

SCHEMA = {
    "age": "int | None",
    "spend_365d": "float",
    "orders_30d": "int",
    "city": "str",
    "last_order_at": "datetime | None",
    "categories": "list[str]",
    "email": "str",
}


def problems_of(tags: list[dict[str, Any]], schema: Any = None) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        Catalog(tags, SCHEMA if schema is None else schema, source="catalog.yaml")
    return list(caught.value.problems)


def only_problem(tags: list[dict[str, Any]], schema: Any = None) -> Problem:
    found = problems_of(tags, schema)
    assert len(found) == 1, found
    return found[0]


class TestProblemKinds:
    def test_syntax_error(self) -> None:
        """A syntax error names the tag and the column where reading stopped."""
        problem = only_problem([{"key": "vip", "rule": "spend_365d >= and orders_30d > 1"}])
        assert str(problem) == "catalog.yaml: tag 'vip': syntax error at 'and' (column 15)"

    def test_rule_that_ends_too_early(self) -> None:
        """A rule cut short says so, at its end."""
        problem = only_problem([{"key": "vip", "rule": "spend_365d >="}])
        assert problem.message == "syntax error: the rule ends too early"
        assert problem.column == 14

    def test_unknown_field_with_suggestion(self) -> None:
        """An unknown field is named with the nearest field of the schema."""
        problem = only_problem([{"key": "vip", "rule": "spend_356d >= 100000"}])
        assert (
            str(problem)
            == "catalog.yaml: tag 'vip': unknown field 'spend_356d'; did you mean 'spend_365d'? (column 1)"
        )

    def test_every_unknown_field_of_a_rule(self) -> None:
        """Several unknown fields in one rule are all reported, each at its column."""
        found = problems_of([{"key": "vip", "rule": "spend > 1 and ordrs_30d > 2"}])
        assert [(problem.message.split(";")[0], problem.column) for problem in found] == [
            ("unknown field 'spend'", 1),
            ("unknown field 'ordrs_30d'", 15),
        ]

    def test_string_compared_with_number(self) -> None:
        """Comparing text with a number for equality is refused: it is always false."""
        problem = only_problem([{"key": "bj", "rule": "city == 3"}])
        assert problem.message == "city is text and 3 is a number, so 'city == 3' is always false"

    def test_ordering_mismatch(self) -> None:
        """Ordering text against a number is a type mismatch, located."""
        problem = only_problem([{"key": "x", "rule": "orders_30d > 1 and city > 3"}])
        assert "data type mismatch" in problem.message
        assert problem.column == 20

    def test_member_type_mismatch(self) -> None:
        """Looking for a number in a list of text is refused: it is always false."""
        problem = only_problem([{"key": "x", "rule": "3 in categories"}])
        assert "always false" in problem.message

    def test_nullable_without_default(self) -> None:
        """A nullable field compared without ?? is refused, with the fix."""
        problem = only_problem([{"key": "adult", "rule": "age >= 18"}])
        assert "may be null" in problem.message
        assert "??" in problem.message

    def test_nullable_with_default_is_fine(self) -> None:
        """The same comparison with a default passes."""
        Catalog([{"key": "adult", "rule": "(age ?? 0) >= 18"}], SCHEMA)

    def test_nullable_boolean_condition(self) -> None:
        """A nullable boolean used as a condition must say what null means."""
        problem = only_problem([{"key": "x", "rule": "flag and true"}], {"flag": "bool | None"})
        assert problem.message == "'flag' may be null; write '(flag ?? false)' to say what null means here"

    def test_rule_must_be_boolean(self) -> None:
        """A rule that gives a number is refused, with an example of a comparison."""
        problem = only_problem([{"key": "x", "rule": "spend_365d * 2"}])
        assert problem.message.startswith("the rule gives a number, not true or false")

    def test_duplicate_keys(self) -> None:
        """Two tags with the same key are reported."""
        problem = only_problem([{"key": "vip", "rule": "true"}, {"key": "vip", "rule": "false"}])
        assert problem.message == "the key 'vip' is used by two tags"

    def test_equal_priorities_in_a_group(self) -> None:
        """Two tiers of one group with the same priority are reported."""
        problem = only_problem(
            [
                {"key": "spend_high", "rule": "spend_365d >= 100000", "group": "spend", "priority": 2},
                {"key": "spend_mid", "rule": "spend_365d >= 30000", "group": "spend", "priority": 2},
            ]
        )
        assert problem.tag == "spend_mid"
        assert "has priority 2, like 'spend_high'" in problem.message

    def test_unknown_tag_reference(self) -> None:
        """A reference to a tag that does not exist is reported with a suggestion, at the literal."""
        problem = only_problem(
            [{"key": "freq_high", "rule": "orders_30d >= 3"}, {"key": "vip", "rule": "'freq_hgh' in tags"}]
        )
        assert str(problem) == (
            "catalog.yaml: tag 'vip': refers to unknown tag 'freq_hgh'; did you mean 'freq_high'? (column 1)"
        )

    def test_reference_to_a_draft(self) -> None:
        """An active tag may not depend on a draft: the draft is never assigned."""
        problem = only_problem(
            [{"key": "a", "rule": "true", "status": "draft"}, {"key": "b", "rule": "'a' in tags"}]
        )
        assert problem.message == "refers to tag 'a', which is draft and never assigned"

    def test_dependency_cycle_is_spelled_out(self) -> None:
        """A dependency cycle is reported once, with the whole cycle."""
        problem = only_problem(
            [
                {"key": "a", "rule": "'b' in tags"},
                {"key": "b", "rule": "'c' in tags"},
                {"key": "c", "rule": "'a' in tags"},
            ]
        )
        assert problem.message == "dependency cycle: a -> b -> c -> a"

    def test_cycle_through_a_group(self) -> None:
        """A cycle through an exclusive group names the group that joins it."""
        problem = only_problem(
            [
                {"key": "vip", "rule": "'spend_high' in tags"},
                {"key": "spend_high", "rule": "spend_365d > 1", "group": "spend", "priority": 2},
                {"key": "spend_mid", "rule": "'vip' in tags", "group": "spend", "priority": 1},
            ]
        )
        assert problem.message.startswith("dependency cycle: vip -> spend_high")
        assert "exclusive group 'spend'" in problem.message

    def test_self_reference(self) -> None:
        """A tag that tests itself is reported."""
        found = problems_of([{"key": "a", "rule": "'a' in tags"}])
        assert any(problem.message == "refers to itself ('a' in tags)" for problem in found)

    def test_tags_used_otherwise(self) -> None:
        """'tags' may only be tested for a literal key, so dependencies are known at load."""
        problem = only_problem([{"key": "a", "rule": "tags.length > 2"}])
        assert problem.message == "'tags' can only be tested as 'key' in tags or 'key' not in tags"

    def test_schema_field_named_tags(self) -> None:
        """A schema field named 'tags' is reported."""
        problem = only_problem([{"key": "a", "rule": "true"}], {"tags": "list[str]"})
        assert "field 'tags' is reserved" in problem.message
        assert problem.section == "schema"

    def test_unknown_type_name(self) -> None:
        """An unknown type name is reported with the nearest known one."""
        problem = only_problem([{"key": "a", "rule": "true"}], {"age": "integr"})
        assert problem.message == "field 'age': unknown type 'integr'; did you mean 'int'?"

    def test_bad_tag_fields(self) -> None:
        """Wrong tag fields are named: a bad key, an unknown field, a missing rule."""
        found = problems_of([{"key": "Bad Key", "rule": "true"}, {"key": "x", "rul": "true"}])
        messages = [problem.message for problem in found]
        assert any("must be a slug" in message for message in messages)
        assert any("unknown field 'rul'; did you mean 'rule'?" in message for message in messages)
        assert any("field 'rule' is required" in message for message in messages)

    def test_unknown_builtin(self) -> None:
        """An unknown $builtin is reported with a suggestion."""
        problem = only_problem([{"key": "a", "rule": "$nwo > d'2020-01-01'"}])
        assert problem.message == "unknown builtin '$nwo'; did you mean '$now'?"

    def test_random_is_refused(self) -> None:
        """Rules must follow from the snapshot, so $random is refused."""
        problem = only_problem([{"key": "a", "rule": "$random() > 0.5"}])
        assert "$random" in problem.message

    def test_catastrophic_regex_is_refused(self) -> None:
        """A regex that can backtrack without bound is refused at load."""
        problem = only_problem([{"key": "a", "rule": "email =~ '(a+)+$'"}])
        assert "can backtrack without bound" in problem.message

    def test_invalid_regex(self) -> None:
        """A regex that does not compile is reported."""
        problem = only_problem([{"key": "a", "rule": "email =~ '(unclosed'"}])
        assert problem.message.startswith("invalid regular expression '(unclosed'")

    def test_shift_operators_are_refused(self) -> None:
        """<< and >> are refused before they run (1 << 10**9 would exhaust memory)."""
        problem = only_problem([{"key": "a", "rule": "orders_30d << 3 > 1"}])
        assert problem.message == "the shift operator << is not supported in tag rules"

    def test_multiline_rule_positions(self) -> None:
        """In a rule of several lines, the problem gives its line and column."""
        problem = only_problem([{"key": "a", "rule": "orders_30d > 1\nand spnd > 3"}])
        assert (problem.line, problem.column) == (2, 5)
        assert str(problem).endswith("(line 2, column 5)")

    def test_draft_rules_are_checked_retired_are_not(self) -> None:
        """Drafts are validated like active tags; retired rules are kept for the record only."""
        problem = only_problem(
            [
                {"key": "a", "rule": "nope > 1", "status": "draft"},
                {"key": "b", "rule": "nope > 1", "status": "retired"},
            ]
        )
        assert problem.tag == "a"


class TestAllProblemsAtOnce:
    def test_every_problem_in_one_error(self, write: Callable[[str, str], Path]) -> None:
        """One load reports every problem of the file, each with file, tag and position."""
        path = write(
            "catalog.yaml",
            """
schema:
  spend_365d: float
  city: str
  tags: int
tags:
  - {key: vip, rule: "spend_356d >= 100000 and 'freq_hgh' in tags"}
  - {key: spend_high, rule: "spend_365d >= 100000", group: spend, priority: 3}
  - {key: spend_mid, rule: "spend_365d >= 30000", group: spend, priority: 3}
  - {key: bj, rule: "city == 3"}
  - {key: a, rule: "'b' in tags"}
  - {key: b, rule: "'a' in tags"}
  - {key: c, rule: "spend_365d > "}
""",
        )
        with pytest.raises(DefinitionError) as caught:
            Catalog.load(path)
        lines = str(caught.value).splitlines()
        assert lines[0] == "7 problems:"
        text = "\n".join(lines)
        assert f"{path}: schema: field 'tags' is reserved" in text
        assert f"{path}: tag 'vip': unknown field 'spend_356d'" in text
        assert f"{path}: tag 'vip': refers to unknown tag 'freq_hgh'" in text
        assert f"{path}: tag 'spend_mid': has priority 3" in text
        assert f"{path}: tag 'bj': city is text and 3 is a number" in text
        assert f"{path}: tag 'a': dependency cycle: a -> b -> a" in text
        assert f"{path}: tag 'c': syntax error: the rule ends too early (column 14)" in text

    def test_top_level_entries(self) -> None:
        """Unknown and missing top-level entries of a catalog file are reported."""
        with pytest.raises(DefinitionError) as caught:
            Catalog.from_data({"shema": {}, "tags": "none"}, source="c.yaml")
        text = str(caught.value)
        assert "unknown entry 'shema'; did you mean 'schema'?" in text
        assert "the catalog has no 'schema'" in text
        assert "'tags' must be a list" in text


class TestHostileInput:
    """Absurd or malicious input gets a clear error quickly, never a traceback or a hang."""

    def _fails_fast(self, call: Callable[[], object], message: str) -> None:
        started = time.perf_counter()
        with pytest.raises(DefinitionError) as caught:
            call()
        assert message in str(caught.value)
        assert time.perf_counter() - started < 20

    def test_one_megabyte_rule(self) -> None:
        """A 1 MB rule is refused by its length."""
        rule = "orders_30d > 1 and " * 55_000 + "true"
        self._fails_fast(
            lambda: Catalog([{"key": "a", "rule": rule}], SCHEMA), "characters long; the limit is"
        )

    def test_nesting_ten_thousand_deep(self) -> None:
        """Expressions nested 10,000 deep are refused as too deep."""
        rule = "(" * 10_000 + "orders_30d" + " + 1)" * 10_000 + " > 1"
        self._fails_fast(lambda: Catalog([{"key": "a", "rule": rule}], SCHEMA), "nests too deeply")

    def test_ten_thousand_parentheses_around_nothing(self) -> None:
        """Parentheses alone build no nesting: 10,000 of them around a literal load quickly."""
        started = time.perf_counter()
        Catalog([{"key": "a", "rule": "(" * 10_000 + "true" + ")" * 10_000}], SCHEMA)
        assert time.perf_counter() - started < 20

    def test_long_operator_chain(self) -> None:
        """A chain of 10,000 operators is refused as too deep rather than crashing."""
        rule = "orders_30d" + " + 1" * 10_000 + " > 1"
        self._fails_fast(lambda: Catalog([{"key": "a", "rule": rule}], SCHEMA), "nests too deeply")

    def test_huge_exponent(self) -> None:
        """10 ** (10 ** 10) is an arithmetic error at load, not a computation that never ends."""
        self._fails_fast(
            lambda: Catalog([{"key": "a", "rule": "10 ** (10 ** 10) > 1"}], SCHEMA), "arithmetic error"
        )

    def test_huge_rounding(self) -> None:
        """Rounding an astronomically large number is refused instead of taking minutes."""
        self._fails_fast(
            lambda: Catalog([{"key": "a", "rule": "(1e999999).ceiling > 1"}], SCHEMA), "too large"
        )

    def test_yaml_python_object_tag(self, write: Callable[[str, str], Path]) -> None:
        """YAML with a Python object tag is refused; nothing is constructed."""
        path = write("c.yaml", "schema: !!python/object/apply:os.system ['echo hacked']\ntags: []\n")
        self._fails_fast(lambda: Catalog.load(path), "only plain YAML data is accepted")

    def test_yaml_alias_bomb(self, write: Callable[[str, str], Path]) -> None:
        """A 'billion laughs' document is refused by its expanded size."""
        lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        for level in range(1, 10):
            refs = ", ".join([f"*a{level - 1}"] * 9)
            lines.append(f"a{level}: &a{level} [{refs}]")
        path = write("c.yaml", "\n".join(lines) + "\n")
        self._fails_fast(lambda: Catalog.load(path), "expands to more than")

    def test_yaml_deep_nesting(self, write: Callable[[str, str], Path]) -> None:
        """YAML nested 10,000 deep is refused."""
        path = write("c.yaml", "schema: " + "[" * 10_000 + "]" * 10_000 + "\ntags: []\n")
        self._fails_fast(lambda: Catalog.load(path), "nests more than")

    def test_json_deep_nesting(self, write: Callable[[str, str], Path]) -> None:
        """JSON nested 100,000 deep is refused."""
        path = write("c.json", '{"schema": ' + "[" * 100_000 + "]" * 100_000 + ', "tags": []}')
        self._fails_fast(lambda: Catalog.load(path), "nests more than")

    def test_recursive_yaml(self, write: Callable[[str, str], Path]) -> None:
        """A YAML structure that contains itself is refused."""
        path = write("c.yaml", "schema: &s [*s]\ntags: []\n")
        self._fails_fast(lambda: Catalog.load(path), "refers to itself")

    def test_malformed_yaml_position(self, write: Callable[[str, str], Path]) -> None:
        """Malformed YAML is reported with its line and column."""
        path = write("c.yaml", "schema:\n  age: int\ntags: [\n")
        self._fails_fast(lambda: Catalog.load(path), "not valid YAML: line")

    def test_malformed_json_position(self, write: Callable[[str, str], Path]) -> None:
        """Malformed JSON is reported with its line and column."""
        path = write("c.json", '{"schema": {}, "tags": [}')
        self._fails_fast(lambda: Catalog.load(path), "not valid JSON: line 1, column 25")

    def test_missing_and_binary_files(self, tmp_path: Path) -> None:
        """A missing file, a directory and a binary file each get a clear error."""
        self._fails_fast(lambda: Catalog.load(tmp_path / "none.yaml"), "no such file")
        self._fails_fast(lambda: Catalog.load(tmp_path), "is a directory")
        binary = tmp_path / "c.yaml"
        binary.write_bytes(b"\xff\xfe\x00\x01")
        self._fails_fast(lambda: Catalog.load(binary), "not UTF-8 text")

    def test_dunder_attributes_are_not_reachable(self) -> None:
        """Attribute access is limited to the language's attributes: no way to Python internals."""
        found = problems_of([{"key": "a", "rule": "city.__class__ == 'x'"}])
        assert "unknown attribute '__class__'" in found[0].message
