"""``tagrules run CATALOG --input PATH --engine ENGINE``: the population diff computed in an engine,
written as Parquet files (every customer's tags, and the changes against the previous tags).

An engine is a function in ``ENGINES``, keyed by the ``--engine`` name: it receives the catalog, the
input, the previous tags' file (or ``None``), the time, the id column and the two output paths, and
writes the files. Nothing is written to a store.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tagrules.catalog import Catalog
from tagrules.cli._common import CommandError, load_catalog, print_problems
from tagrules.errors import DefinitionError, NotPushable, SourceError
from tagrules.evaluation import resolve_now

__all__ = ["ENGINES", "run_population"]

#: (catalog, input, previous, now, id column, tags path, changes path or None, the command's
#: arguments) -> (tags, changes) written
Engine = Callable[
    [Catalog, str, "str | None", datetime.datetime, str, str, "str | None", argparse.Namespace],
    tuple[int, int],
]


def _duckdb(
    catalog: Catalog,
    source: str,
    previous: str | None,
    now: datetime.datetime,
    id_column: str,
    tags_path: str,
    changes_path: str | None,
    arguments: argparse.Namespace,
) -> tuple[int, int]:
    """The diff in an in-memory DuckDB database, copied to the Parquet files by DuckDB itself."""
    from tagrules.duckdb import population_diff
    from tagrules.sources._population import CHANGES_VIEW, TAGS_VIEW

    with population_diff(catalog, source, previous, now, id_column, None) as raw:
        counts = []
        for view, path in ((TAGS_VIEW, tags_path), (CHANGES_VIEW, changes_path)):
            if path is None:
                counts.append(int(raw.execute(f"SELECT count(*) FROM {view}").fetchall()[0][0]))
                continue
            counts.append(_copy(raw, view, path))
        return counts[0], counts[1]


def _copy(raw: Any, view: str, path: str) -> int:
    """Write ``view`` to the Parquet file ``path`` through a temporary name moved in place when done."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        raw.execute(f"COPY (SELECT * FROM {view}) TO {_quoted(str(partial))} (FORMAT parquet)")
        partial.replace(target)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return int(raw.execute(f"SELECT count(*) FROM read_parquet({_quoted(path)})").fetchall()[0][0])


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _spark(
    catalog: Catalog,
    source: str,
    previous: str | None,
    now: datetime.datetime,
    id_column: str,
    tags_path: str,
    changes_path: str | None,
    arguments: argparse.Namespace,
) -> tuple[int, int]:
    """The diff in a Spark session (``--spark-master``), each file written as one Parquet file."""
    if id_column != "id":
        raise CommandError("run --input --engine spark: the customers' id column must be 'id'")
    from tagrules.spark._files import run_file

    return run_file(
        catalog,
        source,
        previous=previous,
        output=tags_path,
        changes=changes_path,
        master=arguments.spark_master,
        now=now,
    )


#: --engine name -> the function computing and writing the diff
ENGINES: dict[str, Engine] = {"duckdb": _duckdb, "spark": _spark}


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The options of ``run --input`` on the ``run`` parser."""
    run.add_argument(
        "--input",
        metavar="PATH",
        help="compute every customer's tags from a Parquet file (a directory or glob of them), CSV or "
        "JSON Lines, in an engine, into --output (no store)",
    )
    run.add_argument(
        "--engine",
        choices=sorted(ENGINES),
        default="duckdb",
        help="with --input: the engine computing the tags and changes (default: duckdb)",
    )
    run.add_argument(
        "--spark-master",
        metavar="URL",
        default="local[*]",
        help="with --engine spark: the cluster (default: local[*], every core of this machine)",
    )
    run.add_argument(
        "--previous", metavar="PREV.parquet", help="with --input: the previous tags (columns id, tag)"
    )
    run.add_argument(
        "--output", metavar="TAGS.parquet", help="with --input: where every customer's tags are written"
    )


def _parquet_path(path: str, option: str) -> str:
    if not path.lower().endswith(".parquet"):
        raise CommandError(f"run --input: {option} {path}: the file must be a .parquet file")
    return path


def run_population(arguments: argparse.Namespace) -> int:
    """``tagrules run CATALOG --input PATH [--previous PREV.parquet] --output TAGS.parquet
    [--changes CHANGES.parquet]``."""
    if arguments.snapshots is not None or arguments.db is not None or arguments.table is not None:
        raise CommandError("run: --input reads the snapshots from a file; give no SNAPSHOTS.jsonl or --db")
    if arguments.output is None:
        raise CommandError("run --input: give --output TAGS.parquet, where every customer's tags go")
    if arguments.column or arguments.listener:
        raise CommandError("run --input: --column and --listener go with a store, not with --input")
    tags_path = _parquet_path(arguments.output, "--output")
    changes_path = None if arguments.changes is None else _parquet_path(arguments.changes, "--changes")
    previous = arguments.previous
    if previous is not None and not Path(previous).exists():
        raise CommandError(f"run --input: --previous {previous}: no such file")
    try:
        catalog = load_catalog(arguments.catalog)
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        return 1
    engine = ENGINES[arguments.engine]
    try:
        tags, changes = engine(
            catalog,
            arguments.input,
            previous,
            resolve_now(arguments.now),
            arguments.id_column,
            tags_path,
            changes_path,
            arguments,
        )
    except (SourceError, NotPushable) as error:
        raise CommandError(str(error)) from None
    summary = f"{tags} tags written to {tags_path}; {changes} changes"
    if changes_path is not None:
        summary += f" written to {changes_path}"
    print(summary, file=sys.stderr if arguments.json else sys.stdout)
    if arguments.json:
        print(f'{{"tags": {tags}, "changes": {changes}}}')
    return 0
