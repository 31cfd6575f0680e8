"""Files on Spark for the command line: snapshots read from Parquet or CSV, counted and evaluated on
a session of the master asked for."""

from __future__ import annotations

import datetime
import glob
import json
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tagrules.catalog import Catalog
from tagrules.errors import SourceError
from tagrules.sources.tables import CountReport
from tagrules.spark._columns import count_tags
from tagrules.spark._executors import CatalogRecipe, result_batches
from tagrules.spark._session import spark_session

__all__ = ["count_file", "evaluate_file", "read_snapshots", "run_file", "write_parquet"]

#: Writes one result: the id, the tags, the errors by tag, and extra keys (as the CLI's writers do).
Writer = Callable[[Any, Sequence[str], Mapping[str, str], Mapping[str, Any]], None]


def read_snapshots(spark: Any, path: str) -> Any:
    """The DataFrame of a Parquet file, a directory or glob of them, or a CSV file (with a header).

    Raises:
        SourceError: no such file, or one of another kind.
    """
    location = Path(path)
    lowered = path.lower()
    if glob.has_magic(path):
        if not glob.glob(path, recursive=True):
            raise SourceError(f"{path}: no file matches")
    elif not location.exists():
        raise SourceError(f"{path}: no such file or directory")
    try:
        if location.is_dir() or lowered.endswith(".parquet"):
            return spark.read.parquet(path)
        if lowered.endswith(".csv"):
            return spark.read.csv(path, header=True, inferSchema=True)
    except Exception as error:
        raise SourceError(f"{path}: cannot be read: {str(error).strip().splitlines()[0]}") from None
    raise SourceError(f"{path}: not a file Spark reads here (.parquet, a directory of them, or .csv)")


def count_file(
    catalog: Catalog, path: str, master: str, now: datetime.datetime, columns: Mapping[str, str]
) -> CountReport:
    """``tagrules count CATALOG --input PATH --engine spark``; ``columns``: field -> its column."""
    spark = spark_session(master)
    df = read_snapshots(spark, path)
    for field, column in columns.items():
        if column not in df.columns:
            raise SourceError(f"{path}: no column {column!r} for the field {field!r} (--column)")
        df = df.withColumnRenamed(column, field)
    return count_tags(catalog, df, now=now)


def evaluate_file(
    catalog: Catalog,
    path: str,
    id_field: str,
    now: datetime.datetime,
    write: Writer,
    *,
    master: str,
    ordered: bool,
) -> int:
    """``tagrules evaluate CATALOG PATH --engine spark``: the Python evaluator on the executors, the
    results streamed to the driver one partition at a time (in the file's order with ``ordered``);
    a row the schema refuses is reported on stderr by its number and skipped. Returns the rows
    skipped.

    Raises:
        SourceError: the file cannot be read, or lacks the id column or a column a rule reads.
    """
    from pyspark.sql import functions
    from pyspark.sql.types import ArrayType, LongType, StringType, StructField, StructType

    spark = spark_session(master)
    df = read_snapshots(spark, path)
    if id_field not in df.columns:
        raise SourceError(f"{path}: no column {id_field!r} for the snapshots' ids (--id-field)")
    needed = sorted({name for definition in catalog.active for name in catalog.rule(definition.key).fields})
    missing = [name for name in needed if name in catalog.schema.fields and name not in df.columns]
    if missing:
        raise SourceError(f"{path}: no column {missing[0]!r} for the field {missing[0]!r}")
    fields = [name for name in catalog.schema.fields if name in df.columns]
    numbered = df.withColumn("__tagrules_position", functions.monotonically_increasing_id())
    recipe = CatalogRecipe.of(catalog, uuid.uuid4().hex)
    schema = StructType(
        [
            StructField("position", LongType()),
            StructField("id", StringType()),
            StructField("id_json", StringType()),
            StructField("tags", ArrayType(StringType())),
            StructField("errors", StringType()),
            StructField("problem", StringType()),
        ]
    )
    results = numbered.mapInArrow(
        result_batches(recipe, {name: name for name in fields}, id_field, "__tagrules_position", now),
        schema,
    )
    if ordered:
        results = results.orderBy("position")
    skipped = 0
    for number, row in enumerate(results.toLocalIterator(), start=1):
        if row["problem"] is not None:
            skipped += 1
            print(f"{path}: row {number}: {row['problem']}; row skipped", file=sys.stderr)
            continue
        identifier = json.loads(row["id_json"])
        write(identifier, list(row["tags"]), json.loads(row["errors"]), {})
    return skipped


def write_parquet(frame: Any, path: str) -> int:
    """Write ``frame`` to one Parquet file at ``path`` (through a directory beside it, moved in place
    when done); returns its rows."""
    import pyarrow.parquet

    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        frame.repartition(1).write.mode("overwrite").parquet(str(partial))
        parts = sorted(partial.glob("part-*.parquet"))
        if len(parts) != 1:
            raise SourceError(f"{path}: Spark wrote {len(parts)} files, not one")
        parts[0].replace(target)
    except OSError as error:
        raise SourceError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return int(pyarrow.parquet.ParquetFile(str(target)).metadata.num_rows)


def run_file(
    catalog: Catalog,
    path: str,
    *,
    previous: str | None,
    output: str,
    changes: str | None,
    master: str,
    now: datetime.datetime,
) -> tuple[int, int]:
    """``tagrules run CATALOG --input PATH --engine spark``: the tags to ``output``, the changes
    against ``previous`` to ``changes``; returns the rows of each file written (0 for no file)."""
    from tagrules.spark._diff import diff_tags

    spark = spark_session(master)
    df = read_snapshots(spark, path)
    previous_df = read_snapshots(spark, previous) if previous is not None else None
    tags_df, changes_df = diff_tags(catalog, df, previous_df, now=now)
    held = write_parquet(tags_df, output)
    changed = write_parquet(changes_df, changes) if changes is not None else 0
    return held, changed
