"""``tagrules stats``, ``overlap`` and ``flow``: tags over time, read from a store's history and runs."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from tagrules.cli._common import CommandError, load_catalog, parse_now, print_problems
from tagrules.cli._store_commands import _open_store, _store_option
from tagrules.errors import DefinitionError, StoreError
from tagrules.stores import SQLStore, TagStatistics

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the statistics commands to the ``tagrules`` parser."""
    stats = commands.add_parser("stats", help="members, added, removed and error rate per tag and period")
    _store_option(stats, default=None)
    stats.add_argument(
        "--tag", action="append", metavar="KEY", help="a tag to show (repeatable; default: all)"
    )
    stats.add_argument(
        "--since", type=parse_now, help="the first instant (ISO 8601; default: the first record)"
    )
    stats.add_argument("--until", type=parse_now, help="the last instant (ISO 8601; default: now)")
    stats.add_argument(
        "--every", choices=("day", "week", "month"), default="week", help="the period (default: week)"
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(run=run_stats)

    overlap = commands.add_parser("overlap", help="customers holding both tags, for each pair of tags")
    _store_option(overlap, default=None)
    overlap.add_argument("--tag", action="append", required=True, metavar="KEY", help="a tag (repeat it)")
    overlap.add_argument("--as-of", type=parse_now, help="the time to look at (ISO 8601; default: now)")
    overlap.add_argument("--json", action="store_true", help="print one JSON object")
    overlap.set_defaults(run=run_overlap)

    flow = commands.add_parser("flow", help="customers moving between the tiers of an exclusive group")
    _store_option(flow, default=None)
    flow.add_argument("--group", required=True, help="the exclusive group")
    flow.add_argument(
        "--from", dest="start", type=parse_now, required=True, help="the first instant (ISO 8601)"
    )
    flow.add_argument("--to", dest="end", type=parse_now, required=True, help="the second instant (ISO 8601)")
    flow.add_argument("--json", action="store_true", help="print one JSON object")
    flow.set_defaults(run=run_flow)

    report = commands.add_parser("report", help="write an HTML report of the store's tags over time")
    _store_option(report, default=None)
    report.add_argument("--output", required=True, metavar="FILE", help="the HTML file to write")
    report.add_argument(
        "--since", type=parse_now, help="the first instant (ISO 8601; default: the first record)"
    )
    report.add_argument("--until", type=parse_now, help="the last instant (ISO 8601; default: now)")
    report.add_argument(
        "--every", choices=("day", "week", "month"), default="week", help="the period (default: week)"
    )
    report.add_argument(
        "--catalog",
        metavar="CATALOG",
        help="a catalog file or pack, for the tags' definitions and categories",
    )
    report.set_defaults(run=run_report)


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _stats_table(stats: TagStatistics) -> str:
    keys = sorted(stats.tags)
    width = max([len("tag"), *(len(key) for key in keys)])
    lines = [f"{'period':<10}  {'tag':<{width}}  {'members':>9}  {'added':>9}  {'removed':>9}  {'errors':>8}"]
    for index, start in enumerate(stats.periods):
        for key in keys:
            series = stats.tags[key]
            rate = series.error_rate[index]
            shown = "-" if rate is None else f"{rate:.2%}"
            lines.append(
                f"{start.date().isoformat():<10}  {key:<{width}}  {series.members[index]:>9}  "
                f"{series.added[index]:>9}  {series.removed[index]:>9}  {shown:>8}"
            )
    periods, tags = len(stats.periods), len(keys)
    lines.append(f"{periods} period{'s' * (periods != 1)} of a {stats.every}, {tags} tag{'s' * (tags != 1)}")
    return "\n".join(lines)


def _open(arguments: argparse.Namespace) -> SQLStore:
    return _open_store(arguments.store, arguments.prefix, create=False)


def run_stats(arguments: argparse.Namespace) -> int:
    """``tagrules stats``: a row per period and tag, or the JSON object with ``--json``."""
    store = _open(arguments)
    try:
        stats = store.stats(
            arguments.tag, since=arguments.since, until=arguments.until, every=arguments.every
        )
    except (StoreError, ValueError) as error:
        raise CommandError(f"stats: {error}") from None
    finally:
        store.close()
    print(json.dumps(stats.to_data(), ensure_ascii=False) if arguments.json else _stats_table(stats))
    return 0


def run_overlap(arguments: argparse.Namespace) -> int:
    """``tagrules overlap``: for each pair of tags, the customers holding both."""
    tags = sorted(set(arguments.tag))
    store = _open(arguments)
    try:
        counts = store.overlap(tags, as_of=arguments.as_of)
    except StoreError as error:
        raise CommandError(f"overlap: {error}") from None
    finally:
        store.close()
    members = {key: counts.get((key, key), 0) for key in tags}
    both = {a: {b: counts.get((a, b), 0) for b in tags if b > a} for a in tags[:-1]}
    if arguments.json:
        data = {"as_of": _iso(arguments.as_of), "members": members, "both": both}
        print(json.dumps(data, ensure_ascii=False))
        return 0
    width = max(len(key) for key in tags)
    print(f"{'tag':<{width}}  {'also':<{width}}  {'both':>9}  {'of tag':>7}  {'of also':>7}")
    for a, others in both.items():
        for b, n in others.items():
            first = f"{n / members[a]:.0%}" if members[a] else "-"
            second = f"{n / members[b]:.0%}" if members[b] else "-"
            print(f"{a:<{width}}  {b:<{width}}  {n:>9}  {first:>7}  {second:>7}")
    print("members: " + ", ".join(f"{key} {n}" for key, n in members.items()))
    return 0


def run_flow(arguments: argparse.Namespace) -> int:
    """``tagrules flow``: a matrix of customers from each tier to each tier."""
    store = _open(arguments)
    try:
        flow = store.flow(arguments.group, arguments.start, arguments.end)
    except StoreError as error:
        raise CommandError(f"flow: {error}") from None
    finally:
        store.close()
    if not flow.tiers and not flow.moves:
        raise CommandError(f"flow: no recorded run has the exclusive group {arguments.group!r}")
    if arguments.json:
        print(json.dumps(flow.to_data(), ensure_ascii=False))
        return 0
    labels = [*flow.tiers, "other", "none"]
    rows = [label for label in labels if label in flow.moves]
    columns = [label for label in labels if any(label in targets for targets in flow.moves.values())]
    corner = "from \\ to"
    width = max(len(corner), *(len(label) for label in rows))
    cell = max(7, *(len(label) for label in columns))
    print(f"{corner:<{width}}  " + "  ".join(f"{label:>{cell}}" for label in columns))
    for source in rows:
        targets = flow.moves[source]
        print(f"{source:<{width}}  " + "  ".join(f"{targets.get(label, 0):>{cell}}" for label in columns))
    print(f"{arguments.group}: {_iso(flow.start)} -> {_iso(flow.end)}")
    return 0


def run_report(arguments: argparse.Namespace) -> int:
    """``tagrules report``: write the HTML report, print its path."""
    from tagrules.report import write_report

    catalog = None
    if arguments.catalog is not None:
        try:
            catalog = load_catalog(arguments.catalog)
        except DefinitionError as error:
            print_problems(error, sys.stderr)
            return 1
    store = _open(arguments)
    try:
        path = write_report(
            store,
            arguments.output,
            since=arguments.since,
            until=arguments.until,
            every=arguments.every,
            catalog=catalog,
        )
    except (StoreError, ValueError, ImportError) as error:
        raise CommandError(f"report: {error}") from None
    except OSError as error:
        raise CommandError(f"report: cannot write {arguments.output}: {error.strerror or error}") from None
    finally:
        store.close()
    print(path)
    return 0
