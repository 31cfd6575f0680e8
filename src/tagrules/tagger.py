"""The tagger: a catalog's evaluator joined to a tag store.

:meth:`Tagger.apply_many` streams customers through in chunks. For each chunk it reads the stored
state of every customer in one go, evaluates and diffs in Python, and writes only what changed, in
one transaction whose per-customer version check makes concurrent writers safe: a writer that lost
the race reads the chunk again and works its change out anew, so no update is lost and no event is
written twice.
"""

from __future__ import annotations

import datetime
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

from tagrules.catalog import Catalog
from tagrules.errors import ConcurrentUpdate, StoreError
from tagrules.evaluation import Evaluation, Evaluator, TagDiff, resolve_now
from tagrules.stores._base import (
    NEW_CUSTOMER,
    ChangeEvent,
    CustomerChange,
    CustomerState,
    Membership,
    Override,
    OverrideKind,
    TagStore,
)
from tagrules.stores._runs import RunKind, RunRecord, TagCounts

__all__ = ["ApplyReport", "EvaluateItem", "Listener", "TagCounts", "Tagger"]

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
MAX_ATTEMPTS = 50
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
        customers: how many (customer, snapshot) pairs were processed.
        tags: tag key -> its counts, for every tag of the catalog and every tag that changed.
        retries: how many times a chunk was read again because another writer changed one of its
            customers first.
    """

    customers: int
    tags: Mapping[str, TagCounts]
    retries: int = 0


class _Tally:
    __slots__ = ("added", "customers", "errors", "members", "removed", "retries")

    def __init__(self) -> None:
        self.customers = 0
        self.retries = 0
        self.members: Counter[str] = Counter()
        self.added: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def add(self, other: _Tally) -> None:
        self.customers += other.customers
        self.retries += other.retries
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
        return ApplyReport(self.customers, tags, self.retries)


def _utc(now: datetime.datetime | None) -> datetime.datetime:
    """The evaluation time in UTC: stores keep every time in UTC."""
    moment = resolve_now(now)
    return moment if moment.tzinfo is datetime.timezone.utc else moment.astimezone(datetime.timezone.utc)


def _wall_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _chunks(items: Iterable[tuple[str, Any]], size: int) -> Iterator[list[tuple[str, Any]]]:
    """Chunks of at most ``size`` pairs; a customer appearing twice starts a new chunk, so that each
    chunk holds a customer once and later snapshots apply after earlier ones."""
    chunk: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        customer_id = item[0]
        if len(chunk) >= size or customer_id in seen:
            yield chunk
            chunk, seen = [], set()
        chunk.append(item)
        seen.add(customer_id)
    if chunk:
        yield chunk


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
        self._rule_versions = {tag.key: tag.rule_version for tag in catalog.active}
        self._version = catalog.version
        self._groups = dict(catalog.groups)
        self._day_lock = threading.Lock()
        self._day: tuple[datetime.date, _Tally, datetime.datetime, float] | None = None

    # -- rules ---------------------------------------------------------------------------------------

    def apply(
        self, customer_id: str, snapshot: Mapping[str, Any] | Any, now: datetime.datetime | None = None
    ) -> TagDiff:
        """Evaluate one customer's snapshot and store the change atomically.

        Returns:
            The change: ``added`` and ``removed`` computed tags, ``unchanged`` tags (manual ones
            included), and the rules that failed.

        Raises:
            StoreError: the store failed (the change was not written).
        """
        moment = resolve_now(now)
        tally = _Tally()
        diffs = self._apply_chunk([(customer_id, snapshot)], moment, tally)
        tally.customers = 1
        self._count_day(_utc(moment), tally)
        return diffs[0]

    def apply_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any] | Any]],
        now: datetime.datetime | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        progress: Callable[[int], None] | None = None,
        evaluate: EvaluateItem | None = None,
    ) -> ApplyReport:
        """Evaluate and store a stream of ``(customer_id, snapshot)`` pairs, one transaction per chunk.

        Memory stays bounded by ``chunk_size``: ``items`` may be a generator over millions of customers.
        Before the first chunk, computed memberships of tags the catalog no longer has active are closed
        with reason ``retired``, for every customer of the store.

        Args:
            items: the customers and their snapshots; a customer may appear more than once (later
                snapshots apply after earlier ones).
            now: the evaluation time of every customer (default: the current time, once).
            chunk_size: customers per transaction.
            progress: called with the number of customers processed so far after each chunk.
            evaluate: how each item's payload is evaluated, for callers whose items carry results
                computed elsewhere (e.g. in a database); called with ``(payload, now, manual,
                excluded)``. Default: the tagger's evaluator on the snapshot.

        Returns:
            The report: customers processed and, per tag, members, added, removed and errors.

        Raises:
            StoreError: the store failed; chunks committed before stay committed, and running the same
                items again completes the work.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        moment = resolve_now(now)
        started = _wall_clock()
        tally = _Tally()
        self._retire(moment, chunk_size, tally)
        for chunk in _chunks(items, chunk_size):
            self._apply_chunk(chunk, moment, tally, evaluate)
            tally.customers += len(chunk)
            if progress is not None:
                progress(tally.customers)
        report = tally.report(self._active)
        self.record_run(report, moment, started)
        return report

    # -- run records -----------------------------------------------------------------------------------

    def record_run(
        self, report: ApplyReport, now: datetime.datetime, started: datetime.datetime | None = None
    ) -> RunRecord:
        """Keep the record of a run that evaluated this tagger's catalog at ``now`` in the store.

        :meth:`apply_many` records its own runs; writers that fill the store by other means (set-wise
        retagging in a database) call this with their report.
        """
        return self._record(uuid.uuid4().hex, "run", started, _utc(now), report)

    def _record(
        self,
        run_id: str,
        kind: RunKind,
        started: datetime.datetime | None,
        evaluated_at: datetime.datetime,
        report: ApplyReport,
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
        )
        self.store.record_run(record)
        return record

    def flush(self) -> None:
        """Add the held counts of single-customer :meth:`apply` calls to the day's run record now.

        ``apply`` holds them for up to :data:`RUN_FLUSH_SECONDS` (or until the evaluation day
        changes), so that a service's calls cost no extra write; call this before the process exits.
        """
        with self._day_lock:
            held, self._day = self._day, None
        if held is not None:
            self._write_day(*held[:3])

    def _count_day(self, at: datetime.datetime, tally: _Tally) -> None:
        day = at.date()
        due: tuple[datetime.date, _Tally, datetime.datetime, float] | None = None
        with self._day_lock:
            held = self._day
            if held is not None and held[0] != day:
                due, held = held, None
            if held is None:
                held = self._day = (day, _Tally(), _wall_clock(), time.monotonic())
            held[1].add(tally)
            if due is None and time.monotonic() - held[3] >= RUN_FLUSH_SECONDS:
                due, self._day = held, None
        if due is not None:
            self._write_day(*due[:3])

    def _write_day(self, day: datetime.date, tally: _Tally, started: datetime.datetime) -> None:
        midnight = datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc)
        self._record(
            f"day:{day.isoformat()}:{self._version}", "day", started, midnight, tally.report(self._active)
        )

    def retire(self, now: datetime.datetime | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
        """Close every computed membership of a tag that is not active in the catalog (reason ``retired``).

        :meth:`apply_many` does this before its first chunk.

        Returns:
            How many customers were changed.
        """
        return self._retire(resolve_now(now), chunk_size, None)

    def _retire(self, now: datetime.datetime, chunk_size: int, tally: _Tally | None) -> int:
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
                    if gone:
                        changes.append(self._change(customer_id, state, moment, (), gone, ()))
                return changes

            changes = self._commit(batch, work, tally)
            changed += len(changes)
            if tally is not None:
                for change in changes:
                    tally.removed.update(tag for tag, _ in change.removed)
        return changed

    # -- people's decisions ----------------------------------------------------------------------------

    def include(
        self, customer_id: str, tag: str, *, by: str, reason: str, now: datetime.datetime | None = None
    ) -> None:
        """Give the customer ``tag`` by a person's decision; rules will not remove it.

        Replaces an exclusion of the same tag. A tag the rules had assigned becomes manual.
        """
        self._override(customer_id, tag, "include", by, reason, now)

    def exclude(
        self, customer_id: str, tag: str, *, by: str, reason: str, now: datetime.datetime | None = None
    ) -> None:
        """Keep ``tag`` away from the customer by a person's decision; rules will not assign it.

        Replaces an inclusion of the same tag; a held tag is removed at once.
        """
        self._override(customer_id, tag, "exclude", by, reason, now)

    def clear_override(self, customer_id: str, tag: str, *, now: datetime.datetime | None = None) -> None:
        """Remove a person's decision about ``tag``: an included tag is removed, and the rules decide
        again from the next evaluation on."""
        moment = _utc(now)

        def work(states: Mapping[str, CustomerState]) -> list[CustomerChange]:
            state = states.get(customer_id, NEW_CUSTOMER)
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
    ) -> None:
        if not _TAG.match(tag):
            raise ValueError(f"{tag!r} is not a tag key (lowercase letters, digits, '-' and '_')")
        moment = _utc(now)
        override = Override(customer_id, tag, kind, by, reason, moment)

        def work(states: Mapping[str, CustomerState]) -> list[CustomerChange]:
            state = states.get(customer_id, NEW_CUSTOMER)
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
    ) -> CustomerChange:
        versions = self._rule_versions
        memberships = tuple(Membership(customer_id, tag, "computed", at, versions.get(tag)) for tag in added)
        gone = (
            [(tag, "rule") for tag in removed]
            + [(tag, "retired") for tag in retired]
            + [(tag, "manual") for tag in removed_manual]
        )
        events = tuple(ChangeEvent(customer_id, m.tag, "added", at, "rule") for m in memberships) + tuple(
            ChangeEvent(customer_id, tag, "removed", at, reason) for tag, reason in gone
        )
        return CustomerChange(customer_id, state.version, at, memberships, tuple(gone), (), drop, events)

    def _commit(
        self,
        customer_ids: Sequence[str],
        work: Callable[[Mapping[str, CustomerState]], list[CustomerChange]],
        tally: _Tally | None,
    ) -> list[CustomerChange]:
        for attempt in range(MAX_ATTEMPTS):
            changes = work(self.store.load(customer_ids))
            try:
                self.store.commit(changes)
            except ConcurrentUpdate:
                if tally is not None:
                    tally.retries += 1
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            self._notify(changes)
            return changes
        raise StoreError(
            f"{len(customer_ids)} customers kept changing under concurrent writers; "
            f"gave up after {MAX_ATTEMPTS} attempts"
        )

    def _notify(self, changes: Sequence[CustomerChange]) -> None:
        if not self.listeners:
            return
        for change in changes:
            for event in change.events:
                for listener in self.listeners:
                    listener(event)

    def _apply_chunk(
        self,
        chunk: Sequence[tuple[str, Any]],
        now: datetime.datetime,
        tally: _Tally,
        evaluate_item: EvaluateItem | None = None,
    ) -> list[TagDiff]:
        evaluate = self.evaluator.evaluate
        active = self._active
        at = _utc(now)
        ids = [customer_id for customer_id, _ in chunk]
        diffs: list[TagDiff] = []

        def work(states: Mapping[str, CustomerState]) -> list[CustomerChange]:
            diffs.clear()
            changes: list[CustomerChange] = []
            for customer_id, snapshot in chunk:
                state = states.get(customer_id, NEW_CUSTOMER)
                manual = state.manual
                evaluation = (
                    evaluate(snapshot, now, manual, suppressed=state.excluded)
                    if evaluate_item is None
                    else evaluate_item(snapshot, now, manual, state.excluded)
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
                if added or removed or retired:
                    changes.append(
                        self._change(customer_id, state, at, sorted(added), sorted(retired), sorted(removed))
                    )
                gone = removed | retired
                diffs.append(TagDiff(added, gone, (previous | manual) - gone, errors or _NO_ERRORS))
            return changes

        self._commit(ids, work, tally)
        for tag_diff in diffs:
            tally.members.update(tag_diff.unchanged)
            if tag_diff.added:
                tally.members.update(tag_diff.added)
                tally.added.update(tag_diff.added)
            if tag_diff.removed:
                tally.removed.update(tag_diff.removed)
            if tag_diff.errors:
                tally.errors.update(tag_diff.errors.keys())
        return diffs
