"""``tagrules impact``: what a catalog change does to the tags of the same rows."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tagrules._impact import ImpactReport, impact
from tagrules.catalog import Catalog
from tagrules.cli._common import (
    CommandError,
    field_column,
    load_catalog,
    parse_now,
    plural,
    print_problems,
    read_snapshots,
)
from tagrules.errors import DefinitionError, SourceError

__all__ = ["register"]


def _examples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def register(commands: Any) -> None:
    """Add ``impact`` to the ``tagrules`` parser."""
    command = commands.add_parser(
        "impact", help="what replacing one catalog by another does to the tags of the same rows"
    )
    command.add_argument("old", metavar="OLD_CATALOG", help="the catalog in use (a file or a pack name)")
    command.add_argument("new", metavar="NEW_CATALOG", help="the changed catalog (a file or a pack name)")
    rows = command.add_mutually_exclusive_group(required=True)
    rows.add_argument("--sample", metavar="FILE", help="the rows: a JSON Lines file of snapshots")
    rows.add_argument(
        "--input",
        metavar="PATH",
        help="the rows: a JSON Lines file of snapshots ('-': stdin), or a Parquet (a directory or glob "
        "of them) or CSV file, both versions computed in one DuckDB query",
    )
    rows.add_argument("--db", metavar="URL", help="the rows: a table of this database (with --table)")
    command.add_argument("--table", metavar="NAME", help="the table of snapshots (schema.table allowed)")
    command.add_argument("--now", type=parse_now, help="the time rules see as $now (ISO 8601; default: now)")
    command.add_argument(
        "--examples",
        type=_examples,
        default=5,
        metavar="N",
        help="example ids gained and lost per tag (default: 5)",
    )
    command.add_argument("--json", action="store_true", help="print the report as one JSON object")
    command.add_argument(
        "--as-written",
        action="store_true",
        help="count the draft tags of NEW_CATALOG as drafts, never assigned",
    )
    command.add_argument(
        "--id-field", default="id", help="the field (or column) holding each id (default: id)"
    )
    command.add_argument(
        "--column",
        type=field_column,
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="with --db: the column holding a field whose column has another name (repeatable)",
    )
    command.set_defaults(run=run_impact)


def _load(reference: str) -> Catalog:
    try:
        return load_catalog(reference)
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        raise CommandError(f"{reference}: not a valid catalog") from None


def run_impact(arguments: argparse.Namespace) -> int:
    """``tagrules impact OLD NEW (--sample FILE | --input PATH | --db URL --table NAME)``."""
    if arguments.db is not None and arguments.table is None:
        raise CommandError("--db needs --table NAME: the table of snapshots")
    if arguments.db is None and arguments.table is not None:
        raise CommandError("--table goes with --db URL")
    old, new = _load(arguments.old), _load(arguments.new)
    skipped: list[str] = []
    try:
        if arguments.db is not None:
            report = impact(
                old,
                new,
                arguments.db,
                table=arguments.table,
                now=arguments.now,
                id_column=arguments.id_field,
                columns=dict(arguments.column),
                examples=arguments.examples,
                as_written=arguments.as_written,
            )
        elif arguments.input is not None and _columnar(arguments.input):
            # Parquet or CSV: both versions in one DuckDB query over the file, in process
            from tagrules.sources._duckdb import check_columns, file_source

            with file_source(arguments.input) as (connection, table):
                check_columns(old, table, arguments.input, dict(arguments.column))
                report = impact(
                    old,
                    new,
                    connection,
                    table=table,
                    now=arguments.now,
                    id_column=arguments.id_field,
                    columns=dict(arguments.column),
                    examples=arguments.examples,
                    as_written=arguments.as_written,
                )
        else:
            path = arguments.sample if arguments.sample is not None else arguments.input
            snapshots = read_snapshots(path, new.schema, id_field=arguments.id_field, failures=skipped)
            rows = {str(identifier): value for _, identifier, value in snapshots}
            report = impact(
                old,
                new,
                rows,
                now=arguments.now,
                examples=arguments.examples,
                as_written=arguments.as_written,
            )
    except SourceError as error:
        raise CommandError(str(error)) from None
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        raise CommandError(f"{arguments.new}: its drafts, made active, do not make a valid catalog") from None
    if arguments.json:
        print(json.dumps(report.to_data(), ensure_ascii=False))
    else:
        print_report(report)
    if skipped:
        print(f"{path}: {plural(len(skipped), 'bad line')} skipped", file=sys.stderr)
        return 1
    return 0


def _columnar(path: str) -> bool:
    from tagrules.cli._columnar import is_columnar

    return is_columnar(path)


def print_report(report: ImpactReport) -> None:
    """The report as tables: tags by the size of their change, then tier moves, then definitions."""
    where = "one query in the database" if report.where == "database" else "Python"
    print(f"{report.rows} rows, now {report.now.isoformat()}, both catalogs evaluated by {where}")
    if report.changed:
        print("definitions changed: " + ", ".join(f"{key} ({kind})" for key, kind in report.changed.items()))
    else:
        print("definitions changed: none")
    if report.touches_nothing:
        print("the change touches nothing: every row keeps its tags")
        return
    moved = {key: tag for key, tag in report.tags.items() if tag.moved}
    width = max([len(key) for key in moved] + [3])
    print()
    headings = ("before", "after", "gained", "lost")
    print(f"{'tag':<{width}}  " + "".join(f"{name:>9}  " for name in headings) + f"{'unknown':>13}  examples")
    for key, tag in moved.items():
        unknown = f"{tag.errors_before}->{tag.errors_after}"
        examples = ", ".join(
            [*(f"+{id}" for id in tag.examples_gained), *(f"-{id}" for id in tag.examples_lost)]
        )
        counts = "".join(f"{count:>9}  " for count in (tag.before, tag.after, tag.gained, tag.lost))
        print(f"{key:<{width}}  {counts}{unknown:>13}  {examples}")
    unchanged = len(report.tags) - len(moved)
    if unchanged:
        print(f"({unchanged} other tag{'s' if unchanged != 1 else ''} unchanged)")
    for group, matrix in report.groups.items():
        moves = [(old, new, count) for old, row in matrix.items() for new, count in row.items() if old != new]
        if not moves:
            continue
        print()
        print(f"group {group}: moves between tiers")
        for old, new, count in sorted(moves, key=lambda move: (-move[2], move[0], move[1])):
            print(f"  {old} -> {new}: {count}")
