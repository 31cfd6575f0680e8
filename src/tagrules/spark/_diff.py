"""The population diff on Spark: every row's tags, and what changed against a previous run's tags,
computed set-wise in the engine with a tag store's semantics."""

from __future__ import annotations

import datetime
from typing import Any

from tagrules.catalog import Catalog
from tagrules.errors import SourceError
from tagrules.spark._columns import tagged

__all__ = ["diff_tags"]


def diff_tags(
    catalog: Catalog, df: Any, previous_df: Any | None, *, now: datetime.datetime | None = None
) -> tuple[Any, Any]:
    """Every customer's tags, and the changes since ``previous_df``, as two DataFrames.

    ``tags_df`` has the columns ``id`` and ``tag`` (one row per tag held); ``changes_df`` has ``id``,
    ``tag`` and ``change`` (``added`` or ``removed``). As in a tag store: a tag whose rule failed on a
    row keeps its previous state; a tag the catalog no longer has active is removed from every
    customer; a customer of ``previous_df`` missing from ``df`` keeps its active tags. Without a
    previous DataFrame (``None``), every tag held is added.

    Args:
        catalog: the catalog.
        df: the snapshots, one row per customer, with an ``id`` column.
        previous_df: the tags of the previous run (``id``, ``tag``), e.g. its ``tags_df`` read back.
        now: the time ``$now`` stands for; default: the current time.

    Raises:
        SourceError: ``df`` has no ``id`` column, ``previous_df`` no ``id`` or ``tag``, or a field a
            rule reads has no column.
    """
    from pyspark.sql import functions

    if "id" not in df.columns:
        raise SourceError("the DataFrame has no column 'id' for the customers' ids")
    spark = df.sparkSession
    if previous_df is None:
        previous_df = spark.createDataFrame([], "id string, tag string")
    missing = [name for name in ("id", "tag") if name not in previous_df.columns]
    if missing:
        raise SourceError(f"the previous tags have no column {missing[0]!r} (id and tag are needed)")
    result = tagged(catalog, df, now)
    identifier = functions.col(f"c_{result.sources.index('id')}").cast("string")
    active = list(result.states)
    frame = result.frame
    if active:
        pairs = functions.explode(
            functions.array(
                *[
                    functions.struct(functions.lit(key).alias("tag"), functions.col(column).alias("state"))
                    for key, column in result.states.items()
                ]
            )
        )
        current = frame.select(identifier.alias("id"), pairs.alias("pair")).select(
            "id", functions.col("pair.tag").alias("tag"), functions.col("pair.state").alias("state")
        )
    else:
        current = spark.createDataFrame([], "id string, tag string, state int")
    evaluated = current.select(functions.col("id").alias("evaluated_id")).distinct()
    previous = (
        previous_df.select(
            functions.col("id").cast("string").alias("id"), functions.col("tag").cast("string")
        )
        .distinct()
        .withColumn("held", functions.lit(True))
    )
    joined = current.join(previous, ["id", "tag"], "full_outer").join(
        evaluated, functions.col("id") == functions.col("evaluated_id"), "left"
    )
    held = functions.coalesce(functions.col("held"), functions.lit(False))
    is_active = functions.col("tag").isin(active) if active else functions.lit(False)
    holds = (
        functions.when(functions.col("evaluated_id").isNull(), held & is_active)
        .when(~is_active, False)
        .when(functions.col("state").isNull(), held)
        .otherwise(functions.col("state") == 1)
    )
    decided = joined.select("id", "tag", held.alias("before"), holds.alias("after"))
    tags_df = decided.where("after").select("id", "tag")
    changes_df = decided.where(functions.col("before") != functions.col("after")).select(
        "id",
        "tag",
        functions.when(functions.col("after"), "added").otherwise("removed").alias("change"),
    )
    return tags_df, changes_df
