"""The change feed of a SQL store: positions, consumers and their cursors, purging.

Writers insert events into the outbox without a position. The outbox ids grow, but not in commit
order on PostgreSQL and MariaDB: a transaction that took id 10 may commit after one that took id
11, and a consumer that had acknowledged 11 would never see 10. So an event gets its position when
it is first read: every feed operation locks the one row of the ``feed`` table (SQLite: takes the
write lock), and a read gives the committed events without a position, in id order, positions
after the feed's ``head`` (the last position given). An event committed late is therefore placed
after every event read before it, and a consumer's cursor (the last position it acknowledged)
never passes an event it has not been given. Where no transaction committed late, an event's
position is its id.

Writers never touch the feed row, so they neither wait for readers nor for each other here.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection
from typing import Any

import sqlalchemy
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from tagrules.errors import InvalidArgument
from tagrules.stores._base import ChangeEvent, FeedConsumer, as_utc
from tagrules.stores._tables import StoreTables

__all__ = [
    "acknowledge_leading",
    "acknowledge_position",
    "drop_consumer",
    "feed_consumers",
    "lock_feed",
    "next_events",
    "purge",
]

_BATCH = 1000
_FEED_ROW = 1


def lock_feed(connection: Connection, tables: StoreTables) -> int:
    """Lock the feed for this transaction (one feed operation at a time) and return its head."""
    f = tables.feed
    if connection.dialect.name == "sqlite":
        # a write first: SQLite's write lock, held to the end of the transaction
        connection.execute(update(f).where(f.c.id == _FEED_ROW).values(head=f.c.head))
        head = connection.execute(select(f.c.head).where(f.c.id == _FEED_ROW)).scalar()
    else:
        head = connection.execute(select(f.c.head).where(f.c.id == _FEED_ROW).with_for_update()).scalar()
    if head is None:
        # tables made without the migrations (metadata.create_all): the row is made on first use
        connection.execute(insert(f).values(id=_FEED_ROW, head=0))
        return 0
    return int(head)


def _sequence(connection: Connection, tables: StoreTables, head: int, limit: int) -> int:
    """Give positions after ``head`` to up to ``limit`` committed events that have none, in id
    order; return the new head."""
    o, f = tables.outbox, tables.feed
    ids = [
        row[0]
        for row in connection.execute(
            select(o.c.id).where(o.c.position.is_(None)).order_by(o.c.id).limit(limit)
        )
    ]
    if not ids:
        return head
    # position = id where the id is past the head; an event committed late is shifted past it
    offset = max(0, head - ids[0] + 1)
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        connection.execute(update(o).where(o.c.id.in_(batch)).values(position=o.c.id + offset))
    head = ids[-1] + offset
    connection.execute(update(f).where(f.c.id == _FEED_ROW).values(head=head))
    return head


def _cursor(connection: Connection, tables: StoreTables, consumer: str) -> int:
    """The position ``consumer`` acknowledged last; a new consumer is registered at the beginning."""
    c = tables.consumers
    found = connection.execute(select(c.c.position).where(c.c.name == consumer)).scalar()
    if found is None:
        now = datetime.datetime.now(datetime.timezone.utc)
        connection.execute(insert(c).values(name=consumer, position=0, registered_at=now))
        return 0
    return int(found)


def _move(connection: Connection, tables: StoreTables, consumer: str, position: int) -> None:
    c = tables.consumers
    connection.execute(
        update(c).where(c.c.name == consumer, c.c.position < position).values(position=position)
    )


def next_events(connection: Connection, tables: StoreTables, consumer: str, limit: int) -> list[ChangeEvent]:
    """The next ``limit`` events for ``consumer`` after its cursor (in a transaction of their own)."""
    head = lock_feed(connection, tables)
    _sequence(connection, tables, head, limit)
    after = _cursor(connection, tables, consumer)
    o = tables.outbox
    rows = connection.execute(
        select(o.c.customer_id, o.c.tag, o.c.change, o.c.at, o.c.reason, o.c.position)
        .where(o.c.position > after)
        .order_by(o.c.position)
        .limit(limit)
    )
    return [ChangeEvent(*row) for row in rows]


def acknowledge_position(connection: Connection, tables: StoreTables, consumer: str, position: int) -> None:
    """Move ``consumer``'s cursor to ``position`` (never back).

    Raises:
        InvalidArgument: the feed has given no position as high as ``position``.
    """
    head = lock_feed(connection, tables)
    if position > head:
        raise InvalidArgument(
            f"consumer {consumer!r}: position {position} is beyond the feed's last event ({head}); "
            "acknowledge the position of an event you read"
        )
    _cursor(connection, tables, consumer)
    _move(connection, tables, consumer, position)


def acknowledge_leading(
    connection: Connection, tables: StoreTables, consumer: str, positions: Collection[int]
) -> None:
    """Move ``consumer``'s cursor past its next events as long as their positions are in
    ``positions``, then purge what every consumer has acknowledged."""
    lock_feed(connection, tables)
    after = _cursor(connection, tables, consumer)
    if positions:
        o = tables.outbox
        upto = after
        for (position,) in connection.execute(
            select(o.c.position).where(o.c.position > after).order_by(o.c.position).limit(len(positions))
        ):
            if position not in positions:
                break
            upto = position
        if upto > after:
            _move(connection, tables, consumer, upto)
    _delete(connection, tables, None)


def purge(connection: Connection, tables: StoreTables, before: datetime.datetime | None) -> int:
    """Delete what every registered consumer acknowledged (happened before ``before``); with no
    consumer registered, every event (before ``before``). Returns how many were deleted."""
    lock_feed(connection, tables)
    return _delete(connection, tables, before)


def _delete(connection: Connection, tables: StoreTables, before: datetime.datetime | None) -> int:
    o, c = tables.outbox, tables.consumers
    upto = connection.execute(select(func.min(c.c.position))).scalar()
    statement: Any = delete(o)
    if upto is not None:
        statement = statement.where(o.c.position <= upto)
    if before is not None:
        statement = statement.where(o.c.at < sqlalchemy.literal(before, o.c.at.type))
    return int(connection.execute(statement).rowcount)


def feed_consumers(connection: Connection, tables: StoreTables) -> list[FeedConsumer]:
    """The registered consumers by name, each with its position and the retained events after it
    (those not given a position yet included: they come after every position)."""
    o, c = tables.outbox, tables.consumers
    unplaced = int(connection.execute(select(func.count()).where(o.c.position.is_(None))).scalar() or 0)
    found = []
    for name, position, registered in connection.execute(
        select(c.c.name, c.c.position, c.c.registered_at).order_by(c.c.name)
    ):
        after = connection.execute(select(func.count()).where(o.c.position > position)).scalar()
        found.append(FeedConsumer(name, int(position), unplaced + int(after or 0), as_utc(registered)))
    return found


def drop_consumer(connection: Connection, tables: StoreTables, consumer: str) -> bool:
    """Unregister ``consumer``; whether it was registered."""
    lock_feed(connection, tables)
    c = tables.consumers
    return int(connection.execute(delete(c).where(c.c.name == consumer)).rowcount) > 0
