"""A catalog over a Spark DataFrame: one Spark SQL query for the tags it evaluates exactly, the
compiled Python evaluator on the executors (``mapInArrow``) for the others."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, final

import sqlalchemy as sa

from tagrules.catalog import Catalog
from tagrules.errors import SourceError
from tagrules.evaluation import resolve_now
from tagrules.sources.tables import CountReport, _python_catalog, _rule_fields, tag_query
from tagrules.spark._executors import CatalogRecipe, evaluate_batches
from tagrules.spark._session import HUGE_METHOD_LIMIT
from tagrules.sql._spark import SparkMap, render_spark

__all__ = ["Tagged", "count_tags", "spark_sql_type", "tag_columns", "tagged"]

_INTEGERS = {"LongType", "IntegerType", "ShortType", "ByteType"}
_FLOATS = {"DoubleType", "FloatType"}


def spark_sql_type(data_type: Any) -> Any:
    """A Spark column type as the SQLAlchemy type the rule compiler reads (``NullType``: none it
    pushes, such as a string with a collation other than binary)."""
    name = type(data_type).__name__
    if name in _INTEGERS:
        return sa.BigInteger()
    if name in _FLOATS:
        return sa.Float(53)
    if name == "StringType":
        if getattr(data_type, "collation", "UTF8_BINARY") not in ("UTF8_BINARY", None):
            return sa.types.NullType()
        return sa.String()
    if name == "BooleanType":
        return sa.Boolean()
    if name == "DateType":
        return sa.Date()
    if name == "TimestampType":
        return sa.DateTime(timezone=True)
    if name == "TimestampNTZType":
        return sa.DateTime()
    if name == "DecimalType":
        return sa.Numeric()
    if name == "MapType":
        return SparkMap(data_type.keyType.simpleString().upper(), data_type.valueType.simpleString().upper())
    if name == "ArrayType":
        return sa.ARRAY(spark_sql_type(data_type.elementType))
    return sa.types.NullType()


@final
@dataclass(frozen=True)
class Tagged:
    """A catalog applied to a DataFrame, before the columns get their names back.

    Attributes:
        frame: the DataFrame's columns as ``c_0``, ``c_1`` ... (all, or only those asked for) and one
            integer column per active tag: 1 assigned, 0 not, NULL unknown.
        sources: the DataFrame's column names, in order (``c_i`` is ``sources[i]``).
        states: tag key -> its column in ``frame``, for every active tag.
        where: tag key -> ``spark`` (Spark SQL) or ``python`` (on the executors).
        in_python: tag key -> why it is evaluated in Python.
        now: the time the rules see as ``$now``.
    """

    frame: Any
    sources: tuple[str, ...]
    states: Mapping[str, str]
    where: Mapping[str, str]
    in_python: Mapping[str, str]
    now: datetime.datetime


def tagged(catalog: Catalog, df: Any, now: datetime.datetime | None, *, keep_columns: bool = True) -> Tagged:
    """The catalog's tag states over ``df``; ``keep_columns=False`` passes on only the tag states.

    Raises:
        SourceError: a field a rule reads has no column in ``df``.
    """
    moment = resolve_now(now)
    spark = df.sparkSession
    sources = tuple(df.columns)
    renamed = df.toDF(*[f"c_{index}" for index in range(len(sources))])
    position = {name: index for index, name in enumerate(sources)}
    active = [definition.key for definition in catalog.active]
    needed = _rule_fields(catalog, active)
    missing = sorted(name for name in needed if name not in position)
    if missing:
        raise SourceError(
            f"the DataFrame has no column {missing[0]!r} for the field {missing[0]!r} "
            f"({catalog.schema.fields[missing[0]]})"
        )
    view = f"tagrules_source_{uuid.uuid4().hex}"
    data_types = {field.name: field.dataType for field in renamed.schema.fields}
    table = sa.table(view, *[sa.column(name, spark_sql_type(data_types[name])) for name in renamed.columns])
    columns = {name: f"c_{position[name]}" for name in needed}
    # the fields the rules read pass through the query, for the tags left to the executors (Spark
    # drops them from the plan where nothing reads them)
    passed = list(renamed.columns) if keep_columns else sorted(set(columns.values()))
    query = tag_query(catalog, table, dialect="spark", now=moment, columns=columns, id_columns=passed)
    text, args = render_spark(query.select)
    renamed.createOrReplaceTempView(view)
    try:
        # the plan is resolved here: the view may go at once
        frame = spark.sql(text, args=args)
    finally:
        spark.catalog.dropTempView(view)
    # the query's columns by position: the ones passed on, then the tags' (a query computing no tag
    # names them otherwise)
    frame = frame.toDF(*passed, *query.tag_columns.values())
    states = dict(query.tag_columns)
    where = dict.fromkeys(states, "spark")
    python_keys = [key for key in active if key in query.in_python]
    if python_keys:
        keep = None if keep_columns else list(states.values())
        frame, python_states = _in_python(catalog, frame, python_keys, moment, columns, keep)
        states.update(python_states)
        where.update(dict.fromkeys(python_keys, "python"))
    return Tagged(
        frame,
        sources,
        MappingProxyType({key: states[key] for key in active}),
        MappingProxyType({key: where[key] for key in active}),
        MappingProxyType(dict(query.in_python)),
        moment,
    )


def _in_python(
    catalog: Catalog,
    pushed: Any,
    keys: list[str],
    now: datetime.datetime,
    columns: Mapping[str, str],
    keep: list[str] | None,
) -> tuple[Any, dict[str, str]]:
    """``pushed`` (its columns ``keep``, default all) with one more column per tag of ``keys``,
    evaluated by the Python evaluator on the executors."""
    from pyspark.sql.types import IntegerType, StructField, StructType

    sub_catalog = _python_catalog(catalog, keys)
    sub_active = [definition.key for definition in sub_catalog.active]
    field_columns = {name: columns[name] for name in sorted(_rule_fields(sub_catalog, sub_active))}
    outputs = {key: f"p_{index}" for index, key in enumerate(keys)}
    schema = StructType(
        [
            *[field for field in pushed.schema.fields if keep is None or field.name in keep],
            *[StructField(column, IntegerType(), True) for column in outputs.values()],
        ]
    )
    recipe = CatalogRecipe.of(sub_catalog, uuid.uuid4().hex)
    frame = pushed.mapInArrow(evaluate_batches(recipe, field_columns, outputs, now, keep), schema)
    return frame, outputs


def tag_columns(catalog: Catalog, df: Any, *, now: datetime.datetime | None = None) -> Any:
    """``df`` with one boolean column per active tag of ``catalog``, named by its key: true where
    the tag is assigned, false where not, null where it is unknown (its rule failed on the row, or a
    tag it depends on or a member of its exclusive group is unknown: the error policy of
    :class:`~tagrules.Evaluator`).

    The tags Spark SQL evaluates exactly run in one query (every literal a named parameter); the
    others run with the compiled Python evaluator on the executors (``mapInArrow``). Nothing is
    computed until the DataFrame is. A column of ``df`` named as an active tag is replaced by the
    tag's column.

    Args:
        catalog: the catalog.
        df: a Spark DataFrame whose columns hold the snapshot fields, by name.
        now: the time ``$now`` stands for; default: the current time.

    Raises:
        SourceError: a field a rule reads has no column.
    """
    from pyspark.sql import functions

    result = tagged(catalog, df, now)
    keys = set(result.states)
    return result.frame.select(
        *[
            functions.col(f"c_{index}").alias(name)
            for index, name in enumerate(result.sources)
            if name not in keys
        ],
        *[(functions.col(column) == 1).alias(key) for key, column in result.states.items()],
    )


def count_tags(catalog: Catalog, df: Any, *, now: datetime.datetime | None = None) -> CountReport:
    """How many rows of ``df`` each active tag of ``catalog`` is assigned to, counted in Spark: only
    the counts come back to the driver. :attr:`CountReport.where` says where each tag ran: ``spark``
    (Spark SQL) or ``python`` (the Python evaluator on the executors).

    Raises:
        SourceError: a field a rule reads has no column.
    """
    from pyspark.sql import functions

    result = tagged(catalog, df, now, keep_columns=False)
    totals = [functions.count(functions.lit(1))]
    for column in result.states.values():
        state = functions.col(column)
        totals += [
            functions.count(functions.when(state == 1, True)),
            functions.count(functions.when(state.isNull(), True)),
        ]
    conf = df.sparkSession.conf
    before = conf.get("spark.sql.codegen.hugeMethodLimit", None)
    # see HUGE_METHOD_LIMIT: the whole-stage code of a catalog's count would run interpreted
    conf.set("spark.sql.codegen.hugeMethodLimit", HUGE_METHOD_LIMIT)
    try:
        row = result.frame.agg(*totals).collect()[0]
    finally:
        if before is None:
            conf.unset("spark.sql.codegen.hugeMethodLimit")
        else:
            conf.set("spark.sql.codegen.hugeMethodLimit", before)
    counts = {key: int(row[1 + 2 * index]) for index, key in enumerate(result.states)}
    unknown = {key: int(row[2 + 2 * index]) for index, key in enumerate(result.states)}
    return CountReport(
        counts=MappingProxyType(counts),
        unknown=MappingProxyType(unknown),
        rows=int(row[0]),
        where=result.where,
        in_python=result.in_python,
        now=result.now,
    )
