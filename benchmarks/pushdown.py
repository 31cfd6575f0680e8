"""The retail pack evaluated inside PostgreSQL against the same rows streamed through Python.

Generated retail customers are bulk-loaded into a PostgreSQL table (``COPY``) in a scratch
database, then, side by side in one run:

* ``count``: :func:`tagrules.count_tags` in ``auto`` mode — one query for the pushable tags, the
  others evaluated in Python over the streamed rows of the columns they read;
* whole-catalog evaluation in the database: every tag of every row computed and kept in the
  database (``CREATE TEMPORARY TABLE ... AS`` the catalog query, as a set-wise retag would feed
  ``INSERT ... SELECT``), plus the tags left to Python;
* the same rows streamed through :class:`tagrules.Evaluator` (every tag, in Python);
* a full retag into a tag store in the same database, twice (the first tagging, then a refresh
  after 2% of the customers changed): :func:`tagrules.retag_from_table`, set-wise in the
  database, against the same rows streamed through the Python evaluator into
  :meth:`tagrules.Tagger.apply_many` — for the pushable tags, since set-wise retagging needs every
  tag in the database. Before the refresh every table is vacuumed and analyzed, as autovacuum
  leaves them within minutes of the first tagging;
* the first tagging's writes alone: the store's rows copied into an empty store with the same
  tables and indexes (``INSERT ... SELECT``, one connection, then two at once), the least any first
  tagging writing them can take on this server.

``TAGRULES_BENCH_POSTGRES_URL`` names the server (default: the local one).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Engine, make_url

from tagrules import Evaluator, SQLStore, Tagger, count_tags, retag_from_table, tag_query
from tagrules.catalog import Catalog
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog
from tagrules.sources._setwise import _CreateTemporaryTableAs
from tagrules.sources.tables import (
    _python_catalog,
    _rule_fields,
    open_table,
    query_settings,
    stream_snapshots,
)
from tagrules.stores import store_tables

__all__ = ["run", "table"]

SERVER_URL = os.environ.get(
    "TAGRULES_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOW = REFERENCE_NOW
#: rounds of each count, the median quoted
COUNT_ROUNDS = 3
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
    seconds = time.perf_counter() - started
    # a table at rest, as autovacuum leaves one soon after a bulk load: statistics, visibility map
    # and hint bits set (otherwise the first query to read each row writes its page)
    _at_rest(engine)
    return seconds


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


def _python_states(engine: Engine, catalog: Catalog, keys: list[str] | None) -> tuple[int, dict[str, int]]:
    """Stream the rows through an evaluator of ``keys`` (with what they depend on; ``None``: every
    tag), reading only the columns their rules read; rows, and rows assigned per tag."""
    sub = catalog if keys is None else _python_catalog(catalog, keys)
    evaluator = Evaluator(sub)
    fields = sorted(_rule_fields(sub, [tag.key for tag in sub.active]))
    counts = {tag.key: 0 for tag in sub.active}
    rows = 0
    with engine.connect() as connection:
        source = open_table(connection, TABLE)
        for snapshot in stream_snapshots(connection, source, catalog.schema, fields=fields):
            rows += 1
            for key in evaluator.evaluate(snapshot, now=NOW).tags:
                counts[key] += 1
    return rows, counts


def _states_in_database(engine: Engine, catalog: Catalog) -> int:
    """Every pushed tag of every row computed and written to a temporary table, by one ``CREATE
    TABLE ... AS`` (in parallel workers; set-wise retagging computes its states this way)."""
    with engine.begin() as connection:
        source = open_table(connection, TABLE)
        query = tag_query(catalog, source, dialect="postgresql", now=NOW, id_columns=["id"])
        with query_settings(connection):
            connection.execute(_CreateTemporaryTableAs("tag_states", query.select))
        return int(connection.execute(sa.text("SELECT count(*) FROM tag_states")).scalar_one())


def _store_contents(engine: Engine, prefix: str) -> dict[str, Any]:
    """What a store holds, as counts and a checksum of its memberships and events (ids aside)."""
    with engine.connect() as connection:
        figures = {}
        for name, key in (
            ("memberships", "customer_id || tag || source || since || coalesce(rule_version, '')"),
            ("history", "customer_id || tag || since || coalesce(until::text, '') || coalesce(reason, '')"),
            ("outbox", "customer_id || tag || change || at || reason"),
        ):
            figures[name] = connection.execute(
                sa.text(f"SELECT count(*), sum(hashtext({key})::numeric) FROM {prefix}{name}")
            ).one()
    return {name: [int(count), str(checksum)] for name, (count, checksum) in figures.items()}


def _change_some(engine: Engine) -> int:
    """2% of the customers spend and order more."""
    with engine.begin() as connection:
        result = connection.execute(
            sa.text(
                f"UPDATE {TABLE} SET spend_365d = spend_365d * 3 + 500, orders_30d = orders_30d + 3, "
                "orders_90d = orders_90d + 3, orders_365d = orders_365d + 3 WHERE id LIKE '%%3'"
                " AND substr(id, length(id) - 1, 1) IN ('1', '2')"
            )
        )
    return int(result.rowcount)


def _retag_python(engine: Engine, catalog: Catalog, prefix: str, now: Any) -> int:
    store = SQLStore(engine.url, prefix=prefix, migrate=True)
    try:
        with engine.connect() as connection:
            source = open_table(connection, TABLE)
            fields = sorted({"id", *_rule_fields(catalog, [tag.key for tag in catalog.active])})
            snapshots = stream_snapshots(connection, source, catalog.schema, fields=fields)
            report = Tagger(catalog, store).apply_many(
                ((snapshot["id"], snapshot) for snapshot in snapshots), now=now
            )
    finally:
        store.close()
    return report.added + report.removed


def _retag_database(engine: Engine, catalog: Catalog, prefix: str, now: Any) -> int:
    store = SQLStore(engine.url, prefix=prefix, migrate=True)
    try:
        report = retag_from_table(catalog, engine, TABLE, store, now=now, set_wise=True)
    finally:
        store.close()
    return report.added + report.removed


def _at_rest(engine: Engine) -> None:
    """Every table vacuumed and analyzed, as autovacuum leaves them within minutes of a bulk write
    (a refresh runs a day after the first tagging)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))


def _write_floor(engine: Engine, source: str, writers: int) -> float:
    """Seconds to write a store's rows again, without evaluating or comparing anything: its tables
    copied by ``INSERT ... SELECT`` into an empty store of the same tables and indexes, by
    ``writers`` connections at once (each a share of the customers). The least a first tagging
    writing the same rows can take."""
    prefix = f"floor{writers}_"
    SQLStore(engine.url, prefix=prefix, migrate=True).close()
    with engine.connect() as connection:
        bounds = [
            connection.execute(
                sa.text(
                    f"SELECT customer_id FROM {source}customers ORDER BY customer_id "
                    f"OFFSET (SELECT count(*) FROM {source}customers) * {part} / {writers} LIMIT 1"
                )
            ).scalar_one()
            for part in range(1, writers)
        ]
    ranges = list(zip([None, *bounds], [*bounds, None], strict=True))
    copies = {
        "customers": "customer_id, version, updated_at",
        "memberships": "customer_id, tag, source, since, rule_version",
        "history": "customer_id, tag, source, since, until, rule_version, reason",
        "outbox": "customer_id, tag, change, at, reason",
    }

    def copy(lower: str | None, upper: str | None) -> None:
        conditions = [
            condition
            for condition, bound in (("customer_id >= :lower", lower), ("customer_id < :upper", upper))
            if bound is not None
        ]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with engine.begin() as connection:
            for name, columns in copies.items():
                connection.execute(
                    sa.text(
                        f"INSERT INTO {prefix}{name} ({columns}) SELECT {columns} FROM {source}{name}{where}"
                    ),
                    {"lower": lower, "upper": upper},
                )

    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        for future in [pool.submit(copy, lower, upper) for lower, upper in ranges]:
            future.result()
    seconds = time.perf_counter() - started
    with engine.begin() as connection:
        store_tables(prefix).metadata.drop_all(connection)
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {prefix}alembic_version"))
    return seconds


def retag(engine: Engine, catalog: Catalog) -> dict[str, Any]:
    """Both retags of the pushable tags, first run then refresh; seconds, changes, and agreement;
    and what the first tagging's writes alone take."""
    later = NOW + datetime.timedelta(days=1)
    figures: dict[str, Any] = {}
    for name, function in (("retag_python", _retag_python), ("retag_database", _retag_database)):
        figures[f"{name}_first_seconds"], figures[f"{name}_first_changes"] = timed(
            lambda function=function, name=name: function(engine, catalog, f"{name}_", NOW), 1
        )
    _at_rest(engine)
    for writers in (1, 2):
        figures[f"write_floor_{writers}_seconds"] = _write_floor(engine, "retag_database_", writers)
    figures["changed_customers"] = _change_some(engine)
    _at_rest(engine)
    for name, function in (("retag_python", _retag_python), ("retag_database", _retag_database)):
        figures[f"{name}_refresh_seconds"], figures[f"{name}_refresh_changes"] = timed(
            lambda function=function, name=name: function(engine, catalog, f"{name}_", later), 1
        )
    figures["retag_stores_agree"] = _store_contents(engine, "retag_python_") == _store_contents(
        engine, "retag_database_"
    )
    for run_name in ("first", "refresh"):
        figures[f"retag_speed_up_{run_name}"] = (
            figures[f"retag_python_{run_name}_seconds"] / figures[f"retag_database_{run_name}_seconds"]
        )
    return figures


def run(quick: bool = False) -> dict[str, Any]:
    """Load the customers, then time count, evaluation in the database and in Python."""
    customers = 20_000 if quick else 1_000_000
    catalog = load_catalog()
    with scratch_database(SERVER_URL) as url:
        engine = sa.create_engine(url)
        try:
            seconds_load = load(engine, catalog, customers)
            with engine.connect() as connection:
                query = tag_query(catalog, open_table(connection, TABLE), dialect="postgresql", now=NOW)
            pushed = list(query.tag_columns)
            python_keys = list(query.in_python)
            seconds_count, counts = timed(lambda: count_tags(catalog, engine, TABLE, now=NOW), COUNT_ROUNDS)
            seconds_count_sql, _ = timed(
                lambda: count_tags(load_pushed(catalog, pushed), engine, TABLE, now=NOW, mode="database"),
                COUNT_ROUNDS,
            )
            seconds_fallback = (
                timed(lambda: _python_states(engine, catalog, python_keys), 1)[0] if python_keys else 0.0
            )
            seconds_states, _ = timed(lambda: _states_in_database(engine, catalog), 1)
            seconds_python_pushed, _ = timed(lambda: _python_states(engine, catalog, pushed), 1)
            seconds_python, (python_rows, python_counts) = timed(
                lambda: _python_states(engine, catalog, None), 1
            )
            retags = retag(engine, load_pushed(catalog, pushed))
        finally:
            engine.dispose()
    return {
        "customers": customers,
        "tags": len(catalog.active),
        "pushed": len(pushed),
        "in_python": dict(counts.in_python),
        "load_seconds": seconds_load,
        "count_seconds": seconds_count,
        "count_sql_seconds": seconds_count_sql,
        "fallback_seconds": seconds_fallback,
        "states_seconds": seconds_states,
        "python_pushed_seconds": seconds_python_pushed,
        "python_seconds": seconds_python,
        "python_rows": python_rows,
        "speed_up_pushed": seconds_python_pushed / seconds_states,
        "speed_up_whole": seconds_python / (seconds_states + seconds_fallback),
        "counts_agree": dict(counts.counts) == python_counts,
        **retags,
    }


def load_pushed(catalog: Catalog, keys: list[str]) -> Catalog:
    """The catalog restricted to the tags ``keys`` (all pushable, with their dependencies)."""
    return _python_catalog(catalog, keys)


def table(report: dict[str, Any]) -> str:
    customers = report["customers"]
    pushed, tags = report["pushed"], report["tags"]
    lines = [
        f"retail pack ({tags} tags, {pushed} pushed down), {customers:,} customers in PostgreSQL",
        "",
        "| measure | figure |",
        "|---|---:|",
        f"| bulk load (COPY) | {report['load_seconds']:.1f} s |",
        f"| `count`, auto mode (all {tags} tags) | {report['count_seconds']:.2f} s |",
        f"| of which: the count query ({pushed} tags in the database) | "
        f"{report['count_sql_seconds']:.2f} s |",
        f"| of which: the {tags - pushed} {'tag' if tags - pushed == 1 else 'tags'} left to Python, "
        "rows streamed | " + (f"{report['fallback_seconds']:.2f} s |" if tags > pushed else "none |"),
        f"| {pushed} pushed tags of every row computed in the database (CREATE TABLE ... AS) | "
        f"{report['states_seconds']:.2f} s |",
        f"| the same {pushed} tags, rows streamed through `Evaluator` | "
        f"{report['python_pushed_seconds']:.2f} s |",
        f"| speed-up on the pushed tags | {report['speed_up_pushed']:.1f}x |",
        f"| all {tags} tags, rows streamed through `Evaluator` | {report['python_seconds']:.2f} s |",
        f"| all {tags} tags, database + Python for the rest | "
        f"{report['states_seconds'] + report['fallback_seconds']:.2f} s "
        f"({report['speed_up_whole']:.1f}x) |",
        f"| counts equal Python's | {'yes' if report['counts_agree'] else 'NO'} |",
        "",
        "evaluated in Python: " + (", ".join(sorted(report["in_python"])) or "none"),
    ]
    if "retag_database_first_seconds" in report:
        lines += [
            "",
            f"full retag of the {pushed} pushed tags into a store in the same database",
            "",
            "| run | rows streamed through Python into the store | set-wise in the database | speed-up |",
            "|---|---:|---:|---:|",
        ]
        for run_name, label in (
            ("first", "first tagging (empty store)"),
            ("refresh", f"refresh, {report['changed_customers']:,} customers changed"),
        ):
            python = report[f"retag_python_{run_name}_seconds"]
            database = report[f"retag_database_{run_name}_seconds"]
            lines.append(
                f"| {label}, {report[f'retag_database_{run_name}_changes']:,} changes | {python:.1f} s "
                f"({customers / python:,.0f}/s) | {database:.1f} s ({customers / database:,.0f}/s) | "
                f"{report[f'retag_speed_up_{run_name}']:.1f}x |"
            )
        python_first = report["retag_python_first_seconds"]
        floor_one, floor_two = report["write_floor_1_seconds"], report["write_floor_2_seconds"]
        lines += [
            "",
            f"stores identical: {'yes' if report['retag_stores_agree'] else 'NO'}",
            "",
            "the first tagging's rows written alone (the store's tables copied into an empty store by "
            f"INSERT ... SELECT, nothing evaluated or compared): {floor_one:.1f} s on one connection, "
            f"{floor_two:.1f} s on two at once; against the Python path's {python_first:.1f} s, a first "
            f"tagging that writes the same rows is at most {python_first / floor_two:.1f}x faster",
        ]
    return "\n".join(lines)
