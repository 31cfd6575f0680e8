"""A tag store in memory: for tests, notebooks and small jobs."""

from __future__ import annotations

import datetime
import itertools
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import final

from tagrules.errors import ConcurrentUpdate
from tagrules.stores._base import (
    ChangeEvent,
    CustomerChange,
    CustomerState,
    HistoryEntry,
    Membership,
    Override,
    Source,
    as_utc,
    check_customer_id,
)

__all__ = ["MemoryStore"]


class _Customer:
    __slots__ = ("changed_at", "history", "memberships", "overrides", "version")

    def __init__(self, changed_at: datetime.datetime) -> None:
        self.version = 0
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
        self._lock = threading.Lock()

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
                )
            )
        for tag in change.cleared:
            customer.overrides.pop(tag, None)
        for override in change.overrides:
            customer.overrides[override.tag] = override
        for event in change.events:
            position = next(self._positions)
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
        with self._lock:
            return [self._outbox[position] for position in sorted(self._outbox)[:limit]]

    def acknowledge(self, event_ids: Iterable[int]) -> None:
        with self._lock:
            for position in event_ids:
                self._outbox.pop(position, None)

    def forget(self, customer_id: str) -> None:
        check_customer_id(customer_id)
        with self._lock:
            self._customers.pop(customer_id, None)
            for position in [p for p, e in self._outbox.items() if e.customer_id == customer_id]:
                del self._outbox[position]

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
