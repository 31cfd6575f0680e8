"""The compiler against rule-engine's interpreter: same value or same error class, case by case.

Random typed schemas, random rules from the whole grammar and snapshots of edge values; for every
case the compiled rule gives what ``rule_engine.Rule.evaluate`` gives on the same context. The fast
profile runs in ``make test``; ``make test-differential`` runs the long one (see the Makefile).
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rule_engine import Rule

from rule_strategies import (
    NOW,
    TAG_KEYS,
    RandomSchema,
    raw_snapshots,
    rules_for,
    same,
    schemas,
    written_rules,
)
from tagrules import Catalog, Evaluator
from tagrules.rules import RuleLanguage
from tagrules.rules._language import Scope, evaluation_state
from tagrules.rules.to_python import Unsupported, compile_rule

#: Snapshots tried on each random rule.
SNAPSHOTS_PER_RULE = 6
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"


def outcome(function: Any, *arguments: Any) -> tuple[str, Any]:
    try:
        return "value", function(*arguments)
    except Exception as error:
        return "error", type(error)


def interpret(rule: Rule, scope: Scope, now: datetime.datetime) -> Any:
    evaluation_state.now = now
    evaluation_state.steps = 0
    return rule.evaluate(scope)


@st.composite
def cases(draw: st.DrawFn) -> tuple[RandomSchema, str, list[dict[str, Any]], list[frozenset[str]]]:
    schema = draw(schemas())
    text, hints = draw(written_rules(schema))
    snapshots = [draw(raw_snapshots(schema, hints)) for _ in range(SNAPSHOTS_PER_RULE)]
    tag_sets = [draw(st.frozensets(st.sampled_from(TAG_KEYS))) for _ in range(SNAPSHOTS_PER_RULE)]
    return schema, text, snapshots, tag_sets


def check_case(
    random_schema: RandomSchema, text: str, snapshots: list[dict[str, Any]], tag_sets: list[frozenset[str]]
) -> None:
    schema = random_schema.schema
    language = RuleLanguage(schema)
    try:
        rule = Rule(text, context=language.context)
    except Exception:
        assume(False)
        return
    try:
        compiled = compile_rule(rule.statement, language.context, schema.fields)
    except Unsupported as reason:
        pytest.fail(f"rule not compiled: {reason}: {text}")
    for raw, tags in zip(snapshots, tag_sets, strict=True):
        values, problems = schema.read(raw)
        expected = outcome(interpret, rule, Scope(values, problems, set(tags)), NOW)
        actual = outcome(compiled.function, values, problems, set(tags), NOW)
        consistent = expected[0] == actual[0] and (
            same(expected[1], actual[1]) if expected[0] == "value" else expected[1] is actual[1]
        )
        assert consistent, (
            f"rule: {text}\nsnapshot: {raw!r}\ntags: {sorted(tags)}\n"
            f"interpreter: {expected!r}\ncompiled: {actual!r}\n\n{compiled.source}"
        )


class TestCompiledRules:
    @settings(
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow, HealthCheck.data_too_large]
    )
    @given(cases())
    def test_compiled_equals_interpreted(
        self, case: tuple[RandomSchema, str, list[dict[str, Any]], list[frozenset[str]]]
    ) -> None:
        """Random schemas, rules and snapshots: compiled rules give the interpreter's value or error class."""
        check_case(*case)

    @pytest.mark.parametrize(
        ("text", "snapshot"),
        [
            ("0.1 + 0.2 == 0.3", {}),
            ("f0 == 0.1", {"f0": 0.1}),
            ("f0 >= 0.1000000000000000055511151231257827", {"f0": 0.1}),
            ("f1 > 1152921504606846976", {"f1": 2**60 + 1}),
            ("f0 < 1e23", {"f0": 1e23}),
            ("f0 / f1 > 1", {"f0": 1.0, "f1": 0}),
            ("f0 ** f1 > 1", {"f0": 10.0, "f1": 10**6}),
            ("f0 == f1", {"f0": 2.0**60, "f1": 2**60}),
            ("f0 > f1", {"f0": 1e23, "f1": 99999999999999995000000}),
            ("f0 in [1, true, 0.1]", {"f0": 1.0}),
            ("f1 in [1, true, 0.1]", {"f1": 1}),
            ("f0 == inf", {"f0": float("inf")}),
            ("-f0 < 0", {"f0": -0.0}),
            ("f2 =~ 'a'", {"f2": "ba"}),
            ("f2 =~~ 'a'", {"f2": "ba"}),
            ("(f3 ?? 'x') == 'x'", {"f3": None}),
            ("f4 > $now - t'P90D'", {"f4": NOW - datetime.timedelta(days=90)}),
            ("f5[9] > 1", {"f5": [1, 2]}),
            ("[x * 2 for x in f5 if x > 1].length == 1", {"f5": [1, 2]}),
            ("f0.to_str == '1.0'", {"f0": 1.0}),
            ("(f0 * 1e300 * 1e300).ceiling > 1", {"f0": 1e300}),
            ("$range(f1).length > 0", {"f1": 10**9}),
            ("(f0 >= f0 ? (f6 ?? 0) : f0).to_str == '0'", {"f0": 1.5, "f6": None}),
            ("((f7 ?? 1.0) + (f7 ?? 1.0)).to_str == '2.0'", {"f7": None}),
            ("((f7 ?? 1.0) - 2).to_str == '-1.0'", {"f7": None}),
            ("(-(f6 ?? 0)).to_str == '0'", {"f6": None}),
            ("[(f6 ?? 0).to_str for x in f5] == ['0']", {"f5": [1], "f6": None}),
            ("[(f6 ?? 0) for x in f5][0].to_str == '0'", {"f5": [1], "f6": None}),
            ("f8&['a'] > 3", {"f8": {}}),
            ("f8['b'] > 1", {"f8": {"a": 2}}),
            ("f8[f2] > 1", {"f8": {"a": 2}, "f2": "a"}),
            ("'x' in f8", {"f8": {"x": 1}}),
            ("'a' in f9 and 'b' not in f9", {"f9": ["a"]}),
            ("null in f9", {"f9": ["a"]}),
            ("f2 in f9", {"f9": ["a"], "f2": "a"}),
            ("1.5 in f5", {"f5": [1, 2]}),
            ("1.0 in f5", {"f5": [1, 2]}),
            ("1152921504606846976 in f5", {"f5": [2**60]}),
            ("f9[5] == 'a'", {"f9": ["a"]}),
            ("f9[-1] == 'a'", {"f9": ["b", "a"]}),
            ("(f9&[5] ?? 'z') == 'z'", {"f9": ["a"]}),
            ("(f10 & {'a', 'c'}).length == 1", {"f10": ["a", "b"]}),
            ("'b' in (f10 ^ {'a', 'b'})", {"f10": ["a", "b"]}),
            ("(f3&.as_lower ?? '') == 'x'", {"f3": "X"}),
            ("(f3&.length ?? 0) > 0", {"f3": None}),
            ("f2.is_empty and f9.is_empty", {"f2": "", "f9": []}),
            ("'x' in f2", {"f2": "axe"}),
            ("(f2 + 'b') == 'ab'", {"f2": "a"}),
            ("0.1 in f11 or 1e300 in f11", {"f11": [0.1, 1e300]}),
            ("1.5 in f11 and f0 in f11", {"f11": [1.5], "f0": 1.5}),
            ("[x for x in f5 if x > 1].length == 1", {"f5": list(range(100_001))}),
            ("[x for x in f5 if f5[x] > 1].length > 1", {"f5": [1, 2, 3, 4, 5]}),
        ],
    )
    def test_edge_cases(self, text: str, snapshot: dict[str, Any]) -> None:
        """Cases where a native shortcut would differ from decimal semantics: the compiler keeps those."""
        schema = RandomSchema(
            {
                "f0": "float",
                "f1": "int",
                "f2": "str",
                "f3": "str | None",
                "f4": "datetime",
                "f5": "list[int]",
                "f6": "float | None",
                "f7": "int | None",
                "f8": "dict[str, int]",
                "f9": "list[str]",
                "f10": "set[str]",
                "f11": "set[float]",
            }
        )
        evaluation_state.steps = 0  # a case before may have spent the whole budget
        Rule(text, context=RuleLanguage(schema.schema).context)
        check_case(schema, text, [snapshot], [frozenset()])


class TestCompiledCatalogs:
    @settings(
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow, HealthCheck.data_too_large]
    )
    @given(st.data())
    def test_compiled_catalog_equals_interpreted(self, data: st.DataObject) -> None:
        """Whole catalogs: the compiled evaluator assigns the interpreter's tags and reports its errors."""
        random_schema = data.draw(schemas())
        texts = data.draw(st.lists(rules_for(random_schema), min_size=1, max_size=5))
        definitions = []
        language = RuleLanguage(random_schema.schema)
        for index, text in enumerate(texts):
            parsed, problems = language.parse(text)
            if parsed is None or problems or parsed.dependencies:
                continue
            group = data.draw(st.sampled_from([None, "g"]))
            definitions.append({"key": f"t{index}", "rule": text, "group": group, "priority": index})
        assume(definitions)
        catalog = Catalog(definitions, random_schema.schema)
        compiled, interpreted = Evaluator(catalog), Evaluator(catalog, compiled=False)
        for _ in range(SNAPSHOTS_PER_RULE):
            raw = data.draw(raw_snapshots(random_schema))
            # manual tags are tags of the catalog (evaluate refuses others)
            manual = data.draw(st.frozensets(st.sampled_from([str(d["key"]) for d in definitions])))
            first = compiled.evaluate(raw, now=NOW, tags=manual)
            second = interpreted.evaluate(raw, now=NOW, tags=manual)
            assert first.tags == second.tags, (definitions, raw)
            assert dict(first.errors) == dict(second.errors), (definitions, raw)

    def test_retail_pack_agrees(self) -> None:
        """The retail pack, compiled and interpreted, on generated customers."""
        from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

        catalog = load_catalog()
        compiled, interpreted = Evaluator(catalog), Evaluator(catalog, compiled=False)
        assert not compiled.interpreted
        for customer in generate_customers(300 if not LONG else 20_000, seed=21):
            first = compiled.evaluate(customer, now=REFERENCE_NOW)
            second = interpreted.evaluate(customer, now=REFERENCE_NOW)
            assert (first.tags, dict(first.errors)) == (second.tags, dict(second.errors))


class TestInterpretedFallback:
    def test_rules_left_to_the_interpreter_still_run(self) -> None:
        """A rule the compiler does not handle runs interpreted inside the compiled catalog, identically."""
        catalog = Catalog(
            [
                {"key": "qq", "rule": "email =~ '([a-z]+)@qq' and $re_groups[0] == 'li'"},
                {"key": "after", "rule": "'qq' in tags and n > 1"},
            ],
            {"email": "str", "n": "int"},
        )
        compiled, interpreted = Evaluator(catalog), Evaluator(catalog, compiled=False)
        assert set(compiled.interpreted) == {"qq"}
        for snapshot in (
            {"email": "li@qq.com", "n": 2},
            {"email": "wang@qq.com", "n": 2},
            {"email": 3, "n": 2},
        ):
            first = compiled.evaluate(snapshot, now=NOW, tags={"after"})
            second = interpreted.evaluate(snapshot, now=NOW, tags={"after"})
            assert (first.tags, dict(first.errors)) == (second.tags, dict(second.errors))
        assert compiled.evaluate({"email": "li@qq.com", "n": 2}, now=NOW).tags == {"qq", "after"}
