"""Storing tags: ``Tagger.apply_many`` of retail customers into SQLite and PostgreSQL.

* 100,000 customers (``--quick``: 2,000): a first run into an empty store, then a second run of the
  same customers with every 20th customer's data changed (5%), customers per second each;
* 1,000,000 customers (``--quick``: 20,000) streamed from a generator into SQLite by a child process,
  whose peak resident memory is read with ``getrusage(RUSAGE_CHILDREN)``.

PostgreSQL is reached at ``TAGRULES_BENCH_POSTGRES_URL`` (default: the local server); the benchmark
writes under its own table prefix and drops its tables afterwards. Run with
``python -m benchmarks storage``.

``python -m benchmarks.storage removals URL COUNT`` measures a first run of COUNT customers and a
second run with every customer's data changed (most of its tags removed or replaced), customers per
second each, in the store at URL (e.g. MariaDB), under its own table prefix.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy

from tagrules import SQLStore, StoreError, Tagger
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog
from tagrules.stores import store_tables

__all__ = ["run", "table"]

POSTGRES_URL = os.environ.get(
    "TAGRULES_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CHUNK_SIZE = 1000
POOL = 10_000  # streamed customers cycle through this many generated profiles, each with its own id


def _changed(customer: dict[str, Any]) -> dict[str, Any]:
    """The customer a month later: more orders and more spend."""
    return {
        **customer,
        "orders_30d": customer["orders_30d"] + 3,
        "orders_90d": customer["orders_90d"] + 3,
        "orders_365d": customer["orders_365d"] + 3,
        "orders_total": customer["orders_total"] + 3,
        "spend_365d": customer["spend_365d"] * 3 + 1000.0,
        "last_order_at": REFERENCE_NOW,
    }


def _two_runs(url: str, customers: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    store = SQLStore(url, prefix=prefix, migrate=True)
    tagger = Tagger(load_catalog(), store)
    try:
        started = time.perf_counter()
        first = tagger.apply_many(((c["id"], c) for c in customers), now=REFERENCE_NOW, chunk_size=CHUNK_SIZE)
        first_seconds = time.perf_counter() - started
        second_items = ((c["id"], _changed(c) if i % 20 == 0 else c) for i, c in enumerate(customers))
        started = time.perf_counter()
        second = tagger.apply_many(second_items, now=REFERENCE_NOW, chunk_size=CHUNK_SIZE)
        second_seconds = time.perf_counter() - started
    finally:
        store.close()
    count = len(customers)
    return {
        "customers": count,
        "first_seconds": first_seconds,
        "first_per_second": count / first_seconds,
        "first_added": first.added,
        "second_seconds": second_seconds,
        "second_per_second": count / second_seconds,
        "second_changes": second.added + second.removed,
    }


def removals(url: str, count: int) -> None:
    """A first run, then a second run changing every customer (removals), into the store at ``url``."""
    customers = list(generate_customers(count, seed=1))
    prefix = f"bench{secrets.token_hex(3)}_"
    store = SQLStore(url, prefix=prefix, migrate=True)
    tagger = Tagger(load_catalog(), store)
    try:
        started = time.perf_counter()
        tagger.apply_many(((c["id"], c) for c in customers), now=REFERENCE_NOW, chunk_size=CHUNK_SIZE)
        first = time.perf_counter() - started
        started = time.perf_counter()
        second = tagger.apply_many(
            ((c["id"], _changed(c)) for c in customers), now=REFERENCE_NOW, chunk_size=CHUNK_SIZE
        )
        seconds = time.perf_counter() - started
    finally:
        store.close()
        _drop(url, prefix)
    print(
        f"{count:,} customers: first run {count / first:,.0f} customers/s; second run, every customer "
        f"changed ({second.removed:,} removed, {second.added:,} added): {count / seconds:,.0f} customers/s"
    )


def _drop(url: str, prefix: str) -> None:
    engine = sqlalchemy.create_engine(url)
    try:
        store_tables(prefix).metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {prefix}alembic_version"))
    finally:
        engine.dispose()


def _streamed(count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    pool = list(generate_customers(min(count, POOL), seed=5))
    for number, customer in zip(range(count), itertools.cycle(pool)):
        identifier = f"S{number:08d}"
        yield identifier, {**customer, "id": identifier}


def stream(url: str, count: int) -> None:
    """The child process of the memory benchmark: ``count`` customers into the store at ``url``."""
    store = SQLStore(url, migrate=True)
    started = time.perf_counter()
    report = Tagger(load_catalog(), store).apply_many(
        _streamed(count), now=REFERENCE_NOW, chunk_size=CHUNK_SIZE
    )
    seconds = time.perf_counter() - started
    store.close()
    print(f"{report.customers} {seconds}")


def _memory(count: int, directory: Path) -> dict[str, Any]:
    url = f"sqlite:///{directory / 'stream.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.storage", "stream", url, str(count)],
        capture_output=True,
        text=True,
        check=True,
    )
    customers, seconds = result.stdout.split()
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "customers": int(customers),
        "seconds": float(seconds),
        "per_second": int(customers) / float(seconds),
        "peak_rss_mb": peak_kib / 1024,
    }


def run(quick: bool = False) -> dict[str, Any]:
    count = 2_000 if quick else 100_000
    streamed = 20_000 if quick else 1_000_000
    report: dict[str, Any] = {"chunk_size": CHUNK_SIZE, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="tagrules-bench-") as directory:
        # the memory figure first: RUSAGE_CHILDREN keeps the largest child seen so far
        report["stream"] = _memory(streamed, Path(directory))
        customers = list(generate_customers(count, seed=1))
        report["runs"]["sqlite"] = _two_runs(
            f"sqlite:///{Path(directory) / 'bench.db'}", customers, "tagrules_"
        )
        prefix = f"bench{secrets.token_hex(3)}_"
        try:
            report["runs"]["postgresql"] = _two_runs(POSTGRES_URL, customers, prefix)
        except StoreError as error:
            report["runs"]["postgresql"] = {"skipped": str(error)}
        finally:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                _drop(POSTGRES_URL, prefix)
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        f"{'database':<12} {'customers':>10} {'first run /s':>13} {'second run /s':>14} {'changes':>8}",
    ]
    for name, figures in report["runs"].items():
        if "skipped" in figures:
            lines.append(f"{name:<12} skipped: {figures['skipped']}")
            continue
        lines.append(
            f"{name:<12} {figures['customers']:>10,} {figures['first_per_second']:>13,.0f} "
            f"{figures['second_per_second']:>14,.0f} {figures['second_changes']:>8,}"
        )
    stream = report["stream"]
    lines.append(
        f"streamed into SQLite: {stream['customers']:,} customers in {stream['seconds']:.0f} s "
        f"({stream['per_second']:,.0f}/s), peak memory {stream['peak_rss_mb']:.0f} MB"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["stream"]:
        stream(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["removals"]:
        removals(sys.argv[2], int(sys.argv[3]))
