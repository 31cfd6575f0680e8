"""The retail pack on DuckDB: a table of a DuckDB file and a Parquet file, against the Evaluator.

Generated retail customers are written once to a Parquet file and to two tables of a DuckDB database
file: ``customers`` holds the two dict fields as DuckDB ``MAP`` columns (as a Parquet or Arrow map
arrives), ``customers_json`` as JSON text (as a CSV export holds them). Then, side by side in one run:

* ``count_tags`` over each table (``auto``: one query for the pushable tags, the others in Python
  over the streamed rows) and the same rows through the Evaluator (``mode="python"``);
* a hand-written DuckDB query counting 10 of the pack's tags, against ``count_tags`` of those 10
  tags (``mode="database"``);
* ``tagrules count retail --input customers.parquet`` as a process, with ``--engine duckdb``
  (the default) and ``--engine python``;
* :func:`tagrules.impact` of the pack against the pack with ``spend_high`` raised to 120,000 (both
  versions in one DuckDB query), against ``count_tags`` of the pack, interleaved round by round.
"""

from __future__ import annotations

import datetime
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet  # type: ignore[import-untyped,unused-ignore]
import sqlalchemy as sa

from tagrules import Catalog, count_tags, impact
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

__all__ = ["HAND_WRITTEN", "run", "table"]

NOW = REFERENCE_NOW
FOLDER = Path("build/benchmarks/duckdb")
#: the 10 tags the hand-written query counts
TEN_TAGS = [
    "age_18_25",
    "gender_female",
    "city_tier1",
    "freq_high",
    "spend_high",
    "active",
    "satisfied",
    "strategic_partner",
    "churned",
    "new_customer",
]
#: 10 of the pack's tags written by hand for DuckDB (the rules of catalog.yaml, first-match groups
#: left out: each tag here is the first of its group or in none)
HAND_WRITTEN = """
SELECT count(*),
  count(*) FILTER (WHERE coalesce(age, 0) >= 18 AND coalesce(age, 0) <= 25),
  count(*) FILTER (WHERE gender = 'female'),
  count(*) FILTER (WHERE city_tier = 'tier1'),
  count(*) FILTER (WHERE orders_30d >= 3),
  count(*) FILTER (WHERE spend_365d >= 100000),
  count(*) FILTER (WHERE inquiries_90d >= 1 OR orders_90d >= 1),
  count(*) FILTER (WHERE complaints_90d = 0),
  count(*) FILTER (WHERE strategic_partner),
  count(*) FILTER (WHERE orders_total > 0 AND coalesce(last_order_at, registered_at) < $cutoff),
  count(*) FILTER (WHERE registered_at >= $recent)
FROM customers
"""


_DICTS = ("category_spend_365d", "category_views_30d")


def _rows(count: int, *, as_json: bool) -> pyarrow.Table:
    """The customers as an Arrow table: enums as text, dicts as maps or as JSON text."""
    batches = []
    chunk: list[dict[str, Any]] = []
    maps = {
        "category_spend_365d": pyarrow.map_(pyarrow.string(), pyarrow.float64()),
        "category_views_30d": pyarrow.map_(pyarrow.string(), pyarrow.int64()),
    }

    def flush() -> None:
        if as_json:
            batches.append(pyarrow.Table.from_pylist(chunk))
        else:
            dicts = {name: [row.pop(name) for row in chunk] for name in maps}
            table = pyarrow.Table.from_pylist(chunk)
            for name, kind in maps.items():
                table = table.append_column(name, pyarrow.array(dicts[name], type=kind))
            batches.append(table)
        chunk.clear()

    for customer in generate_customers(count, seed=1):
        row = dict(customer)
        for name in _DICTS:
            row[name] = json.dumps(row[name]) if as_json else list(row[name].items())
        for name in ("gender", "city_tier", "occupation"):
            row[name] = getattr(row[name], "value", row[name])
        chunk.append(row)
        if len(chunk) == 100_000:
            flush()
    if chunk:
        flush()
    return pyarrow.concat_tables(batches)


def _timed(function: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _subset(catalog: Catalog, keys: list[str]) -> Catalog:
    definitions = [definition for definition in catalog.tags if definition.key in keys]
    return Catalog(
        [{**definition.model_dump(exclude_none=True), "group": None} for definition in definitions],
        catalog.snapshot_schema,
        functions=catalog.functions.values(),
    )


def impact_rounds(engine: sa.Engine, table: str, rounds: int) -> dict[str, float]:
    """Medians of ``count_tags`` (``database``) and ``impact`` of a one-threshold change, interleaved."""
    from benchmarks.impact import raised_threshold

    old = load_catalog()
    new = raised_threshold(old)
    counts, impacts = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        count_tags(old, engine, table, now=NOW, mode="database")
        counts.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = impact(old, new, engine, table=table, now=NOW)
        impacts.append(time.perf_counter() - started)
        assert report.where == "database"
    return {"count_tags database": statistics.median(counts), "impact, one query": statistics.median(impacts)}


def run(quick: bool = False) -> dict[str, Any]:
    """Write the customers, then time each candidate (medians of several rounds; the Python
    candidates, minutes at 1,000,000 rows, run once)."""
    customers = 20_000 if quick else 1_000_000
    rounds = 3 if quick else 5
    FOLDER.mkdir(parents=True, exist_ok=True)
    parquet = FOLDER / "customers.parquet"
    database = FOLDER / "customers.duckdb"
    database.unlink(missing_ok=True)
    rows = _rows(customers, as_json=False)
    pyarrow.parquet.write_table(rows, parquet)
    url = f"duckdb:///{database}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        raw: Any = connection.connection.driver_connection
        raw.register("frame", rows)
        connection.exec_driver_sql("CREATE TABLE customers AS SELECT * FROM frame")
        raw.unregister("frame")
        del rows
        raw.register("frame", _rows(customers, as_json=True))
        connection.exec_driver_sql("CREATE TABLE customers_json AS SELECT * FROM frame")
        raw.unregister("frame")
    catalog = load_catalog()
    ten = _subset(catalog, TEN_TAGS)
    cutoff = NOW - datetime.timedelta(days=180)
    recent = NOW - datetime.timedelta(days=30)

    def hand_written() -> Any:
        with engine.connect() as connection:
            return connection.exec_driver_sql(HAND_WRITTEN, {"cutoff": cutoff, "recent": recent}).one()

    auto = count_tags(catalog, engine, "customers", now=NOW)
    by_hand = hand_written()
    by_tagrules = count_tags(ten, engine, "customers", now=NOW, mode="database")
    # the hand-written query computes what the catalog's rules do
    assert list(by_hand)[1:] == [by_tagrules.counts[key] for key in TEN_TAGS], (by_hand, by_tagrules.counts)
    assert dict(count_tags(catalog, engine, "customers_json", now=NOW).counts) == dict(auto.counts)
    seconds = {
        "count_tags auto (MAP columns)": _timed(
            lambda: count_tags(catalog, engine, "customers", now=NOW), rounds
        ),
        "count_tags auto (JSON text)": _timed(
            lambda: count_tags(catalog, engine, "customers_json", now=NOW), rounds
        ),
        "10 tags: count_tags database": _timed(
            lambda: count_tags(ten, engine, "customers", now=NOW, mode="database"), rounds
        ),
        "10 tags: hand-written DuckDB": _timed(hand_written, rounds),
    }
    impacts = impact_rounds(engine, "customers", rounds)
    seconds.update({f"impact vs count: {name}": value for name, value in impacts.items()})
    python = count_tags(catalog, engine, "customers", now=NOW, mode="python")
    assert dict(python.counts) == dict(auto.counts)
    seconds["count_tags python (Evaluator)"] = _timed(
        lambda: count_tags(catalog, engine, "customers", now=NOW, mode="python"), 1
    )
    engine.dispose()
    command = [sys.executable, "-m", "tagrules.cli", "count", "retail", "--input", str(parquet)]
    command += ["--now", NOW.isoformat(), "--json"]
    outputs = {}
    for engine_name in ("duckdb", "python"):
        arguments = [*command, "--engine", engine_name]

        def cli(arguments: list[str] = arguments, engine_name: str = engine_name) -> None:
            done = subprocess.run(arguments, capture_output=True, text=True, check=True)
            outputs[engine_name] = done.stdout

        seconds[f"tagrules count --input --engine {engine_name}"] = _timed(
            cli, rounds if engine_name == "duckdb" else 1
        )
    same = json.loads(outputs["duckdb"]) == json.loads(outputs["python"])
    python_seconds = seconds["count_tags python (Evaluator)"]
    return {
        "customers": customers,
        "pushed": sum(where == "database" for where in auto.where.values()),
        "in_python": sorted(auto.in_python),
        "seconds": seconds,
        "ratios": {
            "Evaluator / count_tags auto (MAP)": python_seconds / seconds["count_tags auto (MAP columns)"],
            "Evaluator / count_tags auto (JSON)": python_seconds / seconds["count_tags auto (JSON text)"],
            "count_tags 10 tags / hand-written": seconds["10 tags: count_tags database"]
            / seconds["10 tags: hand-written DuckDB"],
            "count --engine python / --engine duckdb": seconds["tagrules count --input --engine python"]
            / seconds["tagrules count --input --engine duckdb"],
            "impact / count_tags": impacts["impact, one query"] / impacts["count_tags database"],
        },
        "cli_counts_equal": same,
    }


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        f"{report['customers']:,} customers; {report['pushed']} tags pushed, in Python: "
        f"{', '.join(report['in_python']) or 'none'}; CLI counts equal: {report['cli_counts_equal']}",
        "",
        "| candidate | median s |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:.3f} |" for name, value in report["seconds"].items()]
    lines += ["", "| ratio | x |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in report["ratios"].items()]
    return "\n".join(lines)
