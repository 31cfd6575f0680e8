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
    field_column,
    load_catalog,
    open_output,
    parse_now,
    plugins,
    plural,
    print_problems,
    read_snapshots,
)
from tagrules.errors import DefinitionError, SourceError, StoreError
from tagrules.evaluation import resolve_now
from tagrules.plugins import PluginError
from tagrules.retag import RetagReport, retag_from_table
from tagrules.schema import suggest
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


def run_run(arguments: argparse.Namespace) -> int:
    """``tagrules run``: evaluate, store, print the summary table; 1 if some lines were bad."""
    if arguments.snapshots is not None and arguments.db is not None:
        raise CommandError("run: give either SNAPSHOTS.jsonl or --db URL --table NAME, not both")
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
        with _changes_writer(arguments.changes) as listener:
            # the plugin listeners the catalog or --listener names hear every change, after --changes
            listeners = [*([listener] if listener else []), *chosen]
            tagger = Tagger(catalog, store, listeners=listeners)
            report = tagger.apply_many(
                ((str(identifier), value) for _, identifier, value in snapshots),
                now=resolve_now(arguments.now),
                progress=progress,
            )
    except StoreError as error:
        raise CommandError(str(error)) from None
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
    store = _open_store(arguments.store, arguments.prefix, create=True)
    progress = _Progress(sys.stderr, "-")
    try:
        with _changes_writer(arguments.changes) as listener:
            listeners = [*([listener] if listener else []), *chosen]
            report = retag_from_table(
                catalog,
                arguments.db,
                arguments.table,
                store,
                id_column=arguments.id_column,
                columns=dict(arguments.column),
                now=resolve_now(arguments.now),
                listeners=listeners,
                progress=progress,
            )
    except (StoreError, SourceError) as error:
        raise CommandError(str(error)) from None
    finally:
        progress.done()
        store.close()
    _print_summary(arguments, report, catalog)
    return 0


def _summary_stream(arguments: argparse.Namespace) -> IO[str]:
    """Standard output, or standard error when ``--changes -`` gives standard output to the changes."""
    return sys.stderr if arguments.changes == "-" else sys.stdout


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


def run_upgrade(arguments: argparse.Namespace) -> int:
    """``tagrules db upgrade URL``: create or upgrade the tables; print the revision."""
    try:
        revision = upgrade(arguments.url, prefix=arguments.prefix)
    except (StoreError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"{arguments.url}: schema at revision {revision} (table prefix {arguments.prefix!r})")
    return 0
