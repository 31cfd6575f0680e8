"""Evaluating a catalog inside a database: one query for every pushable tag, Python for the rest.

:func:`tag_query` compiles a catalog to one ``SELECT`` over a table whose columns hold the snapshot
fields: per row, one column per tag with its state — ``1`` assigned, ``0`` not assigned, ``NULL``
unknown (the rule failed on the row, or a tag it depends on did, or a member of its exclusive group
did: the error policy of :class:`~tagrules.Evaluator`). Exclusive groups and ``'key' in tags``
dependencies are resolved in the query, level by level.

:func:`count_tags` runs it and counts. In ``auto`` mode, tags that cannot be pushed down
(:class:`~tagrules.NotPushable`) — and the tags depending on them, and their exclusive groups — are
evaluated in Python on the table's rows, streamed; ``database`` mode refuses them instead.
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, final

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from tagrules._log import log_in_python
from tagrules.catalog import Catalog, EvaluationUnit
from tagrules.errors import NotPushable, SourceError
from tagrules.evaluation import Evaluator, resolve_now
from tagrules.schema import FieldType, Schema, SchemaError, parse_type
from tagrules.sources._duckdb import duckdb_table, frame_source, is_frame
from tagrules.sql.compiler import FieldColumn, RuleCompiler, SqlFunction
from tagrules.sql.dialects import compiler_for, read_sqlite_moment

__all__ = ["CountReport", "Mode", "TagQuery", "count_tags", "open_table", "stream_snapshots", "tag_query"]

Mode = Literal["auto", "database", "python"]
_MODES = ("auto", "database", "python")
_COLLECTIONS = frozenset({"list", "set", "dict", "object"})


@final
@dataclass(frozen=True)
class TagQuery:
    """A catalog compiled to one query over a table.

    Attributes:
        select: ``SELECT`` giving, per row, the id columns asked for and one column per tag of
            ``tag_columns``: 1 assigned, 0 not assigned, NULL unknown. Use it as a subquery (to count,
            or to feed ``INSERT ... SELECT``).
        tag_columns: tag key -> the label of its column in ``select``, for the tags pushed down.
        in_python: tag key -> why it is evaluated in Python (``auto`` mode only).
        now: the time the rules see as ``$now``.
    """

    select: sa.Select[Any]
    tag_columns: Mapping[str, str]
    in_python: Mapping[str, str]
    now: datetime.datetime
    #: the DataFrame or pyarrow Table the query reads, when it was made for one (see ``to_arrow``)
    frame: Any = field(default=None, repr=False, compare=False)

    def to_arrow(self) -> Any:
        """Run the query over the DataFrame or pyarrow Table it was made for, in DuckDB (the rows
        are scanned where they lie): a pyarrow Table with the id columns and one column per pushed
        tag (1, 0, null unknown), in the query's labels (see ``tag_columns``).

        Raises:
            ValueError: the query was made for a database table (run ``select`` on its connection).
        """
        if self.frame is None:
            raise ValueError("to_arrow runs a query made over a DataFrame; run select on the database")
        with frame_source(self.frame) as (connection, _):
            compiled = self.select.compile(dialect=connection.dialect)
            names = compiled.positiontup or []
            raw: Any = connection.connection.driver_connection
            relation = raw.sql(str(compiled), params=[compiled.params[name] for name in names])
            fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
            return fetch()


@final
@dataclass(frozen=True)
class CountReport:
    """How many rows each active tag is assigned to.

    Attributes:
        counts: tag key -> rows assigned, for every active tag.
        unknown: tag key -> rows on which the tag is unknown (its rule failed); not counted as tagged.
        rows: rows in the table.
        where: tag key -> ``database`` or ``python``: where it was evaluated.
        in_python: tag key -> why it was evaluated in Python.
        now: the time the rules saw as ``$now``.
    """

    counts: Mapping[str, int]
    unknown: Mapping[str, int]
    rows: int
    where: Mapping[str, str]
    in_python: Mapping[str, str] = field(default_factory=dict)
    now: datetime.datetime = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

    def to_data(self) -> dict[str, int]:
        """``{tag_key: count}`` for every active tag."""
        return dict(self.counts)


def _field_columns(
    catalog: Catalog, table: sa.FromClause, columns: Mapping[str, str] | None, needed: set[str]
) -> dict[str, FieldColumn]:
    mapping = dict(columns or {})
    found: dict[str, FieldColumn] = {}
    for name in sorted(needed):
        column_name = mapping.get(name, name)
        if column_name not in table.c:
            raise SourceError(
                f"the table {getattr(table, 'name', table)!s} has no column {column_name!r} for the field "
                f"{name!r}; add it, or map the field to a column (columns={{{name!r}: 'column'}})"
            )
        column = table.c[column_name]
        found[name] = FieldColumn(column, catalog.schema.fields[name], column.type)
    return found


def _rule_fields(catalog: Catalog, keys: Sequence[str]) -> set[str]:
    """The fields the rules of ``keys`` read from a table: a derived field is computed in Python from
    the fields it reads (every field, if it does not say)."""
    read = {name for key in keys for name in catalog.rule(key).fields}
    derived = catalog.derived_fields
    stored = {name for name in read if name not in derived}
    for name in read & derived.keys():
        stored.update(derived[name].reads or catalog.snapshot_schema.fields)
    return stored


def _declared(text: str) -> FieldType | None:
    try:
        return parse_type(text)
    except SchemaError:
        return None  # "any", "list", "set": not a type a SQL form can take or give


def _sql_functions(catalog: Catalog) -> dict[str, SqlFunction]:
    """The SQL forms of the catalog's custom functions that have one."""
    forms = {}
    for name, function in catalog.functions.items():
        returns = _declared(function.returns)
        if function.sql is None or returns is None:
            continue
        arguments = tuple(_declared(text) for text in function.arguments)
        forms[name] = SqlFunction(function.sql, arguments, returns, function.uses_now)
    return forms


class _QueryBuilder:
    """Builds the catalog query: which tags are pushed, then the query level by level."""

    def __init__(
        self,
        catalog: Catalog,
        table: sa.FromClause,
        compiler: type[RuleCompiler],
        now: datetime.datetime,
        columns: Mapping[str, str] | None,
        fenced: bool = True,
    ) -> None:
        self.fenced = fenced
        self.catalog = catalog
        self.table = table
        self.compiler = compiler
        self.now = now
        self.columns = columns
        self.functions = _sql_functions(catalog)
        self.pushed: list[EvaluationUnit] = []
        self.in_python: dict[str, str] = {}

    def decide(self, mode: str) -> None:
        """Which units are pushed down: a unit is if every rule compiles and every dependency is."""
        catalog = self.catalog
        placeholder = sa.literal_column("0", sa.Integer())
        pushed_keys: set[str] = set()
        active = {definition.key for definition in catalog.active}
        fields = _field_columns(catalog, self.table, self.columns, _rule_fields(catalog, sorted(active)))
        for unit in catalog.evaluation_order:
            reason: str | None = None
            for key in unit.keys:
                dependencies = sorted(catalog.dependencies.get(key, frozenset()) & active)
                waiting = [dependency for dependency in dependencies if dependency not in pushed_keys]
                if waiting:
                    reason = f"depends on {waiting[0]!r}, which is evaluated in Python"
                    break
                derived = sorted(catalog.rule(key).fields & catalog.derived_fields.keys())
                if derived:
                    located = NotPushable(
                        f"the derived field {derived[0]!r} (computed in Python)",
                        tag=key,
                        dialect=self.compiler.dialect,
                    )
                    if mode == "database":
                        raise located
                    reason = str(located)
                    break
                rule_compiler = self.compiler(
                    catalog.language.context,
                    fields,
                    self.now,
                    lambda _key: placeholder,
                    functions=self.functions,
                )
                try:
                    rule_compiler.compile(catalog.rule(key).statement)
                except NotPushable as error:
                    located = error.for_tag(key, self.compiler.dialect)
                    if mode == "database":
                        raise located from None
                    reason = str(located)
                    break
            if reason is None:
                self.pushed.append(unit)
                pushed_keys.update(unit.keys)
            else:
                self.in_python[key] = reason
                for member in unit.keys:
                    self.in_python.setdefault(
                        member,
                        f"its exclusive group {unit.group!r} is evaluated in Python ({key!r}: {reason})",
                    )

    def levels(self) -> list[list[EvaluationUnit]]:
        active = {definition.key for definition in self.catalog.active}
        level_of: dict[str, int] = {}
        grouped: dict[int, list[EvaluationUnit]] = {}
        for unit in self.pushed:
            level = 0
            for key in unit.keys:
                for dependency in self.catalog.dependencies.get(key, frozenset()) & active:
                    level = max(level, level_of[dependency] + 1)
            for key in unit.keys:
                level_of[key] = level
            grouped.setdefault(level, []).append(unit)
        return [grouped[level] for level in sorted(grouped)]

    def build(self, id_columns: Sequence[str]) -> tuple[sa.Select[Any], dict[str, str]]:
        """One ``SELECT`` per level of dependencies, each over the one before; the first reads the
        table. Each level passes on the ids, the tag states so far and the fields later levels read.

        An exclusive group is one column, the position of its winner (NULL unknown, -1 none): its
        rules and error conditions are evaluated once per row, and each member's state is a cheap
        comparison with it where it is read."""
        catalog = self.catalog
        levels = self.levels()
        keys = [key for unit in self.pushed for key in unit.keys]
        for name in id_columns:
            if name not in self.table.c:
                raise SourceError(f"the table has no id column {name!r}")
        tag_labels = {key: f"t_{index}" for index, key in enumerate(keys)}
        # the column holding each tag: its own, or its group's winner and its position in the group
        holders: dict[str, tuple[str, int | None]] = {}
        for index, unit in enumerate(self.pushed):
            for position, key in enumerate(unit.keys):
                holders[key] = (f"g_{index}", position) if len(unit.keys) > 1 else (tag_labels[key], None)
        id_labels = [f"id_{index}" for index in range(len(id_columns))]
        field_labels = {name: f"f_{index}" for index, name in enumerate(sorted(_rule_fields(catalog, keys)))}
        fields = _field_columns(catalog, self.table, self.columns, set(field_labels))
        current: sa.FromClause = self.table
        carried: list[sa.ColumnElement[Any]] = [
            self.table.c[name].label(label) for name, label in zip(id_columns, id_labels, strict=True)
        ]
        checker = self.compiler(catalog.language.context, fields, self.now, functions=self.functions)
        decodings = {
            name: decoding
            for name, column in fields.items()
            if column.field_type.kind in _COLLECTIONS
            and (decoding := checker.decoded_collection(column)) is not None
        }
        if decodings and levels:
            # each collection decoded once per row, in a subquery of its own, then read by the
            # fields level below as the dialect's faster form (and its check)
            decoded = self.fence(
                sa.select(
                    *carried,
                    *_field_outputs(fields, field_labels, fields),
                    *[
                        decoding.first.label(f"d_{field_labels[name]}")
                        for name, decoding in decodings.items()
                    ],
                ).select_from(self.table)
            ).subquery("decoded")
            carried = [decoded.c[label] for label in id_labels]
            fields = _fields_over(decoded, fields, field_labels)
            for name, decoding in decodings.items():
                value, problem = decoding.finish(
                    fields[name].expression, decoded.c[f"d_{field_labels[name]}"]
                )
                fields[name] = replace(
                    fields[name], expression=value, sql_type=decoding.sql_type, problem=problem
                )
            current = decoded
            checker = self.compiler(catalog.language.context, fields, self.now, functions=self.functions)
        problems: dict[str, sa.ColumnElement[Any]] = {}
        for name, column in fields.items():
            if column.field_type.kind not in _COLLECTIONS:
                continue
            check = column.problem if name in decodings else checker.collection_problem(column)
            if check is not None:
                problems[name] = check
        if problems and levels:
            # the checks of JSON collections, once per row, however many rules read each field
            fields = {name: replace(column, problem=problems.get(name)) for name, column in fields.items()}
            current = self.fence(
                sa.select(*carried, *_field_outputs(fields, field_labels, fields)).select_from(current)
            ).subquery("fields")
            carried = [current.c[label] for label in id_labels]
            fields = _fields_over(current, fields, field_labels)
        done: list[str] = []

        def states_over(source: sa.FromClause) -> dict[str, sa.ColumnElement[Any]]:
            return {key: _member_state(source.c[holders[key][0]], holders[key][1]) for key in done}

        for index, level in enumerate(levels):
            states = states_over(current)
            compiler = self.compiler(
                catalog.language.context, fields, self.now, states.get, functions=self.functions
            )
            computed = [self.unit_column(unit, compiler, states, holders) for unit in level]
            passed_states = sorted({holders[key][0] for key in done})
            done.extend(key for unit in level for key in unit.keys)
            later = _rule_fields(
                catalog, [key for unit in _flatten(levels[index + 1 :]) for key in unit.keys]
            )
            passed_fields = _field_outputs(fields, field_labels, later)
            level_select = sa.select(
                *carried, *[current.c[label] for label in passed_states], *computed, *passed_fields
            ).select_from(current)
            # a fence keeps each level a subquery of its own: a planner that inlined the levels would
            # copy every tag's expression into each expression that refers to it, level after level
            last = index == len(levels) - 1
            current = self.fence(level_select, last=last).subquery(f"level_{index}")
            carried = [current.c[label] for label in id_labels]
            fields = _fields_over(current, {name: fields[name] for name in later}, field_labels)
        if not levels:
            select = sa.select(*carried).select_from(self.table)
        else:
            final = states_over(current)
            select = sa.select(
                *[current.c[label].label(name) for label, name in zip(id_labels, id_columns, strict=True)],
                *[final[key].label(tag_labels[key]) for key in keys],
            )
        return select, tag_labels

    def fence(self, select: sa.Select[Any], *, last: bool = False) -> sa.Select[Any]:
        """``select`` made a subquery no planner inlines: ``OFFSET 0``; on PostgreSQL ``LIMIT ALL``,
        which also lets it run the levels and the aggregates over them in parallel workers (with
        ``OFFSET 0`` it gathers the rows before the first level's expressions). A builder made
        ``fenced=False`` leaves the planner free (on DuckDB a fence gathers every column a level
        passes on, which costs more than it saves when the levels carry many columns). On DuckDB
        the ``last`` level, which no later level reads, is never fenced."""
        if not self.fenced or (last and self.compiler.dialect == "duckdb"):
            return select
        if self.compiler.dialect == "postgresql":
            return select.limit(sa.literal_column("ALL"))
        if self.compiler.dialect == "spark":
            # an OFFSET gathers every row in one task; Spark's optimiser does not copy an expression
            # that is read more than once into the next level, so the levels need no fence
            return select
        return select.offset(0)

    def unit_column(
        self,
        unit: EvaluationUnit,
        compiler: RuleCompiler,
        states: Mapping[str, sa.ColumnElement[Any]],
        holders: Mapping[str, tuple[str, int | None]],
    ) -> sa.ColumnElement[Any]:
        """The column of one unit: a tag's state (1, 0, NULL where its rule fails or a dependency is
        unknown), or a group's winner: the position of its first true member, -1 if none, NULL if
        any member is unknown."""
        catalog = self.catalog
        active = {definition.key for definition in catalog.active}
        values: list[sa.ColumnElement[Any]] = []
        unknowns: list[sa.ColumnElement[Any]] = []
        for key in unit.keys:
            rule = compiler.compile(catalog.rule(key).statement)
            values.append(rule.value)
            if rule.error is not None:
                unknowns.append(rule.error)
            for dependency in sorted(catalog.dependencies.get(key, frozenset()) & active):
                unknowns.append(states[dependency].is_(None))
        whens: list[tuple[Any, Any]] = [(sa.or_(*_distinct(unknowns)), sa.null())] if unknowns else []
        label, position = holders[unit.keys[0]]
        if position is None:
            whens.append((values[0], 1))
            return sa.case(*whens, else_=0).label(label)
        whens.extend((value, index) for index, value in enumerate(values))
        return sa.case(*whens, else_=-1).label(label)


def _field_outputs(
    fields: Mapping[str, FieldColumn], labels: Mapping[str, str], names: Iterable[str]
) -> list[sa.ColumnElement[Any]]:
    """The columns a subquery passes on for the fields ``names``: each value, and its check if any."""
    outputs: list[sa.ColumnElement[Any]] = []
    for name in sorted(names):
        column = fields[name]
        outputs.append(column.expression.label(labels[name]))
        if column.problem is not None:
            outputs.append(column.problem.label(f"p_{labels[name]}"))
    return outputs


def _fields_over(
    source: sa.FromClause, fields: Mapping[str, FieldColumn], labels: Mapping[str, str]
) -> dict[str, FieldColumn]:
    """``fields`` as read from the subquery ``source`` that passed them on (see ``_field_outputs``)."""
    return {
        name: replace(
            column,
            expression=source.c[labels[name]],
            problem=None if column.problem is None else source.c[f"p_{labels[name]}"],
        )
        for name, column in fields.items()
    }


def _member_state(holder: sa.ColumnElement[Any], position: int | None) -> sa.ColumnElement[Any]:
    """A tag's state from the column holding it: itself, or its group's winner."""
    if position is None:
        return holder
    return sa.case((holder.is_(None), sa.null()), (holder == position, 1), else_=0)


def _distinct(conditions: Sequence[sa.ColumnElement[Any]]) -> list[sa.ColumnElement[Any]]:
    """The conditions without repeats (the same field check read by several rules of a group)."""
    kept: list[sa.ColumnElement[Any]] = []
    for condition in conditions:
        if not any(condition.compare(other) for other in kept):
            kept.append(condition)
    return kept


def _flatten(levels: Sequence[Sequence[EvaluationUnit]]) -> list[EvaluationUnit]:
    return [unit for level in levels for unit in level]


def tag_query(
    catalog: Catalog,
    table: sa.FromClause | Any,
    *,
    dialect: str | None = None,
    now: datetime.datetime | None = None,
    columns: Mapping[str, str] | None = None,
    id_columns: Sequence[str] = (),
    mode: Mode = "auto",
) -> TagQuery:
    """Compile ``catalog`` to one query over ``table`` (a :class:`sqlalchemy.Table` or any selectable,
    or a pandas or Polars DataFrame or a pyarrow Table, which DuckDB reads in place).

    Args:
        catalog: the catalog whose active tags are computed.
        table: the rows; its columns hold the snapshot fields (see ``columns``). For a DataFrame the
            query is DuckDB's, over a view of it; :meth:`TagQuery.to_arrow` runs it.
        dialect: the SQLAlchemy dialect name the query is for (``postgresql``, ``mysql``, ``sqlite``
            ...; others get generic SQL, which pushes down less); ``duckdb`` for a DataFrame.
        now: the time ``$now`` and ``$today`` stand for (bound parameters); default: the current time.
        columns: field name -> column name, where they differ.
        id_columns: columns passed through to the result, first (e.g. the customer id).
        mode: ``auto`` leaves tags that cannot be pushed down to Python (listed in ``in_python``);
            ``database`` raises instead.

    Raises:
        NotPushable: in ``database`` mode, a rule that the dialect cannot evaluate exactly.
        SourceError: a field read by a rule has no column.

    Examples:
        >>> import sqlalchemy as sa
        >>> from datetime import datetime, timezone
        >>> catalog = Catalog([{"key": "big", "rule": "spend >= 100"}], {"spend": "float"})
        >>> table = sa.table("customers", sa.column("id", sa.Integer()), sa.column("spend", sa.Float()))
        >>> query = tag_query(catalog, table, dialect="postgresql", id_columns=["id"],
        ...                   now=datetime(2026, 6, 1, tzinfo=timezone.utc))
        >>> dict(query.tag_columns)
        {'big': 't_0'}
    """
    return _tag_query(
        catalog, table, dialect=dialect, now=now, columns=columns, id_columns=id_columns, mode=mode
    )


def _tag_query(
    catalog: Catalog,
    table: sa.FromClause | Any,
    *,
    dialect: str | None = None,
    now: datetime.datetime | None = None,
    columns: Mapping[str, str] | None = None,
    id_columns: Sequence[str] = (),
    mode: Mode = "auto",
    fenced: bool = True,
) -> TagQuery:
    """:func:`tag_query`; ``fenced=False``: levels without fences (see ``_QueryBuilder.fence``)."""
    if mode not in ("auto", "database"):
        raise ValueError(f"mode must be 'auto' or 'database' for a query, not {mode!r}")
    frame = None
    if is_frame(table):
        frame = table
        with frame_source(frame) as (_, table):
            pass  # the view's columns, described; to_arrow registers the frame again
        dialect = dialect or "duckdb"
    if dialect is None:
        raise ValueError("tag_query needs the dialect the query is for (dialect='postgresql', ...)")
    moment = resolve_now(now)
    builder = _QueryBuilder(catalog, table, compiler_for(dialect), moment, columns, fenced)
    builder.decide(mode)
    select, labels = builder.build(id_columns)
    return TagQuery(
        select, MappingProxyType(labels), MappingProxyType(dict(builder.in_python)), moment, frame=frame
    )


# ---------------------------------------------------------------------------------------------------
# reading tables
# ---------------------------------------------------------------------------------------------------


#: PostgreSQL's JIT settings for catalog queries: expressions and tuple deforming compiled, without
#: LLVM's inlining and optimisation, which for a catalog's large expressions cost more than they
#: save (1,000,000 retail customers: 8.4 s of compilation over three processes, against 0.5 s)
_JIT_SETTINGS = {"jit_inline_above_cost": "-1", "jit_optimize_above_cost": "-1"}


@contextmanager
def query_settings(connection: Connection) -> Iterator[None]:
    """The settings catalog queries run with, for the statements inside, in the current transaction:
    on PostgreSQL, JIT compilation without inlining and optimisation (see ``_JIT_SETTINGS``); the
    values before are restored after. A statement that fails inside aborts the transaction, whose
    rollback restores them."""
    if connection.dialect.name != "postgresql":
        yield
        return
    names = list(_JIT_SETTINGS)
    shown = ", ".join(f"current_setting('{name}')" for name in names)
    previous = connection.exec_driver_sql(f"SELECT {shown}").one()
    _set_locally(connection, _JIT_SETTINGS)
    yield
    _set_locally(connection, dict(zip(names, previous, strict=True)))


def _set_locally(connection: Connection, settings: Mapping[str, str]) -> None:
    calls = ", ".join(f"set_config('{name}', :v{index}, true)" for index, name in enumerate(settings))
    values = {f"v{index}": str(value) for index, value in enumerate(settings.values())}
    connection.execute(sa.text(f"SELECT {calls}"), values)


def open_table(connection: Connection, name: str) -> sa.Table:
    """The table ``name`` (``schema.table`` allowed), reflected.

    Raises:
        SourceError: there is no such table.
    """
    if connection.dialect.name == "duckdb":
        return duckdb_table(connection, name)
    schema, _, table_name = name.rpartition(".")
    try:
        return sa.Table(table_name, sa.MetaData(), schema=schema or None, autoload_with=connection)
    except sa.exc.NoSuchTableError:
        raise SourceError(f"no table {name!r} in the database") from None


def _reader(field_type: FieldType) -> Any:
    kind = field_type.kind
    if kind == "bool":
        return lambda value: bool(value) if type(value) is int else value
    if kind in _COLLECTIONS:

        def parse(value: Any) -> Any:
            if isinstance(value, (str, bytes)):
                try:
                    return json.loads(value)
                except ValueError:
                    return value
            return value

        return parse
    return None


def stored_moment_reader(connection: Connection, column_type: Any) -> Callable[[Any], Any] | None:
    """On SQLite, the reader of a date or datetime column's values as stored (any SQLite column holds
    any type: the column is read as text, and checked by ``read_sqlite_moment``); ``None`` elsewhere,
    where the driver's own reading is right."""
    if connection.dialect.name != "sqlite" or not isinstance(column_type, (sa.Date, sa.DateTime)):
        return None
    return functools.partial(read_sqlite_moment, date=not isinstance(column_type, sa.DateTime))


def stream_snapshots(
    connection: Connection,
    table: sa.FromClause,
    schema: Schema,
    *,
    columns: Mapping[str, str] | None = None,
    fields: Sequence[str] | None = None,
    batch: int = 10_000,
) -> Iterator[dict[str, Any]]:
    """The table's rows as snapshots (field name -> value), streamed in batches.

    Values are what the driver gives, with two readings: integers in boolean fields are booleans
    (MariaDB stores booleans as integers) and text in list, set, dict and object fields is JSON.
    A field whose column is missing is absent from the snapshots.
    """
    mapping = dict(columns or {})
    names = [
        name
        for name in (fields if fields is not None else schema.fields)
        if mapping.get(name, name) in table.c
    ]
    selected: list[sa.ColumnElement[Any]] = [table.c[mapping.get(name, name)] for name in names]
    readers = [_reader(schema.fields[name]) if name in schema.fields else None for name in names]
    for position, column in enumerate(selected):
        moment = stored_moment_reader(connection, column.type)
        if moment is not None:
            selected[position] = sa.type_coerce(column, sa.String())
            readers[position] = moment
    statement = sa.select(*selected) if selected else sa.select(sa.literal(1))
    result = connection.execution_options(stream_results=True, yield_per=batch).execute(statement)
    plain = all(reader is None for reader in readers)
    for partition in result.partitions(batch):
        for row in partition:
            if plain:
                yield dict(zip(names, row, strict=False))
                continue
            yield {
                name: value if reader is None or value is None else reader(value)
                for name, value, reader in zip(names, row, readers, strict=False)
            }


# ---------------------------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------------------------


def _connect(bind: Engine | Connection | URL | str) -> tuple[Connection, Engine | None]:
    if isinstance(bind, Connection):
        return bind, None
    try:
        engine = bind if isinstance(bind, Engine) else sa.create_engine(bind)
        return engine.connect(), (None if isinstance(bind, Engine) else engine)
    except sa.exc.ArgumentError as error:
        raise SourceError(f"not a database URL: {bind!s} ({error})") from None
    except sa.exc.NoSuchModuleError as error:
        raise SourceError(f"no SQLAlchemy dialect for {bind!s}: {error}") from None
    except sa.exc.DBAPIError as error:
        raise SourceError(f"cannot connect to the database: {error.orig}") from None
    except ImportError as error:
        raise SourceError(f"the database driver is not installed: {error}") from None


def _python_catalog(catalog: Catalog, keys: Sequence[str]) -> Catalog:
    """The tags ``keys`` with the tags they depend on, transitively, and their exclusive groups."""
    wanted = set(keys)
    pending = list(keys)
    groups = catalog.groups
    while pending:
        key = pending.pop()
        group = catalog[key].group
        related = set(catalog.dependencies.get(key, ()))
        if group is not None:
            related |= set(groups.get(group, ()))
        for other in related - wanted:
            if other in catalog:
                wanted.add(other)
                pending.append(other)
    definitions = [definition for definition in catalog.tags if definition.key in wanted]
    return Catalog(
        definitions,
        catalog.snapshot_schema,
        name=catalog.name,
        functions=catalog.functions.values(),
        derived=catalog.derived_fields.values(),
    )


def count_tags(
    catalog: Catalog,
    bind: Engine | Connection | URL | str | Any,
    table: str | sa.FromClause | None = None,
    *,
    now: datetime.datetime | None = None,
    columns: Mapping[str, str] | None = None,
    mode: Mode = "auto",
) -> CountReport:
    """Count the rows of ``table`` each active tag of ``catalog`` would be assigned to.

    Pushable tags are counted by one query in the database; in ``auto`` mode the others are
    evaluated in Python over the streamed rows (``database`` mode raises :class:`NotPushable`
    for them; ``python`` mode evaluates every tag in Python, for comparison). Rows on which a tag is
    unknown are not counted as tagged; :attr:`CountReport.unknown` counts them. When ``bind`` is an
    engine or a URL, the tags left to Python read the rows through a second connection while the
    database runs the count query.

    Args:
        catalog: the catalog.
        bind: a SQLAlchemy engine or connection, or a database URL (``duckdb:///PATH`` included);
            or a pandas or Polars DataFrame or a pyarrow Table, which DuckDB reads in place
            (``tagrules[duckdb]``; no ``table`` then).
        table: the table's name (``schema.table`` allowed), or a SQLAlchemy table or selectable.
        now: the time ``$now`` stands for; default: the current time.
        columns: field name -> column name, where they differ.
        mode: ``auto``, ``database`` or ``python``.

    Raises:
        NotPushable: in ``database`` mode, a tag the database cannot evaluate exactly.
        SourceError: the database cannot be reached, or the table or a column is missing.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
    if is_frame(bind):
        with frame_source(bind) as (frame_connection, frame_table):
            return count_tags(catalog, frame_connection, frame_table, now=now, columns=columns, mode=mode)
    if table is None:
        raise ValueError("count_tags needs the table of a database")
    moment = resolve_now(now)
    connection, engine = _connect(bind)
    # a connection of the caller's may hold uncommitted rows: only one opened here is doubled; SQLite
    # gets no second thread (an in-memory database is one connection, usable only by its thread)
    doubled = not isinstance(bind, Connection) and connection.dialect.name != "sqlite"
    side = connection.engine if doubled else None
    try:
        with connection.begin() if not connection.in_transaction() else _nothing():
            source = open_table(connection, table) if isinstance(table, str) else table
            return _count(catalog, connection, source, moment, columns, mode, side)
    except sa.exc.DBAPIError as error:
        raise SourceError(f"the database refused the query: {error.orig}") from None
    finally:
        if not isinstance(bind, Connection):
            connection.close()
        if engine is not None:
            engine.dispose()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _count(
    catalog: Catalog,
    connection: Connection,
    source: sa.FromClause,
    now: datetime.datetime,
    columns: Mapping[str, str] | None,
    mode: str,
    side: Engine | None = None,
) -> CountReport:
    """Count; with ``side``, the tags left to Python read the rows through a second connection of
    it while the database runs the count query (the two overlap instead of adding up)."""
    active = [definition.key for definition in catalog.active]
    counts = dict.fromkeys(active, 0)
    unknown = dict.fromkeys(active, 0)
    where: dict[str, str] = {}
    in_python: dict[str, str] = {}
    query: TagQuery | None = None
    if mode == "python":
        in_python = dict.fromkeys(active, "python mode")
        _field_columns(catalog, source, columns, _rule_fields(catalog, active))
    else:
        query = tag_query(
            catalog,
            source,
            dialect=connection.dialect.name,
            now=now,
            columns=columns,
            mode="auto" if mode == "auto" else "database",
        )
        in_python = dict(query.in_python)
        log_in_python(in_python, str(getattr(source, "name", source)))
    python_keys = [key for key in active if key in in_python]

    def in_database() -> int:
        assert query is not None
        states = query.select.subquery("tagged")
        totals: list[sa.ColumnElement[Any]] = [sa.func.count()]
        count_states = compiler_for(connection.dialect.name).count_states
        for label in query.tag_columns.values():
            totals += count_states(states.c[label])
        with query_settings(connection):
            result = connection.execute(sa.select(*totals).select_from(states)).one()
        for index, key in enumerate(query.tag_columns):
            counts[key] = int(result[1 + 2 * index])
            unknown[key] = int(result[2 + 2 * index])
            where[key] = "database"
        return int(result[0])

    def in_python_over(reader: Connection) -> int:
        sub_catalog = _python_catalog(catalog, python_keys)
        evaluator = Evaluator(sub_catalog)
        needed = sorted(_rule_fields(sub_catalog, [definition.key for definition in sub_catalog.active]))
        python_counts = dict.fromkeys(python_keys, 0)
        python_unknown = dict.fromkeys(python_keys, 0)
        python_rows = 0
        for snapshot in stream_snapshots(reader, source, catalog.schema, columns=columns, fields=needed):
            python_rows += 1
            evaluation = evaluator.evaluate(snapshot, now=now)
            for key in evaluation.tags:
                if key in python_counts:
                    python_counts[key] += 1
            for key in evaluation.errors:
                if key in python_unknown:
                    python_unknown[key] += 1
        counts.update(python_counts)
        unknown.update(python_unknown)
        for key in python_keys:
            where[key] = "python"
        return python_rows

    both = query is not None and bool(query.tag_columns) and bool(python_keys)
    if both and side is not None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pushed = pool.submit(in_database)
            with side.connect() as reader:
                rows = in_python_over(reader)
            pushed.result()
    else:
        rows = in_database() if query is not None and query.tag_columns else 0
        if python_keys:
            rows = in_python_over(connection)
    return CountReport(
        counts=MappingProxyType(counts),
        unknown=MappingProxyType(unknown),
        rows=rows,
        where=MappingProxyType(where),
        in_python=MappingProxyType(in_python),
        now=now,
    )
