"""``tagrules run``, ``members``, ``history``, ``forget`` and ``db upgrade``: the commands that use a
tag store."""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import sqlalchemy
from sqlalchemy.engine import Engine

from tagrules.catalog import Catalog
from tagrules.cli._common import (
    CommandError,
    field_column,
    load_catalog,
    parse_now,
    plugins,
    plural,
    print_problems,
    read_snapshots,
)
from tagrules.errors import DefinitionError, SourceError, StoreError
from tagrules.evaluation import resolve_now
from tagrules.plugins import PluginError
from tagrules.schema import suggest
from tagrules.sources.retag import RetagReport, retag_from_table
from tagrules.stores import DEFAULT_PREFIX, ChangeEvent, SQLStore, upgrade
from tagrules.stores._database import create_engine as database_engine
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
    run.add_argument(
        "--input",
        metavar="PATH",
        help="tag a Parquet file (or directory, or CSV) in an engine instead: the tags to --output, the "
        "changes against --previous to --changes, no store",
    )
    run.add_argument(
        "--engine", choices=["duckdb", "spark"], default="duckdb", help="with --input: the engine"
    )
    run.add_argument(
        "--spark-master", metavar="URL", default="local[*]", help="with --engine spark (default: local[*])"
    )
    run.add_argument("--previous", metavar="PREV.parquet", help="with --input: the tags of the previous run")
    run.add_argument("--output", metavar="TAGS.parquet", help="with --input: where every customer's tags go")
    run.add_argument("--table", metavar="NAME", help="the table of snapshots (schema.table allowed)")
    run.add_argument(
        "--id-column", default="id", metavar="NAME", help="the table's customer id column (default: id)"
    )
    run.add_argument(
        "--id-field", default="id", metavar="NAME", help="the field holding each snapshot's id (default: id)"
    )
    run.add_argument(
        "--column",
        type=field_column,
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="with --db: the column holding a field whose column has another name (repeatable)",
    )
    _store_option(run, default=DEFAULT_STORE)
    run.add_argument("--now", type=parse_now, help="the time rules see as $now (ISO 8601; default: now)")
    run.add_argument(
        "--changes",
        metavar="FILE",
        help='write one JSON line per change: {"id", "tag", "change"} (\'-\': stdout)',
    )
    run.add_argument(
        "--all", action="store_true", help="list every tag in the summary, not only those that changed"
    )
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.add_argument(
        "--listener",
        action="append",
        default=[],
        metavar="NAME",
        help="also hand the changes to this installed plugin's listener (repeatable; the catalog's "
        "'listeners:' always run)",
    )
    run.set_defaults(run=run_run)

    members = commands.add_parser("members", help="list the customers holding a tag, now or at a time")
    _store_option(members, default=None)
    members.add_argument("--tag", required=True, help="the tag's key")
    members.add_argument("--as-of", type=parse_now, help="the time to look at (ISO 8601; default: now)")
    members.add_argument("--json", action="store_true", help='print JSON Lines: {"id": ...} per customer')
    members.set_defaults(run=run_members)

    history = commands.add_parser("history", help="show a customer's tag history with since and until")
    _store_option(history, default=None)
    history.add_argument("--id", required=True, help="the customer's id")
    history.add_argument("--json", action="store_true", help="print JSON Lines: one object per period")
    history.set_defaults(run=run_history)

    forget = commands.add_parser(
        "forget", help="erase a customer: memberships, history, overrides and pending events"
    )
    _store_option(forget, default=None)
    forget.add_argument("--id", required=True, help="the customer's id (exact: case and spaces count)")
    forget.set_defaults(run=run_forget)

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
        self.count = 0

    def __call__(self, count: int) -> None:
        self.count = count
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


def _summary(report: ApplyReport | RetagReport, catalog: Catalog, *, every_tag: bool) -> str:
    """The summary table: the tags whose membership changed or whose rule failed (every tag with
    ``every_tag``), then the totals."""
    rows = [
        (key, counts)
        for key, counts in report.tags.items()
        if every_tag or counts.added or counts.removed or counts.errors
    ]
    order = {tag.key: index for index, tag in enumerate(catalog)}
    rows.sort(key=lambda row: (order.get(row[0], len(order)), row[0]))
    width = max([len("tag"), *(len(key) for key, _ in rows)])
    lines = [f"{'tag':<{width}}  {'members':>9}  {'added':>9}  {'removed':>9}  {'errors':>9}"] if rows else []
    for key, counts in rows:
        lines.append(
            f"{key:<{width}}  {counts.members:>9}  {counts.added:>9}  {counts.removed:>9}  {counts.errors:>9}"
        )
    if not every_tag and len(rows) < len(report.tags):
        unchanged = len(report.tags) - len(rows)
        lines.append(f"({plural(unchanged, 'tag')} unchanged; --all lists every tag)")
    lines.append(
        f"{plural(report.customers, 'customer')}: {report.added} added, {report.removed} removed, "
        f"{plural(report.errors, 'error')}"
        + (f", {report.stale} stale (not written)" if report.stale else "")
    )
    return "\n".join(lines)


def _summary_data(report: ApplyReport | RetagReport, bad_lines: int) -> dict[str, Any]:
    """The summary as ``run --json`` prints it (documented in docs/cli.md)."""
    data: dict[str, Any] = {
        "customers": report.customers,
        "added": report.added,
        "removed": report.removed,
        "errors": report.errors,
        "stale": report.stale,
        "bad_lines": bad_lines,
        "tags": {
            key: {"members": c.members, "added": c.added, "removed": c.removed, "errors": c.errors}
            for key, c in report.tags.items()
        },
    }
    if isinstance(report, RetagReport):
        data["where"] = dict(report.where)
        data["in_python"] = dict(report.in_python)
        data["set_wise"] = report.set_wise
    return data


def _print_summary(
    arguments: argparse.Namespace, report: ApplyReport | RetagReport, catalog: Catalog, bad_lines: int = 0
) -> None:
    stream = _summary_stream(arguments)
    if arguments.json:
        print(json.dumps(_summary_data(report, bad_lines), ensure_ascii=False), file=stream)
        return
    print(_summary(report, catalog, every_tag=arguments.all), file=stream)
    if isinstance(report, RetagReport):
        print(_where(report), file=stream)


def _run_input(arguments: argparse.Namespace) -> int:
    """``tagrules run CATALOG --input PATH --engine spark --output TAGS.parquet``: the population
    diff in the engine."""
    if arguments.snapshots is not None or arguments.db is not None:
        raise CommandError("run: give one of SNAPSHOTS.jsonl, --db URL --table NAME or --input PATH")
    if arguments.output is None:
        raise CommandError("run --input: give --output TAGS.parquet, where every customer's tags go")
    if arguments.engine != "spark":
        raise CommandError("run --input: only --engine spark computes the diff in an engine here")
    try:
        catalog = load_catalog(arguments.catalog)
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        return 1
    from tagrules.errors import SourceError
    from tagrules.spark._files import run_file

    try:
        held, changed = run_file(
            catalog,
            arguments.input,
            previous=arguments.previous,
            output=arguments.output,
            changes=arguments.changes,
            master=arguments.spark_master,
            now=resolve_now(arguments.now),
        )
    except SourceError as error:
        raise CommandError(str(error)) from None
    print(f"{held} tags held ({arguments.output})")
    if arguments.changes is not None:
        print(f"{changed} changes ({arguments.changes})")
    return 0


def run_run(arguments: argparse.Namespace) -> int:
    """``tagrules run``: evaluate, store, print the summary table; 1 if some lines were bad."""
    if arguments.snapshots is not None and arguments.db is not None:
        raise CommandError("run: give either SNAPSHOTS.jsonl or --db URL --table NAME, not both")
    if arguments.input is not None:
        return _run_input(arguments)
    if arguments.db is not None or arguments.table is not None:
        return _run_table(arguments)
    if arguments.column:
        raise CommandError("run: --column FIELD=COLUMN names table columns; it goes with --db and --table")
    if arguments.snapshots is None:
        raise CommandError(
            "run: give SNAPSHOTS.jsonl, the snapshots to evaluate ('-' reads stdin), or --db URL --table NAME"
        )
    try:
        catalog = load_catalog(arguments.catalog)
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        return 1
    chosen = _plugin_listeners(catalog, arguments.listener)
    failures: list[str] = []
    # the input is opened before the store, so that a missing file creates nothing
    snapshots = read_snapshots(
        arguments.snapshots, catalog.schema, id_field=arguments.id_field, failures=failures
    )
    store = _open_store(arguments.store, arguments.prefix, create=True)
    progress = _Progress(sys.stderr, arguments.snapshots)
    try:
        with _stoppable() as stops, _changes_writer(arguments.changes) as changes:
            # the plugin listeners the catalog or --listener names hear every change, after --changes
            listeners: list[Listener] = [*([changes] if changes else []), *chosen]
            tagger = Tagger(catalog, store, listeners=listeners)
            report = tagger.apply_many(
                ((str(identifier), value) for _, identifier, value in snapshots),
                now=resolve_now(arguments.now),
                progress=_after_chunk(progress, changes, stops),
            )
    except StoreError as error:
        raise CommandError(str(error)) from None
    except _Stopped as stop:
        print(_stopped(str(stop), progress, arguments.changes), file=sys.stderr)
        return 128 + signal.Signals[str(stop)]
    finally:
        progress.done()
        store.close()
    _print_summary(arguments, report, catalog, len(failures))
    if failures:
        count = len(failures)
        print(f"{arguments.snapshots}: {plural(count, 'bad line')} skipped", file=sys.stderr)
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
    chosen = _plugin_listeners(catalog, arguments.listener)
    source = _source_engine(arguments.db)
    store = _open_store(arguments.store, arguments.prefix, create=True)
    progress = _Progress(sys.stderr, "-")
    try:
        with _stoppable() as stops, _changes_writer(arguments.changes) as changes:
            listeners: list[Listener] = [*([changes] if changes else []), *chosen]
            report = retag_from_table(
                catalog,
                source,
                arguments.table,
                store,
                id_column=arguments.id_column,
                columns=dict(arguments.column),
                now=resolve_now(arguments.now),
                listeners=listeners,
                progress=_after_chunk(progress, changes, stops),
            )
    except StoreError as error:
        raise CommandError(str(error)) from None
    except SourceError as error:
        raise CommandError(_source_problem(error, source)) from None
    except _Stopped as stop:
        print(_stopped(str(stop), progress, arguments.changes), file=sys.stderr)
        return 128 + signal.Signals[str(stop)]
    finally:
        progress.done()
        store.close()
        source.dispose()
    _print_summary(arguments, report, catalog)
    return 0


def _summary_stream(arguments: argparse.Namespace) -> IO[str]:
    """Standard output, or standard error when ``--changes -`` gives standard output to the changes."""
    return sys.stderr if arguments.changes == "-" else sys.stdout


def _source_engine(url: str) -> Engine:
    """The engine of ``run --db``: the stores' timeouts (and URL parameters for them) apply to it too."""
    try:
        return database_engine(url, store=False)
    except StoreError as error:
        raise CommandError(str(error)) from None


def _source_problem(error: SourceError, source: Engine) -> str:
    """One line for a failed read of the table; a lost connection (or a read timeout) says so."""
    lost = error.__context__
    reading = str(error).startswith("the database refused the query")
    if reading and isinstance(lost, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        reason = str(lost.orig or lost).strip().splitlines()[0]
        return (
            f"{source.url.render_as_string(hide_password=True)}: cannot read the table: {reason}; "
            "is the database running and reachable? (committed chunks are kept: run again to finish)"
        )
    return str(error).strip().splitlines()[0]


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


def _plugin_listeners(catalog: Catalog, names: list[str]) -> list[Listener]:
    """The plugin listeners of a run: those the catalog names, then those of ``--listener``."""
    try:
        return plugins().listeners_for(catalog, names)
    except PluginError as error:
        raise CommandError(f"run: {error}") from None


class _ChangesFile:
    """The ``--changes`` output: one JSON line per change event, made durable after each committed
    chunk (flushed and, for a file, fsynced), so that a run that fails or is stopped leaves the
    changes of every chunk it committed."""

    def __init__(self, stream: IO[str], path: str) -> None:
        self.stream = stream
        self.path = path
        self.failure: OSError | None = None

    def __call__(self, event: ChangeEvent) -> None:
        if self.failure is not None:
            return
        line = {"id": event.customer_id, "tag": event.tag, "change": event.change}
        try:
            self.stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        except OSError as error:  # reported after the chunk, where it stops the run
            self.failure = error

    def sync(self) -> None:
        try:
            if self.failure is not None:
                raise self.failure
            self.stream.flush()
            if self.stream is not sys.stdout:
                os.fsync(self.stream.fileno())
        except OSError as error:
            full = " (the disk is full)" if error.errno == errno.ENOSPC else ""
            raise CommandError(
                f"cannot write {self.path}: {error.strerror or error}{full}; the chunks committed so far "
                "are kept, but the changes of the last one may be missing from the file"
            ) from None


@contextmanager
def _changes_writer(path: str | None) -> Iterator[_ChangesFile | None]:
    if path is None:
        yield None
        return
    if path == "-":
        changes = _ChangesFile(sys.stdout, path)
        yield changes
        changes.sync()
        return
    try:
        stream = open(path, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
    changes = _ChangesFile(stream, path)
    try:
        yield changes
        changes.sync()
    finally:
        with suppress(OSError):
            stream.close()


class _Stopped(Exception):
    """A run was stopped by a signal."""


class _StopRequests:
    """SIGTERM and SIGINT (Ctrl-C) during a run: the first stops the run after the chunk in flight,
    once its changes are durable, so that no committed change is missing from ``--changes``; a
    second one stops it at once (the chunk in flight rolls back)."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    def __call__(self, signum: int, frame: object) -> None:
        again = self.signal is not None
        self.signal = signal.Signals(signum)
        if again:
            raise _Stopped(self.signal.name)

    def check(self) -> None:
        if self.signal is not None:
            raise _Stopped(self.signal.name)


@contextmanager
def _stoppable() -> Iterator[_StopRequests]:
    requests = _StopRequests()
    try:
        previous = {number: signal.signal(number, requests) for number in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread: signals are not ours to handle
        yield requests
        return
    try:
        yield requests
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _after_chunk(
    progress: _Progress, changes: _ChangesFile | None, stops: _StopRequests
) -> Callable[[int], None]:
    """Called after each committed chunk: its changes made durable, progress shown, then a stop
    requested by a signal carried out."""

    def after_chunk(count: int) -> None:
        if changes is not None:
            changes.sync()
        progress(count)
        stops.check()

    return after_chunk


def _stopped(how: str, progress: _Progress, changes: str | None) -> str:
    done = f" after {progress.count:,} customers" if progress.count else ""
    kept = (
        f" (their changes are in {changes}; give the re-run another file)"
        if changes not in (None, "-")
        else ""
    )
    return (
        f"tagrules: run stopped by {how}{done}; the chunks committed so far are kept{kept}; "
        "run the same command again to resume"
    )


def run_members(arguments: argparse.Namespace) -> int:
    """``tagrules members``: one customer id per line, sorted."""
    store = _open_store(arguments.store, arguments.prefix, create=False)
    try:
        members = store.members(arguments.tag, as_of=arguments.as_of)
        if not members and arguments.as_of is None:
            held = store.held_tags("computed") | store.held_tags("manual")
            if arguments.tag not in held:
                raise CommandError(
                    f"tag {arguments.tag!r} is unknown to the store: no customer holds it"
                    f"{suggest(arguments.tag, held)}"
                )
    except StoreError as error:
        raise CommandError(str(error)) from None
    finally:
        store.close()
    for member in members:
        print(json.dumps({"id": member}, ensure_ascii=False) if arguments.json else member)
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
    if arguments.json:
        for entry in entries:
            period = {
                "tag": entry.tag,
                "source": entry.source,
                "since": _when(entry.since),
                "until": _when(entry.until) or None,
                "reason": entry.reason,
            }
            print(json.dumps(period, ensure_ascii=False))
        return 0
    width = max(len("tag"), *(len(entry.tag) for entry in entries))
    print(f"{'tag':<{width}}  {'source':<8}  {'since':<27}  {'until':<27}  reason")
    for entry in entries:
        line = (
            f"{entry.tag:<{width}}  {entry.source:<8}  {_when(entry.since):<27}  {_when(entry.until):<27}  "
            f"{entry.reason or ''}"
        )
        print(line.rstrip())
    return 0


def run_forget(arguments: argparse.Namespace) -> int:
    """``tagrules forget``: erase everything the store keeps of one customer; 1 if it keeps nothing."""
    store = _open_store(arguments.store, arguments.prefix, create=False)
    try:
        known = bool(store.load([arguments.id]) or store.history(arguments.id))
        if known:
            store.forget(arguments.id)
    except StoreError as error:
        raise CommandError(str(error)) from None
    finally:
        store.close()
    if not known:
        raise CommandError(
            f"no customer {arguments.id!r} in {arguments.store} (ids are exact: case and spaces count); "
            "nothing to forget"
        )
    print(f"forgot customer {arguments.id!r}: memberships, history, overrides and pending events erased")
    return 0


def run_upgrade(arguments: argparse.Namespace) -> int:
    """``tagrules db upgrade URL``: create or upgrade the tables; print the revision."""
    try:
        revision = upgrade(arguments.url, prefix=arguments.prefix)
    except (StoreError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"{arguments.url}: schema at revision {revision} (table prefix {arguments.prefix!r})")
    return 0
