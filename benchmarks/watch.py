"""Statistics from a store: ``tagrules stats --every week`` over a year of weekly runs.

The benchmark builds a store holding 1,000,000 customers' history (``--quick``: 20,000) of 52
weekly runs of the retail pack: each customer starts the year with 8 of the pack's tags, and each
week 2% of the customers lose one tag and gain another; every run is recorded. The rows are written
straight into the store's tables (a year of runs through the tagger would take hours), in SQLite
and in PostgreSQL (``TAGRULES_BENCH_POSTGRES_URL``, default the local server; the benchmark writes
under its own table prefix and drops its tables afterwards). Then the command itself is timed, as a
user runs it, median of three: ``tagrules stats --store URL --every week --json``.

Run with ``python -m benchmarks watch``.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy

from tagrules.packs.retail import load_catalog
from tagrules.stores import store_tables, upgrade

__all__ = ["run", "table"]

POSTGRES_URL = os.environ.get(
    "TAGRULES_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
WEEKS = 52
HELD = 8
CHURN = 0.02
START = datetime.datetime(2025, 6, 2)  # a Monday, naive UTC as the store keeps it
BATCH = 50_000
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _history(customers: int, tags: list[str], seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """History rows ``(customer_id, tag, source, since, until, rule_version, reason)``."""
    generator = random.Random(seed)
    held: dict[int, dict[str, datetime.datetime]] = {}
    for number in range(customers):
        held[number] = dict.fromkeys(generator.sample(tags, HELD), START)
    for week in range(1, WEEKS):
        moment = START + datetime.timedelta(days=7 * week)
        for number in generator.sample(range(customers), int(customers * CHURN)):
            mine = held[number]
            gone = generator.choice(sorted(mine))
            yield (f"C{number:08d}", gone, "computed", mine.pop(gone), moment, None, "rule")
            fresh = generator.choice([tag for tag in tags if tag not in mine])
            mine[fresh] = moment
    for number, mine in held.items():
        for tag, since in mine.items():
            yield (f"C{number:08d}", tag, "computed", since, None, None, None)


def _runs(customers: int, tags: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    runs: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    for week in range(WEEKS):
        moment = START + datetime.timedelta(days=7 * week, hours=2)
        run_id = f"bench-{week:02d}"
        runs.append(
            {
                "id": run_id,
                "kind": "run",
                "started_at": moment,
                "finished_at": moment,
                "evaluated_at": moment,
                "catalog_version": "bench",
                "customers": customers,
            }
        )
        counts.extend(
            {
                "run_id": run_id,
                "tag": tag,
                "tag_group": None,
                "tier_rank": None,
                "members": customers * HELD // len(tags),
                "added": 0,
                "removed": 0,
                "errors": week % 3,
            }
            for tag in tags
        )
    return runs, counts


def _fill(url: str, prefix: str, customers: int, tags: list[str]) -> tuple[int, float]:
    """Write the history and runs; returns (history rows, seconds)."""
    upgrade(url, prefix=prefix)
    tables = store_tables(prefix)
    engine = sqlalchemy.create_engine(url)
    started = time.perf_counter()
    rows = 0
    names = ("customer_id", "tag", "source", "since", "until", "rule_version", "reason")
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                raw: Any = connection.connection.driver_connection
                with raw.cursor().copy(f"COPY {tables.history.name} ({', '.join(names)}) FROM STDIN") as copy:
                    for row in _history(customers, tags):
                        copy.write_row(row)
                        rows += 1
            else:
                # SQLite keeps times as text in SQLAlchemy's format; the driver takes the rows as they are
                insert = (
                    f"INSERT INTO {tables.history.name} ({', '.join(names)}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                )
                cursor = connection.connection.cursor()
                batch: list[tuple[Any, ...]] = []
                for row in _history(customers, tags):
                    until = None if row[4] is None else row[4].strftime(_SQLITE_TIME)
                    batch.append((*row[:3], row[3].strftime(_SQLITE_TIME), until, *row[5:]))
                    if len(batch) >= BATCH:
                        cursor.executemany(insert, batch)
                        rows += len(batch)
                        batch = []
                if batch:
                    cursor.executemany(insert, batch)
                    rows += len(batch)
            runs, counts = _runs(customers, tags)
            connection.execute(tables.runs.insert(), runs)
            connection.execute(tables.run_tags.insert(), counts)
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    f"VACUUM ANALYZE {tables.history.name}"
                )
            else:
                connection.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return rows, time.perf_counter() - started


def _time_command(arguments: list[str], rounds: int = 3) -> tuple[float, dict[str, Any]]:
    seconds, output = [], ""
    for _ in range(rounds):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "tagrules.cli", *arguments], capture_output=True, text=True, check=True
        )
        seconds.append(time.perf_counter() - started)
        output = result.stdout
    return statistics.median(seconds), json.loads(output)


def _drop(url: str, prefix: str) -> None:
    engine = sqlalchemy.create_engine(url)
    try:
        store_tables(prefix).metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {prefix}alembic_version"))
    finally:
        engine.dispose()


def run(quick: bool = False) -> dict[str, Any]:
    customers = 20_000 if quick else 1_000_000
    tags = [tag.key for tag in load_catalog().active]
    report: dict[str, Any] = {"customers": customers, "weeks": WEEKS, "tags": len(tags), "stores": {}}
    with tempfile.TemporaryDirectory() as directory:
        places = {"sqlite": f"sqlite:///{Path(directory) / 'stats.db'}", "postgresql": POSTGRES_URL}
        for name, url in places.items():
            prefix = f"bench{secrets.token_hex(3)}_"
            try:
                rows, filled = _fill(url, prefix, customers, tags)
                command = ["stats", "--store", url, "--prefix", prefix, "--every", "week", "--json"]
                seconds, data = _time_command(command)
            finally:
                _drop(url, prefix)
            report["stores"][name] = {
                "history_rows": rows,
                "fill_seconds": filled,
                "stats_seconds": seconds,
                "periods": len(data["periods"]),
                "tags": len(data["tags"]),
            }
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        f"tagrules stats --every week: {report['customers']:,} customers, {report['weeks']} weekly runs, "
        f"{report['tags']} tags (median of 3 command runs)",
        "| store | history rows | stats | periods x tags |",
        "|---|---:|---:|---:|",
    ]
    for name, figures in report["stores"].items():
        lines.append(
            f"| {name} | {figures['history_rows']:,} | {figures['stats_seconds']:.2f} s | "
            f"{figures['periods']} x {figures['tags']} |"
        )
    return "\n".join(lines)
