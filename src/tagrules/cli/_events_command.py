"""``tagrules events``: a consumer's next change events from a store's feed, acknowledged on request;
a purge of what every consumer has acknowledged; the registered consumers, and dropping one."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tagrules.cli._common import CommandError, parse_now, plural
from tagrules.cli._store_commands import _open_store, _store_option
from tagrules.errors import InvalidArgument, StoreError
from tagrules.stores import ChangeEvent, FeedConsumer

__all__ = ["register"]

DEFAULT_LIMIT = 1000


def register(commands: Any) -> None:
    """Add ``events`` to the ``tagrules`` parser."""
    events = commands.add_parser(
        "events", help="read a consumer's next change events from a store (or purge acknowledged ones)"
    )
    _store_option(events, default=None)
    events.add_argument("--consumer", metavar="NAME", help="the consumer whose next events to print")
    events.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N events (default: {DEFAULT_LIMIT})",
    )
    events.add_argument("--ack", action="store_true", help="acknowledge the printed events for the consumer")
    events.add_argument(
        "--json",
        action="store_true",
        help='print JSON Lines: {"position", "id", "tag", "change", "at", "reason"} per event',
    )
    events.add_argument(
        "--purge",
        action="store_true",
        help="delete the events every consumer has acknowledged (instead of --consumer)",
    )
    events.add_argument(
        "--before", type=parse_now, metavar="ISO8601", help="with --purge: only events before this time"
    )
    events.add_argument(
        "--consumers",
        action="store_true",
        help="list the registered consumers: position acknowledged, events pending (instead of --consumer)",
    )
    events.add_argument(
        "--drop",
        metavar="NAME",
        help="unregister the consumer NAME, so that it no longer keeps events from being purged",
    )
    events.set_defaults(run=run_events)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of events of at least 1")
    return value


def _when(event: ChangeEvent) -> str:
    return event.at.isoformat().replace("+00:00", "Z")


def event_data(event: ChangeEvent) -> dict[str, object]:
    """One line of ``events --json``."""
    return {
        "position": event.position,
        "id": event.customer_id,
        "tag": event.tag,
        "change": event.change,
        "at": _when(event),
        "reason": event.reason,
    }


def run_events(arguments: argparse.Namespace) -> int:
    """``tagrules events``: print (and with ``--ack`` acknowledge) a consumer's next events, or purge."""
    modes = [
        flag
        for flag, given in (
            ("--consumer NAME", arguments.consumer is not None),
            ("--purge", arguments.purge),
            ("--consumers", arguments.consumers),
            ("--drop NAME", arguments.drop is not None),
        )
        if given
    ]
    if len(modes) != 1:
        raise CommandError(
            "events: give --consumer NAME to read events, --purge to delete acknowledged ones, "
            "--consumers to list the consumers or --drop NAME to unregister one"
            + (f" (not {' and '.join(modes)} together)" if modes else "")
        )
    if arguments.ack and arguments.consumer is None:
        raise CommandError(f"events: --ack goes with --consumer NAME, not with {modes[0]}")
    if arguments.before is not None and not arguments.purge:
        raise CommandError("events: --before ISO8601 goes with --purge")
    store = _open_store(arguments.store, arguments.prefix, create=False)
    try:
        if arguments.consumers:
            _print_consumers(store.consumers(), as_json=arguments.json)
            return 0
        if arguments.drop is not None:
            dropped = store.drop_consumer(arguments.drop)
            if arguments.json:
                print(json.dumps({"consumer": arguments.drop, "dropped": dropped}, ensure_ascii=False))
            elif dropped:
                print(f"dropped consumer {arguments.drop!r}: it no longer keeps events from being purged")
            else:
                print(f"no consumer {arguments.drop!r} is registered: nothing to drop")
            return 0
        if arguments.purge:
            purged = store.purge_events(before=arguments.before)
            if arguments.json:
                print(json.dumps({"purged": purged}))
            else:
                print(f"purged {plural(purged, 'event')} every consumer has acknowledged")
            return 0
        events = store.events(arguments.consumer, limit=arguments.limit)
        _print(events, as_json=arguments.json)
        if arguments.ack and events:
            # only once the events are written out: a failed write acknowledges nothing
            sys.stdout.flush()
            store.ack(arguments.consumer, events[-1].position or 0)
    except InvalidArgument as error:
        raise CommandError(f"events: {error}") from None
    except StoreError as error:
        raise CommandError(str(error)) from None
    finally:
        store.close()
    return 0


def _print(events: list[ChangeEvent], *, as_json: bool) -> None:
    if as_json:
        for event in events:
            print(json.dumps(event_data(event), ensure_ascii=False))
        return
    if not events:
        return
    width = max(len("id"), *(len(event.customer_id) for event in events))
    tag_width = max(len("tag"), *(len(event.tag) for event in events))
    print(f"{'position':>8}  {'id':<{width}}  {'tag':<{tag_width}}  {'change':<7}  {'at':<27}  reason")
    for event in events:
        print(
            f"{event.position:>8}  {event.customer_id:<{width}}  {event.tag:<{tag_width}}  "
            f"{event.change:<7}  {_when(event):<27}  {event.reason}"
        )


def _print_consumers(consumers: list[FeedConsumer], *, as_json: bool) -> None:
    if as_json:
        for consumer in consumers:
            print(json.dumps(consumer.to_data(), ensure_ascii=False))
        return
    if not consumers:
        print("no consumer is registered")
        return
    width = max(len("consumer"), *(len(consumer.name) for consumer in consumers))
    print(f"{'consumer':<{width}}  {'position':>8}  {'pending':>7}  registered")
    for consumer in consumers:
        registered = consumer.registered_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        print(f"{consumer.name:<{width}}  {consumer.position:>8}  {consumer.pending:>7}  {registered}")
