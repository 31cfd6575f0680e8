"""Run the benchmarks: ``python -m benchmarks [--quick] [NAME ...]`` (``make bench``).

Each benchmark prints a table and writes its figures as JSON to ``build/benchmarks/NAME.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

#: benchmark name -> module (each has ``run(quick) -> dict`` and ``table(report) -> str``)
BENCHMARKS = {
    "compiler": "benchmarks.compiler",
    "storage": "benchmarks.storage",
    "writes": "benchmarks.writes",
    "pushdown": "benchmarks.pushdown",
    "duckdb": "benchmarks.duckdb",
    "impact": "benchmarks.impact",
    "lapse": "benchmarks.lapse",
    "limits": "benchmarks.limits",
    "watch": "benchmarks.watch",
    "otel": "benchmarks.otel",
    "startup": "benchmarks.startup",
    "service": "benchmarks.service",
    "spark": "benchmarks.spark",
}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names", nargs="*", choices=[[], *BENCHMARKS], help="benchmarks to run (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--output", default="build/benchmarks", help="where to write the JSON reports")
    arguments = parser.parse_args(argv)
    names = arguments.names or list(BENCHMARKS)
    output = Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        report = module.run(quick=arguments.quick)
        report["machine"] = machine()
        print(f"== {name}")
        print(module.table(report))
        path = output / f"{name}.json"
        path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"(figures written to {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
