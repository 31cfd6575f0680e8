"""``tagrules run``, ``members``, ``history`` and ``db upgrade``: the commands that use a tag store."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tagrules.catalog import Catalog
from tagrules.cli._common import (
    CommandError,
    load_catalog,
    open_output,
    parse_now,
    plugins,
    print_problems,
    read_jsonl,
)
from tagrules.errors import DefinitionError, SourceError, StoreError
from tagrules.evaluation import resolve_now
from tagrules.sources.retag import RetagReport, retag_from_table
from tagrules.stores import DEFAULT_PREFIX, ChangeEvent, SQLStore, upgrade
from tagrules.tagger import ApplyReport, Listener, Tagger

__all__ = ["DEFAULT_STORE", "register"]

#: The store ``tagrules run`` uses without ``--store``: a SQLite file in the working directory.
DEFAULT_STORE = "sqlite:///tagrules.db"
_PROGRESS_AFTER = 2.0  # seconds before progress is shown at all
_PROGRESS_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal


def register(commands: Any) -> None:
    """Add the store commands to the ``tagrules`` parser."""
    run = commands.add_parser(
        "run", help="evaluate snapshots and keep the tags, history and changes in a store"
    )
    run.add_argument("catalog", metavar="CATALOG", help="a catalog file, or a pack name such as retail")
    run.add_argument(
        "snapshots",
        metavar="SNAPSHOTS.jsonl",
        nargs="?",
        help="one JSON object per line with an 'id' ('-': stdin)",
    )
    run.add_argument("--db", metavar="URL", help="retag the rows of a database table instead (with --table)")
    run.add_argument("--table", metavar="NAME", help="the table of snapshots (schema.table allowed)")
    run.add_argument(
        "--id-column", default="id", metavar="NAME", help="the table's customer id column (default: id)"
    )
    _store_option(run, default=DEFAULT_STORE)
    run.add_argument("--now", type=parse_now, help="the time rules see as $now (ISO 8601; default: now)")
    run.add_argument(
        "--changes",
        metavar="FILE",
        help='write one JSON line per change: {"id", "tag", "change"} (\'-\': stdout)',
    )
    run.set_defaults(run=run_run)

    members = commands.add_parser("members", help="list the customers holding a tag, now or at a time")
    _store_option(members, default=None)
    members.add_argument("--tag", required=True, help="the tag's key")
    members.add_argument("--as-of", type=parse_now, help="the time to look at (ISO 8601; default: now)")
    members.set_defaults(run=run_members)

    history = commands.add_parser("history", help="show a customer's tag history with since and until")
    _store_option(history, default=None)
    history.add_argument("--id", required=True, help="the customer's id")
    history.set_defaults(run=run_history)

    database = commands.add_parser("db", help="manage a store's database")
    actions = database.add_subparsers(dest="action", metavar="ACTION", required=True)
    upgrade_parser = actions.add_parser("upgrade", help="create or upgrade the store's tables")
    upgrade_parser.add_argument(
        "url", metavar="URL", help="a database URL (sqlite:///..., postgresql+psycopg://...)"
    )
    upgrade_parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"table name prefix (default: {DEFAULT_PREFIX})"
    )
    upgrade_parser.set_defaults(run=run_upgrade)


def _store_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    if default is None:
        parser.add_argument("--store", required=True, metavar="URL", help="the store's database URL")
    else:
        parser.add_argument(
            "--store", default=default, metavar="URL", help=f"the store's database URL (default: {default})"
        )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"table name prefix (default: {DEFAULT_PREFIX})"
    )


def _open_store(url: str, prefix: str, *, create: bool) -> SQLStore:
    if not create and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///").partition("?")[0])
        if not path.exists():
            raise CommandError(f"{url}: no such store (run `tagrules run` or `tagrules db upgrade` first)")
    try:
        return SQLStore(url, prefix=prefix)
    except (StoreError, ValueError) as error:
        raise CommandError(str(error)) from None


def _snapshots(path: str, failures: list[str]) -> Iterator[tuple[str, Any]]:
    for number, value, problem in read_jsonl(path):
        identifier = None
        if problem is None and not isinstance(value, dict):
            problem = "a snapshot must be a JSON object"
        if problem is None:
            assert isinstance(value, dict)
            identifier = value.get("id")
            if identifier is None:
                problem = "no 'id' field"
            elif not isinstance(identifier, (str, int)) or isinstance(identifier, bool):
                problem = "the 'id' field must be a string or an integer"
        if problem is not None:
            failures.append(problem)
            print(f"{path}:{number}: {problem}; line skipped", file=sys.stderr)
            continue
        yield str(identifier), value


def _count_lines(path: str) -> int | None:
    """The number of lines of a regular file (a fast byte count), or ``None`` for stdin and pipes."""
    if path == "-" or not Path(path).is_file():
        return None
    lines = 0
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            lines += block.count(b"\n")
    return lines


class _Progress:
    """Customers processed, on stderr, once a run takes a while: a bar rewritten in place on a
    terminal, a line every few seconds otherwise. The total is the input file's line count, when the
    input is a file."""

    def __init__(self, stream: IO[str], path: str) -> None:
        self.stream = stream
        self.path = path
        self.started = time.monotonic()
        self.shown = 0.0
        self.total: int | None = None
        self.terminal = stream.isatty()

    def __call__(self, count: int) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        if elapsed < _PROGRESS_AFTER or (not self.terminal and now - self.shown < _PROGRESS_EVERY):
            return
        if not self.shown:
            self.total = _count_lines(self.path)
        self.shown = now
        line = f"{count:,} customers ({count / elapsed:,.0f}/s)"
        if self.total:
            share = min(count / self.total, 1.0)
            filled = round(share * 30)
            line = (
                f"[{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} {count:,}/{self.total:,} customers"
                + (f" ({count / elapsed:,.0f}/s)")
            )
        if self.terminal:
            self.stream.write(f"\rtagrules: {line}")
        else:
            self.stream.write(f"tagrules: {line}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.terminal and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _summary(report: ApplyReport | RetagReport, catalog: Catalog) -> str:
    rows = [(key, counts) for key, counts in report.tags.items()]
    order = {tag.key: index for index, tag in enumerate(catalog)}
    rows.sort(key=lambda row: (order.get(row[0], len(order)), row[0]))
    width = max([len("tag"), *(len(key) for key, _ in rows)])
    lines = [f"{'tag':<{width}}  {'members':>9}  {'added':>9}  {'removed':>9}  {'errors':>9}"]
    for key, counts in rows:
        lines.append(
            f"{key:<{width}}  {counts.members:>9}  {counts.added:>9}  {counts.removed:>9}  {counts.errors:>9}"
        )
    lines.append(
        f"{report.customers} customers: {report.added} added, {report.removed} removed, "
        f"{report.errors} errors"
    )
    return "\n".join(lines)


def run_run(arguments: argparse.Namespace) -> int:
    """``tagrules run``: evaluate, store, print the summary table; 1 if some lines were bad."""
    if arguments.snapshots is not None and arguments.db is not None:
        raise CommandError("run: give either SNAPSHOTS.jsonl or --db URL --table NAME, not both")
    if arguments.db is not None or arguments.table is not None:
        return _run_table(arguments)
    if arguments.snapshots is None:
        raise CommandError(
            "run: give SNAPSHOTS.jsonl, the snapshots to evaluate ('-' reads stdin), or --db URL --table NAME"
        )
    try:
        catalog = load_catalog(arguments.catalog)
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        return 1
    store = _open_store(arguments.store, arguments.prefix, create=True)
    failures: list[str] = []
    progress = _Progress(sys.stderr, arguments.snapshots)
    try:
        with _changes_writer(arguments.changes) as listener:
            # the listeners of installed plugins hear every change, after the --changes file
            listeners = [*([listener] if listener else []), *plugins().listeners]
            tagger = Tagger(catalog, store, listeners=listeners)
            report = tagger.apply_many(
                _snapshots(arguments.snapshots, failures), now=resolve_now(arguments.now), progress=progress
            )
    except StoreError as error:
        raise CommandError(str(error)) from None
    finally:
        progress.done()
        store.close()
    print(_summary(report, catalog))
    if failures:
        count = len(failures)
        print(f"{arguments.snapshots}: {count} bad line{'s' if count != 1 else ''} skipped", file=sys.stderr)
        return 1
    return 0


def _run_table(arguments: argparse.Namespace) -> int:
    """``tagrules run CATALOG --db URL --table NAME``: retag the table's rows."""
    if arguments.db is None or arguments.table is None:
        raise CommandError("run: --db URL and --table NAME go together")
    try:
        catalog = load_catalog(arguments.catalog)
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        return 1
    store = _open_store(arguments.store, arguments.prefix, create=True)
    progress = _Progress(sys.stderr, "-")
    try:
        with _changes_writer(arguments.changes) as listener:
            listeners = [*([listener] if listener else []), *plugins().listeners]
            report = retag_from_table(
                catalog,
                arguments.db,
                arguments.table,
                store,
                id_column=arguments.id_column,
                now=resolve_now(arguments.now),
                listeners=listeners,
                progress=progress,
            )
    except (StoreError, SourceError) as error:
        raise CommandError(str(error)) from None
    finally:
        progress.done()
        store.close()
    print(_summary(report, catalog))
    print(_where(report))
    return 0


def _where(report: RetagReport) -> str:
    database = [key for key, place in report.where.items() if place == "database"]
    lines = [f"in the database: {', '.join(database) if database else '(none)'}"]
    for key, reason in report.in_python.items():
        if report.where.get(key) == "python":
            lines.append(f"in Python: {key}: {reason}")
    if report.set_wise:
        lines.append("changes computed set-wise in the database (the store shares the table's database)")
    else:
        lines.append("customers with overrides evaluated in Python")
    return "\n".join(lines)


@contextmanager
def _changes_writer(path: str | None) -> Iterator[Listener | None]:
    if path is None:
        yield None
        return
    with open_output(path) as stream:

        def write(event: ChangeEvent) -> None:
            line = {"id": event.customer_id, "tag": event.tag, "change": event.change}
            stream.write(json.dumps(line, ensure_ascii=False) + "\n")

        yield write


def run_members(arguments: argparse.Namespace) -> int:
    """``tagrules members``: one customer id per line, sorted."""
    store = _open_store(arguments.store, arguments.prefix, create=False)
    try:
        members = store.members(arguments.tag, as_of=arguments.as_of)
    except StoreError as error:
        raise CommandError(str(error)) from None
    finally:
        store.close()
    for member in members:
        print(member)
    return 0


def _when(moment: Any) -> str:
    return "" if moment is None else moment.isoformat().replace("+00:00", "Z")


def run_history(arguments: argparse.Namespace) -> int:
    """``tagrules history``: the customer's membership periods, a table with since and until."""
    store = _open_store(arguments.store, arguments.prefix, create=False)
    try:
        entries = store.history(arguments.id)
    except StoreError as error:
        raise CommandError(str(error)) from None
    finally:
        store.close()
    if not entries:
        raise CommandError(f"no tag history for customer {arguments.id!r} in {arguments.store}")
    width = max(len("tag"), *(len(entry.tag) for entry in entries))
    print(f"{'tag':<{width}}  {'source':<8}  {'since':<27}  {'until':<27}  reason")
    for entry in entries:
        line = (
            f"{entry.tag:<{width}}  {entry.source:<8}  {_when(entry.since):<27}  {_when(entry.until):<27}  "
            f"{entry.reason or ''}"
        )
        print(line.rstrip())
    return 0


def run_upgrade(arguments: argparse.Namespace) -> int:
    """``tagrules db upgrade URL``: create or upgrade the tables; print the revision."""
    try:
        revision = upgrade(arguments.url, prefix=arguments.prefix)
    except (StoreError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"{arguments.url}: schema at revision {revision} (table prefix {arguments.prefix!r})")
    return 0
