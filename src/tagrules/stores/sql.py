"""A tag store in a SQL database through SQLAlchemy: SQLite, PostgreSQL, MariaDB/MySQL."""

from __future__ import annotations

import datetime
import json
import operator
import random
import time
import types
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, final

import sqlalchemy
from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import URL, Connection, Engine

from tagrules.errors import ConcurrentUpdate, StoreError
from tagrules.stores._base import (
    DEFAULT_CONSUMER,
    UNKNOWN_DUE,
    CatalogVersion,
    ChangeEvent,
    CustomerChange,
    CustomerState,
    Due,
    FeedConsumer,
    HistoryEntry,
    Membership,
    Override,
    Source,
    as_utc,
    check_consumer,
    check_customer_id,
    check_limit,
    check_position,
)
from tagrules.stores._database import (
    HEAD_REVISION,
    analyze_threshold,
    create_engine,
    current_revision,
    describe,
    naive_utc,
    translated,
    upgrade,
)
from tagrules.stores._due import due_from, lapses_text
from tagrules.stores._feed import (
    acknowledge_leading,
    acknowledge_position,
    drop_consumer,
    feed_consumers,
    next_events,
    purge,
)
from tagrules.stores._runs import (
    Every,
    RunRecord,
    TagStatistics,
    TierFlow,
    period_starts,
    statistics_from,
    utc,
)
from tagrules.stores._statistics import (
    change_totals,
    error_totals,
    flow_rows,
    group_flow_rows,
    group_tiers,
    overlap_counts,
    record_run,
    run_records,
)
from tagrules.stores._tables import DEFAULT_PREFIX, StoreTables, UTCDateTime, check_prefix, store_tables

__all__ = ["SQLStore"]

_LOAD_BATCH = 1000
#: From this many rows a PostgreSQL insert is a COPY: below it, one pipelined INSERT costs fewer round
#: trips (a COPY takes two).
_COPY_ROWS = 16
_FORGET_ATTEMPTS = 10
_CUSTOMER_COLUMNS = ("customer_id", "version", "updated_at", "due_at", "lapses")
_MEMBERSHIP_COLUMNS = ("customer_id", "tag", "source", "since", "rule_version")
_HISTORY_COLUMNS = (*_MEMBERSHIP_COLUMNS, "catalog_version")
_ADDED_COLUMNS = (*_MEMBERSHIP_COLUMNS, "lapses_at")
_EVENT_COLUMNS = ("customer_id", "tag", "change", "at", "reason")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


_EMPTY: frozenset[str] = frozenset()


class _NaiveTimes(dict[datetime.datetime, datetime.datetime]):
    """Aware times as naive UTC (the stored form), each distinct time converted once: a batch's
    rows share one time. ``times[moment]``."""

    def __missing__(self, moment: datetime.datetime) -> datetime.datetime:
        found = self[moment] = naive_utc(moment)
        return found


def _stored_time(value: datetime.datetime | str) -> datetime.datetime:
    """A time read straight from the driver (SQLite gives text) as an aware UTC datetime."""
    moment = datetime.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=datetime.timezone.utc)


def _copy_type(column_type: Any) -> str:
    """The PostgreSQL type a column's values are sent as in a binary ``COPY``."""
    if isinstance(column_type, UTCDateTime):
        return "timestamp"
    if isinstance(column_type, sqlalchemy.BigInteger):
        return "int8"
    if isinstance(column_type, sqlalchemy.Integer):
        return "int4"
    return "text"


def _due_columns(due: Due | None, naive: _NaiveTimes) -> tuple[datetime.datetime | None, str | None]:
    """``due_at`` and ``lapses`` of a new customer's row (``NULL`` both while not known)."""
    if due is None:
        return None, None
    return (None if due.at is None else naive[due.at]), lapses_text(due)


def _lapse(due: Due | None, membership: Membership, naive: _NaiveTimes) -> datetime.datetime | None:
    """The ``lapses_at`` of a membership inserted by a change whose due is ``due``."""
    if due is None or membership.source != "computed":
        return None
    moment = due.lapses.get(membership.tag)
    return None if moment is None else naive[moment]


def _replaced(row: tuple[Any, ...], spots: list[int], converted: dict[Any, Any]) -> tuple[Any, ...]:
    values = list(row)
    for spot in spots:
        values[spot] = converted[values[spot]]
    return tuple(values)


def _list(count: int) -> str:
    return ", ".join(["%s"] * count)


def _numbered(sql: str) -> str:
    """``sql`` with its ``%s`` placeholders as ``$1``, ``$2``, ...: asyncpg's parameter style."""
    parts = sql.split("%s")
    return "".join(part + (f"${index}" if index < len(parts) else "") for index, part in enumerate(parts, 1))


@final
class SQLStore:
    """A :class:`~tagrules.TagStore` in a SQL database.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///tagrules.db``, ``postgresql+psycopg://user@host/db``,
            ``mysql+pymysql://user@host/db``; or an application's own
            :class:`sqlalchemy.engine.Engine`, which the store uses and never disposes of (its
            connection settings are the application's; on MariaDB/MySQL the store's own
            transactions run at ``READ COMMITTED``, as with a URL).
        prefix: the start of every table name, so the store can share an application's database.
        migrate: create or upgrade the tables when they are missing or old. By default only SQLite
            files are set up this way; server databases are set up with ``tagrules db upgrade URL``.

    Raises:
        StoreError: a bad URL, a missing driver, an unreachable database, or tables not set up.

    The store is a context manager: ``with SQLStore(url) as store:`` closes what the store opened
    (the engine it made from a URL; never an engine it was given).

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tags.db"
        >>> with SQLStore(f"sqlite:///{path}") as store:
        ...     store.members("vip")
        []
    """

    def __init__(
        self, url: str | URL | Engine, *, prefix: str = DEFAULT_PREFIX, migrate: bool | None = None
    ) -> None:
        self.prefix = check_prefix(prefix)
        self._owns_engine = not isinstance(url, Engine)
        if isinstance(url, Engine):
            given = url
            if given.dialect.name in ("mysql", "mariadb"):
                # a copy sharing the caller's pool: only the store's own connections change level
                given = given.execution_options(isolation_level="READ COMMITTED")
            self._engine = given
        else:
            self._engine = create_engine(url)
        self.url = self._engine.url
        self.tables: StoreTables = store_tables(prefix)
        self._postgres = self.url.get_backend_name() == "postgresql"
        self._sqlite = self.url.get_backend_name() == "sqlite"
        self._mysql = self.url.get_backend_name() in ("mysql", "mariadb")
        self._inserts: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._copies: dict[tuple[str, tuple[str, ...]], tuple[str, list[str]]] = {}
        self._driver_error: type[Exception] = self._engine.dialect.loaded_dbapi.Error
        # how the store waits before trying again: AsyncSQLStore waits on its event loop instead
        self._pause: Callable[[float], object] = time.sleep
        self._inserted = 0
        # PostgreSQL inserts of at least this many rows are a COPY; None: never (an INSERT of
        # unnested arrays, the earlier path, which the tests check COPY against)
        self._copy_from: int | None = (
            _COPY_ROWS if self._postgres and self.url.get_driver_name() == "psycopg" else None
        )
        self._analyze_at: int | None = None
        try:
            self._check_schema(self.url.get_backend_name() == "sqlite" if migrate is None else migrate)
        except BaseException:
            if self._owns_engine:
                self._engine.dispose()
            raise
        # PostgreSQL reads a chunk's states outside a transaction: its statements see what is
        # committed when each starts, as they would in a READ COMMITTED transaction, and the BEGIN
        # and ROLLBACK round trips are saved (psycopg switches autocommit without asking the server)
        self._reader = (
            self._engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgres else self._engine
        )
        self._statements = self._prepare()
        self._pg = self._prepare_postgres()
        marked = "CASE WHEN source = 'computed' THEN tag ELSE '!' || tag END"
        self._aggregate: str | None = {
            "sqlite": f"group_concat({marked}, ' ')",
            "postgresql": f"string_agg({marked}, ' ')",
        }.get(self.url.get_backend_name())

    def _check_schema(self, migrate: bool) -> None:
        revision = current_revision(self._engine, self.prefix)
        if revision == HEAD_REVISION:
            return
        if migrate:
            upgrade(self._engine, prefix=self.prefix)
            return
        state = "has no tag store tables" if revision is None else f"has schema revision {revision}"
        raise StoreError(
            f"{describe(self.url)} {state} (table prefix {self.prefix!r}); run "
            f"`tagrules db upgrade URL{'' if self.prefix == DEFAULT_PREFIX else ' --prefix ' + self.prefix}` "
            f"to set it up (revision {HEAD_REVISION})"
        )

    def __repr__(self) -> str:
        return f"SQLStore({describe(self.url)!r}, prefix={self.prefix!r})"

    def _among(self, values: list[str]) -> tuple[str, Sequence[Any]]:
        """``customer_id`` among ``values``, in the driver's own parameter style."""
        if self._postgres:
            # one array parameter instead of a thousand: the driver parses a short query
            return self._pg["among"], (values,)
        placeholder = "?" if self._engine.dialect.paramstyle == "qmark" else "%s"
        return f"IN ({', '.join([placeholder] * len(values))})", tuple(values)

    def _insert(
        self,
        connection: Connection,
        table: sqlalchemy.Table,
        names: tuple[str, ...],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Insert ``rows`` (tuples of the columns ``names``; times naive UTC) into ``table``."""
        if self._postgres and self._copy_from is not None and len(rows) >= self._copy_from:
            self._copy(connection, table, names, rows)
            return
        if self._postgres and len(rows) >= 16:
            # PostgreSQL: the whole batch as one array per column, unnested by the server
            arrays = {
                f"u_{name}": list(values) for name, values in zip(names, zip(*rows, strict=True), strict=True)
            }
            columns = [
                sqlalchemy.func.unnest(bindparam(f"u_{name}", type_=ARRAY(table.c[name].type)))
                for name in names
            ]
            connection.execute(insert(table).from_select(names, select(*columns)), arrays)
            return
        # Straight to the driver: SQLAlchemy's per-row parameter processing would cost more than the
        # database's work. Times are converted once per distinct value (a batch shares one time).
        sql, order, times = self._insert_statement(table, names)
        if times:
            converted: dict[Any, Any] = {None: None}
            spots = [names.index(name) for name in times]
            for spot, process in zip(spots, times.values(), strict=True):
                for value in {row[spot] for row in rows}:
                    if value not in converted:
                        converted[value] = process(value)
            rows = [_replaced(row, spots, converted) for row in rows]
        if order is None:
            connection.exec_driver_sql(sql, [dict(zip(names, row, strict=True)) for row in rows])
        elif order == names:
            connection.exec_driver_sql(sql, rows)
        else:
            values = operator.itemgetter(*[names.index(name) for name in order])
            connection.exec_driver_sql(sql, [values(row) for row in rows])

    def _copy(
        self,
        connection: Connection,
        table: sqlalchemy.Table,
        names: tuple[str, ...],
        rows: list[tuple[Any, ...]],
    ) -> None:
        # PostgreSQL: the rows streamed with COPY in its binary format, straight into the table, in
        # the write transaction like any INSERT (constraints checked alike: a duplicate key fails the
        # COPY, and the transaction with it). The driver formats each row in C and the server parses
        # no text: an INSERT of unnested arrays spent most of its time turning lists into array text.
        statement, types = self._copy_statement(table, names)
        raw = connection.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            with cursor.copy(statement) as copy:
                copy.set_types(types)
                write = copy.write_row
                for row in rows:
                    write(row)
        except self._driver_error as error:
            raise sqlalchemy.exc.DBAPIError.instance(statement, None, error, self._driver_error) from error
        finally:
            cursor.close()

    def _copy_statement(self, table: sqlalchemy.Table, names: tuple[str, ...]) -> tuple[str, list[str]]:
        key = (table.name, names)
        found = self._copies.get(key)
        if found is None:
            types = [_copy_type(table.c[name].type) for name in names]
            statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
            found = self._copies[key] = (statement, types)
        return found

    def _insert_statement(
        self, table: sqlalchemy.Table, names: tuple[str, ...]
    ) -> tuple[str, tuple[str, ...] | None, dict[str, Callable[[Any], Any]]]:
        key = (table.name, names)
        found = self._inserts.get(key)
        if found is None:
            dialect = self._engine.dialect
            compiled = insert(table).compile(dialect=dialect, column_keys=list(names))
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            times: dict[str, Callable[[Any], Any]] = {}
            for name in names:
                column_type = table.c[name].type
                if isinstance(column_type, UTCDateTime):
                    outer = column_type.dialect_impl(dialect).bind_processor(dialect)
                    if outer is not None:
                        times[name] = outer
            found = self._inserts[key] = (compiled.string, order, times)
        return found

    def _prepare_postgres(self) -> dict[str, str]:
        # Set-wise forms of the per-row statements: one statement per batch, arrays unnested
        t = self.tables
        statements = {
            "among": "= ANY(%s)",
            # a customer's due time and lapses are written with its version (kept where not has_due)
            "bump": f"UPDATE {t.customers.name} AS c SET version = c.version + 1, updated_at = r.at, "
            "due_at = CASE WHEN r.has_due THEN r.due_at ELSE c.due_at END, "
            "lapses = CASE WHEN r.has_due THEN r.lapses ELSE c.lapses END "
            "FROM unnest(%s::text[], %s::int[], %s::timestamp[], %s::bool[], %s::timestamp[], %s::text[]) "
            "AS r(customer_id, version, at, has_due, due_at, lapses) "
            "WHERE c.customer_id = r.customer_id AND c.version = r.version AND c.updated_at <= r.at",
            "clear_lapses": f"UPDATE {t.memberships.name} SET lapses_at = NULL "
            "WHERE customer_id = ANY(%s::text[]) AND lapses_at IS NOT NULL",
            "lapse": f"UPDATE {t.memberships.name} AS m SET lapses_at = r.at "
            "FROM unnest(%s::text[], %s::text[], %s::timestamp[]) AS r(customer_id, tag, at) "
            "WHERE m.customer_id = r.customer_id AND m.tag = r.tag AND m.source = 'computed'",
            "unhold": f"DELETE FROM {t.memberships.name} AS m USING unnest(%s::text[], %s::text[]) "
            "AS r(customer_id, tag) WHERE m.customer_id = r.customer_id AND m.tag = r.tag",
            "close": f"UPDATE {t.history.name} AS h SET until = r.at, reason = r.reason, "
            "closed_version = r.version "
            "FROM unnest(%s::text[], %s::text[], %s::timestamp[], %s::text[], %s::text[]) "
            "AS r(customer_id, tag, at, reason, version) "
            "WHERE h.customer_id = r.customer_id AND h.tag = r.tag AND h.until IS NULL",
        }
        if self._engine.dialect.paramstyle == "numeric_dollar":
            return {name: _numbered(sql) for name, sql in statements.items()}
        return statements

    def _prepare(self) -> dict[str, Any]:
        t = self.tables
        return {
            "bump": update(t.customers)
            .where(
                t.customers.c.customer_id == bindparam("b_customer_id"),
                t.customers.c.version == bindparam("b_version"),
                # time never runs backwards: a change older than the stored one is refused here, in
                # the write transaction, whatever the writer read before
                t.customers.c.updated_at <= bindparam("b_at"),
            )
            .values(version=t.customers.c.version + 1, updated_at=bindparam("b_at")),
            "unhold": delete(t.memberships).where(
                t.memberships.c.customer_id == bindparam("b_customer_id"),
                t.memberships.c.tag == bindparam("b_tag"),
            ),
            "close": update(t.history)
            .where(
                t.history.c.customer_id == bindparam("b_customer_id"),
                t.history.c.tag == bindparam("b_tag"),
                t.history.c.until.is_(None),
            )
            .values(
                until=bindparam("b_at"), reason=bindparam("b_reason"), closed_version=bindparam("b_version")
            ),
            "due": update(t.customers)
            .where(t.customers.c.customer_id == bindparam("b_customer_id"))
            .values(due_at=bindparam("b_due_at"), lapses=bindparam("b_lapses")),
            "lapse": update(t.memberships)
            .where(
                t.memberships.c.customer_id == bindparam("b_customer_id"),
                t.memberships.c.tag == bindparam("b_tag"),
                t.memberships.c.source == "computed",
            )
            .values(lapses_at=bindparam("b_lapses_at")),
            "unset": delete(t.overrides).where(
                t.overrides.c.customer_id == bindparam("b_customer_id"),
                t.overrides.c.tag == bindparam("b_tag"),
            ),
        }

    # -- reading and writing batches ---------------------------------------------------------------

    @contextmanager
    def _reading(self, given: Connection | None) -> Iterator[Connection]:
        if given is not None:
            yield given
            return
        with self._reader.connect() as connection:
            yield connection

    @contextmanager
    def _writing(self, given: Connection | None) -> Iterator[Connection]:
        if given is not None:
            # inside the caller's transaction, in a savepoint: a refused change undoes only itself
            if given.dialect.name == "sqlite":
                # pysqlite opens no transaction before a SAVEPOINT, whose RELEASE would then commit
                raw = given.connection.driver_connection  # sqlite3's, or aiosqlite's over it
                if raw is not None and not getattr(raw, "in_transaction", True):
                    given.exec_driver_sql("BEGIN")
            with given.begin_nested():
                yield given
            return
        with self._engine.begin() as connection:
            yield connection

    def load(
        self, customer_ids: Collection[str], *, connection: Connection | None = None
    ) -> dict[str, CustomerState]:
        """The state of each customer in ``customer_ids`` the store knows; with ``connection``, read
        inside that (the caller's) transaction."""
        given = connection
        t = self.tables
        versions: dict[str, int] = {}
        changed: dict[str, datetime.datetime] = {}
        computed: dict[str, Any] = {}
        manual: dict[str, Any] = {}
        excluded: dict[str, set[str]] = {}
        dues: dict[str, Due] = {}
        ids = [check_customer_id(customer_id) for customer_id in customer_ids]
        customers, memberships, overrides = t.customers.name, t.memberships.name, t.overrides.name
        aggregate = self._aggregate
        # The hot read of every chunk goes straight to the driver: rows as plain tuples, no per-row
        # objects, one short statement per table.
        with translated(self.url, "read customers"), self._reading(given) as connection:
            cursor = connection.connection.cursor()
            try:
                for start in range(0, len(ids), _LOAD_BATCH):
                    batch = ids[start : start + _LOAD_BATCH]
                    among, parameters = self._among(batch)
                    cursor.execute(
                        f"SELECT customer_id, version, updated_at, due_at, lapses FROM {customers} "
                        f"WHERE customer_id {among}",
                        parameters,
                    )
                    for customer_id, version, updated_at, due_at, lapses in cursor.fetchall():
                        versions[customer_id] = version
                        changed[customer_id] = _stored_time(updated_at)
                        if lapses is not None:
                            dues[customer_id] = due_from(
                                None if due_at is None else _stored_time(due_at), lapses
                            )
                    if aggregate is not None:
                        # one row per customer, its tags in one text ("!" marks manual ones)
                        cursor.execute(
                            f"SELECT customer_id, {aggregate} FROM {memberships} "
                            f"WHERE customer_id {among} GROUP BY customer_id",
                            parameters,
                        )
                        for customer_id, text in cursor.fetchall():
                            tags = text.split(" ")
                            if "!" in text:
                                manual[customer_id] = {tag[1:] for tag in tags if tag[0] == "!"}
                                tags = [tag for tag in tags if tag[0] != "!"]
                            computed[customer_id] = tags
                    else:
                        cursor.execute(
                            f"SELECT customer_id, tag, source FROM {memberships} WHERE customer_id {among}",
                            parameters,
                        )
                        for customer_id, tag, source in cursor.fetchall():
                            target = computed if source == "computed" else manual
                            held = target.get(customer_id)
                            if held is None:
                                target[customer_id] = {tag}
                            else:
                                held.add(tag)
                    cursor.execute(
                        f"SELECT customer_id, tag FROM {overrides} "
                        f"WHERE kind = 'exclude' AND customer_id {among}",
                        parameters,
                    )
                    for customer_id, tag in cursor.fetchall():
                        excluded.setdefault(customer_id, set()).add(tag)
            except self._driver_error as error:
                raise sqlalchemy.exc.DBAPIError.instance(
                    "SELECT ...", None, error, self._driver_error
                ) from error
            finally:
                cursor.close()
        states: dict[str, CustomerState] = {}
        for customer_id in versions.keys() | computed.keys() | manual.keys() | excluded.keys():
            states[customer_id] = CustomerState(
                versions.get(customer_id, 0),
                frozenset(computed.get(customer_id, _EMPTY)),
                frozenset(manual.get(customer_id, _EMPTY)),
                frozenset(excluded.get(customer_id, _EMPTY)),
                changed.get(customer_id),
                dues.get(customer_id, UNKNOWN_DUE),
            )
        return states

    def commit(self, changes: Sequence[CustomerChange], *, connection: Connection | None = None) -> None:
        """Write every change in one transaction; with ``connection``, inside that (the caller's)
        transaction, in a savepoint, left for the caller to commit or roll back.

        Raises:
            ConcurrentUpdate: as :meth:`TagStore.commit` says; nothing of the batch was written.
        """
        if not changes:
            return
        given = connection
        ordered = sorted(changes, key=lambda change: check_customer_id(change.customer_id))
        t, s = self.tables, self._statements
        naive = _NaiveTimes()
        # A customer new to the store is inserted with its due time and lapses, and its memberships
        # with their lapse: no UPDATE after the INSERT (on a first tagging, one per customer and
        # one per lapsing membership, each leaving a dead row and new index entries behind)
        new = [(c.customer_id, 1, naive[c.at], *_due_columns(c.due, naive)) for c in ordered if not c.version]
        due = [c for c in ordered if c.due is not None and c.version]
        old: list[dict[str, Any]] = [
            {"b_customer_id": c.customer_id, "b_version": c.version, "b_at": c.at}
            for c in ordered
            if c.version
        ]
        removed: list[dict[str, Any]] = [
            {
                "b_customer_id": c.customer_id,
                "b_tag": tag,
                "b_at": c.at,
                "b_reason": reason,
                "b_version": c.catalog_version,
            }
            for c in ordered
            for tag, reason in c.removed
        ]
        added = [
            (m.customer_id, m.tag, m.source, naive[m.since], m.rule_version, _lapse(c.due, m, naive))
            for c in ordered
            for m in c.added
        ]
        opened = [
            (m.customer_id, m.tag, m.source, naive[m.since], m.rule_version, c.catalog_version)
            for c in ordered
            for m in c.added
        ]
        unset = [{"b_customer_id": c.customer_id, "b_tag": tag} for c in ordered for tag in c.cleared] + [
            {"b_customer_id": o.customer_id, "b_tag": o.tag} for c in ordered for o in c.overrides
        ]
        overrides = [
            {
                "customer_id": o.customer_id,
                "tag": o.tag,
                "kind": o.kind,
                "by": o.by,
                "reason": o.reason,
                "at": o.at,
            }
            for c in ordered
            for o in c.overrides
        ]
        events = [(e.customer_id, e.tag, e.change, naive[e.at], e.reason) for c in ordered for e in c.events]
        try:
            with translated(self.url, "write changes"), self._writing(given) as connection:
                if old:
                    if self._postgres:
                        stored = [c for c in ordered if c.version]
                        stored_dues = [_due_columns(c.due, naive) for c in stored]
                        bumped = connection.exec_driver_sql(
                            self._pg["bump"],
                            (
                                [c.customer_id for c in stored],
                                [c.version for c in stored],
                                [naive_utc(c.at) for c in stored],
                                [c.due is not None for c in stored],
                                [due_at for due_at, _ in stored_dues],
                                [lapses for _, lapses in stored_dues],
                            ),
                        ).rowcount
                    elif self._mysql:
                        bumped = self._bump_mysql(connection, old)
                    else:
                        bumped = connection.execute(s["bump"], old).rowcount
                    if bumped != len(old):
                        raise ConcurrentUpdate(
                            f"{describe(self.url)}: {len(old) - bumped} of {len(old)} customers "
                            "changed since they were read (or hold a later change)"
                        )
                if new:
                    self._insert(connection, t.customers, _CUSTOMER_COLUMNS, new)
                if removed and self._postgres:
                    ids = [row["b_customer_id"] for row in removed]
                    tags = [row["b_tag"] for row in removed]
                    connection.exec_driver_sql(self._pg["unhold"], (ids, tags))
                    connection.exec_driver_sql(
                        self._pg["close"],
                        (
                            ids,
                            tags,
                            [naive_utc(row["b_at"]) for row in removed],
                            [row["b_reason"] for row in removed],
                            [row["b_version"] for row in removed],
                        ),
                    )
                elif removed and self._mysql:
                    self._remove_mysql(connection, removed)
                elif removed:
                    connection.execute(s["unhold"], removed)
                    connection.execute(s["close"], removed)
                if unset:
                    connection.execute(s["unset"], unset)
                if overrides:
                    connection.execute(insert(t.overrides), overrides)
                if due:
                    # before the new memberships go in with their lapses: only the earlier ones are
                    # cleared
                    self._clear_lapses(connection, due)
                if added:
                    self._insert(connection, t.memberships, _ADDED_COLUMNS, added)
                    self._insert(connection, t.history, _HISTORY_COLUMNS, opened)
                if events:
                    self._insert(connection, t.outbox, _EVENT_COLUMNS, events)
                if due:
                    # on PostgreSQL the customers' due times went in with their versions
                    self._write_due(connection, due, customers=not self._postgres)
        except StoreError as error:
            if isinstance(error.__cause__, sqlalchemy.exc.IntegrityError):
                raise ConcurrentUpdate(
                    f"{describe(self.url)}: a customer was changed by another writer"
                ) from error.__cause__
            raise
        if self._postgres:
            self._keep_statistics(len(added) + len(new))

    def _clear_lapses(self, connection: Connection, changes: list[CustomerChange]) -> None:
        """The lapses of the memberships customers already held, cleared: their due replaces them."""
        # (stored customers only: a range update for a new one would take MariaDB's gap locks and
        # hold back other writers' new customers)
        m = self.tables.memberships
        cleared = [change.customer_id for change in changes]
        if self._postgres:
            # one statement, its ids an array (SQLAlchemy's IN list is built and rendered per call)
            connection.exec_driver_sql(self._pg["clear_lapses"], (cleared,))
            return
        for start in range(0, len(cleared), _LOAD_BATCH):
            batch = cleared[start : start + _LOAD_BATCH]
            connection.execute(
                update(m).where(m.c.customer_id.in_(batch), m.c.lapses_at.is_not(None)).values(lapses_at=None)
            )

    def _write_due(self, connection: Connection, changes: list[CustomerChange], *, customers: bool) -> None:
        """Each stored customer's due time and lapses (``customers``), and the lapse of each membership
        it held before (those it gains were inserted with theirs)."""
        rows: list[dict[str, Any]] = []
        lapses: list[dict[str, Any]] = []
        for change in changes:
            due = change.due
            assert due is not None
            if customers:
                rows.append(
                    {"b_customer_id": change.customer_id, "b_due_at": due.at, "b_lapses": lapses_text(due)}
                )
            gained = {m.tag for m in change.added}
            lapses.extend(
                {"b_customer_id": change.customer_id, "b_tag": tag, "b_lapses_at": moment}
                for tag, moment in due.lapses.items()
                if tag not in gained
            )
        if customers:
            connection.execute(self._statements["due"], rows)
        if lapses and self._postgres:
            connection.exec_driver_sql(
                self._pg["lapse"],
                (
                    [row["b_customer_id"] for row in lapses],
                    [row["b_tag"] for row in lapses],
                    [naive_utc(row["b_lapses_at"]) for row in lapses],
                ),
            )
        elif lapses:
            connection.execute(self._statements["lapse"], lapses)

    def _bump_mysql(self, connection: Connection, old: list[dict[str, Any]]) -> int:
        # as _remove_mysql: one statement per version read (and time), not one per customer
        groups: dict[tuple[int, datetime.datetime], list[str]] = {}
        for row in old:
            groups.setdefault((row["b_version"], row["b_at"]), []).append(row["b_customer_id"])
        bumped = 0
        for (version, at), ids in groups.items():
            for start in range(0, len(ids), _LOAD_BATCH):
                batch = ids[start : start + _LOAD_BATCH]
                bumped += connection.exec_driver_sql(
                    f"UPDATE {self.tables.customers.name} SET version = version + 1, updated_at = %s "
                    f"WHERE version = %s AND updated_at <= %s AND customer_id IN ({_list(len(batch))})",
                    (naive_utc(at), version, naive_utc(at), *batch),
                ).rowcount
        return bumped

    def _remove_mysql(self, connection: Connection, removed: list[dict[str, Any]]) -> None:
        # PyMySQL sends an UPDATE or DELETE given many rows one row per round trip, which made a
        # run with removals several times slower than a first run. One statement per tag (and time
        # and reason) instead, its customers in an IN list: a list of (customer_id, tag) pairs would
        # cost MariaDB's range optimizer more than the round trips did.
        t = self.tables
        by_tag: dict[str, list[str]] = {}
        closing: dict[tuple[str, datetime.datetime, str, str | None], list[str]] = {}
        for row in removed:
            by_tag.setdefault(row["b_tag"], []).append(row["b_customer_id"])
            key = (row["b_tag"], row["b_at"], row["b_reason"], row["b_version"])
            closing.setdefault(key, []).append(row["b_customer_id"])
        for tag, ids in by_tag.items():
            for start in range(0, len(ids), _LOAD_BATCH):
                batch = ids[start : start + _LOAD_BATCH]
                connection.exec_driver_sql(
                    f"DELETE FROM {t.memberships.name} "
                    f"WHERE tag = %s AND customer_id IN ({_list(len(batch))})",
                    (tag, *batch),
                )
        for (tag, at, reason, version), ids in closing.items():
            for start in range(0, len(ids), _LOAD_BATCH):
                batch = ids[start : start + _LOAD_BATCH]
                connection.exec_driver_sql(
                    f"UPDATE {t.history.name} SET until = %s, reason = %s, closed_version = %s "
                    f"WHERE tag = %s AND until IS NULL AND customer_id IN ({_list(len(batch))})",
                    (naive_utc(at), reason, version, tag, *batch),
                )

    def _keep_statistics(self, inserted: int) -> None:
        # PostgreSQL plans from table statistics, which autovacuum refreshes only after a pause: a
        # bulk load into new tables would be read with sequential scans until then. The store runs
        # ANALYZE itself once it has inserted as many memberships as the statistics counted (at
        # least a few thousand), then each time it has doubled what it inserted.
        self._inserted += inserted
        t = self.tables
        if self._analyze_at is None:
            with translated(self.url, "read table statistics"), self._engine.connect() as connection:
                self._analyze_at = analyze_threshold(connection, t.memberships.name)
        if self._inserted < self._analyze_at:
            return
        self._analyze_at = 2 * self._inserted
        with translated(self.url, "analyze tables"), self._engine.connect() as connection:
            connection.exec_driver_sql(f"ANALYZE {t.customers.name}, {t.memberships.name}, {t.history.name}")
            connection.commit()

    # -- queries ------------------------------------------------------------------------------------

    def _rows(self, statement: Any, doing: str) -> list[Any]:
        with translated(self.url, doing), self._engine.connect() as connection:
            return list(connection.execute(statement))

    def memberships(self, customer_id: str) -> list[Membership]:
        check_customer_id(customer_id)
        m = self.tables.memberships
        rows = self._rows(
            select(m.c.customer_id, m.c.tag, m.c.source, m.c.since, m.c.rule_version)
            .where(m.c.customer_id == customer_id)
            .order_by(m.c.tag),
            "read memberships",
        )
        return [Membership(*row) for row in rows]

    def tags(self, customer_id: str) -> frozenset[str]:
        check_customer_id(customer_id)
        m = self.tables.memberships
        statement = select(m.c.tag).where(m.c.customer_id == customer_id)
        return frozenset(row[0] for row in self._rows(statement, "read memberships"))

    def overrides(self, customer_id: str) -> list[Override]:
        check_customer_id(customer_id)
        o = self.tables.overrides
        rows = self._rows(
            select(o.c.customer_id, o.c.tag, o.c.kind, o.c.by, o.c.reason, o.c.at)
            .where(o.c.customer_id == customer_id)
            .order_by(o.c.tag),
            "read overrides",
        )
        return [Override(*row) for row in rows]

    def _covering(self, as_of: datetime.datetime) -> Any:
        as_of = as_utc(as_of)
        h = self.tables.history
        return (h.c.since <= as_of) & or_(h.c.until.is_(None), h.c.until > as_of)

    def members(self, tag: str, as_of: datetime.datetime | None = None) -> list[str]:
        if as_of is None:
            m = self.tables.memberships
            statement = select(m.c.customer_id).where(m.c.tag == tag).order_by(m.c.customer_id)
        else:
            h = self.tables.history
            statement = (
                select(h.c.customer_id)
                .distinct()
                .where(h.c.tag == tag, self._covering(as_of))
                .order_by(h.c.customer_id)
            )
        return [row[0] for row in self._rows(statement, "read members")]

    def due(self, now: datetime.datetime) -> list[str]:
        c = self.tables.customers
        statement = select(c.c.customer_id).where(c.c.due_at <= as_utc(now)).order_by(c.c.customer_id)
        return [row[0] for row in self._rows(statement, "read due customers")]

    def expiring(self, tag: str, before: datetime.datetime) -> list[str]:
        m = self.tables.memberships
        statement = (
            select(m.c.customer_id)
            .where(m.c.tag == tag, m.c.source == "computed", m.c.lapses_at <= as_utc(before))
            .order_by(m.c.customer_id)
        )
        return [row[0] for row in self._rows(statement, "read expiring members")]

    def tags_as_of(self, customer_id: str, as_of: datetime.datetime) -> frozenset[str]:
        check_customer_id(customer_id)
        h = self.tables.history
        statement = select(h.c.tag).where(h.c.customer_id == customer_id, self._covering(as_of))
        return frozenset(row[0] for row in self._rows(statement, "read history"))

    def history(self, customer_id: str) -> list[HistoryEntry]:
        check_customer_id(customer_id)
        h = self.tables.history
        statement = (
            select(
                h.c.customer_id,
                h.c.tag,
                h.c.source,
                h.c.since,
                h.c.until,
                h.c.rule_version,
                h.c.reason,
                h.c.catalog_version,
                h.c.closed_version,
            )
            .where(h.c.customer_id == customer_id)
            .order_by(h.c.since, h.c.tag, h.c.id)
        )
        return [HistoryEntry(*row) for row in self._rows(statement, "read history")]

    def customers_holding(self, tags: Collection[str], source: Source = "computed") -> Iterator[str]:
        if not tags:
            return iter(())
        m = self.tables.memberships
        statement = (
            select(m.c.customer_id)
            .distinct()
            .where(m.c.tag.in_(list(tags)), m.c.source == source)
            .order_by(m.c.customer_id)
        )
        return iter([row[0] for row in self._rows(statement, "read members")])

    def held_tags(self, source: Source = "computed") -> frozenset[str]:
        # A walk along the (tag, customer_id) index, one seek per distinct tag: a catalog has tens of
        # tags and a store millions of memberships, which a DISTINCT would all read.
        m = self.tables.memberships
        following = select(m.c.tag).where(m.c.tag > bindparam("after")).order_by(m.c.tag).limit(1)
        held_from = select(m.c.tag).where(m.c.tag == bindparam("tag"), m.c.source == source).limit(1)
        found: set[str] = set()
        with translated(self.url, "read tags"), self._engine.connect() as connection:
            tag = connection.execute(following, {"after": ""}).scalar()
            while tag is not None:
                if connection.execute(held_from, {"tag": tag}).first() is not None:
                    found.add(tag)
                tag = connection.execute(following, {"after": tag}).scalar()
        return frozenset(found)

    def pending_events(self, limit: int = 1000) -> list[ChangeEvent]:
        return self.events(DEFAULT_CONSUMER, limit)

    def acknowledge(self, event_ids: Iterable[int]) -> None:
        positions = set(event_ids)
        with translated(self.url, "acknowledge events"), self._engine.begin() as connection:
            acknowledge_leading(connection, self.tables, DEFAULT_CONSUMER, positions)

    def events(self, consumer: str, limit: int = 1000) -> list[ChangeEvent]:
        check_consumer(consumer)
        check_limit(limit)
        with translated(self.url, "read the change feed"), self._engine.begin() as connection:
            return next_events(connection, self.tables, consumer, limit)

    def ack(self, consumer: str, position: int) -> None:
        check_consumer(consumer)
        check_position(position)
        with translated(self.url, "acknowledge events"), self._engine.begin() as connection:
            acknowledge_position(connection, self.tables, consumer, position)

    def purge_events(self, before: datetime.datetime | None = None) -> int:
        moment = None if before is None else as_utc(before)
        with translated(self.url, "purge events"), self._engine.begin() as connection:
            return purge(connection, self.tables, moment)

    def consumers(self) -> list[FeedConsumer]:
        with translated(self.url, "read the feed's consumers"), self._engine.connect() as connection:
            return feed_consumers(connection, self.tables)

    def drop_consumer(self, consumer: str) -> bool:
        check_consumer(consumer)
        with translated(self.url, "drop a consumer"), self._engine.begin() as connection:
            return drop_consumer(connection, self.tables, consumer)

    def forget(self, customer_id: str) -> None:
        """Erase the customer: pending events, overrides, history, memberships and its row.

        The erasure and a commit of the same customer never interleave: the customer's row is locked
        first (a row is made for the erasure when the customer has none yet, so that a first commit in
        flight is waited for too). A commit under way finishes first and the erasure removes all it
        wrote; a later commit finds the customer gone and starts over from nothing. A SQLite store
        checkpoints its write-ahead log afterwards, so that no copy of the erased rows stays in it.
        """
        check_customer_id(customer_id)
        for attempt in range(_FORGET_ATTEMPTS):
            try:
                self._erase(customer_id)
            except ConcurrentUpdate:
                pass
            except StoreError as error:
                if not isinstance(error.__cause__, sqlalchemy.exc.IntegrityError):
                    raise
            else:
                if self._sqlite:
                    self._checkpoint()
                return
            self._pause(random.uniform(0, 0.01 * (attempt + 1)))
        raise ConcurrentUpdate(
            f"{describe(self.url)}: customer {customer_id!r} kept changing while it was being forgotten; "
            f"gave up after {_FORGET_ATTEMPTS} attempts"
        )

    def _erase(self, customer_id: str) -> None:
        t = self.tables
        c = t.customers.c
        with translated(self.url, "forget a customer"), self._engine.begin() as connection:
            if self._sqlite:
                # one writer at a time: the first delete waits for a commit in flight; freed pages
                # are overwritten, not left in the file
                connection.exec_driver_sql("PRAGMA secure_delete = ON")
            else:
                row = select(c.customer_id).where(c.customer_id == customer_id).with_for_update()
                if connection.execute(row).first() is None:
                    # waits for another transaction creating the customer (then fails: try again)
                    now = datetime.datetime.now(datetime.timezone.utc)
                    connection.execute(
                        insert(t.customers).values(customer_id=customer_id, version=0, updated_at=now)
                    )
            for table in (t.outbox, t.overrides, t.history, t.memberships, t.customers):
                connection.execute(delete(table).where(table.c.customer_id == customer_id))
            if self._sqlite:
                connection.exec_driver_sql("PRAGMA secure_delete = OFF")

    def _checkpoint(self) -> None:
        with translated(self.url, "checkpoint the write-ahead log"), self._engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- runs and statistics --------------------------------------------------------------------------

    def record_run(self, record: RunRecord, *, connection: Connection | None = None) -> None:
        """Keep a run record; with ``connection``, inside that (the caller's) transaction, so that it
        commits or rolls back with the run's changes."""
        with translated(self.url, "record a run"), self._writing(connection) as writer:
            record_run(writer, self.tables, record)

    def publish(self, version: CatalogVersion, *, connection: Connection | None = None) -> bool:
        """As :meth:`TagStore.publish`; with ``connection``, inside that (the caller's) transaction."""
        t = self.tables
        given = connection
        try:
            with translated(self.url, "publish a catalog version"), self._writing(given) as connection:
                known = connection.execute(
                    select(t.versions.c.version).where(t.versions.c.version == version.version)
                ).first()
                if known is not None:
                    return False
                connection.execute(
                    insert(t.versions),
                    {
                        "version": version.version,
                        "name": version.name,
                        "published_at": version.published_at,
                        "published_by": version.by,
                        "note": version.note,
                    },
                )
                if version.tags:
                    connection.execute(
                        insert(t.version_tags),
                        [
                            {"version": version.version, "tag": tag, "definition": json.dumps(dict(data))}
                            for tag, data in version.tags.items()
                        ],
                    )
        except StoreError as error:
            if isinstance(error.__cause__, sqlalchemy.exc.IntegrityError):
                return False  # published meanwhile by another writer
            raise
        return True

    def versions(self) -> list[CatalogVersion]:
        v = self.tables.versions
        rows = self._rows(select(v).order_by(v.c.published_at, v.c.version), "read catalog versions")
        definitions = self._definitions(None)
        return [
            CatalogVersion(
                row.version,
                row.name,
                row.published_at,
                row.published_by,
                row.note,
                types.MappingProxyType(definitions.get(row.version, {})),
            )
            for row in rows
        ]

    def catalog_version(self, version: str, *, connection: Connection | None = None) -> CatalogVersion | None:
        """As :meth:`TagStore.catalog_version`; with ``connection``, read inside that transaction."""
        v = self.tables.versions
        with translated(self.url, "read a catalog version"), self._reading(connection) as reader:
            rows = list(reader.execute(select(v).where(v.c.version == version)))
            if not rows:
                return None
            row = rows[0]
            vt = self.tables.version_tags
            definitions = {
                tag: types.MappingProxyType(json.loads(text))
                for tag, text in reader.execute(
                    select(vt.c.tag, vt.c.definition).where(vt.c.version == version).order_by(vt.c.tag)
                )
            }
        return CatalogVersion(
            row.version,
            row.name,
            row.published_at,
            row.published_by,
            row.note,
            types.MappingProxyType(definitions),
        )

    def _definitions(self, version: str | None) -> dict[str, dict[str, Any]]:
        vt = self.tables.version_tags
        statement = select(vt.c.version, vt.c.tag, vt.c.definition).order_by(vt.c.version, vt.c.tag)
        if version is not None:
            statement = statement.where(vt.c.version == version)
        found: dict[str, dict[str, Any]] = {}
        for number, tag, text in self._rows(statement, "read catalog definitions"):
            found.setdefault(number, {})[tag] = types.MappingProxyType(json.loads(text))
        return found

    def runs(
        self, since: datetime.datetime | None = None, until: datetime.datetime | None = None
    ) -> list[RunRecord]:
        with translated(self.url, "read runs"), self._engine.connect() as connection:
            return run_records(connection, self.tables, since, until)

    def stats(
        self,
        tags: Collection[str] | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        every: Every = "week",
    ) -> TagStatistics:
        wanted = sorted(tags) if tags is not None else None
        with translated(self.url, "read statistics"), self._engine.connect() as connection:
            first = since if since is not None else self._first_moment(connection)
            bounds = period_starts(first, until if until is not None else _now(), every)
            changes = change_totals(connection, self.tables, bounds, wanted)
            errors = error_totals(connection, self.tables, bounds, wanted)
        return statistics_from(bounds, every, changes, errors, wanted)

    def _first_moment(self, connection: Connection) -> datetime.datetime:
        h, r = self.tables.history, self.tables.runs
        found = [
            connection.execute(select(sqlalchemy.func.min(h.c.since))).scalar(),
            connection.execute(select(sqlalchemy.func.min(r.c.evaluated_at))).scalar(),
        ]
        return min((utc(moment) for moment in found if moment is not None), default=_now())

    def overlap(
        self, tags: Collection[str], as_of: datetime.datetime | None = None
    ) -> dict[tuple[str, str], int]:
        with translated(self.url, "read overlaps"), self._engine.connect() as connection:
            return overlap_counts(connection, self.tables, sorted(set(tags)), as_of)

    def flow(self, group: str, start: datetime.datetime, end: datetime.datetime) -> TierFlow:
        with translated(self.url, "read tier flows"), self._engine.connect() as connection:
            current, ever = group_tiers(connection, self.tables, group)
            moves = flow_rows(connection, self.tables, ever, current, start, end) if ever else {}
        return TierFlow(group, utc(start), utc(end), tuple(current), moves)

    def flows(
        self, groups: Iterable[str], start: datetime.datetime, end: datetime.datetime
    ) -> list[TierFlow]:
        """:meth:`flow` of each of ``groups``, in their order. On PostgreSQL, one pass over the
        history counts them all (each query of :meth:`flow` reads the history pages of its group's
        tiers, scattered over the table); elsewhere, and where two groups ever shared a tier, one
        query per group (on SQLite the single pass is the slower)."""
        names = list(dict.fromkeys(groups))
        with translated(self.url, "read tier flows"), self._engine.connect() as connection:
            tiers = {name: group_tiers(connection, self.tables, name) for name in names}
            recorded = {name: (ever, current) for name, (current, ever) in tiers.items() if ever}
            every = [tag for ever, _ in recorded.values() for tag in ever]
            together = connection.dialect.name == "postgresql" and len(every) == len(set(every))
            if together and len(recorded) > 1:
                # for this transaction only (it is rolled back): no JIT compilation, which costs
                # more than it saves on this one pass (1.9 of 10.5 s over 1,000,000 customers)
                connection.execute(sqlalchemy.text("SELECT set_config('jit', 'off', true)"))
                moves: dict[str, dict[str, dict[str, int]]] = group_flow_rows(
                    connection, self.tables, recorded, start, end
                )
            else:
                moves = {
                    name: flow_rows(connection, self.tables, ever, current, start, end)
                    for name, (ever, current) in recorded.items()
                }
        return [
            TierFlow(name, utc(start), utc(end), tuple(tiers[name][0]), moves.get(name, {})) for name in names
        ]

    def close(self) -> None:
        """Close the store's connections: dispose of the engine it made from a URL (an engine it was
        given stays the caller's to dispose of)."""
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
