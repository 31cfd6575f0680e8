"""Retagging every row of a database table into a tag store.

:func:`retag_from_table` reads the table page by page (keyset pages on the id column, each its own
short query) through the catalog's tag query, so every pushable tag is computed in the database,
and evaluates the other tags in Python on the same rows. The results go to the store through
:meth:`Tagger.apply_many`, the path every run takes: the same diff, history, outbox events, version
checks, listeners, retired-tag closing and error policy. A customer with overrides (manual tags or
exclusions) is evaluated wholly in Python on its row, since rules see manual tags in ``tags`` and
exclusions change which tier of an exclusive group is assigned.

When the store lives in the same PostgreSQL database as the table, the diff is computed set-wise in
SQL instead (:mod:`tagrules.sources._setwise`).
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, final

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from tagrules._log import log_in_python
from tagrules.catalog import Catalog
from tagrules.errors import SourceError
from tagrules.evaluation import Evaluation, Evaluator, resolve_now
from tagrules.sources._setwise import SET_WISE_DIALECTS, same_database, setwise_retag
from tagrules.sources.tables import (
    TagQuery,
    _connect,
    _python_catalog,
    _reader,
    _rule_fields,
    open_table,
    query_settings,
    stored_moment_reader,
    tag_query,
)
from tagrules.stores import SQLStore, TagStore
from tagrules.tagger import (
    DEFAULT_CHUNK_SIZE,
    ApplyReport,
    Listener,
    TagCounts,
    Tagger,
    TotalsOverTags,
    log_run_finished,
    log_run_started,
)

__all__ = ["RetagReport", "retag_from_table"]

#: Rows read per page of the table.
PAGE_SIZE = 10_000
_DATABASE_ERROR = "its rule failed on the row in the database"


@final
@dataclass(frozen=True)
class RetagReport(TotalsOverTags):
    """What :func:`retag_from_table` did.

    Attributes:
        customers: rows (customers) processed.
        tags: tag key -> its counts (members, added, removed, errors), as in :class:`ApplyReport`.
        where: tag key -> ``database`` or ``python``: where it was evaluated for customers without
            overrides (customers with overrides are always evaluated in Python).
        in_python: tag key -> why it was evaluated in Python.
        set_wise: whether the diff against the store was computed set-wise inside the database.
        retries: chunks read again because another writer changed one of their customers first.
        now: the time the rules saw as ``$now``.
        stale: customers not written because the store holds a later change of theirs than ``now``.
    """

    customers: int
    tags: Mapping[str, TagCounts]
    where: Mapping[str, str]
    in_python: Mapping[str, str] = field(default_factory=dict)
    set_wise: bool = False
    retries: int = 0
    now: datetime.datetime = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    stale: int = 0


class _Rows:
    """The table's rows with their tag states, page after page, as ``(customer_id, row)`` items."""

    def __init__(
        self,
        connection: Connection,
        catalog: Catalog,
        table: sa.Table,
        id_column: str,
        columns: Mapping[str, str],
        now: datetime.datetime,
        page_size: int,
    ) -> None:
        if id_column not in table.c:
            raise SourceError(
                f"the table {table.name!r} has no id column {id_column!r}; name it with --id-column"
            )
        self.connection = connection
        self.page_size = page_size
        key = table.c[id_column]
        nulls = connection.execute(sa.select(sa.func.count()).where(key.is_(None))).scalar_one()
        connection.rollback()
        if nulls:
            raise SourceError(
                f"{nulls:,} row{'s' if nulls != 1 else ''} of the table {table.name!r} "
                f"{'have' if nulls != 1 else 'has'} no id (NULL in {id_column!r}); give every row an id, "
                "or retag a view of the rows that have one"
            )
        active = [definition.key for definition in catalog.active]
        self.fields = sorted(_rule_fields(catalog, active))
        self.field_columns = [columns.get(name, name) for name in self.fields]
        passed = list(dict.fromkeys([id_column, *self.field_columns]))
        self.id_index = 0
        self.field_indexes = [passed.index(name) for name in self.field_columns]
        self.readers = [_reader(catalog.schema.fields[name]) for name in self.fields]
        after = sa.bindparam("after", type_=key.type)
        pages = [
            sa.select(table).order_by(key).limit(page_size).subquery("page"),
            sa.select(table).where(key > after).order_by(key).limit(page_size).subquery("page"),
        ]
        queries = [
            tag_query(
                catalog, page, dialect=connection.dialect.name, now=now, columns=columns, id_columns=passed
            )
            for page in pages
        ]
        self.query: TagQuery = queries[0]
        moments: dict[int, Callable[[Any], Any]] = {}
        for index, name in enumerate(passed):
            moment = stored_moment_reader(connection, table.c[name].type) if name in table.c else None
            if moment is not None:
                moments[index] = moment
        # ordered by id in the database, so the last row's id starts the next page whatever the collation
        selects = [_stored_moments(query.select, moments) for query in queries]
        self.statements = [select.order_by(select.selected_columns[0]) for select in selects]
        for position, index in enumerate(self.field_indexes):
            if index in moments:
                self.readers[position] = moments[index]
        self.state_indexes = {tag: len(passed) + index for index, tag in enumerate(self.query.tag_columns)}

    def snapshot(self, row: Sequence[Any]) -> dict[str, Any]:
        snapshot: dict[str, Any] = {}
        for name, index, reader in zip(self.fields, self.field_indexes, self.readers, strict=True):
            value = row[index]
            snapshot[name] = value if reader is None or value is None else reader(value)
        return snapshot

    def __iter__(self) -> Iterator[tuple[str, Sequence[Any]]]:
        last: Any = None
        first = True
        while True:
            # each page is a short read of its own: no transaction stays open while the store writes
            with query_settings(self.connection):
                if first:
                    rows = self.connection.execute(self.statements[0]).all()
                else:
                    rows = self.connection.execute(self.statements[1], {"after": last}).all()
            self.connection.rollback()
            first = False
            if not rows:
                return
            for row in rows:
                yield str(row[0]), row
            last = rows[-1][0]
            if len(rows) < self.page_size:
                return


def _stored_moments(select: sa.Select[Any], moments: Collection[int]) -> sa.Select[Any]:
    """``select`` with the columns at ``moments`` read as SQLite stores them (any type: a date or
    datetime column can hold text of another form, or a number), for ``stored_moment_reader``."""
    if not moments:
        return select
    columns = list(select.selected_columns)
    for index in moments:
        columns[index] = sa.type_coerce(columns[index], sa.String())
    return select.with_only_columns(*columns, maintain_column_froms=True)


def _evaluate_rows(
    rows: _Rows, catalog: Catalog, in_python: Mapping[str, str]
) -> Callable[[Sequence[Any], datetime.datetime, frozenset[str], frozenset[str]], Evaluation]:
    """Evaluates one row: its database states, the Python tags on its snapshot, or, for a customer
    with overrides, every tag in Python."""
    everything = Evaluator(catalog)
    python_keys = frozenset(in_python)
    partial = (
        Evaluator(_python_catalog(catalog, [d.key for d in catalog.active if d.key in python_keys]))
        if python_keys
        else None
    )
    states = list(rows.state_indexes.items())
    snapshot = rows.snapshot

    def evaluate(
        row: Sequence[Any], now: datetime.datetime, manual: frozenset[str], excluded: frozenset[str]
    ) -> Evaluation:
        if manual or excluded:
            return everything.evaluate(snapshot(row), now, manual, suppressed=excluded)
        tags: set[str] = set()
        errors: dict[str, str] = {}
        for key, index in states:
            state = row[index]
            if state is None:
                errors[key] = _DATABASE_ERROR
            elif state:
                tags.add(key)
        if partial is not None:
            result = partial.evaluate(snapshot(row), now)
            tags.update(result.tags & python_keys)
            errors.update((key, why) for key, why in result.errors.items() if key in python_keys)
        return Evaluation(frozenset(tags), MappingProxyType(errors), now)

    return evaluate


def retag_from_table(
    catalog: Catalog,
    bind: Engine | URL | str,
    table: str,
    store: TagStore,
    *,
    id_column: str = "id",
    now: datetime.datetime | None = None,
    columns: Mapping[str, str] | None = None,
    listeners: Iterable[Listener] = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    page_size: int = PAGE_SIZE,
    set_wise: bool | None = None,
    progress: Callable[[int], None] | None = None,
    emit_events: bool = True,
) -> RetagReport:
    """Retag every row of ``table`` into ``store``: pushable tags in the database, the rest in Python.

    Each row is a customer, identified by ``id_column`` (unique; indexed, since the table is read in
    pages ordered by it); the store keeps its id as text. Customers with overrides are evaluated in
    Python. Changes are written chunk by chunk as :meth:`Tagger.apply_many` writes them, and a
    second run on the same rows writes nothing.

    Args:
        catalog: the catalog whose active tags are computed.
        bind: the table's database: an engine or a URL.
        table: the table's name (``schema.table`` allowed).
        store: where the tags are kept.
        id_column: the column holding the customer id.
        now: the time ``$now`` stands for; default: the current time.
        columns: field name -> column name, where they differ.
        listeners: called with each change event after it is committed.
        chunk_size: customers per store transaction.
        page_size: rows per read of the table.
        set_wise: compute the diff set-wise inside the database, ``page_size`` ids per transaction.
            Default: when ``store`` is a :class:`SQLStore` in the table's database, on PostgreSQL
            (tags left to Python are evaluated on each chunk's rows and their states joined to the
            database's). ``True`` raises :class:`SourceError` where that is not possible; ``False``
            never does it.
        progress: called with the number of customers processed so far.
        emit_events: ``False`` writes memberships and history but no change events, as for
            :meth:`Tagger.apply_many` (a first load); the run record says so.

    Returns:
        The counts per tag, and where each tag was evaluated.

    Raises:
        SourceError: the database cannot be reached, or the table or a column is missing.
        StoreError: the store failed; committed chunks stay, and running again completes the work.

    Examples:
        >>> import pathlib, tempfile
        >>> from tagrules import MemoryStore
        >>> url = f"sqlite:///{pathlib.Path(tempfile.mkdtemp()) / 'crm.db'}"
        >>> engine = sa.create_engine(url)
        >>> with engine.begin() as connection:
        ...     _ = connection.exec_driver_sql("CREATE TABLE customers (id TEXT PRIMARY KEY, spend REAL)")
        ...     _ = connection.exec_driver_sql("INSERT INTO customers VALUES ('c1', 150.0), ('c2', 5.0)")
        >>> catalog = Catalog([{"key": "big", "rule": "spend >= 100"}], {"spend": "float"})
        >>> report = retag_from_table(catalog, engine, "customers", MemoryStore())
        >>> report.customers, report.tags["big"].added, report.where["big"]
        (2, 1, 'database')
        >>> engine.dispose()
    """
    moment = resolve_now(now)
    connection, engine = _connect(bind)
    try:
        try:
            source = open_table(connection, table)
            connection.rollback()
            rows = _Rows(connection, catalog, source, id_column, dict(columns or {}), moment, page_size)
        except sa.exc.DBAPIError as error:
            raise SourceError(f"the database refused the query: {error.orig}") from None
        in_python = dict(rows.query.in_python)
        where = {d.key: "python" if d.key in in_python else "database" for d in catalog.active}
        possible = (
            isinstance(store, SQLStore)
            and connection.dialect.name in SET_WISE_DIALECTS
            and same_database(store.url, connection.engine.url)
            and bool(rows.query.tag_columns)
        )
        if set_wise and not possible:
            raise SourceError(
                "a set-wise retag needs a SQL store in the table's database, on "
                f"{', '.join(sorted(SET_WISE_DIALECTS))}, and a tag pushed down"
            )
        log_in_python(in_python, table)
        tagger = Tagger(catalog, store, listeners=listeners)
        if set_wise or (set_wise is None and possible):
            assert isinstance(store, SQLStore)
            started = datetime.datetime.now(datetime.timezone.utc)
            clock = time.perf_counter()
            run_id = uuid.uuid4().hex
            log_run_started(run_id, moment, catalog.version, set_wise=True, table=table)
            report = setwise_retag(
                tagger, store, connection, source, id_column, moment, page_size, progress, emit_events
            )
            tagger.record_run(report, moment, started, emit_events=emit_events, run_id=run_id)
            log_run_finished(run_id, report, time.perf_counter() - clock, set_wise=True, table=table)
            return _report(report, where, in_python, True, moment)
        evaluate = _evaluate_rows(rows, catalog, in_python)
        try:
            report = tagger.apply_many(
                rows,
                now=moment,
                chunk_size=chunk_size,
                progress=progress,
                evaluate=evaluate,
                emit_events=emit_events,
            )
        except sa.exc.DBAPIError as error:
            raise SourceError(f"the database refused the query: {error.orig}") from None
        return _report(report, where, in_python, False, moment)
    finally:
        connection.close()
        if engine is not None:
            engine.dispose()


def _report(
    report: ApplyReport,
    where: Mapping[str, str],
    in_python: Mapping[str, str],
    set_wise: bool,
    now: datetime.datetime,
) -> RetagReport:
    return RetagReport(
        customers=report.customers,
        tags=report.tags,
        where=MappingProxyType(dict(where)),
        in_python=MappingProxyType(dict(in_python)),
        set_wise=set_wise,
        retries=report.retries,
        now=now,
        stale=report.stale,
    )
