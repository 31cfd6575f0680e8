"""The cost of ``valid_until`` over a plain evaluation of the retail pack, side by side.

Generated retail customers, evaluated by the compiled :class:`tagrules.Evaluator` in interleaved
rounds: a plain ``evaluate``, and ``evaluate(..., valid_until=True)`` (the instants the pack's
comparisons with ``$now`` turn on each customer, then evaluations there until the tags differ).
"""

from __future__ import annotations

from typing import Any

from benchmarks._timing import interleaved
from tagrules import Evaluator
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

__all__ = ["run", "table"]


def run(quick: bool = False) -> dict[str, Any]:
    """Median microseconds per customer of both, and their ratio."""
    customers = list(generate_customers(200 if quick else 2_000, seed=3, now=REFERENCE_NOW))
    evaluator = Evaluator(load_catalog())

    def plain() -> None:
        for customer in customers:
            evaluator.evaluate(customer, REFERENCE_NOW)

    def with_valid_until() -> None:
        for customer in customers:
            evaluator.evaluate(customer, REFERENCE_NOW, valid_until=True)

    medians = interleaved(
        {"plain": plain, "valid_until": with_valid_until}, calls=1, rounds=3 if quick else 15
    )
    lapsing = sum(
        evaluator.evaluate(customer, REFERENCE_NOW, valid_until=True).valid_until is not None
        for customer in customers
    )
    return {
        "customers": len(customers),
        "plain_us": medians["plain"] / len(customers) / 1000,
        "valid_until_us": medians["valid_until"] / len(customers) / 1000,
        "ratio": medians["valid_until"] / medians["plain"],
        "lapsing": lapsing,
    }


def table(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"{report['customers']:,} retail customers, compiled evaluator, median of interleaved rounds",
            f"| evaluate | {report['plain_us']:.1f} µs per customer |",
            f"| evaluate(..., valid_until=True) | {report['valid_until_us']:.1f} µs per customer |",
            f"| ratio | {report['ratio']:.2f}x |",
            f"customers whose tags lapse by time: {report['lapsing']:,}",
        ]
    )
