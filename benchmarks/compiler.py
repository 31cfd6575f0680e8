"""Compiled evaluation against rule-engine's interpreter and hand-written Python.

* a suite of single rules (comparisons, membership in lists, sets and dicts, set operators, dict
  lookups, text attributes and regexes, nullable fields, nested model paths): the compiled predicate,
  ``Evaluator.evaluate`` on a one-tag catalog (dict and pydantic snapshots),
  ``rule_engine.Rule.matches`` and a hand-written lambda, side by side in interleaved rounds;
* a five-tag catalog: whole ``Evaluator.evaluate`` calls against the five ``Rule.matches`` calls;
* the retail pack over generated customers: customers per second through ``Evaluator.evaluate`` on
  dict snapshots, compiled and interpreted;
* loading, validating and compiling a catalog of 1,000 generated tags.
"""

from __future__ import annotations

import datetime
import functools
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

from rule_engine import Rule

from benchmarks._timing import interleaved
from tagrules import Catalog, Evaluator, Schema
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog
from tagrules.rules import RuleLanguage
from tagrules.rules._language import Scope, evaluation_state
from tagrules.rules.to_python import compile_rule

__all__ = ["run"]

NOW = REFERENCE_NOW
NINETY_DAYS = datetime.timedelta(days=90)
EMAIL = re.compile(r"^[a-z0-9._]+@(qq|163)\.com$")
QQ = re.compile(r"@qq\.com$")


def _snapshot_model() -> type[Any]:
    from pydantic import BaseModel

    class Order(BaseModel):
        amount: float

    class Address(BaseModel):
        city: str
        district: str

    class Profile(BaseModel):
        level: int
        address: Address

    class Snapshot(BaseModel):
        age: int
        age_reported: int | None
        city_tier: str
        orders_30d: int
        spend_365d: float
        email: str
        last_order_at: datetime.datetime
        orders: list[Order]
        categories: list[str]
        brands: set[str]
        wishlist: set[str]
        category_views: dict[str, int]
        coupon: float | None
        nickname: str | None
        profile: Profile

    return Snapshot


SNAPSHOT: dict[str, Any] = {
    "age": 30,
    "age_reported": None,
    "city_tier": "tier2",
    "orders_30d": 4,
    "spend_365d": 150000.0,
    "email": "li.wei@qq.com",
    "last_order_at": NOW - datetime.timedelta(days=100),
    "orders": [{"amount": amount} for amount in (120.0, 800.0, 35.5, 990.0, 610.0)],
    "categories": ["food", "books", "electronics", "toys"],
    "brands": {"apple", "xiaomi", "lining"},
    "wishlist": {"huawei", "xiaomi"},
    "category_views": {"electronics": 7, "books": 2, "beauty": 0},
    "coupon": 7.5,
    "nickname": "LiWei",
    "profile": {"level": 3, "address": {"city": "Beijing", "district": "Chaoyang"}},
}
TAGS = {"spend_high"}

Hand = Callable[[dict[str, Any], datetime.datetime, set[str]], bool]

#: (name, rule, the same test written by hand in Python)
SUITE: list[tuple[str, str, Hand]] = [
    ("one comparison", "spend_365d >= 100000", lambda s, now, tags: s["spend_365d"] >= 100000),
    (
        "five-clause AND with an in list",
        "age >= 26 and age <= 35 and city_tier in ['tier1', 'tier2'] and orders_30d >= 1"
        " and spend_365d >= 30000",
        lambda s, now, tags: (
            s["age"] >= 26
            and s["age"] <= 35
            and s["city_tier"] in ("tier1", "tier2")
            and s["orders_30d"] >= 1
            and s["spend_365d"] >= 30000
        ),
    ),
    (
        "regex",
        r"email =~ '^[a-z0-9._]+@(qq|163)\.com$'",
        lambda s, now, tags: EMAIL.match(s["email"]) is not None,
    ),
    (
        "90-day window against $now",
        "last_order_at >= $now - t'P90D'",
        lambda s, now, tags: s["last_order_at"] >= now - NINETY_DAYS,
    ),
    (
        "$now minus a field",
        "$now - last_order_at > t'P90D'",
        lambda s, now, tags: now - s["last_order_at"] > NINETY_DAYS,
    ),
    (
        "nullable int with ??",
        "(age_reported ?? 0) >= 18",
        lambda s, now, tags: (s["age_reported"] if s["age_reported"] is not None else 0) >= 18,
    ),
    (
        "nullable float with ??",
        "(coupon ?? 0) > 5",
        lambda s, now, tags: (s["coupon"] if s["coupon"] is not None else 0) > 5,
    ),
    (
        "comprehension over orders",
        "[o for o in orders if o.amount > 500].length >= 2",
        lambda s, now, tags: sum(1 for order in s["orders"] if order["amount"] > 500) >= 2,
    ),
    (
        "tag dependency",
        "'spend_high' in tags and orders_30d >= 3",
        lambda s, now, tags: "spend_high" in tags and s["orders_30d"] >= 3,
    ),
    (
        "list membership",
        "'electronics' in categories",
        lambda s, now, tags: "electronics" in s["categories"],
    ),
    (
        "list membership and .length",
        "'electronics' in categories and categories.length > 2",
        lambda s, now, tags: "electronics" in s["categories"] and len(s["categories"]) > 2,
    ),
    (
        "list not in",
        "'garden' not in categories",
        lambda s, now, tags: "garden" not in s["categories"],
    ),
    ("list .length", "categories.length >= 3", lambda s, now, tags: len(s["categories"]) >= 3),
    ("set membership", "'apple' in brands", lambda s, now, tags: "apple" in s["brands"]),
    (
        "set intersection",
        "(brands & wishlist).length > 0",
        lambda s, now, tags: len(s["brands"] & s["wishlist"]) > 0,
    ),
    (
        "set union with a literal",
        "'huawei' in (brands | {'huawei', 'oppo'})",
        lambda s, now, tags: "huawei" in (s["brands"] | {"huawei", "oppo"}),
    ),
    (
        "dict lookup",
        "category_views['electronics'] >= 3",
        lambda s, now, tags: s["category_views"]["electronics"] >= 3,
    ),
    (
        "dict safe lookup with ??",
        "(category_views&['toys'] ?? 0) >= 1",
        lambda s, now, tags: (v if (v := s["category_views"].get("toys")) is not None else 0) >= 1,
    ),
    (
        "dict key membership",
        "'beauty' in category_views",
        lambda s, now, tags: "beauty" in s["category_views"],
    ),
    (
        "string .as_lower",
        "city_tier.as_lower == 'tier2'",
        lambda s, now, tags: s["city_tier"].lower() == "tier2",
    ),
    (
        "regex search =~~",
        r"email =~~ '@qq\.com$'",
        lambda s, now, tags: QQ.search(s["email"]) is not None,
    ),
    (
        "nullable string with &. and ??",
        "(nickname&.as_lower ?? '') == 'liwei'",
        lambda s, now, tags: (s["nickname"].lower() if s["nickname"] is not None else "") == "liwei",
    ),
    (
        "nested model path",
        "profile.address.city == 'Beijing' and profile.level >= 2",
        lambda s, now, tags: s["profile"]["address"]["city"] == "Beijing" and s["profile"]["level"] >= 2,
    ),
]

#: The five rules of the catalog measured as a whole (issue 19's table).
FIVE_TAGS = [
    "list membership",
    "list membership and .length",
    "nullable float with ??",
    "five-clause AND with an in list",
    "$now minus a field",
]


def _matches(rule: Rule, scope: Scope) -> bool:
    """``Rule.matches`` with a fresh step budget, as the evaluator gives each rule."""
    evaluation_state.steps = 0
    return rule.matches(scope)


#: The tag the "tag dependency" rule depends on, defined beside it in that rule's catalog.
SPEND_HIGH = "spend_365d >= 100000"


def _one_tag_evaluator(schema: Schema, text: str) -> Evaluator:
    definitions = [{"key": "t", "rule": text}]
    if "tags" in text:
        definitions.insert(0, {"key": "spend_high", "rule": SPEND_HIGH})
    return Evaluator(Catalog(definitions, schema))


def _interpreted(rule: Rule, scope: Scope, dependency: Rule | None) -> bool:
    """``Rule.matches`` of the rule, after the rule of the tag it depends on when it has one."""
    if dependency is not None and _matches(dependency, scope):
        scope.tags.add("spend_high")
    return _matches(rule, scope)


def rule_suite(calls: int, rounds: int) -> list[dict[str, Any]]:
    """Each rule, nanoseconds per call: the compiled rule function and rule-engine's ``Rule.matches``
    on the same values read by the schema, ``Evaluator.evaluate`` of a one-tag catalog on the raw
    snapshot (a dict, and a pydantic model), and the test written by hand on the raw dict."""
    model = _snapshot_model()
    schema = Schema.from_model(model)
    instance = model.model_validate(SNAPSHOT)
    language = RuleLanguage(schema)
    values, problems = schema.read(SNAPSHOT)
    results = []
    for name, text, hand in SUITE:
        rule = Rule(text, context=language.context)
        function = compile_rule(rule.statement, language.context, schema.fields).function
        evaluator = _one_tag_evaluator(schema, text)
        # the tag dependency's catalog holds the tag it depends on: rule-engine runs both rules
        dependency = Rule(SPEND_HIGH, context=language.context) if "tags" in text else None
        scope = Scope(values, problems, set())
        evaluation_state.now = NOW
        expected = hand(SNAPSHOT, NOW, TAGS)
        visible = set(TAGS)
        interpreted = _interpreted(rule, scope, dependency)
        assert function(values, problems, visible, NOW) == interpreted == expected, name
        assert ("t" in evaluator.evaluate(SNAPSHOT, now=NOW).tags) == expected, name
        assert ("t" in evaluator.evaluate(instance, now=NOW).tags) == expected, name
        timings = interleaved(
            {
                "compiled": functools.partial(function, values, problems, visible, NOW),
                "evaluate": functools.partial(evaluator.evaluate, SNAPSHOT, NOW),
                "evaluate_model": functools.partial(evaluator.evaluate, instance, NOW),
                "interpreted": functools.partial(
                    _interpreted, rule, Scope(values, problems, set()), dependency
                ),
                "hand": functools.partial(hand, SNAPSHOT, NOW, TAGS),
            },
            calls=calls,
            rounds=rounds,
        )
        results.append(
            {
                "rule": name,
                "text": text,
                "compiled_ns": timings["compiled"],
                "evaluate_ns": timings["evaluate"],
                "evaluate_model_ns": timings["evaluate_model"],
                "rule_engine_ns": timings["interpreted"],
                "hand_ns": timings["hand"],
                "speedup_vs_rule_engine": timings["interpreted"] / timings["compiled"],
                "evaluate_speedup_vs_rule_engine": timings["interpreted"] / timings["evaluate"],
                "evaluate_model_speedup_vs_rule_engine": timings["interpreted"] / timings["evaluate_model"],
                "compiled_vs_hand": timings["compiled"] / timings["hand"],
            }
        )
    return results


def five_tag_catalog(calls: int, rounds: int) -> dict[str, Any]:
    """The five rules of ``FIVE_TAGS`` as one catalog: whole ``Evaluator.evaluate`` calls against
    the five ``Rule.matches`` calls and the five hand-written tests."""
    model = _snapshot_model()
    schema = Schema.from_model(model)
    language = RuleLanguage(schema)
    values, problems = schema.read(SNAPSHOT)
    chosen = [(text, hand) for name, text, hand in SUITE if name in FIVE_TAGS]
    catalog = Catalog([{"key": f"t{index}", "rule": text} for index, (text, _) in enumerate(chosen)], schema)
    evaluator = Evaluator(catalog)
    rules = [Rule(text, context=language.context) for text, _ in chosen]
    hands = [hand for _, hand in chosen]
    scope = Scope(values, problems, set())

    def interpreted() -> list[bool]:
        return [_matches(rule, scope) for rule in rules]

    def by_hand() -> list[bool]:
        return [hand(SNAPSHOT, NOW, set()) for hand in hands]

    evaluation_state.now = NOW
    assigned = evaluator.evaluate(SNAPSHOT, now=NOW).tags
    assert [f"t{index}" in assigned for index in range(len(rules))] == interpreted() == by_hand()
    timings = interleaved(
        {
            "evaluate": functools.partial(evaluator.evaluate, SNAPSHOT, NOW),
            "interpreted": interpreted,
            "hand": by_hand,
        },
        calls=calls,
        rounds=rounds,
    )
    return {
        "tags": len(rules),
        "rules": [text for text, _ in chosen],
        "evaluate_ns": timings["evaluate"],
        "rule_engine_ns": timings["interpreted"],
        "hand_ns": timings["hand"],
        "speedup_vs_rule_engine": timings["interpreted"] / timings["evaluate"],
    }


def catalog_throughput(customers: int, interpreted_sample: int, rounds: int) -> dict[str, Any]:
    """The retail pack over generated dict customers: customers per second, compiled and interpreted."""
    catalog = load_catalog()
    population = list(generate_customers(customers, seed=1))
    compiled, interpreted = Evaluator(catalog), Evaluator(catalog, compiled=False)
    compiled_rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        for customer in population:
            compiled.evaluate(customer, now=NOW)
        compiled_rates.append(customers / (time.perf_counter() - started))
    sample = population[:interpreted_sample]
    started = time.perf_counter()
    for customer in sample:
        interpreted.evaluate(customer, now=NOW)
    interpreted_rate = interpreted_sample / (time.perf_counter() - started)
    compiled_rate = statistics.median(compiled_rates)
    return {
        "tags": len(catalog),
        "customers": customers,
        "compiled_customers_per_second": compiled_rate,
        "compiled_rounds": compiled_rates,
        "interpreted_customers_per_second": interpreted_rate,
        "interpreted_sample": interpreted_sample,
        "speedup": compiled_rate / interpreted_rate,
    }


def generated_catalog(count: int) -> str:
    """A catalog of ``count`` tags over the retail schema, in the shapes tag authors write."""
    lines = ['schema: "tagrules.packs.retail.model:Customer"', "tags:"]
    shapes = [
        "spend_365d >= {n}000",
        "orders_30d >= {k} and orders_90d <= {m}",
        "(age ?? 0) >= {a} and (age ?? 0) <= {b}",
        "city_tier in ['tier1', 'tier2'] and spend_365d > {n}00",
        "(last_order_at ?? registered_at) >= $now - t'P{d}D'",
        "[v for v in category_views_30d.values if v >= {k}].length > 0",
        "(category_spend_365d&['beauty'] ?? 0) >= {n}00 or views_new_30d >= {k}",
        "gender == 'female' and occupation == 'teacher' and complaints_90d < {k}",
    ]
    for index in range(count):
        shape = shapes[index % len(shapes)]
        numbers = {"n": index % 97 + 1, "k": index % 5 + 1, "m": index % 7 + 2, "d": index % 300 + 1}
        rule = shape.format(a=18 + index % 20, b=40 + index % 30, **numbers)
        if index % 10 == 9 and index >= 20:
            rule = f"'tag_{index - 10}' in tags and {rule}"
        entry = f'  - key: tag_{index}\n    rule: "{rule}"'
        if index % 10 < 3:
            entry += f"\n    group: tier_{index // 10}\n    priority: {index % 10}"
        lines.append(entry)
    return "\n".join(lines) + "\n"


def catalog_load(count: int, rounds: int) -> dict[str, Any]:
    """Seconds to load, validate and compile a catalog of ``count`` generated tags."""
    text = generated_catalog(count)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        catalog = Catalog.loads(text, source="generated.yaml")
        Evaluator(catalog)
        times.append(time.perf_counter() - started)
    return {"tags": count, "seconds_median": statistics.median(times), "seconds_rounds": times}


def run(quick: bool = False) -> dict[str, Any]:
    """Every compiler benchmark; ``quick`` for a smoke run with small numbers."""
    # many short rounds: a busy moment of a shared machine spoils a few of them, not the median
    rules = rule_suite(calls=300 if quick else 1_000, rounds=3 if quick else 25)
    five = five_tag_catalog(calls=300 if quick else 1_000, rounds=3 if quick else 25)
    throughput = catalog_throughput(
        customers=2_000 if quick else 100_000,
        interpreted_sample=200 if quick else 2_000,
        rounds=1 if quick else 3,
    )
    load = catalog_load(100 if quick else 1_000, rounds=1 if quick else 3)

    def median(column: str) -> float:
        return float(statistics.median(row[column] for row in rules))

    return {
        "rules": rules,
        "median_speedup_vs_rule_engine": median("speedup_vs_rule_engine"),
        "median_compiled_vs_hand": median("compiled_vs_hand"),
        "max_compiled_vs_hand": max(row["compiled_vs_hand"] for row in rules),
        "median_evaluate_speedup_vs_rule_engine": median("evaluate_speedup_vs_rule_engine"),
        "min_evaluate_speedup_vs_rule_engine": min(row["evaluate_speedup_vs_rule_engine"] for row in rules),
        "median_evaluate_model_speedup_vs_rule_engine": median("evaluate_model_speedup_vs_rule_engine"),
        "five_tag_catalog": five,
        "retail_pack": throughput,
        "catalog_load": load,
    }


def table(report: dict[str, Any]) -> str:
    """The report as a text table (nanoseconds per call; speed-ups over rule-engine's ``Rule.matches``)."""
    header = f"{'rule':32} {'compiled':>9} {'evaluate':>9} {'pydantic':>9} {'rule-engine':>12} {'hand':>7}"
    lines = [header + f" {'compiled':>9} {'evaluate':>9} {'pydantic':>9} {'vs hand':>8}"]
    for row in report["rules"]:
        lines.append(
            f"{row['rule']:32} {row['compiled_ns']:9.0f} {row['evaluate_ns']:9.0f} "
            f"{row['evaluate_model_ns']:9.0f} {row['rule_engine_ns']:12.0f} {row['hand_ns']:7.0f} "
            f"{row['speedup_vs_rule_engine']:8.1f}x {row['evaluate_speedup_vs_rule_engine']:8.1f}x "
            f"{row['evaluate_model_speedup_vs_rule_engine']:8.1f}x {row['compiled_vs_hand']:7.2f}x"
        )
    lines.append(
        f"compiled: median {report['median_speedup_vs_rule_engine']:.1f}x faster than rule-engine, "
        f"{report['median_compiled_vs_hand']:.2f}x the time of hand-written Python "
        f"(at most {report['max_compiled_vs_hand']:.2f}x)"
    )
    lines.append(
        f"evaluate, one-tag catalog: median {report['median_evaluate_speedup_vs_rule_engine']:.1f}x "
        f"(at least {report['min_evaluate_speedup_vs_rule_engine']:.1f}x); pydantic snapshots: median "
        f"{report['median_evaluate_model_speedup_vs_rule_engine']:.1f}x"
    )
    five = report["five_tag_catalog"]
    lines.append(
        f"five-tag catalog: evaluate {five['evaluate_ns']:.0f} ns, the five Rule.matches "
        f"{five['rule_engine_ns']:.0f} ns, by hand {five['hand_ns']:.0f} ns "
        f"({five['speedup_vs_rule_engine']:.1f}x)"
    )
    pack = report["retail_pack"]
    lines.append(
        f"retail pack ({pack['tags']} tags, {pack['customers']:,} customers): "
        f"{pack['compiled_customers_per_second']:,.0f} customers/s compiled, "
        f"{pack['interpreted_customers_per_second']:,.0f} interpreted ({pack['speedup']:.0f}x)"
    )
    load = report["catalog_load"]
    lines.append(
        f"catalog of {load['tags']:,} tags: loaded, validated and compiled in {load['seconds_median']:.2f} s"
    )
    return "\n".join(lines)
