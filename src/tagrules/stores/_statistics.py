"""Run records and statistics in a SQL store: one query per question, the same SQL on every database.

Periods are found without date functions, which differ between databases: each time is placed in
its period by a balanced tree of comparisons with the period starts (bound parameters), so a row
costs a handful of comparisons whatever the number of periods, and days, ISO weeks and calendar
months are all exact in UTC.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy
from sqlalchemy import and_, func, literal_column, or_, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from tagrules.stores._runs import RunRecord, TagCounts, flow_labels
from tagrules.stores._tables import RUN_COUNTS, StoreTables, UTCDateTime

__all__ = [
    "change_totals",
    "error_totals",
    "flow_rows",
    "group_flow_rows",
    "group_tiers",
    "overlap_counts",
    "record_run",
    "run_records",
]


def _moment(value: datetime.datetime) -> Any:
    return sqlalchemy.literal(value, UTCDateTime())


def _period_of(column: Any, bounds: Sequence[datetime.datetime]) -> Any:
    """The index of the period holding ``column`` (``-1`` before the first), a tree of comparisons."""

    def node(low: int, high: int) -> Any:
        if high - low == 1:
            return literal_column(str(low))
        middle = (low + high) // 2
        return sqlalchemy.case(
            (column < _moment(bounds[middle]), node(low, middle)), else_=node(middle, high)
        )

    return sqlalchemy.case(
        (column < _moment(bounds[0]), literal_column("-1")), else_=node(0, len(bounds) - 1)
    )


def _totals_by_period(name: str, moves: Any, bounds: Sequence[datetime.datetime]) -> Any:
    """``(tag, period, n)`` of the rows of ``moves``, counted first by each distinct time and then
    placed in periods: the rows of a run share one time, so the periods are found for a few rows."""
    at = moves.c[name]
    # starts are grouped along the (tag, since) index; ends time first, or SQLite would walk that
    # index and read each row from the table through it
    keys = (moves.c.tag, at) if name == "since" else (at, moves.c.tag)
    per_time = select(moves.c.tag, at.label("at"), func.count().label("n")).group_by(*keys).subquery()
    period = _period_of(per_time.c.at, bounds).label("period")
    return select(per_time.c.tag, period, func.sum(per_time.c.n).label("n")).group_by(per_time.c.tag, period)


def change_totals(
    connection: Connection,
    tables: StoreTables,
    bounds: Sequence[datetime.datetime],
    tags: Sequence[str] | None,
) -> list[tuple[str, int, int, int]]:
    """``(tag, period, began, ended)``: history periods beginning and ending in each period before the
    end of the last (period ``-1``: before the first)."""
    h = tables.history
    end = _moment(bounds[-1])
    starts = select(h.c.tag, h.c.since).where(h.c.since < end)
    ends = select(h.c.tag, h.c.until).where(h.c.until < end)
    if tags is not None:
        starts, ends = starts.where(h.c.tag.in_(list(tags))), ends.where(h.c.tag.in_(list(tags)))
    totals: dict[tuple[str, int], list[int]] = {}
    for side, moves, column in ((0, starts.subquery(), "since"), (1, ends.subquery(), "until")):
        statement = _totals_by_period(column, moves, bounds)
        for tag, period, count in connection.execute(statement):
            totals.setdefault((tag, int(period)), [0, 0])[side] += int(count)
    return [(tag, period, opened, closed) for (tag, period), (opened, closed) in totals.items()]


def error_totals(
    connection: Connection,
    tables: StoreTables,
    bounds: Sequence[datetime.datetime],
    tags: Sequence[str] | None,
) -> list[tuple[str, int, int, int]]:
    """``(tag, period, errors, evaluations)`` of the runs evaluated within each period."""
    runs, counts = tables.runs, tables.run_tags
    rows = (
        select(
            counts.c.tag,
            _period_of(runs.c.evaluated_at, bounds).label("period"),
            counts.c.errors,
            runs.c.customers,
        )
        .join(runs, runs.c.id == counts.c.run_id)
        .where(runs.c.evaluated_at >= _moment(bounds[0]), runs.c.evaluated_at < _moment(bounds[-1]))
    )
    if tags is not None:
        rows = rows.where(counts.c.tag.in_(list(tags)))
    per_run = rows.subquery()
    statement = select(
        per_run.c.tag, per_run.c.period, func.sum(per_run.c.errors), func.sum(per_run.c.customers)
    ).group_by(per_run.c.tag, per_run.c.period)
    return [
        (tag, int(period), int(failed), int(evaluated))
        for tag, period, failed, evaluated in connection.execute(statement)
    ]


def _held(tables: StoreTables, as_of: datetime.datetime | None) -> Any:
    """The (customer_id, tag) pairs held now, or at ``as_of`` (from the history)."""
    if as_of is None:
        m = tables.memberships
        return select(m.c.customer_id, m.c.tag).subquery()
    h = tables.history
    moment = _moment(as_of)
    return (
        select(h.c.customer_id, h.c.tag)
        .where(h.c.since <= moment, or_(h.c.until.is_(None), h.c.until > moment))
        .subquery()
    )


#: tags per bit mask of :func:`overlap_counts`: a mask stays a positive 64-bit integer everywhere
_MASK_BITS = 62


def overlap_counts(
    connection: Connection, tables: StoreTables, tags: Sequence[str], as_of: datetime.datetime | None
) -> dict[tuple[str, str], int]:
    """``(a, b) -> customers holding both``, each pair of ``tags`` with ``a <= b`` (``a == b``: members).

    One pass over the held pairs: each customer's tags among ``tags`` become bit masks (62 tags to a
    mask), the customers are counted per distinct combination of masks, and the pairs are counted
    from those few rows here, instead of joining the held pairs with themselves (a customer holding
    ``k`` of the tags makes ``k * k`` rows of a join).
    """
    if not tags:
        return {}
    held = _held(tables, as_of)
    blocks = [list(tags[start : start + _MASK_BITS]) for start in range(0, len(tags), _MASK_BITS)]
    # a customer holds a tag once in the memberships (their key); at an instant of the history, the
    # periods of one tag do not overlap either, but DISTINCT keeps a mask right whatever the rows
    total = func.sum if as_of is None else (lambda value: func.sum(sqlalchemy.distinct(value)))
    masks = [
        total(
            sqlalchemy.case(
                {tag: literal_column(str(1 << bit)) for bit, tag in enumerate(block)},
                value=held.c.tag,
                else_=literal_column("0"),
            )
        ).label(f"mask_{number}")
        for number, block in enumerate(blocks)
    ]
    per_customer = (
        select(*masks).where(held.c.tag.in_(list(tags))).group_by(held.c.customer_id).subquery("per_customer")
    )
    columns = [per_customer.c[f"mask_{number}"] for number in range(len(blocks))]
    statement = select(*columns, func.count()).group_by(*columns)
    counts: dict[tuple[str, str], int] = {}
    for *found, number in connection.execute(statement):
        holding = sorted(
            tag
            for block, mask in zip(blocks, found, strict=True)
            for bit, tag in enumerate(block)
            if int(mask or 0) >> bit & 1
        )
        for index, first in enumerate(holding):
            for second in holding[index:]:
                counts[first, second] = counts.get((first, second), 0) + int(number)
    return counts


def group_tiers(connection: Connection, tables: StoreTables, group: str) -> tuple[list[str], list[str]]:
    """The group's tiers in its latest run, and every tag ever recorded in it."""
    runs, counts = tables.runs, tables.run_tags
    latest = connection.execute(
        select(counts.c.run_id)
        .join(runs, runs.c.id == counts.c.run_id)
        .where(counts.c.tag_group == group)
        .order_by(runs.c.evaluated_at.desc(), runs.c.finished_at.desc())
        .limit(1)
    ).scalar()
    if latest is None:
        return [], []
    current = connection.execute(
        select(counts.c.tag)
        .where(counts.c.run_id == latest, counts.c.tag_group == group)
        .order_by(counts.c.tag)
    ).scalars()
    ever = connection.execute(
        select(counts.c.tag).distinct().where(counts.c.tag_group == group).order_by(counts.c.tag)
    ).scalars()
    return list(current), list(ever)


def flow_rows(
    connection: Connection,
    tables: StoreTables,
    tiers: Sequence[str],
    current: Sequence[str],
    start: datetime.datetime,
    end: datetime.datetime,
) -> dict[str, dict[str, int]]:
    """Customers by (tier at ``start``, tier at ``end``), labelled as :func:`flow_labels` does."""
    h = tables.history
    first, second = _moment(start), _moment(end)

    def held_at(moment: Any) -> Any:
        return and_(h.c.since <= moment, or_(h.c.until.is_(None), h.c.until > moment))

    earliest = _moment(min(start, end))
    latest = _moment(max(start, end))
    per_customer = (
        select(
            func.max(sqlalchemy.case((held_at(first), h.c.tag))).label("source"),
            func.max(sqlalchemy.case((held_at(second), h.c.tag))).label("target"),
        )
        .where(
            h.c.tag.in_(list(tiers)),
            h.c.since <= latest,
            or_(h.c.until.is_(None), h.c.until > earliest),
            # a period held at neither instant adds nothing: it is not grouped at all
            or_(held_at(first), held_at(second)),
        )
        .group_by(h.c.customer_id)
        .subquery()
    )
    statement = (
        select(per_customer.c.source, per_customer.c.target, func.count())
        .where(or_(per_customer.c.source.is_not(None), per_customer.c.target.is_not(None)))
        .group_by(per_customer.c.source, per_customer.c.target)
    )
    return flow_labels(((s, t, int(n)) for s, t, n in connection.execute(statement)), current)


def group_flow_rows(
    connection: Connection,
    tables: StoreTables,
    groups: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    start: datetime.datetime,
    end: datetime.datetime,
) -> dict[str, dict[str, dict[str, int]]]:
    """:func:`flow_rows` of several groups (group -> (every tier ever, current tiers)) in one pass
    over the history: each period of a tier is grouped by its customer and its group, instead of one
    query reading the history per group. The groups must not share a tag."""
    h = tables.history
    first, second = _moment(start), _moment(end)

    def held_at(moment: Any) -> Any:
        return and_(h.c.since <= moment, or_(h.c.until.is_(None), h.c.until > moment))

    earliest = _moment(min(start, end))
    latest = _moment(max(start, end))
    group_of = {tag: group for group, (tiers, _) in groups.items() for tag in tiers}
    group = sqlalchemy.case(
        {tag: sqlalchemy.literal(name) for tag, name in group_of.items()}, value=h.c.tag
    ).label("tier_group")
    per_customer = (
        select(
            group,
            func.max(sqlalchemy.case((held_at(first), h.c.tag))).label("source"),
            func.max(sqlalchemy.case((held_at(second), h.c.tag))).label("target"),
        )
        .where(
            h.c.tag.in_(sorted(group_of)),
            h.c.since <= latest,
            or_(h.c.until.is_(None), h.c.until > earliest),
            or_(held_at(first), held_at(second)),
        )
        .group_by(h.c.customer_id, group)
        .subquery()
    )
    statement = (
        select(per_customer.c.tier_group, per_customer.c.source, per_customer.c.target, func.count())
        .where(or_(per_customer.c.source.is_not(None), per_customer.c.target.is_not(None)))
        .group_by(per_customer.c.tier_group, per_customer.c.source, per_customer.c.target)
    )
    rows: dict[str, list[tuple[str | None, str | None, int]]] = {name: [] for name in groups}
    for name, source, target, count in connection.execute(statement):
        rows[name].append((source, target, int(count)))
    return {name: flow_labels(rows[name], groups[name][1]) for name in groups}


def _run_row(record: RunRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "evaluated_at": record.evaluated_at,
        "catalog_version": record.catalog_version,
        "customers": record.customers,
        "emit_events": record.emit_events,
    }


def _tag_rows(record: RunRecord) -> list[dict[str, Any]]:
    zero = TagCounts()
    tiers = {key: (group, rank) for group, keys in record.groups.items() for rank, key in enumerate(keys)}
    return [
        {
            "run_id": record.id,
            "tag": key,
            "tag_group": tiers.get(key, (None, None))[0],
            "tier_rank": tiers.get(key, (None, None))[1],
            **{name: getattr(record.tags.get(key, zero), name) for name in RUN_COUNTS},
        }
        for key in sorted(record.tags.keys() | tiers.keys())
    ]


def _upsert(
    connection: Connection,
    table: sqlalchemy.Table,
    rows: list[dict[str, Any]],
    add: Sequence[str],
    replace: Sequence[str],
) -> None:
    """Insert ``rows``; a row whose key is there already adds its ``add`` columns and replaces its
    ``replace`` ones, in one statement (concurrent writers add up)."""
    name = connection.dialect.name
    if name in ("sqlite", "postgresql"):
        module: Any = sqlite if name == "sqlite" else postgresql
        statement = module.insert(table)
        new = statement.excluded
        keys = [column.name for column in table.primary_key.columns]
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=keys,
                set_={**{c: table.c[c] + new[c] for c in add}, **{c: new[c] for c in replace}},
            ),
            rows,
        )
        return
    if name in ("mysql", "mariadb"):
        statement = mysql.insert(table)
        new = statement.inserted
        connection.execute(
            statement.on_duplicate_key_update(
                {**{c: table.c[c] + new[c] for c in add}, **{c: new[c] for c in replace}}
            ),
            rows,
        )
        return
    raise NotImplementedError(f"run records on {name} databases")


def record_run(connection: Connection, tables: StoreTables, record: RunRecord) -> None:
    """Write a run record; a ``day`` record adds its counts to the one of the same id."""
    if record.kind == "run":
        connection.execute(sqlalchemy.insert(tables.runs), [_run_row(record)])
        rows = _tag_rows(record)
        if rows:
            connection.execute(sqlalchemy.insert(tables.run_tags), rows)
        return
    _upsert(connection, tables.runs, [_run_row(record)], ("customers",), ("finished_at",))
    rows = _tag_rows(record)
    if rows:
        _upsert(connection, tables.run_tags, rows, RUN_COUNTS, ("tag_group", "tier_rank"))


def run_records(
    connection: Connection,
    tables: StoreTables,
    since: datetime.datetime | None,
    until: datetime.datetime | None,
) -> list[RunRecord]:
    """The run records evaluated in ``[since, until)``, oldest first."""
    runs, counts = tables.runs, tables.run_tags
    statement = select(runs).order_by(runs.c.evaluated_at, runs.c.started_at, runs.c.id)
    if since is not None:
        statement = statement.where(runs.c.evaluated_at >= _moment(since))
    if until is not None:
        statement = statement.where(runs.c.evaluated_at < _moment(until))
    found = list(connection.execute(statement).mappings())
    tags: dict[str, dict[str, TagCounts]] = {row["id"]: {} for row in found}
    ranked: dict[str, dict[str, list[tuple[int, str]]]] = {row["id"]: {} for row in found}
    ids = list(tags)
    for start in range(0, len(ids), 500):
        for row in connection.execute(
            select(counts).where(counts.c.run_id.in_(ids[start : start + 500]))
        ).mappings():
            tags[row["run_id"]][row["tag"]] = TagCounts(*(int(row[name]) for name in RUN_COUNTS))
            if row["tag_group"] is not None:
                tiers = ranked[row["run_id"]].setdefault(row["tag_group"], [])
                tiers.append((row["tier_rank"] or 0, row["tag"]))
    return [
        RunRecord(
            row["id"],
            row["kind"],
            row["started_at"],
            row["finished_at"],
            row["evaluated_at"],
            row["catalog_version"],
            int(row["customers"]),
            tags[row["id"]],
            {group: tuple(key for _, key in sorted(tiers)) for group, tiers in ranked[row["id"]].items()},
            bool(row["emit_events"]),
        )
        for row in found
    ]
