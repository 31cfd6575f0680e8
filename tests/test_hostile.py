"""Hostile rule text is harmless: no way to run code, and bounded work at load and at evaluation."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tagrules import Catalog, DefinitionError, Evaluator
from tagrules.rules import to_python

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
SCHEMA = {"city": "str", "n": "int", "x": "float", "items": "list[int]"}
#: every hostile case must be refused or fail within this many seconds (generous for slow machines)
BOUND = 10.0


def refused(rule: str) -> str:
    """The load-time message of a refused rule."""
    started = time.perf_counter()
    with pytest.raises(DefinitionError) as caught:
        Catalog([{"key": "hostile", "rule": rule}], SCHEMA)
    assert time.perf_counter() - started < BOUND
    return caught.value.problems[0].message


def failure(rule: str, snapshot: dict[str, Any]) -> str:
    """The evaluation error of a rule that loads but fails on ``snapshot`` (compiled evaluation)."""
    evaluator = Evaluator(Catalog([{"key": "hostile", "rule": rule}], SCHEMA))
    assert not evaluator.interpreted
    started = time.perf_counter()
    result = evaluator.evaluate(snapshot, now=NOW)
    assert time.perf_counter() - started < BOUND
    assert "hostile" not in result.tags
    return result.errors["hostile"]


class TestNoCodeExecution:
    @pytest.mark.parametrize(
        ("rule", "message"),
        [
            ("city.__class__ == 'x'", "unknown attribute '__class__'"),
            ("city.__len__ > 1", "unknown attribute '__len__'"),
            ("__import__ == 'os'", "unknown field '__import__'"),
            ("$__import__('os') == 1", "unknown builtin '$__import__'"),
            ("$eval('1') == 1", "unknown builtin '$eval'"),
            ("$open('/etc/passwd') == 1", "unknown builtin '$open'"),
            ("'{0.__class__}'.format(city) == 'x'", "unknown attribute 'format'"),
            ("city('x') == 'y'", "not a callable value"),
            ("items.__getitem__(0) == 1", "unknown attribute '__getitem__'"),
        ],
    )
    def test_python_internals_are_out_of_reach(self, rule: str, message: str) -> None:
        """Dunder attributes, Python builtins, imports and format strings are refused at load."""
        assert message in refused(rule)

    def test_rule_text_is_never_code(self, tmp_path: Path) -> None:
        """Python code inside a rule's string literal stays a string: nothing runs."""
        marker = tmp_path / "ran"
        payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
        catalog = Catalog([{"key": "t", "rule": f'city == "{payload}"'}], SCHEMA)
        result = Evaluator(catalog).evaluate({"city": payload, "n": 1, "x": 1.0, "items": []}, now=NOW)
        assert result.tags == {"t"}
        assert not marker.exists()

    def test_generated_code_reaches_few_builtins(self) -> None:
        """Compiled rules run with a handful of harmless builtins, nothing that imports or opens."""
        assert set(to_python._GENERATED_BUILTINS) <= {
            "len",
            "tuple",
            "bool",
            "set",
            "type",
            "int",
            "float",
            "str",
            "dict",
            "list",
            "Exception",
        }


class TestBoundedWork:
    def test_huge_exponent_at_load(self) -> None:
        """A constant exponent tower is an arithmetic error at load, at once."""
        assert "arithmetic error" in refused("10 ** (10 ** 10) > 1")

    def test_huge_exponent_at_evaluation(self) -> None:
        """An exponent from the snapshot overflows the decimal context at once: an error for that tag."""
        assert failure("x ** n > 1", {"city": "a", "n": 10**15, "x": 10.0, "items": []}) == "arithmetic error"

    def test_enormous_range(self) -> None:
        """$range refuses to build more than its bound, instead of exhausting memory."""
        message = failure("$range(n).length > 1", {"city": "a", "n": 10**15, "x": 1.0, "items": []})
        assert "longer than 100,000" in message

    def test_nested_comprehensions_hit_the_budget(self) -> None:
        """Comprehensions nested to a billion steps stop at the step budget."""
        rule = "[[[1 for a in $range(1000)] for b in $range(1000)] for c in $range(1000)].length > 0"
        assert "more than 100,000 steps" in failure(rule, {"city": "a", "n": 1, "x": 1.0, "items": []})

    def test_no_repetition_operator(self) -> None:
        """Text cannot be multiplied into gigabytes: the operator does not apply to text."""
        assert "data type mismatch" in refused("city * 1000000000 == 'x'")

    def test_shift_operators(self) -> None:
        """1 << 10**9 would allocate a gigabyte: shifts are refused before anything is computed."""
        assert "shift operator" in refused("1 << 1000000000 > 0")

    @pytest.mark.parametrize(
        "pattern", ["(a+)+$", "(a|a)*b", "(\\\\w+\\\\s?)+$", "(a*)*", "(x+x+)+y", "(.*a){20}"]
    )
    def test_catastrophic_regexes(self, pattern: str) -> None:
        """Patterns that backtrack exponentially are refused at load."""
        assert "refused" in refused(f"city =~ '{pattern}'")

    @pytest.mark.parametrize(
        "make_rule",
        [
            lambda: "(" * 10_000 + "n" + " + 1)" * 10_000 + " > 0",
            lambda: "not " * 10_000 + "true",
            lambda: "n" + " + 1" * 12_000 + " > 0",
            lambda: "n > 0 and " * 20_000 + "true",
        ],
    )
    def test_deep_nesting(self, make_rule: Callable[[], str]) -> None:
        """Rules nested thousands deep are refused at load, quickly and without a crash."""
        message = refused(make_rule())
        assert "nests" in message or "characters long" in message

    def test_long_flat_rule_compiles_quickly(self) -> None:
        """A long but flat rule (a big list) loads and compiles well within the bound."""
        members = ", ".join(f"'c{index}'" for index in range(5_000))
        started = time.perf_counter()
        evaluator = Evaluator(Catalog([{"key": "t", "rule": f"city in [{members}]"}], SCHEMA))
        assert time.perf_counter() - started < BOUND
        assert evaluator.evaluate({"city": "c4999", "n": 1, "x": 1.0, "items": []}, now=NOW).tags == {"t"}
