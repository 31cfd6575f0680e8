"""The tagger: a catalog's evaluator joined to a tag store.

:meth:`Tagger.apply_many` streams customers through in chunks. For each chunk it reads the stored
state of every customer in one go, evaluates and diffs in Python, and writes only what changed, in
one transaction whose per-customer version check makes concurrent writers safe: a writer that lost
the race reads the chunk again and works its change out anew, so no update is lost and no event is
written twice.
"""

from __future__ import annotations

import datetime
import gc
import json
import logging
import random
import re
import threading
import time
import types
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, final

import sqlalchemy
from sqlalchemy.engine import Connection

from tagrules._log import LISTENERS, RUNS
from tagrules._metrics import Metrics, Operation, instruments
from tagrules.catalog import Catalog
from tagrules.errors import ConcurrentUpdate, InvalidArgument, StaleSnapshot, StoreError
from tagrules.evaluation import Evaluation, Evaluator, TagDiff, resolve_now
from tagrules.schema import suggest
from tagrules.stores._base import (
    NEW_CUSTOMER,
    UNKNOWN_DUE,
    CatalogVersion,
    ChangeEvent,
    CustomerChange,
    CustomerState,
    Due,
    Membership,
    Override,
    OverrideKind,
    TagStore,
    as_utc,
    check_customer_id,
)
from tagrules.stores._runs import RunKind, RunRecord, TagCounts
from tagrules.stores.sql import SQLStore

__all__ = [
    "ApplyReport",
    "EvaluateItem",
    "Listener",
    "TagCounts",
    "Tagger",
    "log_run_finished",
    "log_run_started",
]

#: Called with each change event once the change is committed.
Listener = Callable[[ChangeEvent], object]
#: Evaluates one item of :meth:`Tagger.apply_many`: called with the item's payload (the snapshot, by
#: default), the evaluation time, the customer's manual tags and the tags people excluded; returns
#: the :class:`~tagrules.Evaluation`.
EvaluateItem = Callable[[Any, datetime.datetime, frozenset[str], frozenset[str]], Evaluation]

_EMPTY: frozenset[str] = frozenset()
_NO_ERRORS: Mapping[str, str] = {}
_TAG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
DEFAULT_CHUNK_SIZE = 1000
#: who a run's implicit publication names
IMPLICIT_PUBLISHER = "tagrules run"
MAX_ATTEMPTS = 50
#: Where a listener that raised is reported (with its traceback); the run goes on.
LISTENER_LOGGER = LISTENERS

#: Seconds the counts of single-customer applies are held before they are added to the day's record.
RUN_FLUSH_SECONDS = 60.0


class TotalsOverTags:
    """Totals of a report's per-tag counts (``tags``)."""

    __slots__ = ()
    tags: Mapping[str, TagCounts]

    @property
    def added(self) -> int:
        """Memberships added, over all tags."""
        return sum(counts.added for counts in self.tags.values())

    @property
    def removed(self) -> int:
        """Memberships removed, over all tags."""
        return sum(counts.removed for counts in self.tags.values())

    @property
    def errors(self) -> int:
        """Failed rule evaluations, over all tags."""
        return sum(counts.errors for counts in self.tags.values())


@final
@dataclass(frozen=True, slots=True)
class ApplyReport(TotalsOverTags):
    """What :meth:`Tagger.apply_many` did.

    Attributes:
        customers: how many customers were processed; a customer appearing twice counts once, and
            the tag counts hold its state after its last snapshot.
        tags: tag key -> its counts, for every tag of the catalog and every tag that changed.
        retries: how many times a chunk was read again because another writer changed one of its
            customers first.
        stale: customers not written because the store holds a later change of theirs than the
            run's ``now`` (see :class:`~tagrules.StaleSnapshot`); they are not in the tag counts.
        listener_errors: how many times a listener raised (each logged on the
            ``tagrules.listeners`` logger); the other listeners and events still ran.
    """

    customers: int
    tags: Mapping[str, TagCounts]
    retries: int = 0
    stale: int = 0
    listener_errors: int = 0


class _Tally:
    __slots__ = (
        "added",
        "errors",
        "failed",
        "listener_errors",
        "members",
        "removed",
        "retries",
        "seen",
        "stale",
    )

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.failed: dict[str, Iterable[str]] = {}
        self.retries = 0
        self.stale = 0
        self.listener_errors = 0
        self.members: Counter[str] = Counter()
        self.added: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def add(self, other: _Tally) -> None:
        self.seen |= other.seen
        self.retries += other.retries
        self.stale += other.stale
        self.listener_errors += other.listener_errors
        self.members.update(other.members)
        self.added.update(other.added)
        self.removed.update(other.removed)
        self.errors.update(other.errors)

    def report(self, keys: Iterable[str]) -> ApplyReport:
        every = sorted(set(keys) | self.members.keys() | self.added.keys() | self.removed.keys())
        tags = {
            key: TagCounts(self.members[key], self.added[key], self.removed[key], self.errors[key])
            for key in every
        }
        return ApplyReport(len(self.seen), tags, self.retries, self.stale, self.listener_errors)

    def count(self, customer_id: str, tag_diff: TagDiff | None) -> None:
        """Count the customer's outcome (``None``: stale); a customer seen before in the run is counted
        once, with its state after this snapshot."""
        again = customer_id in self.seen
        self.seen.add(customer_id)
        if tag_diff is None:
            if not again:
                self.stale += 1
            return
        if again:
            # the state this snapshot started from is what the earlier one left, already counted
            self.members.subtract(tag_diff.unchanged | tag_diff.removed)
            self.errors.subtract(self.failed.pop(customer_id, ()))
        self.members.update(tag_diff.unchanged)
        if tag_diff.added:
            self.members.update(tag_diff.added)
            self.added.update(tag_diff.added)
        if tag_diff.removed:
            self.removed.update(tag_diff.removed)
        if tag_diff.errors:
            self.errors.update(tag_diff.errors.keys())
            self.failed[customer_id] = tuple(tag_diff.errors)


def _utc(now: datetime.datetime | None) -> datetime.datetime:
    """The evaluation time in UTC: stores keep every time in UTC."""
    return as_utc(resolve_now(now))


def _is_stale(state: CustomerState, at: datetime.datetime) -> bool:
    """Whether the store holds a later change of the customer than ``at`` (the same instant is not)."""
    return state.changed_at is not None and at < state.changed_at


def _wall_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a chunk is evaluated and written, resumed after.

    A chunk keeps tens of thousands of objects alive until its commit (memberships, events, rows),
    enough to set off a full collection nearly every chunk, each traversing every object of the
    process: half of a first tagging's time in Python went there. Reference counting still frees
    what a chunk drops; collections run between chunks. Only a pause this call started is resumed
    (the collector stays off for an application that turned it off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _chunks(items: Iterable[tuple[str, Any]], size: int) -> Iterator[list[tuple[str, Any]]]:
    """Chunks of at most ``size`` pairs; a customer appearing twice starts a new chunk, so that each
    chunk holds a customer once and later snapshots apply after earlier ones."""
    chunk: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        if len(chunk) >= size:
            yield chunk
            chunk, seen = [], set()
        customer_id = check_customer_id(item[0])  # after the full chunk is out: it stays committed
        if customer_id in seen:
            yield chunk
            chunk, seen = [], set()
        chunk.append(item)
        seen.add(customer_id)
    if chunk:
        yield chunk


def log_run_started(run_id: str, now: datetime.datetime, catalog_version: str, **details: object) -> None:
    """Log on ``tagrules.runs`` that the run ``run_id`` started, evaluating at ``now``."""
    if RUNS.isEnabledFor(logging.INFO):
        at = _utc(now).isoformat()
        RUNS.info(
            "run %s started: evaluating at %s, catalog %s",
            run_id,
            at,
            catalog_version,
            extra={"run_id": run_id, "now": at, "catalog_version": catalog_version, **details},
        )


def log_run_finished(run_id: str, report: ApplyReport, seconds: float, **details: object) -> None:
    """Log on ``tagrules.runs`` that the run ``run_id`` finished, with its counts."""
    if RUNS.isEnabledFor(logging.INFO):
        RUNS.info(
            "run %s finished in %.2f s: %d customers, %d added, %d removed, %d errors",
            run_id,
            seconds,
            report.customers,
            report.added,
            report.removed,
            report.errors,
            extra={
                "run_id": run_id,
                "seconds": round(seconds, 6),
                "customers": report.customers,
                "added": report.added,
                "removed": report.removed,
                "errors": report.errors,
                "retries": report.retries,
                "stale": report.stale,
                "listener_errors": report.listener_errors,
                **details,
            },
        )


@final
class Tagger:
    """Evaluates a catalog on customers and keeps their tags in a store.

    Rules never add, remove or override a person's decision: tags a person included are held whatever
    the rules say (and rules see them in ``tags``); tags a person excluded are never assigned. A tag
    whose rule fails keeps its previous state. Computed memberships of tags that are no longer active
    in the catalog (retired, draft, or removed) are closed with reason ``retired``.

    Args:
        catalog: the catalog whose active tags are evaluated.
        store: where the tags are kept (:class:`~tagrules.MemoryStore`, :class:`~tagrules.SQLStore`).
        listeners: called with each :class:`~tagrules.ChangeEvent` after its change is committed.
        evaluator: the evaluator to use (default: ``Evaluator(catalog)``, compiled).

    Examples:
        >>> from tagrules import Catalog, MemoryStore
        >>> catalog = Catalog(tags=[{"key": "big", "rule": "spend >= 100"}], schema={"spend": "float"})
        >>> tagger = Tagger(catalog, MemoryStore())
        >>> report = tagger.apply_many([("c1", {"spend": 150.0}), ("c2", {"spend": 5.0})])
        >>> report.customers, report.tags["big"].members
        (2, 1)
        >>> sorted(tagger.apply("c1", {"spend": 1.0}).removed)
        ['big']
    """

    def __init__(
        self,
        catalog: Catalog,
        store: TagStore,
        *,
        listeners: Iterable[Listener] = (),
        evaluator: Evaluator | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.listeners: list[Listener] = list(listeners)
        self.evaluator = evaluator if evaluator is not None else Evaluator(catalog)
        self._active = frozenset(tag.key for tag in catalog.active)
        self._keys = frozenset(tag.key for tag in catalog)
        self._rule_versions = {tag.key: tag.rule_version for tag in catalog.active}
        # events written inside a caller's transaction, until after_commit hands them on
        self._held: weakref.WeakKeyDictionary[Connection, list[ChangeEvent]] = weakref.WeakKeyDictionary()
        self._version = catalog.version
        self._groups = dict(catalog.groups)
        self._day_lock = threading.Lock()
        # how the tagger waits before trying again, and what becomes of a listener's result:
        # AsyncTagger waits on its event loop and awaits the listeners that are coroutine functions
        self._pause: Callable[[float], object] = time.sleep
        self._settle: Callable[[object], object] | None = None
        self._day: tuple[datetime.date, _Tally, datetime.datetime, float] | None = None
        self._due: list[tuple[datetime.date, _Tally, datetime.datetime, float]] = []
        self._metrics: Metrics = instruments()
        self._published = False

    # -- rules ---------------------------------------------------------------------------------------

    def apply(
        self,
        customer_id: str,
        snapshot: Mapping[str, Any] | Any,
        now: datetime.datetime | None = None,
        *,
        connection: Connection | None = None,
    ) -> TagDiff:
        """Evaluate one customer's snapshot and store the change atomically.

        With ``connection`` (a :class:`~tagrules.SQLStore` only), the change is written inside that
        connection's open transaction, which the caller commits or rolls back; listeners hear its
        events only when the caller hands them on with :meth:`after_commit`.

        Returns:
            The change: ``added`` and ``removed`` computed tags, ``unchanged`` tags (manual ones
            included), and the rules that failed.

        Raises:
            InvalidArgument: ``customer_id`` is not text, or is empty.
            StaleSnapshot: the store holds a later change of the customer than ``now`` (nothing was
                written); an evaluation at the same instant as the last change is written.
            StoreError: the store failed (the change was not written).
        """
        check_customer_id(customer_id)
        self._check_connection(connection)
        moment = resolve_now(now)
        tally = _Tally()
        diffs = self._apply_chunk(
            [(customer_id, snapshot)], moment, tally, strict=True, connection=connection, operation="apply"
        )
        self._count_day(_utc(moment), tally, connection)
        return diffs[0]

    def apply_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any] | Any]],
        now: datetime.datetime | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        progress: Callable[[int], None] | None = None,
        evaluate: EvaluateItem | None = None,
        connection: Connection | None = None,
        emit_events: bool = True,
    ) -> ApplyReport:
        """Evaluate and store a stream of ``(customer_id, snapshot)`` pairs, one transaction per chunk.

        Memory stays bounded by ``chunk_size``: ``items`` may be a generator over millions of customers.
        Before the first chunk, computed memberships of tags the catalog no longer has active are closed
        with reason ``retired``, for every customer of the store.

        A customer whose last change in the store is later than ``now`` is skipped and counted in
        :attr:`ApplyReport.stale` (time never runs backwards in a store; the same instant is not
        later, so a re-run with the same ``now`` completes a failed run). A listener that raises is
        logged and counted in :attr:`ApplyReport.listener_errors`; the run goes on.

        Args:
            items: the customers and their snapshots; a customer may appear more than once (later
                snapshots apply after earlier ones; the report counts it once). The report keeps the
                run's customer ids to count each once.
            now: the evaluation time of every customer (default: the current time, once).
            chunk_size: customers per transaction.
            progress: called with the number of items processed so far after each chunk.
            evaluate: how each item's payload is evaluated, for callers whose items carry results
                computed elsewhere (e.g. in a database); called with ``(payload, now, manual,
                excluded)``. Default: the tagger's evaluator on the snapshot.
            connection: write every chunk inside this open transaction of the caller's (a
                :class:`~tagrules.SQLStore` only): nothing is committed, the caller commits or rolls
                back, and listeners hear the events once the caller calls :meth:`after_commit`
                (``listener_errors`` is then 0).
            emit_events: ``False`` writes memberships and history but no change events (nothing in
                the outbox, nothing for the listeners), also for the retired tags it closes: a first
                load of customers who already hold their tags. The run record says so
                (:attr:`~tagrules.RunRecord.emit_events`).

        Returns:
            The report: customers processed and, per tag, members, added, removed and errors.

        Raises:
            InvalidArgument: a customer id is not text, or is empty (chunks before it stay committed).
            StoreError: the store failed; chunks committed before stay committed, and running the same
                items again completes the work.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self._check_connection(connection)
        moment = resolve_now(now)
        started = _wall_clock()
        clock = time.perf_counter()
        run_id = uuid.uuid4().hex
        log_run_started(run_id, moment, self._version, chunk_size=chunk_size)
        report = self._apply_all(
            items, moment, chunk_size, progress, evaluate, connection, emit_events, run_id
        )
        self.record_run(
            report, moment, started, connection=connection, emit_events=emit_events, run_id=run_id
        )
        log_run_finished(run_id, report, time.perf_counter() - clock)
        return report

    def _apply_all(
        self,
        items: Iterable[tuple[str, Mapping[str, Any] | Any]],
        moment: datetime.datetime,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Callable[[int], None] | None = None,
        evaluate: EvaluateItem | None = None,
        connection: Connection | None = None,
        emit_events: bool = True,
        run_id: str = "",
    ) -> ApplyReport:
        """What :meth:`apply_many` does but keep the run's record: for writers that record one run
        of their own around it (a set-wise retag's customers with overrides)."""
        tally = _Tally()
        self._retire(moment, chunk_size, tally, connection, emit_events=emit_events)
        processed = 0
        for chunk in _chunks(items, chunk_size):
            with _collector_paused():
                self._apply_chunk(
                    chunk, moment, tally, evaluate, connection=connection, emit_events=emit_events
                )
            processed += len(chunk)
            if RUNS.isEnabledFor(logging.DEBUG):
                RUNS.debug(
                    "run %s: a chunk of %d customers is stored, %d so far",
                    run_id,
                    len(chunk),
                    processed,
                    extra={"run_id": run_id, "chunk": len(chunk), "processed": processed},
                )
            if progress is not None:
                progress(processed)
        return tally.report(self._active)

    # -- run records -----------------------------------------------------------------------------------

    def record_run(
        self,
        report: ApplyReport,
        now: datetime.datetime,
        started: datetime.datetime | None = None,
        *,
        connection: Connection | None = None,
        emit_events: bool = True,
        run_id: str | None = None,
    ) -> RunRecord:
        """Keep the record of a run that evaluated this tagger's catalog at ``now`` in the store
        (with ``connection``, inside the caller's transaction, so that it commits with the run);
        ``emit_events=False`` records a run that wrote no change events.

        :meth:`apply_many` records its own runs; writers that fill the store by other means (set-wise
        retagging in a database) call this with their report, and with the ``run_id`` they logged the
        run's start under (default: a new id).
        """
        return self._record(
            run_id or uuid.uuid4().hex, "run", started, _utc(now), report, connection, emit_events
        )

    def _record(
        self,
        run_id: str,
        kind: RunKind,
        started: datetime.datetime | None,
        evaluated_at: datetime.datetime,
        report: ApplyReport,
        connection: Connection | None = None,
        emit_events: bool = True,
    ) -> RunRecord:
        finished = _wall_clock()
        record = RunRecord(
            run_id,
            kind,
            started if started is not None else finished,
            finished,
            evaluated_at,
            self._version,
            report.customers,
            report.tags,
            self._groups,
            emit_events,
        )
        if connection is None:
            self.store.record_run(record)
        else:
            assert isinstance(self.store, SQLStore)  # _check_connection refused the others
            self.store.record_run(record, connection=connection)
        return record

    def flush(self) -> None:
        """Add the held counts of single-customer :meth:`apply` calls to the day's run record now.

        ``apply`` holds them for up to :data:`RUN_FLUSH_SECONDS` (or until the evaluation day
        changes), so that a service's calls cost no extra write; call this before the process exits.
        Counts of calls inside a caller's transaction (``connection=``) are written by the next call
        without one, by :meth:`after_commit`, or by this.
        """
        with self._day_lock:
            if self._day is not None:
                self._due.append(self._day)
                self._day = None
        self._write_due()

    def _count_day(self, at: datetime.datetime, tally: _Tally, connection: Connection | None) -> None:
        day = at.date()
        with self._day_lock:
            held = self._day
            if held is not None and held[0] != day:
                self._due.append(held)
                held = None
            if held is None:
                held = self._day = (day, _Tally(), _wall_clock(), time.monotonic())
            held[1].add(tally)
            if time.monotonic() - held[3] >= RUN_FLUSH_SECONDS:
                self._due.append(held)
                self._day = None
        if connection is None:
            self._write_due()

    def _write_due(self) -> None:
        with self._day_lock:
            due, self._due = self._due, []
        for day, tally, started, _ in due:
            midnight = datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc)
            report = tally.report(self._active)
            self._record(f"day:{day.isoformat()}:{self._version}", "day", started, midnight, report)

    def publish(
        self, catalog: Catalog | None = None, *, by: str, note: str = "", now: datetime.datetime | None = None
    ) -> CatalogVersion:
        """Record a catalog's version in the store: its content hash (:attr:`Catalog.version`), who
        published it, when, why, and each tag's definition. Runs record the version they evaluate,
        and history periods the versions that opened and closed them.

        Args:
            catalog: the catalog to publish (default: the tagger's own).
            by: who publishes it.
            note: why.
            now: when (default: the current time).

        Returns:
            The version as the store holds it: the one published earlier if this content was
            published already (publishing is idempotent).

        Raises:
            InvalidArgument: ``by`` is empty.
            StoreError: the store failed.
        """
        chosen = catalog if catalog is not None else self.catalog
        if not by.strip():
            raise InvalidArgument("publish: by must name who publishes the catalog")
        record = self._version_record(chosen, by, note, now)
        if self.store.publish(record):
            return record
        held = self.store.catalog_version(record.version)
        return held if held is not None else record

    @staticmethod
    def _version_record(
        catalog: Catalog, by: str, note: str, now: datetime.datetime | None
    ) -> CatalogVersion:
        definitions = {definition.key: json.loads(definition.to_json()) for definition in catalog.tags}
        return CatalogVersion(
            catalog.version, catalog.name or None, _utc(now), by, note, types.MappingProxyType(definitions)
        )

    def _publish_once(self, connection: Connection | None = None) -> None:
        """A run with an unpublished catalog publishes it (by ``tagrules run``), so that history
        always knows its definitions; inside the caller's transaction when there is one (it may
        hold the database's write lock)."""
        store = self.store
        if connection is None or not (isinstance(store, SQLStore) and store._sqlite):
            # in a transaction of its own, committed at once: another writer's run (or the caller's
            # next call, on a second connection) never waits for the caller's transaction to end
            if store.catalog_version(self._version) is None:
                self.publish(by=IMPLICIT_PUBLISHER, note="published by a run")
        else:
            # SQLite: the caller's transaction may hold the database's write lock
            if store.catalog_version(self._version, connection=connection) is None:
                record = self._version_record(self.catalog, IMPLICIT_PUBLISHER, "published by a run", None)
                store.publish(record, connection=connection)
            # a rollback of the caller's transaction undoes the publication: check again next time
            return
        self._published = True

    def due(self, now: datetime.datetime | None = None) -> list[str]:
        """The sorted ids of the customers whose tags time alone has changed by ``now`` (default: the
        current time) since their last evaluation: an event-driven service re-evaluates exactly those
        instead of rescanning every customer. Customers whose lapse the store does not know (tags
        computed in a database, or a catalog reading time otherwise than at a fixed rate) are not
        listed.

        Raises:
            StoreError: the store failed.
        """
        return self.store.due(_utc(now))

    def retire(
        self,
        now: datetime.datetime | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        emit_events: bool = True,
    ) -> int:
        """Close every computed membership of a tag that is not active in the catalog (reason ``retired``;
        ``emit_events=False``: without change events).

        :meth:`apply_many` does this before its first chunk.

        Returns:
            How many customers were changed.
        """
        return self._retire(resolve_now(now), chunk_size, None, emit_events=emit_events)

    def _retire(
        self,
        now: datetime.datetime,
        chunk_size: int,
        tally: _Tally | None,
        connection: Connection | None = None,
        *,
        emit_events: bool = True,
    ) -> int:
        moment = _utc(now)
        stale = self.store.held_tags("computed") - self._active
        if not stale:
            return 0
        changed = 0
        batch: list[str] = []
        holders = list(self.store.customers_holding(stale, "computed"))
        for start in range(0, len(holders), chunk_size):
            batch = holders[start : start + chunk_size]

            def work(
                states: Mapping[str, CustomerState], batch: Sequence[str] = batch
            ) -> list[CustomerChange]:
                changes = []
                for customer_id in batch:
                    state = states.get(customer_id, NEW_CUSTOMER)
                    gone = sorted(state.computed & stale)
                    if gone and not _is_stale(state, moment):
                        changes.append(
                            self._change(customer_id, state, moment, (), gone, (), emit=emit_events)
                        )
                return changes

            changes = self._commit(batch, work, tally, connection)
            changed += len(changes)
            if tally is not None:
                for change in changes:
                    tally.removed.update(tag for tag, _ in change.removed)
        return changed

    # -- people's decisions ----------------------------------------------------------------------------

    def include(
        self,
        customer_id: str,
        tag: str,
        *,
        by: str,
        reason: str,
        now: datetime.datetime | None = None,
        allow_unknown: bool = False,
    ) -> None:
        """Give the customer ``tag`` by a person's decision; rules will not remove it.

        Replaces an exclusion of the same tag. A tag the rules had assigned becomes manual.

        Args:
            customer_id: the customer.
            tag: a tag of the catalog, or any tag key with ``allow_unknown=True`` (a tag managed
                elsewhere).
            by: who decided.
            reason: why.
            now: when (default: the current time).
            allow_unknown: accept a tag the catalog does not define.

        Raises:
            InvalidArgument: an empty or non-text customer id, or a tag the catalog does not define
                (the message suggests the nearest one) without ``allow_unknown``.
            StaleSnapshot: the store holds a later change of the customer than ``now``.
        """
        self._override(customer_id, tag, "include", by, reason, now, allow_unknown)

    def exclude(
        self,
        customer_id: str,
        tag: str,
        *,
        by: str,
        reason: str,
        now: datetime.datetime | None = None,
        allow_unknown: bool = False,
    ) -> None:
        """Keep ``tag`` away from the customer by a person's decision; rules will not assign it.

        Replaces an inclusion of the same tag; a held tag is removed at once. Arguments and errors
        as for :meth:`include`.
        """
        self._override(customer_id, tag, "exclude", by, reason, now, allow_unknown)

    def clear_override(self, customer_id: str, tag: str, *, now: datetime.datetime | None = None) -> None:
        """Remove a person's decision about ``tag``: an included tag is removed, and the rules decide
        again from the next evaluation on."""
        check_customer_id(customer_id)
        moment = _utc(now)

        def work(states: Mapping[str, CustomerState]) -> list[CustomerChange]:
            state = states.get(customer_id, NEW_CUSTOMER)
            if (tag in state.manual or tag in state.excluded) and _is_stale(state, moment):
                raise StaleSnapshot(customer_id, moment, state.changed_at or moment)
            if tag in state.manual:
                return [
                    self._change(customer_id, state, moment, (), (), (), drop=(tag,), removed_manual=(tag,))
                ]
            if tag in state.excluded:
                return [self._change(customer_id, state, moment, (), (), (), drop=(tag,))]
            return []

        self._commit([customer_id], work, None)

    def _override(
        self,
        customer_id: str,
        tag: str,
        kind: OverrideKind,
        by: str,
        reason: str,
        now: datetime.datetime | None,
        allow_unknown: bool,
    ) -> None:
        check_customer_id(customer_id)
        if not isinstance(tag, str) or not _TAG.match(tag):
            raise InvalidArgument(f"{tag!r} is not a tag key (lowercase letters, digits, '-' and '_')")
        if not allow_unknown and tag not in self.catalog:
            raise InvalidArgument(
                f"the catalog defines no tag {tag!r}{suggest(tag, [t.key for t in self.catalog])}; "
                "pass allow_unknown=True for a tag managed elsewhere"
            )
        moment = _utc(now)
        override = Override(customer_id, tag, kind, by, reason, moment)

        def work(states: Mapping[str, CustomerState]) -> list[CustomerChange]:
            state = states.get(customer_id, NEW_CUSTOMER)
            if _is_stale(state, moment):
                raise StaleSnapshot(customer_id, moment, state.changed_at or moment)
            at = moment
            if kind == "include":
                if tag in state.manual:
                    return [CustomerChange(customer_id, state.version, at, overrides=(override,))]
                membership = Membership(customer_id, tag, "manual", at)
                if tag in state.computed:  # held either way: the source changes, no event
                    return [
                        CustomerChange(
                            customer_id,
                            state.version,
                            at,
                            added=(membership,),
                            removed=((tag, "manual"),),
                            overrides=(override,),
                        )
                    ]
                event = ChangeEvent(customer_id, tag, "added", at, "manual")
                return [
                    CustomerChange(
                        customer_id,
                        state.version,
                        at,
                        added=(membership,),
                        overrides=(override,),
                        events=(event,),
                    )
                ]
            if tag in state.tags:
                event = ChangeEvent(customer_id, tag, "removed", at, "manual")
                return [
                    CustomerChange(
                        customer_id,
                        state.version,
                        at,
                        removed=((tag, "manual"),),
                        overrides=(override,),
                        events=(event,),
                    )
                ]
            return [CustomerChange(customer_id, state.version, at, overrides=(override,))]

        self._commit([customer_id], work, None)

    # -- the machinery ---------------------------------------------------------------------------------

    def _change(
        self,
        customer_id: str,
        state: CustomerState,
        at: datetime.datetime,
        added: Iterable[str],
        retired: Iterable[str],
        removed: Iterable[str],
        *,
        drop: tuple[str, ...] = (),
        removed_manual: tuple[str, ...] = (),
        emit: bool = True,
        due: Due | None = None,
    ) -> CustomerChange:
        versions = self._rule_versions
        memberships = tuple(Membership(customer_id, tag, "computed", at, versions.get(tag)) for tag in added)
        gone = (
            [(tag, "rule") for tag in removed]
            + [(tag, "retired") for tag in retired]
            + [(tag, "manual") for tag in removed_manual]
        )
        events = (
            tuple(ChangeEvent(customer_id, m.tag, "added", at, "rule") for m in memberships)
            + tuple(ChangeEvent(customer_id, tag, "removed", at, reason) for tag, reason in gone)
            if emit
            else ()
        )
        return CustomerChange(
            customer_id, state.version, at, memberships, tuple(gone), (), drop, events, due, self._version
        )

    def _commit(
        self,
        customer_ids: Sequence[str],
        work: Callable[[Mapping[str, CustomerState]], list[CustomerChange]],
        tally: _Tally | None,
        connection: Connection | None = None,
        *,
        measure_changes: bool = True,
    ) -> list[CustomerChange]:
        for attempt in range(MAX_ATTEMPTS):
            try:
                if connection is None:
                    changes = work(self.store.load(customer_ids))
                    self.store.commit(changes)
                else:
                    store = self.store
                    assert isinstance(store, SQLStore)
                    changes = work(store.load(customer_ids, connection=connection))
                    store.commit(changes, connection=connection)
            except ConcurrentUpdate:
                if tally is not None:
                    tally.retries += 1
                RUNS.info(
                    "a chunk of %d customers is read again: another writer changed one of them first "
                    "(attempt %d of %d)",
                    len(customer_ids),
                    attempt + 1,
                    MAX_ATTEMPTS,
                    extra={"customers": len(customer_ids), "attempt": attempt + 1},
                )
                self._pause(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            metrics = self._metrics
            if measure_changes and metrics.enabled:
                metrics.changes(
                    Counter((event.tag, event.change) for change in changes for event in change.events)
                )
            if connection is not None:
                self._hold(connection, [event for change in changes for event in change.events])
            elif self.listeners:
                failures = self.notify(event for change in changes for event in change.events)
                if tally is not None:
                    tally.listener_errors += failures
            return changes
        raise StoreError(
            f"{len(customer_ids)} customers kept changing under concurrent writers; "
            f"gave up after {MAX_ATTEMPTS} attempts"
        )

    def after_commit(self, connection: Connection) -> int:
        """Hand the events written through ``connection`` (``apply(..., connection=...)``) to the
        listeners, once the caller has committed its transaction.

        Events of a transaction that was rolled back are dropped when it rolls back, so they are
        never heard.

        Returns:
            How many listener calls raised (each logged, as :meth:`notify` says).

        Raises:
            InvalidArgument: the connection's transaction is still open (commit it first).
        """
        if connection.in_transaction():
            raise InvalidArgument("after_commit: the connection's transaction is still open; commit it first")
        events = self._held.pop(connection, [])
        self._write_due()
        return self.notify(events) if self.listeners else 0

    def _hold(self, connection: Connection, events: list[ChangeEvent]) -> None:
        held = self._held.get(connection)
        if held is None:
            held = self._held[connection] = []
            if not sqlalchemy.event.contains(connection, "rollback", self._drop_held):
                sqlalchemy.event.listen(connection, "rollback", self._drop_held)
        held.extend(events)

    def _drop_held(self, connection: Connection) -> None:
        self._held.pop(connection, None)

    def _check_connection(self, connection: Connection | None) -> None:
        if connection is not None and not isinstance(self.store, SQLStore):
            raise InvalidArgument(
                f"connection= writes inside a database transaction: it needs a SQLStore, not "
                f"{type(self.store).__name__}"
            )

    def notify(self, events: Iterable[ChangeEvent]) -> int:
        """Give each committed event to every listener, in order.

        A listener that raises is logged (with its traceback) on the ``tagrules.listeners`` logger and
        counted; the other listeners and events still run. The outbox keeps every event whatever the
        listeners do.

        Returns:
            How many listener calls raised.
        """
        failures = 0
        listeners = self.listeners
        settle = self._settle
        for event in events:
            for listener in listeners:
                try:
                    result = listener(event)
                    if settle is not None:
                        settle(result)
                except Exception:
                    # the change is committed and its event stays in the outbox: a listener that
                    # fails must not stop the other listeners, the other events or the run
                    failures += 1
                    name = getattr(listener, "__qualname__", repr(listener))
                    LISTENER_LOGGER.exception(
                        "listener %s failed on the event %s %s %r (it stays in the outbox)",
                        name,
                        event.customer_id,
                        event.change,
                        event.tag,
                        extra={
                            "listener": name,
                            "customer_id": event.customer_id,
                            "tag": event.tag,
                            "change": event.change,
                        },
                    )
        return failures

    def _apply_chunk(
        self,
        chunk: Sequence[tuple[str, Any]],
        now: datetime.datetime,
        tally: _Tally,
        evaluate_item: EvaluateItem | None = None,
        *,
        strict: bool = False,
        connection: Connection | None = None,
        emit_events: bool = True,
        operation: Operation = "apply_many",
    ) -> list[TagDiff]:
        metrics = self._metrics
        clock = time.perf_counter() if metrics.enabled else 0.0
        if not self._published:
            self._publish_once(connection)
        evaluate = self.evaluator.evaluate
        # when tags lapse by time alone is known only for the tags the evaluator computes
        lapses_of = self.evaluator._lapses if evaluate_item is None else None
        active = self._active
        keys = self._keys
        at = _utc(now)
        ids = [customer_id for customer_id, _ in chunk]
        diffs: list[TagDiff | None] = []

        def work(states: Mapping[str, CustomerState]) -> list[CustomerChange]:
            diffs.clear()
            changes: list[CustomerChange] = []
            for customer_id, snapshot in chunk:
                state = states.get(customer_id, NEW_CUSTOMER)
                if state.changed_at is not None and at < state.changed_at:
                    if strict:
                        raise StaleSnapshot(customer_id, at, state.changed_at)
                    diffs.append(None)
                    continue
                manual, excluded = state.manual, state.excluded
                # rules only see tags of the catalog: people may have given tags managed elsewhere
                seen = manual if manual <= keys else manual & keys
                if not excluded <= keys:
                    excluded = excluded & keys
                evaluation = (
                    evaluate(snapshot, now, seen, suppressed=excluded)
                    if evaluate_item is None
                    else evaluate_item(snapshot, now, seen, excluded)
                )
                assigned = evaluation.tags - manual if manual else evaluation.tags
                errors = evaluation.errors
                previous = state.computed
                retired = previous - active if previous else _EMPTY
                current = previous - retired if retired else previous
                added = assigned - current
                removed = current - assigned
                if errors and removed:
                    removed = removed.difference(errors)
                due = UNKNOWN_DUE
                if lapses_of is not None:
                    found = lapses_of(snapshot, evaluation, seen, excluded)
                    if found is not None:
                        # the lapses of assigned tags: computed memberships, but for manual ones
                        lapsing = found[1]
                        if manual and lapsing:
                            lapsing = {tag: moment for tag, moment in lapsing.items() if tag not in manual}
                        due = Due(found[0], lapsing)
                if added or removed or retired:
                    changes.append(
                        self._change(
                            customer_id,
                            state,
                            at,
                            sorted(added),
                            sorted(retired),
                            sorted(removed),
                            emit=emit_events,
                            due=due,
                        )
                    )
                elif due != state.due and (state.version or due.at is not None):
                    # (a customer the store has never seen, holding nothing and due never, is not kept)
                    changes.append(
                        CustomerChange(customer_id, state.version, at, due=due, catalog_version=self._version)
                    )
                gone = removed | retired
                diffs.append(TagDiff(added, gone, (previous | manual) - gone, errors or _NO_ERRORS))
            return changes

        self._commit(ids, work, tally, connection, measure_changes=False)
        for customer_id, tag_diff in zip(ids, diffs, strict=True):
            tally.count(customer_id, tag_diff)
        done = [tag_diff for tag_diff in diffs if tag_diff is not None]
        if metrics.enabled:
            self._measure(operation, done, time.perf_counter() - clock)
        return done

    def _measure(self, operation: Operation, done: Sequence[TagDiff], seconds: float) -> None:
        """Hand a chunk's figures to the metrics, counted from its diffs (sets counted in C)."""
        added: Counter[str] = Counter()
        removed: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        for tag_diff in done:
            if tag_diff.added:
                added.update(tag_diff.added)
            if tag_diff.removed:
                removed.update(tag_diff.removed)
            if tag_diff.errors:
                errors.update(tag_diff.errors.keys())
        metrics = self._metrics
        metrics.chunk(operation, len(done), errors, seconds)
        if added or removed:
            changes = {(tag, "added"): count for tag, count in added.items()}
            changes.update(((tag, "removed"), count) for tag, count in removed.items())
            metrics.changes(changes)
