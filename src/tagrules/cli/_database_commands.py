"""``tagrules count``: how many rows of a database table each tag would be assigned to."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tagrules.cli._common import CommandError, load_catalog, parse_now, print_problems
from tagrules.errors import DefinitionError, NotPushable, SourceError
from tagrules.evaluation import resolve_now
from tagrules.sources.tables import count_tags

__all__ = ["register"]


def _column(text: str) -> tuple[str, str]:
    field, separator, column = text.partition("=")
    if not separator or not field or not column:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=COLUMN")
    return field, column


def register(commands: Any) -> None:
    """Add the database commands to the ``tagrules`` parser."""
    count = commands.add_parser(
        "count", help="count the rows of a database table each tag would be assigned to"
    )
    count.add_argument("catalog", metavar="CATALOG", help="a catalog file, or a pack name such as retail")
    count.add_argument("--db", required=True, metavar="URL", help="a SQLAlchemy database URL")
    count.add_argument(
        "--table", required=True, metavar="NAME", help="the table of snapshots (schema.table allowed)"
    )
    count.add_argument("--now", type=parse_now, help="the time rules see as $now (ISO 8601; default: now)")
    count.add_argument("--json", action="store_true", help='print one JSON object {"tag_key": count, ...}')
    count.add_argument(
        "--column",
        type=_column,
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
    """``tagrules count CATALOG --db URL --table NAME``: a count per active tag."""
    try:
        catalog = load_catalog(arguments.catalog)
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        return 1
    try:
        counts = count_tags(
            catalog,
            arguments.db,
            arguments.table,
            now=resolve_now(arguments.now),
            columns=dict(arguments.column),
            mode=arguments.mode,
        )
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
