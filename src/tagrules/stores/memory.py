"""A tag store in memory: for tests, notebooks and small jobs."""

from __future__ import annotations

import bisect
import datetime
import itertools
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import final

from tagrules.errors import ConcurrentUpdate, InvalidArgument
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
from tagrules.stores._runs import (
    Every,
    RunRecord,
    TagStatistics,
    TierFlow,
    flow_labels,
    period_starts,
    statistics_from,
    utc,
)

__all__ = ["MemoryStore"]


class _Customer:
    __slots__ = ("changed_at", "due", "history", "memberships", "overrides", "version")

    def __init__(self, changed_at: datetime.datetime) -> None:
        self.version = 0
        self.due: Due = UNKNOWN_DUE
        self.changed_at = changed_at
        self.memberships: dict[str, Membership] = {}
        self.overrides: dict[str, Override] = {}
        self.history: list[HistoryEntry] = []


@final
class MemoryStore:
    """A :class:`~tagrules.TagStore` held in this process's memory; safe to share between threads.

    Examples:
        >>> from tagrules import Catalog, MemoryStore, Tagger
        >>> catalog = Catalog(tags=[{"key": "big", "rule": "spend >= 100"}], schema={"spend": "float"})
        >>> tagger = Tagger(catalog, MemoryStore())
        >>> sorted(tagger.apply("c1", {"spend": 150.0}).added)
        ['big']
        >>> tagger.store.members("big")
        ['c1']
    """

    def __init__(self) -> None:
        self._customers: dict[str, _Customer] = {}
        self._outbox: dict[int, ChangeEvent] = {}
        self._positions = itertools.count(1)
        self._head = 0
        self._consumers: dict[str, int] = {}
        self._registered: dict[str, datetime.datetime] = {}
        self._lock = threading.Lock()
        self._runs: dict[str, RunRecord] = {}
        self._versions: dict[str, CatalogVersion] = {}

    def load(self, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        states: dict[str, CustomerState] = {}
        with self._lock:
            for customer_id in customer_ids:
                customer = self._customers.get(check_customer_id(customer_id))
                if customer is None:
                    continue
                memberships = customer.memberships.values()
                states[customer_id] = CustomerState(
                    version=customer.version,
                    computed=frozenset(m.tag for m in memberships if m.source == "computed"),
                    manual=frozenset(m.tag for m in memberships if m.source == "manual"),
                    excluded=frozenset(o.tag for o in customer.overrides.values() if o.kind == "exclude"),
                    changed_at=customer.changed_at,
                    due=customer.due,
                )
        return states

    def commit(self, changes: Sequence[CustomerChange]) -> None:
        with self._lock:
            for change in changes:
                customer = self._customers.get(check_customer_id(change.customer_id))
                version = 0 if customer is None else customer.version
                if version != change.version:
                    raise ConcurrentUpdate(
                        f"customer {change.customer_id!r} changed since it was read "
                        f"(version {change.version}, now {version})"
                    )
                if customer is not None and change.at < customer.changed_at:
                    raise ConcurrentUpdate(
                        f"customer {change.customer_id!r} holds a later change "
                        f"({customer.changed_at.isoformat()}) than this one ({change.at.isoformat()})"
                    )
            for change in changes:
                self._apply(change)

    def _apply(self, change: CustomerChange) -> None:
        customer = self._customers.get(change.customer_id)
        if customer is None:
            customer = self._customers[change.customer_id] = _Customer(change.at)
        customer.version += 1
        customer.changed_at = change.at
        for tag, reason in change.removed:
            customer.memberships.pop(tag, None)
            for index, entry in enumerate(customer.history):
                if entry.tag == tag and entry.until is None:
                    customer.history[index] = HistoryEntry(
                        entry.customer_id,
                        tag,
                        entry.source,
                        entry.since,
                        change.at,
                        entry.rule_version,
                        reason,
                        entry.catalog_version,
                        change.catalog_version,
                    )
        for membership in change.added:
            customer.memberships[membership.tag] = membership
            customer.history.append(
                HistoryEntry(
                    membership.customer_id,
                    membership.tag,
                    membership.source,
                    membership.since,
                    rule_version=membership.rule_version,
                    catalog_version=change.catalog_version,
                )
            )
        for tag in change.cleared:
            customer.overrides.pop(tag, None)
        for override in change.overrides:
            customer.overrides[override.tag] = override
        if change.due is not None:
            customer.due = change.due
        for event in change.events:
            position = self._head = next(self._positions)
            self._outbox[position] = ChangeEvent(
                event.customer_id, event.tag, event.change, event.at, event.reason, position
            )

    def memberships(self, customer_id: str) -> list[Membership]:
        with self._lock:
            customer = self._customers.get(check_customer_id(customer_id))
            if customer is None:
                return []
            return sorted(customer.memberships.values(), key=lambda m: m.tag)

    def tags(self, customer_id: str) -> frozenset[str]:
        with self._lock:
            customer = self._customers.get(check_customer_id(customer_id))
            return frozenset() if customer is None else frozenset(customer.memberships)

    def overrides(self, customer_id: str) -> list[Override]:
        with self._lock:
            customer = self._customers.get(check_customer_id(customer_id))
            if customer is None:
                return []
            return sorted(customer.overrides.values(), key=lambda o: o.tag)

    def members(self, tag: str, as_of: datetime.datetime | None = None) -> list[str]:
        if as_of is not None:
            as_of = as_utc(as_of)
        with self._lock:
            if as_of is None:
                found = [cid for cid, c in self._customers.items() if tag in c.memberships]
            else:
                found = [
                    cid
                    for cid, c in self._customers.items()
                    if any(e.tag == tag and e.covers(as_of) for e in c.history)
                ]
        return sorted(found)

    def due(self, now: datetime.datetime) -> list[str]:
        now = as_utc(now)
        with self._lock:
            found = [cid for cid, c in self._customers.items() if c.due.at is not None and c.due.at <= now]
        return sorted(found)

    def expiring(self, tag: str, before: datetime.datetime) -> list[str]:
        before = as_utc(before)
        with self._lock:
            found = [
                cid
                for cid, c in self._customers.items()
                if (membership := c.memberships.get(tag)) is not None
                and membership.source == "computed"
                and (lapse := c.due.lapses.get(tag)) is not None
                and lapse <= before
            ]
        return sorted(found)

    def tags_as_of(self, customer_id: str, as_of: datetime.datetime) -> frozenset[str]:
        as_of = as_utc(as_of)
        with self._lock:
            customer = self._customers.get(check_customer_id(customer_id))
            if customer is None:
                return frozenset()
            return frozenset(e.tag for e in customer.history if e.covers(as_of))

    def history(self, customer_id: str) -> list[HistoryEntry]:
        with self._lock:
            customer = self._customers.get(check_customer_id(customer_id))
            if customer is None:
                return []
            return sorted(customer.history, key=lambda e: (e.since, e.tag))

    def customers_holding(self, tags: Collection[str], source: Source = "computed") -> Iterator[str]:
        wanted = frozenset(tags)
        with self._lock:
            found = [
                cid
                for cid, c in self._customers.items()
                if any(m.tag in wanted and m.source == source for m in c.memberships.values())
            ]
        return iter(sorted(found))

    def held_tags(self, source: Source = "computed") -> frozenset[str]:
        with self._lock:
            return frozenset(
                m.tag for c in self._customers.values() for m in c.memberships.values() if m.source == source
            )

    def pending_events(self, limit: int = 1000) -> list[ChangeEvent]:
        return self.events(DEFAULT_CONSUMER, limit)

    def acknowledge(self, event_ids: Iterable[int]) -> None:
        given = set(event_ids)
        with self._lock:
            after = self._cursor(DEFAULT_CONSUMER)
            for position in sorted(p for p in self._outbox if p > after):
                if position not in given:
                    break
                after = position
            self._consumers[DEFAULT_CONSUMER] = after
            self._purge(None)

    # -- the change feed ------------------------------------------------------------------------------

    def events(self, consumer: str, limit: int = 1000) -> list[ChangeEvent]:
        check_consumer(consumer)
        check_limit(limit)
        with self._lock:
            after = self._cursor(consumer)
            return [self._outbox[p] for p in sorted(p for p in self._outbox if p > after)[:limit]]

    def ack(self, consumer: str, position: int) -> None:
        check_consumer(consumer)
        check_position(position)
        with self._lock:
            if position > self._head:
                raise InvalidArgument(
                    f"consumer {consumer!r}: position {position} is beyond the feed's last event "
                    f"({self._head}); acknowledge the position of an event you read"
                )
            self._consumers[consumer] = max(self._cursor(consumer), position)

    def _cursor(self, consumer: str) -> int:
        """The position ``consumer`` acknowledged last; a new consumer is registered at 0."""
        if consumer not in self._consumers:
            self._consumers[consumer] = 0
            self._registered[consumer] = datetime.datetime.now(datetime.timezone.utc)
        return self._consumers[consumer]

    def consumers(self) -> list[FeedConsumer]:
        with self._lock:
            return [
                FeedConsumer(
                    name,
                    position,
                    sum(p > position for p in self._outbox),
                    self._registered[name],
                )
                for name, position in sorted(self._consumers.items())
            ]

    def drop_consumer(self, consumer: str) -> bool:
        check_consumer(consumer)
        with self._lock:
            self._registered.pop(consumer, None)
            return self._consumers.pop(consumer, None) is not None

    def purge_events(self, before: datetime.datetime | None = None) -> int:
        with self._lock:
            return self._purge(None if before is None else as_utc(before))

    def _purge(self, before: datetime.datetime | None) -> int:
        upto = min(self._consumers.values(), default=None)
        gone = [
            position
            for position, event in self._outbox.items()
            if (upto is None or position <= upto) and (before is None or event.at < before)
        ]
        for position in gone:
            del self._outbox[position]
        return len(gone)

    def forget(self, customer_id: str) -> None:
        check_customer_id(customer_id)
        with self._lock:
            self._customers.pop(customer_id, None)
            for position in [p for p, e in self._outbox.items() if e.customer_id == customer_id]:
                del self._outbox[position]

    # -- runs and statistics --------------------------------------------------------------------------

    def record_run(self, record: RunRecord) -> None:
        with self._lock:
            known = self._runs.get(record.id)
            if record.kind == "day" and known is not None:
                record = known.merged(record)
            elif known is not None:
                raise ValueError(f"a run {record.id!r} is recorded already")
            self._runs[record.id] = record

    def publish(self, version: CatalogVersion) -> bool:
        with self._lock:
            if version.version in self._versions:
                return False
            self._versions[version.version] = version
            return True

    def versions(self) -> list[CatalogVersion]:
        with self._lock:
            found = list(self._versions.values())
        return sorted(found, key=lambda version: (version.published_at, version.version))

    def catalog_version(self, version: str) -> CatalogVersion | None:
        with self._lock:
            return self._versions.get(version)

    def runs(
        self, since: datetime.datetime | None = None, until: datetime.datetime | None = None
    ) -> list[RunRecord]:
        with self._lock:
            found = list(self._runs.values())
        return sorted(
            (
                run
                for run in found
                if (since is None or run.evaluated_at >= utc(since))
                and (until is None or run.evaluated_at < utc(until))
            ),
            key=lambda run: (run.evaluated_at, run.started_at, run.id),
        )

    def stats(
        self,
        tags: Collection[str] | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        every: Every = "week",
    ) -> TagStatistics:
        wanted = sorted(tags) if tags is not None else None
        with self._lock:
            entries = [entry for customer in self._customers.values() for entry in customer.history]
            runs = list(self._runs.values())
        now = datetime.datetime.now(datetime.timezone.utc)
        if since is None:
            moments = [entry.since for entry in entries] + [run.evaluated_at for run in runs]
            since = min(moments, default=now)
        bounds = period_starts(since, until if until is not None else now, every)
        end = bounds[-1]
        chosen = None if wanted is None else set(wanted)

        def period(moment: datetime.datetime) -> int:
            return bisect.bisect_right(bounds, moment) - 1

        changes: list[tuple[str, int, int, int]] = []
        for entry in entries:
            if chosen is not None and entry.tag not in chosen:
                continue
            if entry.since < end:
                changes.append((entry.tag, period(entry.since), 1, 0))
            if entry.until is not None and entry.until < end:
                changes.append((entry.tag, period(entry.until), 0, 1))
        errors = [
            (key, period(run.evaluated_at), counts.errors, run.customers)
            for run in runs
            if bounds[0] <= run.evaluated_at < end
            for key, counts in run.tags.items()
            if chosen is None or key in chosen
        ]
        return statistics_from(bounds, every, changes, errors, wanted)

    def _held(self, *moments: datetime.datetime | None) -> list[tuple[frozenset[str], ...]]:
        """Per customer, the tags held at each moment (``None``: now)."""
        instants = [None if moment is None else utc(moment) for moment in moments]
        with self._lock:
            return [
                tuple(
                    frozenset(c.memberships)
                    if moment is None
                    else frozenset(e.tag for e in c.history if e.covers(moment))
                    for moment in instants
                )
                for c in self._customers.values()
            ]

    def overlap(
        self, tags: Collection[str], as_of: datetime.datetime | None = None
    ) -> dict[tuple[str, str], int]:
        wanted = frozenset(tags)
        pairs: Counter[tuple[str, str]] = Counter()
        for (held,) in self._held(as_of):
            chosen = sorted(held & wanted)
            for index, first in enumerate(chosen):
                pairs.update((first, second) for second in chosen[index:])
        return dict(pairs)

    def flow(self, group: str, start: datetime.datetime, end: datetime.datetime) -> TierFlow:
        runs = [run for run in self.runs() if group in run.groups]
        if not runs:
            return TierFlow(group, utc(start), utc(end), (), {})
        current = max(runs, key=lambda run: (run.evaluated_at, run.finished_at)).groups[group]
        ever = {tag for run in runs for tag in run.groups[group]}
        rows: Counter[tuple[str | None, str | None]] = Counter()
        for first, second in self._held(start, end):
            source, target = max(first & ever, default=None), max(second & ever, default=None)
            if source is not None or target is not None:
                rows[(source, target)] += 1
        moves = flow_labels(((s, t, n) for (s, t), n in rows.items()), current)
        return TierFlow(group, utc(start), utc(end), tuple(current), moves)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
