"""The SparkSession the command line (and the tests) start: UTC, quiet, no UI."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from tagrules.errors import SourceError

__all__ = ["HUGE_METHOD_LIMIT", "java_missing", "spark_session"]

#: the JVM's HugeMethodLimit: longer methods are never JIT-compiled
HUGE_METHOD_LIMIT = "8000"


def java_missing() -> str | None:
    """Why no JVM can start here, or ``None`` when one can."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return None
    if shutil.which("java") is None:
        return "no Java runtime (java on PATH or JAVA_HOME): Spark needs Java 17 or later"
    return None


def spark_session(master: str = "local[*]", *, shuffle_partitions: int | None = None) -> Any:
    """A SparkSession on ``master``: session time zone UTC, Spark UI off, warnings only; local
    executors run this Python (where tagrules is installed).

    Raises:
        SourceError: pyspark is not installed, or there is no Java runtime.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise SourceError(f"Spark is not installed (install tagrules[spark]): {error}") from None
    missing = java_missing()
    if missing is not None:
        raise SourceError(missing)
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName("tagrules")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # a catalog's query compiles to methods beyond the 8,000 bytes the JVM's JIT compiles; over
        # this limit Spark falls back from whole-stage code generation to compiled expressions,
        # which run 3x faster than the interpreted huge method (the retail pack on one core)
        .config("spark.sql.codegen.hugeMethodLimit", HUGE_METHOD_LIMIT)
    )
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    try:
        session = builder.getOrCreate()
    except Exception as error:
        raise SourceError(f"Spark cannot start on {master}: {str(error).strip().splitlines()[0]}") from None
    session.sparkContext.setLogLevel("ERROR")
    return session
