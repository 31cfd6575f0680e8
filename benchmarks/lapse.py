"""The cost of ``valid_until`` over a plain evaluation of the retail pack, side by side.

Generated retail customers, evaluated by the compiled :class:`tagrules.Evaluator` in interleaved
rounds: a plain ``evaluate``, and ``evaluate(..., valid_until=True)`` (the pack's comparisons with
``$now`` turn at instants computed inside the catalog's evaluation function; the first is confirmed
by evaluating the unit holding the comparison there). Each round is timed on the wall clock and in
the process's CPU time: on a machine loaded by others the CPU time is the steadier figure.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from tagrules import Evaluator
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

__all__ = ["run", "table"]


def _rounds(candidates: dict[str, Callable[[], None]], rounds: int) -> dict[str, tuple[float, float]]:
    """Per candidate, the median wall-clock and CPU nanoseconds of one call, in interleaved rounds."""
    samples: dict[str, tuple[list[int], list[int]]] = {name: ([], []) for name in candidates}
    for function in candidates.values():
        function()
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, function in candidates.items():
                wall, cpu = time.perf_counter_ns(), time.process_time_ns()
                function()
                samples[name][1].append(time.process_time_ns() - cpu)
                samples[name][0].append(time.perf_counter_ns() - wall)
    finally:
        if was_enabled:
            gc.enable()
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in samples.items()}


def run(quick: bool = False) -> dict[str, Any]:
    """Median microseconds per customer of both, and their ratios (wall clock and CPU time)."""
    customers = list(generate_customers(200 if quick else 2_000, seed=3, now=REFERENCE_NOW))
    evaluator = Evaluator(load_catalog())

    def plain() -> None:
        for customer in customers:
            evaluator.evaluate(customer, REFERENCE_NOW)

    def with_valid_until() -> None:
        for customer in customers:
            evaluator.evaluate(customer, REFERENCE_NOW, valid_until=True)

    medians = _rounds({"plain": plain, "valid_until": with_valid_until}, rounds=3 if quick else 21)
    lapsing = sum(
        evaluator.evaluate(customer, REFERENCE_NOW, valid_until=True).valid_until is not None
        for customer in customers
    )
    count = len(customers)
    (plain_wall, plain_cpu), (until_wall, until_cpu) = medians["plain"], medians["valid_until"]
    return {
        "customers": count,
        "plain_us": plain_wall / count / 1000,
        "valid_until_us": until_wall / count / 1000,
        "ratio": until_wall / plain_wall,
        "plain_cpu_us": plain_cpu / count / 1000,
        "valid_until_cpu_us": until_cpu / count / 1000,
        "cpu_ratio": until_cpu / plain_cpu,
        "lapsing": lapsing,
    }


def table(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"{report['customers']:,} retail customers, compiled evaluator, medians of interleaved rounds",
            "| measure | wall clock | CPU time |",
            f"| evaluate | {report['plain_us']:.1f} µs | {report['plain_cpu_us']:.1f} µs |",
            f"| evaluate(..., valid_until=True) | {report['valid_until_us']:.1f} µs"
            f" | {report['valid_until_cpu_us']:.1f} µs |",
            f"| ratio | {report['ratio']:.2f}x | {report['cpu_ratio']:.2f}x |",
            f"customers whose tags lapse by time: {report['lapsing']:,}",
        ]
    )
