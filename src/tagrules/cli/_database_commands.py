"""``tagrules count``: how many rows of a database table, or of a file, each tag would be assigned to."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from tagrules.catalog import Catalog
from tagrules.cli._common import CommandError, field_column, load_catalog, parse_now, print_problems
from tagrules.errors import DefinitionError, NotPushable, SourceError
from tagrules.evaluation import resolve_now
from tagrules.sources._duckdb import check_columns, file_source
from tagrules.sources.tables import CountReport, Mode, count_tags

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the database commands to the ``tagrules`` parser."""
    count = commands.add_parser(
        "count", help="count the rows of a database table each tag would be assigned to"
    )
    count.add_argument("catalog", metavar="CATALOG", help="a catalog file, or a pack name such as retail")
    source = count.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", metavar="URL", help="a SQLAlchemy database URL (duckdb:///PATH included)")
    source.add_argument(
        "--input",
        metavar="PATH",
        help="a Parquet file, a directory or glob of Parquet files, a CSV or a JSON Lines file",
    )
    count.add_argument(
        "--table", metavar="NAME", help="with --db: the table of snapshots (schema.table allowed)"
    )
    count.add_argument(
        "--engine",
        choices=["duckdb", "python", "spark"],
        default="duckdb",
        help="with --input: duckdb evaluates in process where it can, Python the rest (default); "
        "python streams every row through the evaluator; spark runs on Spark (--spark-master)",
    )
    count.add_argument(
        "--spark-master",
        metavar="URL",
        default="local[*]",
        help="with --engine spark: the Spark master (default: local[*])",
    )
    count.add_argument("--now", type=parse_now, help="the time rules see as $now (ISO 8601; default: now)")
    count.add_argument("--json", action="store_true", help='print one JSON object {"tag_key": count, ...}')
    count.add_argument(
        "--column",
        type=field_column,
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="the column holding a field whose column has another name (repeatable)",
    )
    count.add_argument(
        "--mode",
        choices=["auto", "database", "python"],
        default="auto",
        help="auto: in the database where possible, Python otherwise (default); database: refuse tags "
        "that cannot be pushed down; python: evaluate every tag in Python",
    )
    count.set_defaults(run=run_count)


def run_count(arguments: argparse.Namespace) -> int:
    """``tagrules count CATALOG --db URL --table NAME`` or ``--input PATH``: a count per active tag."""
    if arguments.db is not None and arguments.table is None:
        raise CommandError("--db needs --table NAME: the table of snapshots")
    if arguments.input is not None and arguments.table is not None:
        raise CommandError("--table goes with --db; --input reads the file's rows")
    try:
        catalog = load_catalog(arguments.catalog)
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        return 1
    now, columns = resolve_now(arguments.now), dict(arguments.column)
    try:
        if arguments.input is None:
            counts = count_tags(
                catalog, arguments.db, arguments.table, now=now, columns=columns, mode=arguments.mode
            )
        else:
            counts = _count_file(catalog, arguments, now, columns)
    except (SourceError, NotPushable) as error:
        raise CommandError(str(error)) from None
    if arguments.json:
        print(json.dumps(counts.to_data()))
        return 0
    width = max([len(key) for key in counts.counts] + [3])
    print(f"{counts.rows} rows, now {counts.now.isoformat()}")
    print(f"{'tag':<{width}}  {'count':>9}  {'unknown':>9}  evaluated")
    for key, value in counts.counts.items():
        print(f"{key:<{width}}  {value:>9}  {counts.unknown[key]:>9}  {counts.where.get(key, 'database')}")
    for key, reason in counts.in_python.items():
        print(f"{key}: in Python: {reason}", file=sys.stderr)
    return 0


def _count_file(
    catalog: Catalog, arguments: argparse.Namespace, now: datetime.datetime, columns: dict[str, str]
) -> CountReport:
    if arguments.engine == "spark":
        from tagrules.spark._files import count_file

        if arguments.mode != "auto":
            raise CommandError("count: --mode goes with --db or --engine duckdb; Spark runs in auto mode")
        return count_file(catalog, arguments.input, arguments.spark_master, now, columns)
    mode: Mode = "python" if arguments.engine == "python" else arguments.mode
    with file_source(arguments.input) as (connection, table):
        check_columns(catalog, table, arguments.input, columns)
        return count_tags(catalog, connection, table, now=now, columns=columns, mode=mode)
