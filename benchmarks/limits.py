"""Catalogs at the documented limits: load, static checks, compilation and evaluation, time and memory.

Each scenario runs in a fresh interpreter (``python -m benchmarks.limits SCENARIO N``), so that its
peak resident memory is its own; the parent times nothing itself and reads the child's figures.

* ``tags``: ``N`` tags (``MAX_TAGS`` in the full run), rules of about 100 characters reading five
  fields, so that the rules reach ``MAX_RULE_TEXT`` in all; half the tags in 50 exclusive groups;
* ``tiers``: one exclusive group of ``N`` one-unit tiers of a float field (1,000 and ``MAX_TAGS``).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any

from tagrules import Catalog, Evaluator
from tagrules.analysis import check_catalog
from tagrules.catalog import MAX_RULE_TEXT, MAX_TAGS

__all__ = ["run", "table"]

FIELDS = {f"f{index}": "float" for index in range(20)}


def _rule(index: int) -> str:
    parts = [f"f{(index + step) % 20} >= {(index * 7 + step) % 1000}.5" for step in range(5)]
    return " and ".join(parts) + (" or f0 < 0" * 2)


def _definitions(scenario: str, count: int) -> list[dict[str, Any]]:
    if scenario == "tiers":
        return [
            {
                "key": f"t{index}",
                "rule": f"f0 >= {index} and f0 < {index + 1}",
                "group": "g",
                "priority": index,
            }
            for index in range(count)
        ]
    return [
        {
            "key": f"t{index}",
            "rule": _rule(index),
            "group": f"g{index % 50}" if index % 2 else None,
            "priority": index,
        }
        for index in range(count)
    ]


def measure(scenario: str, count: int) -> dict[str, Any]:
    """The figures of one scenario, in this interpreter."""
    definitions = _definitions(scenario, count)
    figures: dict[str, Any] = {
        "scenario": scenario,
        "tags": count,
        "rule_characters": sum(len(definition["rule"]) for definition in definitions),
    }
    started = time.perf_counter()
    catalog = Catalog(definitions, FIELDS)
    figures["load_s"] = time.perf_counter() - started
    started = time.perf_counter()
    figures["findings"] = len(check_catalog(catalog))
    figures["checks_s"] = time.perf_counter() - started
    started = time.perf_counter()
    evaluator = Evaluator(catalog)
    figures["compile_s"] = time.perf_counter() - started
    snapshot = dict.fromkeys(FIELDS, 500.0)
    evaluator.evaluate(snapshot)
    started = time.perf_counter()
    for _ in range(20):
        evaluator.evaluate(snapshot)
    figures["evaluate_ms"] = (time.perf_counter() - started) / 20 * 1000
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def _in_child(scenario: str, count: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.limits", scenario, str(count)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.splitlines()[-1]))


def run(quick: bool = False) -> dict[str, Any]:
    """Every scenario; ``quick`` for a smoke run at a tenth of the limits."""
    scale = 10 if quick else 1
    return {
        "limits": {"tags": MAX_TAGS, "rule_characters": MAX_RULE_TEXT},
        "scenarios": [
            _in_child("tags", MAX_TAGS // scale),
            _in_child("tiers", 1_000 // scale),
            _in_child("tiers", MAX_TAGS // scale),
        ],
    }


def table(report: dict[str, Any]) -> str:
    """The report as a text table."""
    lines = [
        f"{'scenario':9} {'tags':>6} {'rule chars':>11} {'load s':>7} {'checks s':>9} {'compile s':>10} "
        f"{'evaluate ms':>12} {'peak MB':>8}"
    ]
    for row in report["scenarios"]:
        lines.append(
            f"{row['scenario']:9} {row['tags']:6,} {row['rule_characters']:11,} {row['load_s']:7.2f} "
            f"{row['checks_s']:9.2f} {row['compile_s']:10.2f} {row['evaluate_ms']:12.2f} "
            f"{row['peak_rss_mb']:8.0f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
