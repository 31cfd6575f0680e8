"""Compiled evaluation against rule-engine's interpreter and hand-written Python.

* a suite of single rules: the compiled predicate, ``rule_engine.Rule.matches`` and a hand-written
  lambda, side by side in interleaved rounds;
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
from tagrules.rules.to_python import compile_predicate

__all__ = ["run"]

NOW = REFERENCE_NOW
NINETY_DAYS = datetime.timedelta(days=90)
EMAIL = re.compile(r"^[a-z0-9._]+@(qq|163)\.com$")

SCHEMA: dict[str, Any] = {
    "age": "int",
    "age_reported": "int | None",
    "city_tier": "str",
    "orders_30d": "int",
    "spend_365d": "float",
    "email": "str",
    "last_order_at": "datetime",
}


def _orders_schema() -> Schema:
    from pydantic import BaseModel

    class Order(BaseModel):
        amount: float

    class Snapshot(BaseModel):
        age: int
        age_reported: int | None
        city_tier: str
        orders_30d: int
        spend_365d: float
        email: str
        last_order_at: datetime.datetime
        orders: list[Order]

    return Schema.from_model(Snapshot)


SNAPSHOT: dict[str, Any] = {
    "age": 30,
    "age_reported": None,
    "city_tier": "tier2",
    "orders_30d": 4,
    "spend_365d": 150000.0,
    "email": "li.wei@qq.com",
    "last_order_at": NOW - datetime.timedelta(days=10),
    "orders": [{"amount": amount} for amount in (120.0, 800.0, 35.5, 990.0, 610.0)],
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
        "nullable field with ??",
        "(age_reported ?? 0) >= 18",
        lambda s, now, tags: (s["age_reported"] if s["age_reported"] is not None else 0) >= 18,
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
]


def _matches(rule: Rule, scope: Scope) -> bool:
    """``Rule.matches`` with a fresh step budget, as the evaluator gives each rule."""
    evaluation_state.steps = 0
    return rule.matches(scope)


def rule_suite(calls: int, rounds: int) -> list[dict[str, Any]]:
    """Each rule: compiled, rule-engine's ``Rule.matches`` and by hand, nanoseconds per call."""
    schema = _orders_schema()
    language = RuleLanguage(schema)
    values, problems = schema.read(SNAPSHOT)
    results = []
    for name, text, hand in SUITE:
        rule = Rule(text, context=language.context)
        predicate = compile_predicate(rule.statement, language.context, schema)
        scope = Scope(values, problems, set(TAGS))
        evaluation_state.now = NOW
        expected = hand(SNAPSHOT, NOW, TAGS)
        assert predicate(SNAPSHOT, NOW, set(TAGS)) == rule.matches(scope) == expected, name
        timings = interleaved(
            {
                "compiled": functools.partial(predicate, SNAPSHOT, NOW, TAGS),
                "interpreted": functools.partial(_matches, rule, scope),
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
                "rule_engine_ns": timings["interpreted"],
                "hand_ns": timings["hand"],
                "speedup_vs_rule_engine": timings["interpreted"] / timings["compiled"],
                "compiled_vs_hand": timings["compiled"] / timings["hand"],
            }
        )
    return results


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
    rules = rule_suite(calls=2_000 if quick else 20_000, rounds=3 if quick else 9)
    throughput = catalog_throughput(
        customers=2_000 if quick else 100_000,
        interpreted_sample=200 if quick else 2_000,
        rounds=1 if quick else 3,
    )
    load = catalog_load(100 if quick else 1_000, rounds=1 if quick else 3)
    return {
        "rules": rules,
        "median_speedup_vs_rule_engine": statistics.median(row["speedup_vs_rule_engine"] for row in rules),
        "median_compiled_vs_hand": statistics.median(row["compiled_vs_hand"] for row in rules),
        "retail_pack": throughput,
        "catalog_load": load,
    }


def table(report: dict[str, Any]) -> str:
    """The report as a text table."""
    header = f"{'rule':34} {'compiled ns':>12} {'rule-engine ns':>15} {'hand ns':>9}"
    lines = [header + f" {'speedup':>9} {'vs hand':>8}"]
    for row in report["rules"]:
        lines.append(
            f"{row['rule']:34} {row['compiled_ns']:12.0f} {row['rule_engine_ns']:15.0f} "
            f"{row['hand_ns']:9.0f} {row['speedup_vs_rule_engine']:8.1f}x {row['compiled_vs_hand']:7.2f}x"
        )
    lines.append(
        f"median: {report['median_speedup_vs_rule_engine']:.1f}x faster than rule-engine, "
        f"{report['median_compiled_vs_hand']:.2f}x the time of hand-written Python"
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
