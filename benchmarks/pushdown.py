"""The retail pack evaluated inside PostgreSQL against the same rows streamed through Python.

Generated retail customers are bulk-loaded into a PostgreSQL table (``COPY``) in a scratch
database, then, side by side in one run:

* ``count``: :func:`tagrules.count_tags` in ``auto`` mode — one query for the pushable tags, the
  others evaluated in Python over the streamed rows of the columns they read;
* whole-catalog evaluation in the database: every tag of every row computed and kept in the
  database (``CREATE TEMPORARY TABLE ... AS`` the catalog query, as a set-wise retag would feed
  ``INSERT ... SELECT``), plus the tags left to Python;
* the same rows streamed through :class:`tagrules.Evaluator` (every tag, in Python).

``TAGRULES_BENCH_POSTGRES_URL`` names the server (default: the local one).
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Engine, make_url

from tagrules import Evaluator, count_tags, tag_query
from tagrules.catalog import Catalog
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog
from tagrules.pushdown import _python_catalog, _rule_fields, open_table, stream_snapshots

__all__ = ["run", "table"]

SERVER_URL = os.environ.get(
    "TAGRULES_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOW = REFERENCE_NOW
TABLE = "customers"


@contextmanager
def scratch_database(server: str) -> Iterator[URL]:
    url = make_url(server)
    name = f"tagrules_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _column_type(kind: str, nullable: bool) -> Any:
    return {
        "int": sa.BigInteger(),
        "float": postgresql.DOUBLE_PRECISION(),
        "str": sa.Text(),
        "enum": sa.Text(),
        "bool": sa.Boolean(),
        "datetime": postgresql.TIMESTAMP(timezone=True),
        "dict": postgresql.JSONB(),
    }[kind]


def load(engine: Engine, catalog: Catalog, count: int) -> float:
    """Create the customers table and fill it with ``count`` generated customers; seconds taken."""
    fields = catalog.schema.fields
    columns = [
        sa.Column(name, _column_type(field.kind, field.nullable), primary_key=name == "id")
        for name, field in fields.items()
    ]
    table = sa.Table(TABLE, sa.MetaData(), *columns)
    started = time.perf_counter()
    with engine.begin() as connection:
        table.create(connection)
        raw = connection.connection.dbapi_connection
        assert raw is not None
        names = list(fields)
        dicts = {name for name, field in fields.items() if field.kind == "dict"}
        with raw.cursor() as cursor:  # type: ignore[attr-defined]
            statement = f"COPY {TABLE} ({', '.join(names)}) FROM STDIN"
            with cursor.copy(statement) as copy:
                for customer in generate_customers(count, seed=1, now=NOW):
                    copy.write_row(
                        [
                            json.dumps(customer[name]) if name in dicts else _plain(customer.get(name))
                            for name in names
                        ]
                    )
        connection.execute(sa.text(f"ANALYZE {TABLE}"))
    return time.perf_counter() - started


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def timed(function: Any, rounds: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def run(quick: bool = False) -> dict[str, Any]:
    """Load the customers, then time count, evaluation in the database and in Python."""
    customers = 20_000 if quick else 1_000_000
    rounds = 1
    catalog = load_catalog()
    with scratch_database(SERVER_URL) as url:
        engine = sa.create_engine(url)
        try:
            seconds_load = load(engine, catalog, customers)

            def count() -> Any:
                return count_tags(catalog, engine, TABLE, now=NOW)

            def in_database() -> int:
                with engine.begin() as connection:
                    source = open_table(connection, TABLE)
                    query = tag_query(catalog, source, dialect="postgresql", now=NOW, id_columns=["id"])
                    states = sa.Table(
                        "tag_states",
                        sa.MetaData(),
                        sa.Column("id", sa.Text()),
                        *[sa.Column(label, sa.SmallInteger()) for label in query.tag_columns.values()],
                        prefixes=["TEMPORARY"],
                        postgresql_on_commit="DROP",
                    )
                    states.create(connection)
                    names = ["id", *query.tag_columns.values()]
                    connection.execute(states.insert().from_select(names, query.select))
                    rows = connection.execute(sa.text("SELECT count(*) FROM tag_states")).scalar_one()
                    python_keys = list(query.in_python)
                    if python_keys:
                        sub = _python_catalog(catalog, python_keys)
                        evaluator = Evaluator(sub)
                        fields = sorted(_rule_fields(sub, [tag.key for tag in sub.active]))
                        for snapshot in stream_snapshots(connection, source, catalog.schema, fields=fields):
                            evaluator.evaluate(snapshot, now=NOW)
                    return int(rows)

            def in_python() -> int:
                evaluator = Evaluator(catalog)
                rows = 0
                with engine.connect() as connection:
                    source = open_table(connection, TABLE)
                    for snapshot in stream_snapshots(connection, source, catalog.schema):
                        evaluator.evaluate(snapshot, now=NOW)
                        rows += 1
                return rows

            seconds_count, counts = timed(count, rounds)
            seconds_database, _ = timed(in_database, rounds)
            seconds_python, python_rows = timed(in_python, rounds)
            python_counts = count_tags(catalog, engine, TABLE, now=NOW, mode="python")
        finally:
            engine.dispose()
    return {
        "customers": customers,
        "tags": len(catalog.active),
        "in_python": dict(counts.in_python),
        "load_seconds": seconds_load,
        "count_seconds": seconds_count,
        "database_seconds": seconds_database,
        "python_seconds": seconds_python,
        "python_rows": python_rows,
        "speed_up": seconds_python / seconds_database,
        "counts_agree": dict(counts.counts) == dict(python_counts.counts),
        "rounds": rounds,
    }


def table(report: dict[str, Any]) -> str:
    customers = report["customers"]
    lines = [
        f"retail pack ({report['tags']} tags), {customers:,} customers in PostgreSQL",
        "",
        "| measure | figure |",
        "|---|---:|",
        f"| bulk load (COPY) | {report['load_seconds']:.1f} s |",
        f"| `count` (auto mode) | {report['count_seconds']:.2f} s |",
        f"| whole catalog in the database (+ Python for the tags it cannot push) | "
        f"{report['database_seconds']:.2f} s |",
        f"| the same rows streamed through `Evaluator` | {report['python_seconds']:.2f} s |",
        f"| database / Python speed-up | {report['speed_up']:.1f}x |",
        f"| counts equal Python's | {'yes' if report['counts_agree'] else 'NO'} |",
        "",
        "evaluated in Python: " + (", ".join(sorted(report["in_python"])) or "none"),
    ]
    return "\n".join(lines)
