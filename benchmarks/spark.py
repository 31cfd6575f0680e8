"""The retail pack counted on Spark from Parquet, on one core and on two, beside DuckDB.

Generated retail customers are written once to a Parquet file (the two dicts as MAP columns, as a
lakehouse table holds them), copied into a directory until it holds the rows asked for
(``TAGRULES_SPARK_ROWS``, default 10,000,000; ``--quick``: 100,000). Then,
side by side in one run, each in a process of its own: ``tagrules.spark.count_tags`` on
``local[1]`` and on ``local[2]`` (rows/s per core, the speed-up from one core to two, the driver's
peak memory: the JVM's and Python's resident high-water marks), and ``count_tags`` on DuckDB over
the same directory.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["run", "table"]

FOLDER = Path("build/benchmarks/spark")
BASE_ROWS = 100_000


def _write_rows(rows: int) -> Path:
    """A directory of Parquet files holding ``rows`` retail customers (one file copied)."""
    import pyarrow  # type: ignore[import-untyped,unused-ignore]
    import pyarrow.parquet  # type: ignore[import-untyped,unused-ignore]

    from benchmarks.duckdb import _rows

    directory = FOLDER / f"customers-map-{rows}"
    if (
        directory.exists()
        and sum(
            pyarrow.parquet.ParquetFile(str(path)).metadata.num_rows for path in directory.glob("*.parquet")
        )
        == rows
    ):
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    base_rows = min(rows, BASE_ROWS)
    # the dicts as Parquet MAP columns, as a lakehouse table holds them
    base = FOLDER / f"base-map-{base_rows}.parquet"
    if not base.exists():
        pyarrow.parquet.write_table(_rows(base_rows, as_json=False), str(base))
    copies, rest = divmod(rows, base_rows)
    for index in range(copies):
        shutil.copyfile(base, directory / f"part-{index:05d}.parquet")
    if rest:
        table = pyarrow.parquet.read_table(str(base)).slice(0, rest)
        pyarrow.parquet.write_table(table, str(directory / f"part-{copies:05d}.parquet"))
    return directory


def _peak_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _worker(master: str, path: str) -> dict[str, Any]:
    """One count in this process: seconds, rows, and the driver's peak memory."""
    from tagrules.packs.retail import REFERENCE_NOW, load_catalog
    from tagrules.spark import count_tags
    from tagrules.spark._session import spark_session

    spark = spark_session(master)
    frame = spark.read.parquet(path)
    started = time.perf_counter()
    report = count_tags(load_catalog(), frame, now=REFERENCE_NOW)
    seconds = time.perf_counter() - started
    gateway = spark.sparkContext._gateway
    jvm_pid = gateway.proc.pid if gateway is not None and gateway.proc is not None else 0
    jvm_peak = _peak_kib(jvm_pid)
    spark.stop()
    places = list(report.where.values())
    return {
        "seconds": seconds,
        "rows": report.rows,
        "jvm_peak_mib": jvm_peak / 1024,
        "python_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tags_in_spark": places.count("spark"),
        "tags_in_python": places.count("python"),
    }


def _in_process(master: str, path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.spark", master, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _duckdb(path: Path) -> dict[str, Any]:
    from tagrules.packs.retail import REFERENCE_NOW, load_catalog
    from tagrules.sources._duckdb import file_source
    from tagrules.sources.tables import count_tags

    with file_source(str(path)) as (connection, table):
        started = time.perf_counter()
        report = count_tags(load_catalog(), connection, table, now=REFERENCE_NOW)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": report.rows}


def run(quick: bool = False) -> dict[str, Any]:
    rows = 100_000 if quick else int(os.environ.get("TAGRULES_SPARK_ROWS", "10000000"))
    started = time.perf_counter()
    path = _write_rows(rows)
    generation = time.perf_counter() - started
    one = _in_process("local[1]", path)
    two = _in_process("local[2]", path)
    duckdb = _duckdb(path)
    return {
        "rows": rows,
        "generation_seconds": generation,
        "local[1]": {**one, "rows_per_second_per_core": one["rows"] / one["seconds"]},
        "local[2]": {**two, "rows_per_second_per_core": two["rows"] / two["seconds"] / 2},
        "speed_up": one["seconds"] / two["seconds"],
        "duckdb": {**duckdb, "rows_per_second": duckdb["rows"] / duckdb["seconds"]},
        "load_average": os.getloadavg(),
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['rows']:,} retail rows from Parquet (load average {report['load_average'][0]:.1f})",
        f"{'engine':<10} {'seconds':>9} {'rows/s/core':>12} {'JVM peak MiB':>13} {'Python peak MiB':>16}",
    ]
    for name in ("local[1]", "local[2]"):
        figures = report[name]
        lines.append(
            f"{name:<10} {figures['seconds']:>9.1f} {figures['rows_per_second_per_core']:>12,.0f} "
            f"{figures['jvm_peak_mib']:>13.0f} {figures['python_peak_mib']:>16.0f}"
        )
    duckdb = report["duckdb"]
    lines.append(
        f"{'duckdb':<10} {duckdb['seconds']:>9.1f} {duckdb['rows_per_second']:>12,.0f} (all threads)"
    )
    lines.append(
        f"speed-up local[1] -> local[2]: {report['speed_up']:.2f}x; tags in Spark SQL "
        f"{report['local[1]']['tags_in_spark']}, on the executors {report['local[1]']['tags_in_python']}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], sys.argv[2])))
