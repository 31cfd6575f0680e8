"""The impact of a one-threshold change to the retail pack, in one PostgreSQL query, against a count.

The retail customers are loaded into a scratch PostgreSQL database by the push-down benchmark's
loader (:func:`benchmarks.pushdown.load`); then, interleaved round by round, side by side:

* ``count``: :func:`tagrules.count_tags` of the retail pack on the table (one query);
* ``impact``: :func:`tagrules.impact` of the pack against the pack with ``spend_high``'s threshold
  raised from 100,000 to 120,000 — both versions in one query (the old catalog, and over it the tags
  the change can move), the rows grouped by the states that can differ.

``TAGRULES_BENCH_POSTGRES_URL`` names the server (default: the local one); ``TAGRULES_BENCH_IMPACT_ROWS``
the number of customers (default 1,000,000).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import sqlalchemy as sa

from benchmarks.pushdown import NOW, SERVER_URL, TABLE, load, scratch_database
from tagrules import Catalog, count_tags, impact
from tagrules.packs.retail import load_catalog

__all__ = ["run", "table"]

ROUNDS = 3


def raised_threshold(catalog: Catalog) -> Catalog:
    """The catalog with ``spend_high`` at 120,000 instead of 100,000: a one-threshold change."""
    data = catalog.to_data()
    for tag in data["tags"]:
        if tag["key"] == "spend_high":
            tag["rule"] = tag["rule"].replace("100000", "120000")
    return Catalog.from_data(data)


def run(quick: bool = False) -> dict[str, Any]:
    """Load the customers, then time count and impact, alternating."""
    customers = 20_000 if quick else int(os.environ.get("TAGRULES_BENCH_IMPACT_ROWS", 1_000_000))
    old = load_catalog()
    new = raised_threshold(old)
    counts: list[float] = []
    impacts: list[float] = []
    with scratch_database(SERVER_URL) as url:
        engine = sa.create_engine(url)
        try:
            seconds_load = load(engine, old, customers)
            for _ in range(ROUNDS):
                started = time.perf_counter()
                counted = count_tags(old, engine, TABLE, now=NOW, mode="database")
                counts.append(time.perf_counter() - started)
                started = time.perf_counter()
                report = impact(old, new, engine, table=TABLE, now=NOW)
                impacts.append(time.perf_counter() - started)
        finally:
            engine.dispose()
    spend_high = report.tags["spend_high"]
    return {
        "customers": customers,
        "load_seconds": seconds_load,
        "count_seconds": statistics.median(counts),
        "impact_seconds": statistics.median(impacts),
        "ratio": statistics.median(impacts) / statistics.median(counts),
        "count_rounds": counts,
        "impact_rounds": impacts,
        "where": report.where,
        "spend_high": spend_high.to_data(),
        "moved": {key: tag.gained + tag.lost for key, tag in report.tags.items() if tag.moved},
        "before_equals_count": all(report.tags[key].before == n for key, n in counted.counts.items()),
    }


def table(report: dict[str, Any]) -> str:
    rows = [
        f"{report['customers']:,} retail customers in PostgreSQL (load {report['load_seconds']:.1f} s)",
        f"| count of the retail pack (one query) | {report['count_seconds']:.2f} s |",
        f"| impact of spend_high 100,000 -> 120,000 ({report['where']}) | {report['impact_seconds']:.2f} s |",
        f"| ratio impact / count | {report['ratio']:.2f}x |",
        f"rounds: count {[round(s, 2) for s in report['count_rounds']]}, "
        f"impact {[round(s, 2) for s in report['impact_rounds']]}",
        f"spend_high: {report['spend_high']['before']} -> {report['spend_high']['after']}",
        f"rows gained + lost per tag: {report['moved']}",
        f"before counts equal count's: {report['before_equals_count']}",
    ]
    return "\n".join(rows)
