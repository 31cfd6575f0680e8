"""The tables of a SQL tag store, as SQLAlchemy Core objects built for a table prefix.

Writers other than :class:`~tagrules.SQLStore` (set-wise updates inside the database) use
:func:`store_tables` so that they write exactly the rows the store reads. The Alembic migrations in
``tagrules/stores/migrations`` create the same tables; a test keeps both in step.
"""

from __future__ import annotations

import datetime
import functools
import re
from typing import Any, NamedTuple, cast

import sqlalchemy
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

from tagrules.stores._ids import MAX_CONSUMER_LENGTH, MAX_ID_LENGTH

__all__ = [
    "DEFAULT_PREFIX",
    "ExactText",
    "StoreTables",
    "UTCDateTime",
    "check_prefix",
    "exact_collation",
    "store_tables",
]

DEFAULT_PREFIX = "tagrules_"
_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
ID_LENGTH = MAX_ID_LENGTH
TAG_LENGTH = 64
RUN_ID_LENGTH = 64
CONSUMER_LENGTH = MAX_CONSUMER_LENGTH
#: The counts a run keeps per tag.
RUN_COUNTS = ("members", "added", "removed", "errors")


def check_prefix(prefix: str) -> str:
    """``prefix`` itself, if it is a safe start for table names (lowercase, ``[a-z][a-z0-9_]*``)."""
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"table prefix {prefix!r} must be lowercase letters, digits and '_', starting with a letter "
            "(at most 30 characters)"
        )
    return prefix


class UTCDateTime(sqlalchemy.types.TypeDecorator[datetime.datetime]):
    """An aware UTC datetime, stored naive in UTC with microseconds on every database."""

    impl = sqlalchemy.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sqlalchemy.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sqlalchemy.DateTime())

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)

    def process_result_value(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=datetime.timezone.utc)


class StoreTables(NamedTuple):
    """The tables of one store (one prefix), in one :class:`sqlalchemy.MetaData`.

    Attributes:
        customers: one row per customer the store has changed: ``customer_id``, ``version`` (bumped by
            each committed change, checked by the next one), ``updated_at``, ``due_at`` (when its
            tags change by time alone; ``NULL``: never, or not known), ``lapses`` (``tag instant`` pairs,
            space-separated: when each computed membership lapses by time alone; ``NULL`` while not
            known).
        memberships: the current memberships: ``customer_id``, ``tag``, ``source``, ``since``,
            ``rule_version``, ``lapses_at`` (when it lapses by time alone; ``NULL``: never, or not
            known); one row per customer and tag.
        history: every membership period: ``id``, ``customer_id``, ``tag``, ``source``, ``since``,
            ``until`` (``NULL`` while open), ``rule_version``, ``reason`` (why it closed),
            ``catalog_version`` and ``closed_version`` (the catalog versions of the runs that opened
            and closed it).
        overrides: people's decisions: ``customer_id``, ``tag``, ``kind`` (include/exclude), ``by``,
            ``reason``, ``at``.
        outbox: the change feed's events until purged: ``id`` (insertion order), ``customer_id``,
            ``tag``, ``change`` (added/removed), ``at``, ``reason``, ``position`` (the event's place in
            the feed, given when it is first read; ``NULL`` until then).
        runs: one row per run: ``id``, ``kind`` (run/day), ``started_at``, ``finished_at``,
            ``evaluated_at``, ``catalog_version``, ``customers``, ``emit_events`` (false for a run that
            wrote no change events).
        run_tags: one row per run and tag: ``run_id``, ``tag``, ``tag_group`` (its exclusive group),
            ``tier_rank`` (0 for the group's highest priority), ``members``, ``added``, ``removed``,
            ``errors``.
        consumers: one row per consumer of the change feed: ``name``, ``position`` (the last it
            acknowledged), ``registered_at``.
        feed: one row, ``id`` 1: ``head``, the last position given to an event.
        versions: one row per published catalog version: ``version``, ``name``, ``published_at``,
            ``published_by``, ``note``.
        version_tags: one row per version and tag: ``version``, ``tag``, ``definition`` (JSON).
    """

    metadata: sqlalchemy.MetaData
    customers: sqlalchemy.Table
    memberships: sqlalchemy.Table
    history: sqlalchemy.Table
    overrides: sqlalchemy.Table
    outbox: sqlalchemy.Table
    runs: sqlalchemy.Table
    run_tags: sqlalchemy.Table
    consumers: sqlalchemy.Table
    feed: sqlalchemy.Table
    versions: sqlalchemy.Table
    version_tags: sqlalchemy.Table


def exact_collation(dialect: Dialect) -> str:
    """The MariaDB/MySQL collation under which text compares exactly: byte for byte, trailing spaces
    counted (``NO PAD``). MySQL before 8.0.17 has none that counts trailing spaces: ``utf8mb4_bin``."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = getattr(dialect, "server_version_info", None) or ()
    return "utf8mb4_0900_bin" if tuple(version) >= (8, 0, 17) else "utf8mb4_bin"


class ExactText(sqlalchemy.types.TypeDecorator[str]):
    """Text that compares exactly on MariaDB/MySQL too (their default collations ignore case and
    trailing spaces, so ``'Big'``, ``'big'`` and ``'big '`` would be one customer). Other databases
    compare text exactly already and store it as a plain ``VARCHAR``."""

    impl = sqlalchemy.String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sqlalchemy.types.TypeEngine[Any]:
        return dialect.type_descriptor(
            mysql.VARCHAR(
                cast(sqlalchemy.String, self.impl_instance).length,
                charset="utf8mb4",
                collation=exact_collation(dialect),
            )
        )


def _exact(length: int) -> sqlalchemy.types.TypeEngine[str]:
    # a plain String elsewhere: PostgreSQL's array parameters of the bulk writes take its type as is
    return sqlalchemy.String(length).with_variant(ExactText(length), "mysql", "mariadb")


def _id() -> sqlalchemy.types.TypeEngine[str]:
    return _exact(ID_LENGTH)


def _tag() -> sqlalchemy.types.TypeEngine[str]:
    return _exact(TAG_LENGTH)


_BIGINT = sqlalchemy.BigInteger().with_variant(sqlalchemy.Integer(), "sqlite")


@functools.lru_cache(maxsize=64)
def store_tables(prefix: str = DEFAULT_PREFIX) -> StoreTables:
    """The tables of the store whose table names start with ``prefix`` (default ``tagrules_``)."""
    check_prefix(prefix)
    metadata = sqlalchemy.MetaData()
    column = sqlalchemy.Column
    customers = sqlalchemy.Table(
        f"{prefix}customers",
        metadata,
        column("customer_id", _id(), primary_key=True),
        column("version", sqlalchemy.Integer, nullable=False),
        column("updated_at", UTCDateTime(), nullable=False),
        column("due_at", UTCDateTime()),
        column("lapses", sqlalchemy.Text),
        sqlalchemy.Index(f"{prefix}customers_due", "due_at"),
    )
    memberships = sqlalchemy.Table(
        f"{prefix}memberships",
        metadata,
        column("customer_id", _id(), primary_key=True),
        column("tag", _tag(), primary_key=True),
        column("source", _exact(16), nullable=False),
        column("since", UTCDateTime(), nullable=False),
        column("rule_version", _exact(32)),
        column("lapses_at", UTCDateTime()),
        sqlalchemy.Index(f"{prefix}memberships_tag", "tag", "customer_id"),
        # only the memberships that lapse, where the database has partial indexes (revision 0006)
        sqlalchemy.Index(
            f"{prefix}memberships_lapses",
            "tag",
            "lapses_at",
            postgresql_where=sqlalchemy.text("lapses_at IS NOT NULL"),
            sqlite_where=sqlalchemy.text("lapses_at IS NOT NULL"),
        ),
    )
    history = sqlalchemy.Table(
        f"{prefix}history",
        metadata,
        column("id", _BIGINT, primary_key=True, autoincrement=True),
        column("customer_id", _id(), nullable=False),
        column("tag", _tag(), nullable=False),
        column("source", _exact(16), nullable=False),
        column("since", UTCDateTime(), nullable=False),
        column("until", UTCDateTime()),
        column("rule_version", _exact(32)),
        column("reason", _exact(32)),
        column("catalog_version", _exact(32)),
        column("closed_version", _exact(32)),
        sqlalchemy.Index(f"{prefix}history_customer", "customer_id", "tag"),
        sqlalchemy.Index(f"{prefix}history_tag", "tag", "since"),
    )
    overrides = sqlalchemy.Table(
        f"{prefix}overrides",
        metadata,
        column("customer_id", _id(), primary_key=True),
        column("tag", _tag(), primary_key=True),
        column("kind", _exact(16), nullable=False),
        column("by", _exact(ID_LENGTH), nullable=False),
        column("reason", sqlalchemy.Text, nullable=False),
        column("at", UTCDateTime(), nullable=False),
    )
    outbox = sqlalchemy.Table(
        f"{prefix}outbox",
        metadata,
        column("id", _BIGINT, primary_key=True, autoincrement=True),
        column("customer_id", _id(), nullable=False),
        column("tag", _tag(), nullable=False),
        column("change", _exact(16), nullable=False),
        column("at", UTCDateTime(), nullable=False),
        column("reason", _exact(32), nullable=False),
        column("position", _BIGINT),
        sqlalchemy.Index(f"{prefix}outbox_customer", "customer_id"),
        # the feed read by position, and the events not positioned yet (NULL) found in id order
        sqlalchemy.Index(f"{prefix}outbox_position", "position", "id"),
        # SQLite: ids never reused, not even those of acknowledged (deleted) events
        sqlite_autoincrement=True,
    )
    runs = sqlalchemy.Table(
        f"{prefix}runs",
        metadata,
        column("id", _exact(RUN_ID_LENGTH), primary_key=True),
        column("kind", _exact(8), nullable=False),
        column("started_at", UTCDateTime(), nullable=False),
        column("finished_at", UTCDateTime(), nullable=False),
        column("evaluated_at", UTCDateTime(), nullable=False),
        column("catalog_version", _exact(32), nullable=False),
        column("customers", sqlalchemy.BigInteger, nullable=False),
        column("emit_events", sqlalchemy.Boolean, nullable=False, server_default=sqlalchemy.true()),
        sqlalchemy.Index(f"{prefix}runs_evaluated", "evaluated_at"),
    )
    counts = [column(name, sqlalchemy.BigInteger, nullable=False) for name in RUN_COUNTS]
    run_tags = sqlalchemy.Table(
        f"{prefix}run_tags",
        metadata,
        column("run_id", _exact(RUN_ID_LENGTH), primary_key=True),
        column("tag", _tag(), primary_key=True),
        column("tag_group", _tag()),
        column("tier_rank", sqlalchemy.Integer),
        *counts,
    )
    consumers = sqlalchemy.Table(
        f"{prefix}consumers",
        metadata,
        column("name", _exact(CONSUMER_LENGTH), primary_key=True),
        column("position", sqlalchemy.BigInteger, nullable=False),
        column("registered_at", UTCDateTime(), nullable=False),
    )
    feed = sqlalchemy.Table(
        f"{prefix}feed",
        metadata,
        column("id", sqlalchemy.Integer, primary_key=True, autoincrement=False),
        column("head", sqlalchemy.BigInteger, nullable=False),
    )
    versions = sqlalchemy.Table(
        f"{prefix}versions",
        metadata,
        column("version", _exact(32), primary_key=True),
        column("name", _exact(TAG_LENGTH)),
        column("published_at", UTCDateTime(), nullable=False),
        column("published_by", _exact(ID_LENGTH), nullable=False),
        column("note", sqlalchemy.Text, nullable=False),
    )
    version_tags = sqlalchemy.Table(
        f"{prefix}version_tags",
        metadata,
        column("version", _exact(32), primary_key=True),
        column("tag", _tag(), primary_key=True),
        column("definition", sqlalchemy.Text, nullable=False),
    )
    return StoreTables(
        metadata,
        customers,
        memberships,
        history,
        overrides,
        outbox,
        runs,
        run_tags,
        consumers,
        feed,
        versions,
        version_tags,
    )
