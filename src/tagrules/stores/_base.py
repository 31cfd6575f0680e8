"""The tag store interface and the values it keeps.

A store holds, per customer: the current memberships (computed by rules or given by people), the
history of every membership with since/until, the manual overrides, and an outbox of change events
written in the same transaction as the memberships. It knows nothing of rules: a
:class:`~tagrules.Tagger` reads a batch of customers' states with :meth:`TagStore.load`, works out
what changes, and writes it with :meth:`TagStore.commit`, which checks each customer's version so
that concurrent writers never lose an update or emit an event twice.
"""

from __future__ import annotations

import datetime
import types
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, final, runtime_checkable

from tagrules.errors import InvalidArgument
from tagrules.stores._ids import MAX_CONSUMER_LENGTH, customer_id_problem
from tagrules.stores._runs import Every, RunRecord, TagStatistics, TierFlow

__all__ = [
    "DEFAULT_CONSUMER",
    "CatalogVersion",
    "ChangeEvent",
    "CustomerChange",
    "CustomerState",
    "Due",
    "HistoryEntry",
    "Membership",
    "Override",
    "Source",
    "TagStore",
]

#: ``computed``: assigned by a rule; ``manual``: given by a person (an ``include`` override).
Source = Literal["computed", "manual"]
#: ``include`` gives a customer a tag; ``exclude`` keeps a tag away from a customer whatever the rules say.
OverrideKind = Literal["include", "exclude"]
Change = Literal["added", "removed"]


def check_customer_id(customer_id: object) -> str:
    """``customer_id`` itself if it is a customer id every store can hold, else :class:`InvalidArgument`.

    Every store applies this one rule: ids are text (``7`` is not ``'7'``), from 1 to 191 characters
    of valid Unicode without NUL (:func:`~tagrules.stores._ids.customer_id_problem`, the rule the
    command line's readers apply line by line).
    """
    if isinstance(customer_id, str):
        problem = customer_id_problem(customer_id)
        if problem is None:
            return customer_id
        raise InvalidArgument(
            "a customer id must not be empty"
            if not customer_id
            else f"customer id {customer_id[:40]!r}: {problem}"
        )
    raise InvalidArgument(
        f"a customer id must be text, not {type(customer_id).__name__} {customer_id!r} (convert it: str(id))"
    )


#: The consumer of :meth:`TagStore.pending_events` and :meth:`TagStore.acknowledge`.
DEFAULT_CONSUMER = "default"


def check_consumer(consumer: object) -> str:
    """``consumer`` itself if it is a consumer name (1 to 64 characters of text), else
    :class:`InvalidArgument`."""
    if not isinstance(consumer, str) or not 0 < len(consumer) <= MAX_CONSUMER_LENGTH:
        raise InvalidArgument(
            f"consumer {consumer!r}: a consumer name is text of 1 to {MAX_CONSUMER_LENGTH} characters"
        )
    if customer_id_problem(consumer) is not None:
        raise InvalidArgument(f"consumer {consumer!r}: {customer_id_problem(consumer)}")
    return consumer


def check_limit(limit: object) -> int:
    """``limit`` itself if it is a whole number of events of at least 1, else :class:`InvalidArgument`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgument(f"limit {limit!r}: give a number of events of at least 1")
    return limit


def check_position(position: object) -> int:
    """``position`` itself if it is a whole number of at least 0, else :class:`InvalidArgument`."""
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise InvalidArgument(f"position {position!r}: give the position of an event (a number >= 0)")
    return position


def as_utc(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` in UTC: a naive time is UTC, an aware one is converted."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment if moment.tzinfo is datetime.timezone.utc else moment.astimezone(datetime.timezone.utc)


@final
@dataclass(frozen=True, slots=True)
class Membership:
    """A customer holds a tag.

    Attributes:
        customer_id: the customer.
        tag: the tag's key.
        source: ``computed`` (a rule assigned it) or ``manual`` (a person did).
        since: when the customer got the tag (the evaluation time of the run that assigned it).
        rule_version: the :attr:`~tagrules.TagDefinition.rule_version` of the rule that assigned it;
            ``None`` for manual tags.
    """

    customer_id: str
    tag: str
    source: Source
    since: datetime.datetime
    rule_version: str | None = None


@final
@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One period during which a customer held a tag.

    Attributes:
        customer_id: the customer.
        tag: the tag's key.
        source: ``computed`` or ``manual``.
        since: when the period began.
        until: when it ended; ``None`` while the customer still holds the tag.
        rule_version: the version of the rule that assigned it (``None`` for manual tags).
        reason: why the period ended (``rule``, ``retired``, ``manual``), ``None`` while open.
        catalog_version: the :attr:`~tagrules.Catalog.version` of the catalog whose run opened the
            period (``None``: not known, e.g. a manual tag or a store older than versions).
        closed_version: the version of the catalog whose run closed it (``None`` while open, or not
            known).
    """

    customer_id: str
    tag: str
    source: Source
    since: datetime.datetime
    until: datetime.datetime | None = None
    rule_version: str | None = None
    reason: str | None = None
    catalog_version: str | None = None
    closed_version: str | None = None

    def covers(self, moment: datetime.datetime) -> bool:
        """Whether the customer held the tag at ``moment``: ``since <= moment < until``; a naive
        ``moment`` is UTC."""
        moment = as_utc(moment)
        return self.since <= moment and (self.until is None or moment < self.until)


@final
@dataclass(frozen=True, slots=True)
class CatalogVersion:
    """A catalog as it was published into a store: who, when, and each tag's definition.

    Attributes:
        version: the catalog's :attr:`~tagrules.Catalog.version` (a digest of its content).
        name: the catalog's name (``None`` when it has none).
        published_at: when it was published.
        by: who published it (``tagrules run`` when a run published it implicitly).
        note: why, in the publisher's words (may be empty).
        tags: tag key -> its definition as plain data (``key``, ``rule``, ``group``, ``priority``,
            ``status`` and the rest of :class:`~tagrules.TagDefinition`).
    """

    version: str
    name: str | None
    published_at: datetime.datetime
    by: str
    note: str
    tags: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: types.MappingProxyType({}))

    def rule(self, tag: str) -> str | None:
        """The rule text of ``tag`` in this version, or ``None`` if the version has no such tag."""
        definition = self.tags.get(tag)
        return None if definition is None else str(definition.get("rule", ""))


@final
@dataclass(frozen=True, slots=True)
class Override:
    """A person's decision about one customer's tag.

    Attributes:
        customer_id: the customer.
        tag: the tag's key (any tag, also one no catalog defines).
        kind: ``include`` (the customer holds the tag) or ``exclude`` (rules never assign it).
        by: who decided.
        reason: why.
        at: when.
    """

    customer_id: str
    tag: str
    kind: OverrideKind
    by: str
    reason: str
    at: datetime.datetime


@final
@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A customer gained or lost a tag; the outbox keeps one per change until it is acknowledged.

    Attributes:
        customer_id: the customer.
        tag: the tag's key.
        change: ``added`` or ``removed``.
        at: when (the evaluation time, or the time of the override).
        reason: ``rule`` (a rule's result changed), ``retired`` (the tag left the catalog or was
            retired), or ``manual`` (an override was set or cleared).
        id: the event's position in the change feed (also :attr:`position`); ``None`` until it is
            read back from the store. Positions only grow: an event committed later is read at a
            higher position than every event read before it.
    """

    customer_id: str
    tag: str
    change: Change
    at: datetime.datetime
    reason: str
    id: int | None = None

    @property
    def position(self) -> int | None:
        """The event's position in the change feed: what :meth:`TagStore.ack` takes (``id``)."""
        return self.id

    def to_data(self) -> dict[str, object]:
        """Plain data: ``{"id": customer, "tag": ..., "change": ..., "at": ISO 8601, "reason": ...}``."""
        return {
            "id": self.customer_id,
            "tag": self.tag,
            "change": self.change,
            "at": self.at.isoformat(),
            "reason": self.reason,
        }


@final
@dataclass(frozen=True, slots=True)
class FeedConsumer:
    """A registered consumer of the change feed (:meth:`TagStore.consumers`).

    Attributes:
        name: the consumer's name.
        position: the last position it acknowledged (0: none yet).
        pending: the retained events after that position: what it has still to read and
            acknowledge, and what it keeps from being purged.
        registered_at: when it first read or acknowledged (UTC).
    """

    name: str
    position: int
    pending: int
    registered_at: datetime.datetime

    def to_data(self) -> dict[str, object]:
        """Plain data: ``{"consumer", "position", "pending", "registered_at"}`` (ISO 8601, UTC)."""
        return {
            "consumer": self.name,
            "position": self.position,
            "pending": self.pending,
            "registered_at": self.registered_at.isoformat().replace("+00:00", "Z"),
        }


_EMPTY: frozenset[str] = frozenset()


@final
@dataclass(frozen=True, slots=True)
class Due:
    """When a customer's tags change by time alone, as its last evaluation found
    (:attr:`~tagrules.Evaluation.valid_until`).

    Attributes:
        at: the first instant at which the catalog gives the customer other tags (or fails other
            rules) if nothing but time changes; ``None``: time alone never changes them.
        lapses: computed tag -> the first instant at which the customer loses it by time alone;
            a held tag not listed never lapses by time alone.
        known: ``False`` when the store does not know (the tags were computed where the instants
            are not, or the catalog reads time in a way they cannot be derived from); ``at`` and
            ``lapses`` are then empty.
    """

    at: datetime.datetime | None = None
    lapses: Mapping[str, datetime.datetime] = field(default_factory=lambda: types.MappingProxyType({}))
    known: bool = True


#: What a store holds for a customer whose lapses it does not know.
UNKNOWN_DUE = Due(known=False)


@final
@dataclass(frozen=True, slots=True)
class CustomerState:
    """What a store holds for one customer, as much as deciding a change needs.

    Attributes:
        version: bumped by every committed change; ``0`` for a customer the store has never changed.
        computed: the tags rules assigned.
        manual: the tags people included.
        excluded: the tags people excluded.
        changed_at: the time of the customer's last stored change (``None`` for a new customer); a
            change older than it is not written (time never runs backwards in a store).
        due: when its tags change by time alone, as its last evaluation found.
    """

    version: int = 0
    computed: frozenset[str] = _EMPTY
    manual: frozenset[str] = _EMPTY
    excluded: frozenset[str] = _EMPTY
    changed_at: datetime.datetime | None = None
    due: Due = UNKNOWN_DUE

    @property
    def tags(self) -> frozenset[str]:
        """Every tag the customer holds."""
        return self.computed | self.manual


#: The state of a customer a store has never seen.
NEW_CUSTOMER = CustomerState()


@final
@dataclass(frozen=True, slots=True)
class CustomerChange:
    """Everything one commit changes for one customer, applied all at once or not at all.

    Attributes:
        customer_id: the customer.
        version: the version the change was worked out from; the commit fails with
            :class:`~tagrules.ConcurrentUpdate` if the stored version differs.
        at: when the change happens (memberships' since, history's until, events' time).
        added: memberships to add (each opens a history period).
        removed: ``(tag, reason)`` of memberships to remove (each closes its history period).
        overrides: overrides to set (replacing the customer's override of the same tag).
        cleared: tags whose override is removed.
        events: the change events to put in the outbox.
        due: when the customer's tags change by time alone, replacing what the store held (the
            lapse of each computed membership held after the change included); ``None`` keeps it.
        catalog_version: the version of the catalog whose run makes the change: kept by the history
            periods it opens and closes (``None``: not a run's change).
    """

    customer_id: str
    version: int
    at: datetime.datetime
    added: tuple[Membership, ...] = ()
    removed: tuple[tuple[str, str], ...] = ()
    overrides: tuple[Override, ...] = ()
    cleared: tuple[str, ...] = ()
    events: tuple[ChangeEvent, ...] = field(default=())
    due: Due | None = None
    catalog_version: str | None = None


@runtime_checkable
class TagStore(Protocol):
    """Where memberships, history, overrides and change events live.

    Implementations: :class:`~tagrules.MemoryStore` and :class:`~tagrules.SQLStore`. Customer ids are
    text. Times are aware UTC datetimes; a naive ``as_of`` is read as UTC. Every method may raise
    :class:`~tagrules.StoreError`.
    """

    def load(self, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        """The state of each customer in ``customer_ids`` the store knows; unknown ones are left out."""
        ...

    def commit(self, changes: Sequence[CustomerChange]) -> None:
        """Write every change in one transaction.

        The check is made inside the write transaction, so it holds under concurrent writers.

        Raises:
            ConcurrentUpdate: some customer's version is no longer the one in its change, or the store
                holds a change of the customer later than the change's ``at``; nothing was written.
                (A change at the same instant as the last one is written.)
        """
        ...

    def memberships(self, customer_id: str) -> list[Membership]:
        """The customer's current memberships, sorted by tag."""
        ...

    def tags(self, customer_id: str) -> frozenset[str]:
        """The keys of the tags the customer holds now (computed and manual)."""
        ...

    def overrides(self, customer_id: str) -> list[Override]:
        """The customer's overrides, sorted by tag."""
        ...

    def members(self, tag: str, as_of: datetime.datetime | None = None) -> list[str]:
        """The sorted ids of the customers holding ``tag`` now, or at ``as_of``."""
        ...

    def tags_as_of(self, customer_id: str, as_of: datetime.datetime) -> frozenset[str]:
        """The tags the customer held at ``as_of``."""
        ...

    def due(self, now: datetime.datetime) -> list[str]:
        """The sorted ids of the customers whose tags time alone has changed by ``now`` since their
        last evaluation (their :attr:`Due.at` is at or before ``now``): re-evaluate exactly those."""
        ...

    def expiring(self, tag: str, before: datetime.datetime) -> list[str]:
        """The sorted ids of the customers holding ``tag`` (computed) whose membership lapses by time
        alone at or before ``before``, unless their data changes."""
        ...

    def history(self, customer_id: str) -> list[HistoryEntry]:
        """Every membership period of the customer, by since, then tag."""
        ...

    def customers_holding(self, tags: Collection[str], source: Source = "computed") -> Iterator[str]:
        """The ids of the customers holding any of ``tags`` from ``source``, sorted."""
        ...

    def held_tags(self, source: Source = "computed") -> frozenset[str]:
        """Every tag some customer holds from ``source``."""
        ...

    def pending_events(self, limit: int = 1000) -> list[ChangeEvent]:
        """The oldest unacknowledged change events (with their ``id``), in outbox order."""
        ...

    def acknowledge(self, event_ids: Iterable[int]) -> None:
        """Acknowledge events of :meth:`pending_events` for the default consumer, then purge.

        The default consumer's position moves past the leading pending events whose ids are given;
        an event after one not given is delivered again (at least once). Events that every
        registered consumer has acknowledged then leave the outbox. Unknown ids are ignored.
        """
        ...

    def events(self, consumer: str, limit: int = 1000) -> list[ChangeEvent]:
        """The next events of the change feed for ``consumer``: at most ``limit``, by position,
        after the position it acknowledged last.

        A consumer is registered the first time it reads or acknowledges, and then starts at the
        beginning of the retained feed. The same events come again until they are acknowledged.

        Raises:
            InvalidArgument: a consumer name that is not 1 to 64 characters of text, or a ``limit``
                below 1.
        """
        ...

    def ack(self, consumer: str, position: int) -> None:
        """Acknowledge every event up to ``position`` for ``consumer`` (a position of an event it
        read); an older position than the one it acknowledged already changes nothing.

        Raises:
            InvalidArgument: a bad consumer name, or a position the feed has not reached.
        """
        ...

    def purge_events(self, before: datetime.datetime | None = None) -> int:
        """Delete the events every registered consumer has acknowledged (with ``before``, only those
        that happened before it; a naive time is UTC); with no consumer registered, every event (before
        ``before``). Returns how many were deleted."""
        ...

    def consumers(self) -> list[FeedConsumer]:
        """The registered consumers of the change feed, by name, each with the position it
        acknowledged and how many retained events come after it."""
        ...

    def drop_consumer(self, consumer: str) -> bool:
        """Unregister ``consumer``: it no longer keeps events from being purged (a consumer that is
        gone for good would keep them forever). Reading under the name again registers it anew, at
        the beginning of the retained feed. Returns whether it was registered.

        Raises:
            InvalidArgument: a consumer name that is not 1 to 64 characters of text.
        """
        ...

    def forget(self, customer_id: str) -> None:
        """Erase the customer: memberships, history, overrides and pending events."""
        ...

    def record_run(self, record: RunRecord) -> None:
        """Keep a run record; a ``day`` record adds its counts to the record of the same id."""
        ...

    def publish(self, version: CatalogVersion) -> bool:
        """Keep a published catalog version; ``False`` (and nothing changes) if the store holds that
        version already."""
        ...

    def versions(self) -> list[CatalogVersion]:
        """Every published version, oldest first, with its definitions."""
        ...

    def catalog_version(self, version: str) -> CatalogVersion | None:
        """The published version ``version``, or ``None`` if it was never published."""
        ...

    def runs(
        self, since: datetime.datetime | None = None, until: datetime.datetime | None = None
    ) -> list[RunRecord]:
        """The run records evaluated in ``[since, until)``, oldest first."""
        ...

    def stats(
        self,
        tags: Collection[str] | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        every: Every = "week",
    ) -> TagStatistics:
        """Per period from ``since`` to ``until`` (default: the first record to now) and per tag:
        members at the period's end, added and removed within it, and the error rate of its runs.

        Raises:
            ValueError: ``until`` before ``since``, an unknown ``every``, or too many periods.
        """
        ...

    def overlap(
        self, tags: Collection[str], as_of: datetime.datetime | None = None
    ) -> dict[tuple[str, str], int]:
        """Customers holding both tags of each pair ``(a, b)`` of ``tags`` with ``a <= b``, now or at
        ``as_of``; ``(a, a)`` counts the members of ``a``. Pairs nobody holds are left out."""
        ...

    def flow(self, group: str, start: datetime.datetime, end: datetime.datetime) -> TierFlow:
        """Customers moving between the tiers of an exclusive group from ``start`` to ``end``; the
        group's tiers are those of its latest recorded run."""
        ...

    def close(self) -> None:
        """Release what the store opened; the store is not used afterwards."""
        ...

    def __enter__(self) -> TagStore:
        """The store itself: ``with store:`` closes it at the end of the block."""
        ...

    def __exit__(self, *exc_info: object) -> None:
        """Close the store."""
        ...
