"""Statistics from a store: ``tagrules stats --every week`` and ``tagrules report`` over a year of
weekly runs.

The benchmark builds a store holding 1,000,000 customers' history (``--quick``: 20,000) of 52
weekly runs of the retail pack: each customer starts the year with 8 of the pack's tags (one tier of
each of 3 of its exclusive groups and 5 tags of no group), and each week 2% of the customers lose one
tag and gain another (a tier gives way to another tier of its group); every run is recorded with the
groups' tiers, and the memberships held at the end are the store's current tags. The rows are written
straight into the store's tables (a year of runs through the tagger would take hours), in SQLite
and in PostgreSQL (``TAGRULES_BENCH_POSTGRES_URL``, default the local server; the benchmark writes
under its own table prefix and drops its tables afterwards). Then the commands themselves are timed,
as a user runs them, median of three: ``tagrules stats --store URL --every week --json`` and
``tagrules report --store URL --output FILE`` (whose overlap heatmap reads the memberships and whose
tier flows read the history of every group).

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
#: of a customer's HELD tags, one tier of each of this many exclusive groups
GROUPS_HELD = 3
CHURN = 0.02
START = datetime.datetime(2025, 6, 2)  # a Monday, naive UTC as the store keeps it
BATCH = 50_000
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _history(
    customers: int, tags: list[str], groups: dict[str, tuple[str, ...]], seed: int = 7
) -> Iterator[tuple[Any, ...]]:
    """History rows ``(customer_id, tag, source, since, until, rule_version, reason)``; a customer's
    rows with ``until`` None are the memberships it holds at the end."""
    generator = random.Random(seed)
    group_of = {tag: group for group, tiers in groups.items() for tag in tiers}
    free = [tag for tag in tags if tag not in group_of]
    names = sorted(groups)
    held: dict[int, dict[str, datetime.datetime]] = {}
    for number in range(customers):
        chosen = [generator.choice(groups[group]) for group in generator.sample(names, GROUPS_HELD)]
        chosen += generator.sample(free, HELD - GROUPS_HELD)
        held[number] = dict.fromkeys(chosen, START)
    for week in range(1, WEEKS):
        moment = START + datetime.timedelta(days=7 * week)
        for number in generator.sample(range(customers), int(customers * CHURN)):
            mine = held[number]
            gone = generator.choice(sorted(mine))
            yield (f"C{number:08d}", gone, "computed", mine.pop(gone), moment, None, "rule")
            group = group_of.get(gone)
            others = free if group is None else groups[group]
            fresh = generator.choice([tag for tag in others if tag not in mine and tag != gone])
            mine[fresh] = moment
    for number, mine in held.items():
        for tag, since in mine.items():
            yield (f"C{number:08d}", tag, "computed", since, None, None, None)


def _runs(
    customers: int, tags: list[str], groups: dict[str, tuple[str, ...]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tiers = {tag: (group, rank) for group, keys in groups.items() for rank, tag in enumerate(keys)}
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
                "tag_group": tiers.get(tag, (None, None))[0],
                "tier_rank": tiers.get(tag, (None, None))[1],
                "members": customers * HELD // len(tags),
                "added": 0,
                "removed": 0,
                "errors": week % 3,
            }
            for tag in tags
        )
    return runs, counts


def _fill(
    url: str, prefix: str, customers: int, tags: list[str], groups: dict[str, tuple[str, ...]]
) -> tuple[int, float]:
    """Write the history, the memberships held at its end and the runs; returns (history rows,
    seconds)."""
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
                    for row in _history(customers, tags, groups):
                        copy.write_row(row)
                        rows += 1
            else:
                # SQLite keeps times as text in SQLAlchemy's format; the driver takes the rows as they are
                insert = (
                    f"INSERT INTO {tables.history.name} ({', '.join(names)}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                )
                cursor = connection.connection.cursor()
                batch: list[tuple[Any, ...]] = []
                for row in _history(customers, tags, groups):
                    until = None if row[4] is None else row[4].strftime(_SQLITE_TIME)
                    batch.append((*row[:3], row[3].strftime(_SQLITE_TIME), until, *row[5:]))
                    if len(batch) >= BATCH:
                        cursor.executemany(insert, batch)
                        rows += len(batch)
                        batch = []
                if batch:
                    cursor.executemany(insert, batch)
                    rows += len(batch)
            h, m = tables.history, tables.memberships
            held = sqlalchemy.select(h.c.customer_id, h.c.tag, h.c.source, h.c.since, h.c.rule_version)
            connection.execute(
                m.insert().from_select(
                    ["customer_id", "tag", "source", "since", "rule_version"], held.where(h.c.until.is_(None))
                )
            )
            runs, counts = _runs(customers, tags, groups)
            connection.execute(tables.runs.insert(), runs)
            connection.execute(tables.run_tags.insert(), counts)
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
                for name in (tables.history.name, tables.memberships.name):
                    autocommit.exec_driver_sql(f"VACUUM ANALYZE {name}")
            else:
                connection.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return rows, time.perf_counter() - started


def _time_command(arguments: list[str], rounds: int = 3) -> tuple[float, str]:
    """The median seconds of the command as a user runs it, and its output."""
    seconds, output = [], ""
    for _ in range(rounds):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "tagrules.cli", *arguments], capture_output=True, text=True, check=True
        )
        seconds.append(time.perf_counter() - started)
        output = result.stdout
    return statistics.median(seconds), output


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
    catalog = load_catalog()
    tags = [tag.key for tag in catalog.active]
    active = set(tags)
    groups = {
        group: tuple(tag for tag in tiers if tag in active)
        for group, tiers in catalog.groups.items()
        if sum(tag in active for tag in tiers) >= 2
    }
    report: dict[str, Any] = {
        "customers": customers,
        "weeks": WEEKS,
        "tags": len(tags),
        "groups": len(groups),
        "stores": {},
    }
    with tempfile.TemporaryDirectory() as directory:
        places = {"sqlite": f"sqlite:///{Path(directory) / 'stats.db'}", "postgresql": POSTGRES_URL}
        output = Path(directory) / "report.html"
        for name, url in places.items():
            prefix = f"bench{secrets.token_hex(3)}_"
            try:
                rows, filled = _fill(url, prefix, customers, tags, groups)
                store = ["--store", url, "--prefix", prefix]
                seconds, printed = _time_command(["stats", *store, "--every", "week", "--json"])
                data = json.loads(printed)
                report_seconds, _ = _time_command(
                    ["report", *store, "--catalog", "retail", "--output", str(output)]
                )
                report_bytes = output.stat().st_size
            finally:
                _drop(url, prefix)
            report["stores"][name] = {
                "history_rows": rows,
                "fill_seconds": filled,
                "stats_seconds": seconds,
                "report_seconds": report_seconds,
                "report_bytes": report_bytes,
                "periods": len(data["periods"]),
                "tags": len(data["tags"]),
            }
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['customers']:,} customers, {report['weeks']} weekly runs, {report['tags']} tags "
        f"({report['groups']} exclusive groups); median of 3 command runs",
        "| store | history rows | stats --every week | report | periods x tags |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, figures in report["stores"].items():
        lines.append(
            f"| {name} | {figures['history_rows']:,} | {figures['stats_seconds']:.2f} s | "
            f"{figures['report_seconds']:.2f} s | {figures['periods']} x {figures['tags']} |"
        )
    return "\n".join(lines)
