"""Run records and the statistics a store answers: what each run did, and tags over time.

A run record holds counts, never customers: erasing a customer (``forget``) leaves it as it was.
Statistics are read per period (a day, an ISO week starting on Monday, or a calendar month, in UTC):
members at the period's end come from the history, added and removed from the history periods that
began and ended within it, and the error rate from the run records of the runs evaluated within it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, final

__all__ = [
    "MAX_PERIODS",
    "Every",
    "RunKind",
    "RunRecord",
    "TagCounts",
    "TagSeries",
    "TagStatistics",
    "TierFlow",
    "flow_labels",
    "period_starts",
    "statistics_from",
]

#: ``run``: one :meth:`~tagrules.Tagger.apply_many`; ``day``: the single-customer ``apply`` calls of one
#: UTC day (and one catalog version), accumulated.
RunKind = Literal["run", "day"]
#: The length of a statistics period.
Every = Literal["day", "week", "month"]
#: The most periods one statistics question may span.
MAX_PERIODS = 10_000
#: The tier label of a customer holding no tier of the group.
NONE = "none"
#: The tier label of a tag that was once a tier of the group but is not one in its latest run.
OTHER = "other"


@final
@dataclass(frozen=True, slots=True)
class TagCounts:
    """One tag's figures in a run.

    Attributes:
        members: customers of the run holding the tag afterwards (computed or manual).
        added: customers who gained it.
        removed: customers who lost it (including memberships closed because the tag was retired).
        errors: customers on whom its rule failed (their membership was left as it was).
    """

    members: int = 0
    added: int = 0
    removed: int = 0
    errors: int = 0

    def __add__(self, other: TagCounts) -> TagCounts:
        return TagCounts(
            self.members + other.members,
            self.added + other.added,
            self.removed + other.removed,
            self.errors + other.errors,
        )


@final
@dataclass(frozen=True, slots=True)
class RunRecord:
    """What one run did, as a store keeps it.

    Attributes:
        id: the run's id (``day:YYYY-MM-DD:VERSION`` for the accumulated single-customer applies).
        kind: ``run`` or ``day``.
        started_at: when the run started (wall clock, UTC).
        finished_at: when it finished.
        evaluated_at: the evaluation time rules saw as ``$now`` (for a ``day`` record: the day's start).
        catalog_version: the :attr:`~tagrules.Catalog.version` the run evaluated.
        customers: customers evaluated (each one evaluation of every active tag).
        tags: tag key -> its counts, for every tag active in the run and every tag that changed.
        groups: exclusive group -> its tiers in the run, highest priority first.
        emit_events: whether the run wrote change events for its changes (``False``: a run with
            ``emit_events=False``, such as a first load, wrote memberships and history only).
    """

    id: str
    kind: RunKind
    started_at: datetime.datetime
    finished_at: datetime.datetime
    evaluated_at: datetime.datetime
    catalog_version: str
    customers: int
    tags: Mapping[str, TagCounts] = field(default_factory=dict)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    emit_events: bool = True

    def merged(self, other: RunRecord) -> RunRecord:
        """This record with ``other``'s counts added (both ``day`` records of one id)."""
        tags = dict(self.tags)
        for key, counts in other.tags.items():
            tags[key] = tags.get(key, TagCounts()) + counts
        return RunRecord(
            self.id,
            self.kind,
            min(self.started_at, other.started_at),
            max(self.finished_at, other.finished_at),
            self.evaluated_at,
            self.catalog_version,
            self.customers + other.customers,
            tags,
            {**self.groups, **other.groups},
            self.emit_events and other.emit_events,
        )


@final
@dataclass(frozen=True, slots=True)
class TagSeries:
    """One tag's figures per period of a :class:`TagStatistics`, one entry per period.

    Attributes:
        members: customers holding the tag at the period's end.
        added: memberships that began within the period.
        removed: memberships that ended within it.
        error_rate: failed evaluations / evaluations of the runs within the period; ``None`` where no
            run evaluated the tag.
    """

    members: tuple[int, ...]
    added: tuple[int, ...]
    removed: tuple[int, ...]
    error_rate: tuple[float | None, ...]


@final
@dataclass(frozen=True, slots=True)
class TagStatistics:
    """Tags over time: :meth:`~tagrules.SQLStore.stats`.

    Attributes:
        periods: the start of each period (UTC).
        every: the length of a period.
        tags: tag key -> its series.
    """

    periods: tuple[datetime.datetime, ...]
    every: Every
    tags: Mapping[str, TagSeries]

    def to_data(self) -> dict[str, object]:
        """``{"periods": [ISO 8601...], "tags": {KEY: {"members": [...], "added": [...], "removed":
        [...], "error_rate": [...]}}}``."""
        return {
            "periods": [start.isoformat().replace("+00:00", "Z") for start in self.periods],
            "tags": {
                key: {
                    "members": list(series.members),
                    "added": list(series.added),
                    "removed": list(series.removed),
                    "error_rate": list(series.error_rate),
                }
                for key, series in sorted(self.tags.items())
            },
        }


@final
@dataclass(frozen=True, slots=True)
class TierFlow:
    """Customers moving between the tiers of an exclusive group between two instants.

    Attributes:
        group: the group.
        start: the first instant.
        end: the second.
        tiers: the group's tiers in its latest run, by priority as the run listed them.
        moves: from tier -> to tier -> customers; ``none`` is no tier, ``other`` a former tier. Customers
            holding no tier at either instant are not counted.
    """

    group: str
    start: datetime.datetime
    end: datetime.datetime
    tiers: tuple[str, ...]
    moves: Mapping[str, Mapping[str, int]]

    def to_data(self) -> dict[str, object]:
        """``{"group": G, "from": ISO 8601, "to": ISO 8601, "tiers": [...], "flow": {FROM: {TO: n}}}``."""
        return {
            "group": self.group,
            "from": self.start.isoformat().replace("+00:00", "Z"),
            "to": self.end.isoformat().replace("+00:00", "Z"),
            "tiers": list(self.tiers),
            "flow": {source: dict(sorted(targets.items())) for source, targets in sorted(self.moves.items())},
        }


def utc(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` in UTC; a naive time is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _period_start(moment: datetime.datetime, every: Every) -> datetime.datetime:
    day = utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)
    if every == "week":
        return day - datetime.timedelta(days=day.weekday())
    if every == "month":
        return day.replace(day=1)
    return day


def _next_start(start: datetime.datetime, every: Every) -> datetime.datetime:
    if every == "day":
        return start + datetime.timedelta(days=1)
    if every == "week":
        return start + datetime.timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def period_starts(
    since: datetime.datetime, until: datetime.datetime, every: Every
) -> list[datetime.datetime]:
    """The start of every period from the one holding ``since`` to the one holding ``until``, then the
    start of the period after the last (its end).

    Raises:
        ValueError: ``until`` is before ``since``, ``every`` is unknown, or there are more than
            :data:`MAX_PERIODS` periods.
    """
    if every not in ("day", "week", "month"):
        raise ValueError(f"unknown period {every!r}; use 'day', 'week' or 'month'")
    if until < since:
        raise ValueError(f"the end {until.isoformat()} is before the start {since.isoformat()}")
    starts = [_period_start(since, every)]
    last = utc(until)
    while starts[-1] <= last:
        if len(starts) > MAX_PERIODS:
            raise ValueError(f"more than {MAX_PERIODS:,} periods of a {every}; choose a longer period")
        starts.append(_next_start(starts[-1], every))
    return starts


def statistics_from(
    bounds: Sequence[datetime.datetime],
    every: Every,
    changes: Iterable[tuple[str, int, int, int]],
    errors: Iterable[tuple[str, int, int, int]],
    tags: Sequence[str] | None,
) -> TagStatistics:
    """Assemble statistics from per-period totals.

    Args:
        bounds: the period starts and the end of the last, as :func:`period_starts` gives them.
        every: the period length.
        changes: ``(tag, period, began, ended)`` history periods beginning and ending in each period;
            period ``-1`` holds everything before the first period.
        errors: ``(tag, period, errors, evaluations)`` from the run records of each period.
        tags: the tags asked for (all that appear, when ``None``).
    """
    count = len(bounds) - 1
    began: dict[str, list[int]] = {}
    ended: dict[str, list[int]] = {}
    before: dict[str, int] = {}
    for tag, period, opened, closed in changes:
        if period < 0:
            before[tag] = before.get(tag, 0) + opened - closed
            continue
        began.setdefault(tag, [0] * count)[period] += opened
        ended.setdefault(tag, [0] * count)[period] += closed
    failed: dict[str, list[int]] = {}
    evaluated: dict[str, list[int]] = {}
    for tag, period, failures, evaluations in errors:
        failed.setdefault(tag, [0] * count)[period] += failures
        evaluated.setdefault(tag, [0] * count)[period] += evaluations
    keys = sorted(set(tags) if tags is not None else began.keys() | before.keys() | evaluated.keys())
    series: dict[str, TagSeries] = {}
    zeros = [0] * count
    for key in keys:
        added, removed = began.get(key, zeros), ended.get(key, zeros)
        members: list[int] = []
        held = before.get(key, 0)
        for opened, closed in zip(added, removed, strict=True):
            held += opened - closed
            members.append(held)
        rates = tuple(
            failure / runs if runs else None
            for failure, runs in zip(failed.get(key, zeros), evaluated.get(key, zeros), strict=True)
        )
        series[key] = TagSeries(tuple(members), tuple(added), tuple(removed), rates)
    return TagStatistics(tuple(bounds[:-1]), every, series)


def flow_labels(
    rows: Iterable[tuple[str | None, str | None, int]], tiers: Sequence[str]
) -> dict[str, dict[str, int]]:
    """``(from tag, to tag, customers)`` rows as tier labels: ``none`` for no tag, ``other`` for a tag
    that is not a tier of the group now."""
    known = set(tiers)

    def label(tag: str | None) -> str:
        if tag is None:
            return NONE
        return tag if tag in known else OTHER

    moves: dict[str, dict[str, int]] = {}
    for source, target, customers in rows:
        into = moves.setdefault(label(source), {})
        into[label(target)] = into.get(label(target), 0) + customers
    return moves
