"""Start-up time: ``import tagrules`` and the CLI, beside a bare interpreter.

Each command runs in a fresh interpreter, the commands interleaved round by round; the median of
the rounds is kept (wall-clock seconds, as a user waits for them).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

__all__ = ["run", "table"]

#: (name, the arguments of the Python interpreter)
COMMANDS: list[tuple[str, list[str]]] = [
    ('python -c "pass"', ["-c", "pass"]),
    ('python -c "import tagrules"', ["-c", "import tagrules"]),
    ("tagrules --version", ["-m", "tagrules.cli", "--version"]),
    ("tagrules validate retail", ["-m", "tagrules.cli", "validate", "retail"]),
]


def _seconds(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], check=True, capture_output=True)
    return time.perf_counter() - started


def run(quick: bool = False) -> dict[str, Any]:
    """Median seconds of each command over interleaved rounds (5, or 2 when ``quick``)."""
    rounds = 2 if quick else 5
    for _, arguments in COMMANDS:
        _seconds(arguments)  # compiled bytecode written, files cached
    samples: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
    for _ in range(rounds):
        for name, arguments in COMMANDS:
            samples[name].append(_seconds(arguments))
    return {
        "rounds": rounds,
        "commands": [
            {"command": name, "seconds_median": statistics.median(values), "seconds_rounds": values}
            for name, values in samples.items()
        ],
    }


def table(report: dict[str, Any]) -> str:
    """The report as a text table."""
    lines = [f"{'command':32} {'median s':>9}"]
    lines.extend(f"{row['command']:32} {row['seconds_median']:9.3f}" for row in report["commands"])
    lines.append(f"(median of {report['rounds']} interleaved rounds, each in a fresh interpreter)")
    return "\n".join(lines)
