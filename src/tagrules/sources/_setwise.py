"""Set-wise retagging: the diff between a table's tags and a store's memberships, computed in SQL.

When the store's tables share the database of the table being retagged, the table is read in
segments of up to :data:`SEGMENT_ROWS` rows (ranges of the id column):

1. one ``CREATE TEMPORARY TABLE ... AS`` computes the tag states of every row of the segment with
   the catalog query (PostgreSQL runs it in parallel workers; ``INSERT ... SELECT`` would run on one
   process), and marks each customer whose states are all known, who has no override and who holds
   exactly the computed tags the states assign (their keys compared in the order the database sorts
   them): nothing changes for those, and they are only counted;
2. the other customers, in chunks of ids, each chunk one transaction of a dozen statements:
   customers with overrides leave the chunk, to be retagged in Python afterwards; the rows left are
   locked in the store's customer table (``FOR UPDATE``), so a concurrent writer either committed
   before (and is seen) or waits and then fails its version check; the tags left to Python are
   evaluated on them and their states added to the database's;
3. the changes (``added`` where a tag's state is 1 and no membership exists; ``removed`` where it
   is 0 and a computed one does; never where it is unknown) go to a second temporary table;
4. from it, every table a :class:`~tagrules.SQLStore` writes is written as it writes them:
   versions bumped (or customers inserted at version 1), memberships deleted and inserted, history
   periods closed and opened, one outbox event per change (``INSERT ... SELECT``).

A customer found unchanged in step 1 is not written: its retag takes effect when the segment is
read, as if it ran then (a writer changing it afterwards is simply later).

The database computes tags, not when they lapse by time alone: the due time and lapses of every
customer a segment reads become unknown (``NULL``; ``due`` and ``expiring`` do not list them) until
a row-by-row evaluation computes them again. A store that keeps none is not written for this.

Listeners hear the chunk's events after it commits (``RETURNING``). PostgreSQL only: elsewhere
:func:`~tagrules.retag_from_table` takes the row-by-row path.
"""

from __future__ import annotations

import datetime
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from tagrules._log import RUNS
from tagrules._metrics import instruments
from tagrules.errors import ConcurrentUpdate, StoreError
from tagrules.evaluation import Evaluator
from tagrules.sources.tables import (
    TagQuery,
    _python_catalog,
    _reader,
    _rule_fields,
    query_settings,
    tag_query,
)
from tagrules.stores import ChangeEvent, SQLStore, store_tables
from tagrules.stores._database import analyze_threshold, translated
from tagrules.stores._tables import ID_LENGTH, TAG_LENGTH
from tagrules.tagger import ApplyReport, TagCounts, Tagger

__all__ = ["SET_WISE_DIALECTS", "same_database", "setwise_retag"]

#: The databases set-wise retagging runs on.
SET_WISE_DIALECTS = frozenset({"postgresql"})
_MAX_ATTEMPTS = 50
#: rows whose tag states one parallel query computes at a time (kept in a temporary table)
SEGMENT_ROWS = 1_000_000
_SEGMENT_TABLE = "tagrules_retag_segment"


def same_database(first: URL, second: URL) -> bool:
    """Whether two URLs name the same database on the same server (drivers may differ)."""

    def key(url: URL) -> tuple[Any, ...]:
        return (url.get_backend_name(), url.host, url.port, url.database, url.username)

    return key(first) == key(second)


@final
class _CreateTemporaryTableAs(Executable, ClauseElement):
    """``CREATE TEMPORARY TABLE name AS select``."""

    inherit_cache = False

    def __init__(self, name: str, select: sa.Select[Any]) -> None:
        self.name = name
        self.select = select


@compiles(_CreateTemporaryTableAs)
def _create_temporary_table_as(element: _CreateTemporaryTableAs, compiler: Any, **kw: Any) -> str:
    return f"CREATE TEMPORARY TABLE {element.name} AS {compiler.process(element.select, **kw)}"


@dataclass
class _Tallies:
    """Per tag: members, changes and errors counted (in one chunk, or in the run)."""

    members: Counter[str] = field(default_factory=Counter)
    added: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    stale: int = 0
    listener_errors: int = 0

    def add(self, other: _Tallies) -> None:
        self.members.update(other.members)
        self.added.update(other.added)
        self.removed.update(other.removed)
        self.errors.update(other.errors)
        self.stale += other.stale


class _Temporary:
    """The temporary tables of one run: tag states per customer, and the changes of a chunk."""

    def __init__(self, key_type: sa.types.TypeEngine[Any], keys: Sequence[str]) -> None:
        metadata = sa.MetaData()
        options: dict[str, Any] = {"prefixes": ["TEMPORARY"], "postgresql_on_commit": "DELETE ROWS"}
        self.states = sa.Table(
            "tagrules_retag_states",
            metadata,
            sa.Column("raw_id", key_type),
            sa.Column("customer_id", sa.String(ID_LENGTH), primary_key=True),
            *[sa.Column(f"t_{index}", sa.SmallInteger()) for index in range(len(keys))],
            **options,
        )
        self.changes = sa.Table(
            "tagrules_retag_changes",
            metadata,
            sa.Column("customer_id", sa.String(ID_LENGTH)),
            sa.Column("tag", sa.String(TAG_LENGTH)),
            sa.Column("change", sa.String(16)),
            **options,
        )
        self.wanted = sa.Table(
            "tagrules_retag_wanted",
            metadata,
            sa.Column("customer_id", sa.String(ID_LENGTH)),
            sa.Column("tag", sa.String(TAG_LENGTH)),
            sa.Column("state", sa.SmallInteger()),
            **options,
        )
        self.held = sa.Table(
            "tagrules_retag_held",
            metadata,
            sa.Column("customer_id", sa.String(ID_LENGTH)),
            sa.Column("tag", sa.String(TAG_LENGTH)),
            sa.Column("source", sa.String(16)),
            **options,
        )
        self.metadata = metadata


class _SetWise:
    def __init__(
        self,
        tagger: Tagger,
        store: SQLStore,
        connection: Connection,
        table: sa.Table,
        id_column: str,
        now: datetime.datetime,
        chunk: int,
        emit_events: bool = True,
    ) -> None:
        catalog = tagger.catalog
        self.tagger = tagger
        self.catalog = catalog
        self.store = store
        self.connection = connection
        self.table = table
        self.key = table.c[id_column]
        self.id_column = id_column
        self.at = now.astimezone(datetime.timezone.utc)
        self.now = now
        self.chunk = chunk
        self.emit_events = emit_events
        self.segment_rows = max(SEGMENT_ROWS, chunk)
        self.tables = store_tables(store.prefix)
        # the catalog query over one segment of the table: ids from ``lower`` (inclusive) to ``upto``
        # (exclusive), either bound absent
        self.segment_queries: dict[tuple[bool, bool], TagQuery] = {}
        self.key_order: list[str] | None = None
        query = self._segment_query(False, False)
        self.keys = list(query.tag_columns)
        # tags left to Python: evaluated on the chunk's rows, their states added to the database's
        in_python = query.in_python
        self.python_keys = [d.key for d in catalog.active if d.key in in_python]
        self.every_key = [*self.keys, *self.python_keys]
        self.partial = Evaluator(_python_catalog(catalog, self.python_keys)) if self.python_keys else None
        sub = self.partial.catalog if self.partial is not None else catalog
        self.python_fields = sorted(_rule_fields(sub, [d.key for d in sub.active]))
        self.python_readers = [_reader(catalog.schema.fields[name]) for name in self.python_fields]
        self.temporary = _Temporary(self.key.type, self.keys)
        states = self.temporary.states
        columns = ["raw_id", "customer_id", *[f"t_{index}" for index in range(len(self.keys))]]
        self.segment = segment = sa.table(
            _SEGMENT_TABLE,
            sa.column("raw_id", self.key.type),
            *[sa.column(name) for name in columns[1:]],
            sa.column("unchanged"),
        )
        # a chunk: the next rows of the segment left to diff, in id order
        self.fills = [
            sa.insert(states).from_select(
                columns,
                sa.select(*[segment.c[name] for name in columns])
                .where(sa.not_(segment.c.unchanged), *condition)
                .order_by(segment.c.raw_id)
                .limit(chunk),
            )
            for condition in ((), (segment.c.raw_id > sa.bindparam("after", type_=self.key.type),))
        ]
        # the run's tallies, and the chunk's, added to them once it commits
        self.tallies = _Tallies()
        self.pending = _Tallies()
        self.customers = 0
        self.retries = 0
        self.with_overrides: list[str] = []
        self.pending_overridden: list[str] = []
        self.inserted = 0
        self.analyze_at = 0
        self.analyzed = False
        # when tags lapse is not computed in the database: the segments' customers' due times and
        # lapses become unknown (NULL), checked once so that a store keeping none pays nothing
        c = self.tables.customers
        self.clear_due = (
            connection.execute(sa.select(c.c.customer_id).where(c.c.lapses.is_not(None)).limit(1)).first()
            is not None
        )
        connection.rollback()

    # -- segments: the tag states of many rows at once, by one parallel query ----------------------

    def _segment_query(self, lower: bool, upper: bool) -> TagQuery:
        found = self.segment_queries.get((lower, upper))
        if found is None:
            conditions = []
            if lower:
                conditions.append(self.key >= sa.bindparam("lower", type_=self.key.type))
            if upper:
                conditions.append(self.key < sa.bindparam("upto", type_=self.key.type))
            page = sa.select(self.table).where(*conditions).subquery("page")
            found = tag_query(
                self.catalog, page, dialect="postgresql", now=self.now, id_columns=[self.id_column]
            )
            self.segment_queries[lower, upper] = found
        return found

    def fill_segment(self, lower: Any) -> Any:
        """The tag states of the next segment's rows (ids from ``lower`` on; ``None``: the first)
        into a temporary table, by ``CREATE TABLE ... AS``, which PostgreSQL runs in parallel
        workers (``INSERT ... SELECT`` runs on one process); the id where the next segment starts,
        or ``None`` if this one runs to the end of the table."""
        connection = self.connection
        clock = time.perf_counter()
        key = self.key
        ids = sa.select(key).order_by(key).offset(self.segment_rows).limit(1)
        if lower is not None:
            ids = ids.where(key >= sa.bindparam("lower", type_=key.type))
        parameters = {} if lower is None else {"lower": lower}
        upto = connection.execute(ids, parameters).scalar()
        query = self._segment_query(lower is not None, upto is not None)
        if upto is not None:
            parameters["upto"] = upto
        rows = query.select.subquery("tagged")
        customer_id = sa.cast(rows.c[self.id_column], sa.String(ID_LENGTH))
        states = [rows.c[query.tag_columns[key]] for key in self.keys]
        unchanged, source = self._unchanged(rows, customer_id, states)
        select = sa.select(
            rows.c[self.id_column].label("raw_id"),
            customer_id.label("customer_id"),
            *[sa.cast(state, sa.SmallInteger()).label(f"t_{index}") for index, state in enumerate(states)],
            unchanged.label("unchanged"),
        ).select_from(source)
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {_SEGMENT_TABLE}")
        with query_settings(connection):
            connection.execute(_CreateTemporaryTableAs(_SEGMENT_TABLE, select), parameters)
        # (no ANALYZE: the chunks read it along this index, and building it counts the table's rows)
        connection.exec_driver_sql(f"CREATE INDEX ON {_SEGMENT_TABLE} (raw_id) WHERE NOT unchanged")
        # the unchanged customers are done: counted here, never read again
        segment = self.segment
        unchanged, *assigned = connection.execute(
            sa.select(
                sa.func.count(),
                *[sa.func.count().filter(segment.c[f"t_{i}"] == 1) for i in range(len(self.keys))],
            ).where(segment.c.unchanged)
        ).one()
        if self.clear_due:
            self._clear_due()
        connection.commit()
        self.customers += int(unchanged)
        self.tallies.members.update(dict(zip(self.keys, map(int, assigned), strict=True)))
        metrics = instruments()
        if metrics.enabled:  # the segment's unchanged customers are evaluated and done
            metrics.chunk("retag", int(unchanged), {}, time.perf_counter() - clock)
        return upto

    def _clear_due(self) -> None:
        """Forget the due time and lapses of the segment's customers: the database computed their
        tags, not when those lapse (a later row-by-row evaluation knows them again)."""
        c, m = self.tables.customers, self.tables.memberships
        ids = sa.select(self.segment.c.customer_id)
        self.connection.execute(
            sa.update(c)
            .where(c.c.lapses.is_not(None), c.c.customer_id.in_(ids))
            .values(due_at=None, lapses=None)
        )
        self.connection.execute(
            sa.update(m).where(m.c.lapses_at.is_not(None), m.c.customer_id.in_(ids)).values(lapses_at=None)
        )

    def _unchanged(
        self, rows: sa.Subquery, customer_id: Any, states: Sequence[Any]
    ) -> tuple[Any, sa.FromClause]:
        """Whether a customer's states are all known, it has no override and it holds exactly the
        computed tags assigned (nothing changes for it), and what to select it from.

        The held tags are read along the memberships' key once per row (lateral joins: PostgreSQL
        runs them on the leader, over the rows its workers compute) and joined with commas in the
        order the key gives them, a tag held otherwise than from a rule marked with ``!``; the
        assigned ones are joined in the order the database sorts the keys (``_key_order``). An
        order that differs only makes a customer look changed: it then takes the chunks' tag-by-tag
        diff, which finds what changes. Always false when tags are left to Python."""
        if self.partial is not None or not states:
            return sa.false(), rows
        m, o = self.tables.memberships, self.tables.overrides
        position = {key: index for index, key in enumerate(self.keys)}
        assigned = sa.func.concat_ws(
            sa.literal(","),
            *[
                sa.case((states[position[key]] == 1, sa.literal(key)), else_=sa.null())
                for key in self._key_order()
            ],
        )
        marked = sa.case((m.c.source == "computed", m.c.tag), else_=sa.literal("!") + m.c.tag)
        held = (
            sa.select(sa.func.string_agg(marked, sa.literal(",")).label("tags"))
            .where(m.c.customer_id == customer_id)
            .lateral("held")
        )
        # (a hash join: probing the overrides once per row costs more than the lookup of its tags)
        overridden = sa.select(o.c.customer_id).distinct().subquery("overridden")
        known = [state.is_not(None) for state in states]
        unchanged = sa.func.coalesce(
            sa.and_(
                *known,
                overridden.c.customer_id.is_(None),
                assigned == sa.func.coalesce(held.c.tags, ""),
            ),
            sa.false(),
        )
        source = rows.outerjoin(held, sa.true()).outerjoin(
            overridden, overridden.c.customer_id == customer_id
        )
        return unchanged, source

    def _key_order(self) -> list[str]:
        """The catalog's keys in the order the memberships' key sorts them (the database's)."""
        if self.key_order is None:
            tag = self.tables.memberships.c.tag
            keys = (
                sa.func.unnest(sa.literal(self.keys, postgresql.ARRAY(tag.type)))
                .table_valued("k")
                .render_derived()
            )
            self.key_order = list(self.connection.execute(sa.select(keys.c.k).order_by(keys.c.k)).scalars())
        return self.key_order

    # -- the statements of one chunk ------------------------------------------------------------------

    def run_chunk(self, after: Any, first: bool) -> tuple[int, Any, list[ChangeEvent]]:
        connection = self.connection
        t = self.tables
        temporary = self.temporary
        states, changes = temporary.states, temporary.changes
        self.pending = _Tallies()
        connection.execute(self.fills[0] if first else self.fills[1], {} if first else {"after": after})
        count, last = connection.execute(sa.select(sa.func.count(), sa.func.max(states.c.raw_id))).one()
        if not count:
            return 0, after, []
        if not self.analyzed:
            # temporary tables are never analyzed automatically: without statistics the planner would
            # read the store's tables whole for each chunk
            connection.exec_driver_sql(f"ANALYZE {states.name}")
        overridden = [
            row[0]
            for row in connection.execute(
                sa.delete(states)
                .where(
                    states.c.customer_id.in_(
                        sa.select(t.overrides.c.customer_id).where(
                            t.overrides.c.customer_id == states.c.customer_id
                        )
                    )
                )
                .returning(states.c.customer_id)
            )
        ]
        states_list = ", ".join(f"s.t_{index}" for index in range(len(self.keys)))
        # the rows of the customers left in the store's customer table are locked (a customer
        # found unchanged with its segment gets no write, so it needs no lock): a concurrent writer
        # either committed before (and is seen by the reads below) or waits and then fails its
        # version check
        # (probing the customers' key for each one: the states' statistics are those of a whole
        # chunk, and a hash join would read the whole customer table for a few changed customers)
        chunk_ids = sa.select(states.c.customer_id)
        with _joins_off(connection, "hashjoin", "mergejoin"):
            connection.execute(
                sa.select(t.customers.c.customer_id)
                .where(t.customers.c.customer_id.in_(chunk_ids))
                .order_by(t.customers.c.customer_id)
                .with_for_update()
            ).all()
        # time never runs backwards: customers whose stored change is later than this run are left
        # as they are (checked under the lock, so no writer slips in between)
        c = t.customers
        self.pending.stale = len(
            connection.execute(
                sa.delete(states)
                .where(
                    states.c.customer_id.in_(
                        sa.select(c.c.customer_id).where(
                            c.c.customer_id == states.c.customer_id,
                            c.c.updated_at > sa.literal(self.at, c.c.updated_at.type),
                        )
                    )
                )
                .returning(states.c.customer_id)
            ).all()
        )
        # the tags each customer holds or may hold: state 1 (assigned) or unknown, one row per tag
        wanted = temporary.wanted
        connection.exec_driver_sql(
            f"INSERT INTO {wanted.name} (customer_id, tag, state) "
            f"SELECT s.customer_id, v.tag, v.state FROM {states.name} AS s, "
            f"unnest(%(tags)s::text[], ARRAY[{states_list}]::smallint[]) AS v(tag, state) "
            "WHERE v.state IS DISTINCT FROM 0",
            {"tags": self.keys},
        )
        if self.partial is not None:
            self._evaluate_in_python()
        if not self.analyzed:
            connection.exec_driver_sql(f"ANALYZE {wanted.name}")
        # what the chunk's customers hold, read along the memberships' key (a nested loop over the
        # chunk), then one pass over it and the states: a hash full join of two small tables
        m = t.memberships.name
        held = temporary.held
        # the planner misjudges a join of a few thousand ids with millions of memberships; the
        # nested loop along the primary key is always the cheap way here
        with _joins_off(connection, "hashjoin", "mergejoin"):
            connection.exec_driver_sql(
                f"INSERT INTO {held.name} (customer_id, tag, source) "
                f"SELECT m.customer_id, m.tag, m.source FROM {states.name} AS s JOIN {m} AS m "
                "ON m.customer_id = s.customer_id WHERE m.tag = ANY(%(every)s::text[])",
                {"every": self.every_key},
            )
        if not self.analyzed:
            connection.exec_driver_sql(f"ANALYZE {held.name}")
            self.analyzed = True
        connection.exec_driver_sql(
            f"INSERT INTO {changes.name} (customer_id, tag, change) "
            "SELECT coalesce(w.customer_id, h.customer_id), coalesce(w.tag, h.tag), "
            "CASE WHEN h.customer_id IS NULL THEN 'added' ELSE 'removed' END "
            f"FROM {wanted.name} AS w FULL JOIN {held.name} AS h "
            "ON h.customer_id = w.customer_id AND h.tag = w.tag "
            "WHERE (h.customer_id IS NULL AND w.state = 1) "
            "OR (w.customer_id IS NULL AND h.source = 'computed')"
        )
        events = self._write(changes)
        self._count()
        for table in (changes, temporary.held, wanted, states):
            connection.execute(sa.delete(table))
        self.pending_overridden = overridden
        return int(count), last, events

    def _evaluate_in_python(self) -> None:
        """The states of the tags left to Python, for the chunk's customers without overrides."""
        assert self.partial is not None
        states, wanted = self.temporary.states, self.temporary.wanted
        rows = self.connection.execute(
            sa.select(states.c.customer_id, *[self.table.c[name] for name in self.python_fields]).select_from(
                states.join(self.table, self.table.c[self.key.name] == states.c.raw_id)
            )
        ).all()
        evaluate = self.partial.evaluate
        fields, readers, keys, now = self.python_fields, self.python_readers, self.python_keys, self.now
        found: list[dict[str, Any]] = []
        for row in rows:
            snapshot = {
                name: value if reader is None or value is None else reader(value)
                for name, value, reader in zip(fields, row[1:], readers, strict=True)
            }
            result = evaluate(snapshot, now)
            for key in keys:
                if key in result.errors:
                    found.append({"customer_id": row[0], "tag": key, "state": None})
                elif key in result.tags:
                    found.append({"customer_id": row[0], "tag": key, "state": 1})
        if found:
            self.connection.execute(sa.insert(wanted), found)

    def _write(self, changes: sa.Table) -> list[ChangeEvent]:
        connection = self.connection
        t = self.tables
        at = self.at
        changed = sa.select(changes.c.customer_id).distinct()
        connection.execute(
            sa.update(t.customers)
            .where(t.customers.c.customer_id.in_(changed))
            .values(version=t.customers.c.version + 1, updated_at=at)
        )
        new = changed.subquery("changed")
        connection.execute(
            sa.insert(t.customers).from_select(
                ["customer_id", "version", "updated_at"],
                sa.select(
                    new.c.customer_id, sa.literal(1), sa.literal(at, t.customers.c.updated_at.type)
                ).where(
                    ~sa.select(t.customers.c.customer_id)
                    .where(t.customers.c.customer_id == new.c.customer_id)
                    .exists()
                ),
            )
        )
        removed = sa.select(changes.c.customer_id, changes.c.tag).where(changes.c.change == "removed")
        m, h, o = t.memberships, t.history, t.outbox
        connection.execute(sa.delete(m).where(sa.tuple_(m.c.customer_id, m.c.tag).in_(removed)))
        connection.execute(
            sa.update(h)
            .where(h.c.until.is_(None), sa.tuple_(h.c.customer_id, h.c.tag).in_(removed))
            .values(until=at, reason="rule", closed_version=self.catalog.version)
        )
        versions = {tag.key: tag.rule_version for tag in self.catalog.active}
        rule_version = sa.case(
            *[(changes.c.tag == key, sa.literal(version)) for key, version in versions.items()],
            else_=sa.null(),
        )
        added = sa.select(
            changes.c.customer_id,
            changes.c.tag,
            sa.literal("computed"),
            sa.literal(at, m.c.since.type),
            rule_version,
        ).where(changes.c.change == "added")
        names = ["customer_id", "tag", "source", "since", "rule_version"]
        connection.execute(sa.insert(m).from_select(names, added))
        opened = added.add_columns(sa.literal(self.catalog.version, h.c.catalog_version.type))
        connection.execute(sa.insert(h).from_select([*names, "catalog_version"], opened))
        # the events in the order a row-by-row commit writes them: by customer, added before removed
        ordered = sa.select(
            changes.c.customer_id,
            changes.c.tag,
            changes.c.change,
            sa.literal(at, o.c.at.type),
            sa.literal("rule"),
        ).order_by(
            changes.c.customer_id,
            sa.case((changes.c.change == "added", 0), else_=1),
            changes.c.tag,
        )
        if not self.emit_events:
            return []
        insert = sa.insert(o).from_select(["customer_id", "tag", "change", "at", "reason"], ordered)
        if not self.tagger.listeners:
            connection.execute(insert)
            return []
        rows = list(
            connection.execute(
                insert.returning(o.c.id, o.c.customer_id, o.c.tag, o.c.change, o.c.at, o.c.reason)
            )
        )
        rows.sort(key=lambda row: row[0])
        # in outbox order, without a position: the feed gives positions when the events are read
        return [ChangeEvent(row[1], row[2], row[3], row[4], row[5]) for row in rows]

    def _count(self) -> None:
        """Added and removed per tag from the changes; members and errors per tag from the states:
        a member holds the tag assigned, or held it and its state is unknown (it keeps it)."""
        connection = self.connection
        # counted into the chunk's tallies (reset when it starts), added to the run's once it commits
        pending = self.pending
        changes, wanted = self.temporary.changes, self.temporary.wanted
        for tag, change, number in connection.execute(
            sa.select(changes.c.tag, changes.c.change, sa.func.count()).group_by(
                changes.c.tag, changes.c.change
            )
        ):
            (pending.added if change == "added" else pending.removed)[tag] += number
        for tag, state, number in connection.execute(
            sa.select(wanted.c.tag, wanted.c.state, sa.func.count()).group_by(wanted.c.tag, wanted.c.state)
        ):
            if state is None:
                pending.errors[tag] += number
            else:
                pending.members[tag] += number
        m = self.tables.memberships
        for tag, number in connection.execute(
            sa.select(wanted.c.tag, sa.func.count())
            .select_from(
                wanted.join(m, sa.and_(m.c.customer_id == wanted.c.customer_id, m.c.tag == wanted.c.tag))
            )
            .where(wanted.c.state.is_(None))
            .group_by(wanted.c.tag)
        ):
            pending.members[tag] += number

    # -- the run ------------------------------------------------------------------------------------

    def chunks(self, progress: Callable[[int], None] | None) -> Iterator[None]:
        connection = self.connection
        with translated(self.store.url, "retag set-wise"):
            self.temporary.metadata.create_all(connection)
            self.analyze_at = analyze_threshold(connection, self.tables.memberships.name)
            connection.commit()
        lower: Any = None
        while True:
            with translated(self.store.url, "retag set-wise"):
                upto = self.fill_segment(lower)
            if progress is not None:
                progress(self.customers)
            yield from self._segment_chunks(progress)
            if upto is None:
                break
            lower = upto
        # (after a failure the table stays until the session ends, or the next fill replaces it)
        with translated(self.store.url, "retag set-wise"):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {_SEGMENT_TABLE}")
            connection.commit()

    def _segment_chunks(self, progress: Callable[[int], None] | None) -> Iterator[None]:
        connection = self.connection
        after: Any = None
        first = True
        metrics = instruments()
        while True:
            clock = time.perf_counter()
            for attempt in range(_MAX_ATTEMPTS):
                try:
                    with translated(self.store.url, "retag set-wise"):
                        count, last, events = self.run_chunk(after, first)
                        connection.commit()
                except (ConcurrentUpdate, StoreError) as error:
                    connection.rollback()
                    retryable = isinstance(error, ConcurrentUpdate) or isinstance(
                        error.__cause__, sa.exc.IntegrityError
                    )
                    if not retryable or attempt == _MAX_ATTEMPTS - 1:
                        raise
                    self.retries += 1
                    RUNS.info(
                        "a set-wise chunk after %r is read again: another writer changed one of its "
                        "customers first (attempt %d of %d)",
                        after,
                        attempt + 1,
                        _MAX_ATTEMPTS,
                        extra={"after": str(after), "attempt": attempt + 1},
                    )
                    time.sleep(0.002 * (attempt + 1))
                    continue
                break
            if not count:
                return
            self.customers += count - len(self.pending_overridden)
            self.tallies.add(self.pending)
            if metrics.enabled:
                evaluated = count - len(self.pending_overridden)
                metrics.chunk("retag", evaluated, self.pending.errors, time.perf_counter() - clock)
                pending = self.pending
                metrics.changes(
                    {
                        **{(tag, "added"): number for tag, number in pending.added.items()},
                        **{(tag, "removed"): number for tag, number in pending.removed.items()},
                    }
                )
            self._keep_statistics()
            self.with_overrides.extend(self.pending_overridden)
            self.tallies.listener_errors += self.tagger.notify(events)
            if progress is not None:
                progress(self.customers)
            yield
            after, first = last, False
            if count < self.chunk:
                return

    def _keep_statistics(self) -> None:
        # as SQLStore does: the planner needs fresh statistics of the store's tables after a bulk
        # insert, and autovacuum refreshes them only after a pause (not worth it for a few rows
        # more in large tables)
        self.inserted = sum(self.tallies.added.values())
        if self.inserted < self.analyze_at:
            return
        self.analyze_at = 2 * self.inserted
        t = self.tables
        with translated(self.store.url, "analyze tables"):
            self.connection.exec_driver_sql(
                f"ANALYZE {t.customers.name}, {t.memberships.name}, {t.history.name}"
            )
            self.connection.commit()

    def overridden_items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """The customers with overrides, with their rows as snapshots, for the row-by-row path."""
        catalog = self.catalog
        fields = sorted(_rule_fields(catalog, [d.key for d in catalog.active]))
        readers = [_reader(catalog.schema.fields[name]) for name in fields]
        text_id = sa.cast(self.key, sa.String(ID_LENGTH))
        ids = self.with_overrides
        for start in range(0, len(ids), 1000):
            batch = ids[start : start + 1000]
            rows = self.connection.execute(
                sa.select(text_id, *[self.table.c[name] for name in fields]).where(text_id.in_(batch))
            ).all()
            self.connection.rollback()
            for row in rows:
                yield (
                    row[0],
                    {
                        name: value if reader is None or value is None else reader(value)
                        for name, value, reader in zip(fields, row[1:], readers, strict=True)
                    },
                )


@contextmanager
def _joins_off(connection: Connection, *methods: str) -> Iterator[None]:
    """The planner without the join ``methods`` (``hashjoin``, ``mergejoin``, ``nestloop``) for the
    statements inside, in the current transaction."""
    for method in methods:
        connection.exec_driver_sql(f"SET LOCAL enable_{method} = off")
    yield
    for method in methods:
        connection.exec_driver_sql(f"SET LOCAL enable_{method} = on")


def setwise_retag(
    tagger: Tagger,
    store: SQLStore,
    connection: Connection,
    table: sa.Table,
    id_column: str,
    now: datetime.datetime,
    chunk: int,
    progress: Callable[[int], None] | None,
    emit_events: bool = True,
) -> ApplyReport:
    """Retag every row of ``table`` set-wise; customers with overrides through ``tagger.apply_many``
    (``emit_events=False``: no change events, as for ``apply_many``).

    Raises:
        StoreError: a chunk failed; chunks committed before stay committed.
    """
    tagger._publish_once()  # history rows written here name the catalog's version
    retired: Counter[str] = Counter()
    active = frozenset(d.key for d in tagger.catalog.active)
    stale = store.held_tags("computed") - active
    if stale:
        m = store.tables.memberships
        with translated(store.url, "count retired memberships"):
            for tag, number in connection.execute(
                sa.select(m.c.tag, sa.func.count())
                .where(m.c.tag.in_(sorted(stale)), m.c.source == "computed")
                .group_by(m.c.tag)
            ):
                retired[tag] += number
            connection.rollback()
        tagger.retire(now, emit_events=emit_events)
    work = _SetWise(tagger, store, connection, table, id_column, now, chunk, emit_events)
    for _ in work.chunks(progress):
        pass
    # the customers with overrides belong to this run: their counts join its record, not one of their own
    python = tagger._apply_all(work.overridden_items(), now, emit_events=emit_events)
    every = sorted(
        active
        | set(retired)
        | set(work.tallies.members)
        | set(work.tallies.added)
        | set(work.tallies.removed)
        | set(python.tags)
    )
    zero = TagCounts()
    tags = {
        key: TagCounts(
            work.tallies.members[key] + python.tags.get(key, zero).members,
            work.tallies.added[key] + python.tags.get(key, zero).added,
            work.tallies.removed[key] + retired[key] + python.tags.get(key, zero).removed,
            work.tallies.errors[key] + python.tags.get(key, zero).errors,
        )
        for key in every
    }
    return ApplyReport(
        work.customers + python.customers,
        tags,
        work.retries + python.retries,
        work.tallies.stale + python.stale,
        work.tallies.listener_errors + python.listener_errors,
    )
