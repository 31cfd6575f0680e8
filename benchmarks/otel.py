"""What the optional OpenTelemetry metrics cost: ``Tagger.apply_many`` with the ``otel`` extra and a
no-op meter, beside the same run without it.

20,000 retail customers (``--quick``: 2,000) through ``apply_many`` into a :class:`MemoryStore` (so
that the store's own cost hides nothing of the metrics'): a first run into an empty store (every
customer gains its tags: the change counters are busiest), then a second run with every 20th
customer changed. Two taggers take turns, round after round, in one process: one with the
instruments of OpenTelemetry's API as installed (no SDK configured: the API's no-op meter, which is
what a service gets until it sets a meter provider), one with the instruments of a process without
the package (``tagrules._metrics.NO_METRICS``, what ``instruments()`` gives when the import fails).
Medians of the rounds (the order of the two flips from one round to the next), customers per
second, and the ratio.

Run with ``python -m benchmarks otel``.
"""

from __future__ import annotations

import datetime
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from tagrules import MemoryStore, Tagger
from tagrules._metrics import NO_METRICS, Metrics, instruments
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

__all__ = ["run", "table"]

ROUNDS = 15


def _changed(customer: dict[str, Any]) -> dict[str, Any]:
    return {**customer, "spend_365d": customer["spend_365d"] * 3 + 1000.0, "orders_30d": 9}


def _alternating(candidates: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median nanoseconds of each candidate's call; the order of the candidates flips from one round
    to the next, so that neither always runs first (after a collection) or second."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for name in names:
        candidates[name]()
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            gc.collect()
            started = time.perf_counter_ns()
            candidates[name]()
            samples[name].append(time.perf_counter_ns() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def run(quick: bool = False) -> dict[str, Any]:
    count = 2_000 if quick else 20_000
    rounds = 3 if quick else ROUNDS
    catalog = load_catalog()
    customers = list(generate_customers(count, seed=11))
    first = [(customer["id"], customer) for customer in customers]
    second = [
        (customer["id"], _changed(customer) if index % 20 == 0 else customer)
        for index, customer in enumerate(customers)
    ]
    api = instruments()
    if not api.enabled:
        raise SystemExit("the otel benchmark needs opentelemetry-api: pip install 'tagrules[otel]'")
    from opentelemetry import metrics

    provider = type(metrics.get_meter_provider()).__name__

    def tagger_with(chosen: Metrics) -> Tagger:
        tagger = Tagger(catalog, MemoryStore())
        tagger._metrics = chosen  # what Tagger() finds with or without the package
        return tagger

    def first_run(chosen: Metrics) -> Any:
        def go() -> None:
            tagger_with(chosen).apply_many(first, now=REFERENCE_NOW)

        return go

    def second_run(chosen: Metrics) -> Any:
        tagger = tagger_with(chosen)
        tagger.apply_many(first, now=REFERENCE_NOW)
        runs = [0]

        def go() -> None:
            # every 20th customer changes, back and forth from one run to the next
            runs[0] += 1
            items = second if runs[0] % 2 else first
            tagger.apply_many(items, now=REFERENCE_NOW + datetime.timedelta(days=runs[0]))

        return go

    firsts = _alternating({"without": first_run(NO_METRICS), "otel": first_run(api)}, rounds)
    seconds = _alternating({"without": second_run(NO_METRICS), "otel": second_run(api)}, rounds)
    # the instruments' own cost, without the noise of whole runs: one chunk of a first run's diffs
    measuring = tagger_with(api)
    diffs = [
        measuring.apply(customer_id, snapshot, now=REFERENCE_NOW) for customer_id, snapshot in first[:1000]
    ]
    calls = 200
    started = time.perf_counter_ns()
    for _ in range(calls):
        measuring._measure("apply_many", diffs, 0.01)
    per_chunk_us = (time.perf_counter_ns() - started) / calls / 1000
    report: dict[str, Any] = {
        "customers": count,
        "rounds": rounds,
        "meter_provider": provider,
        "instruments_per_chunk_us": per_chunk_us,
        "changes_per_chunk": sum(len(diff.added) + len(diff.removed) for diff in diffs),
        "runs": {},
    }
    for name, medians in (("first run", firsts), ("second run (5% changed)", seconds)):
        report["runs"][name] = {
            "without_per_second": count / (medians["without"] / 1e9),
            "otel_per_second": count / (medians["otel"] / 1e9),
            "ratio": medians["without"] / medians["otel"],
        }
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        f"apply_many of {report['customers']:,} retail customers into a MemoryStore, median of "
        f"{report['rounds']} interleaved rounds; meter provider: {report['meter_provider']}",
        "| run | without the extra | otel extra, no-op meter | throughput ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, figures in report["runs"].items():
        lines.append(
            f"| {name} | {figures['without_per_second']:,.0f}/s | {figures['otel_per_second']:,.0f}/s | "
            f"{figures['ratio']:.3f} |"
        )
    lines.append(
        f"instruments per chunk of 1,000 first-run customers ({report['changes_per_chunk']:,} changes): "
        f"{report['instruments_per_chunk_us']:,.0f} µs"
    )
    return "\n".join(lines)
