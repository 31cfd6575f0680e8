"""Timing side by side on a noisy machine: candidates measured in interleaved rounds, medians kept."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ["interleaved", "per_call_ns"]


def per_call_ns(function: Callable[[], object], calls: int) -> float:
    """Nanoseconds per call of ``function`` over ``calls`` calls (one timed loop)."""
    started = time.perf_counter_ns()
    for _ in range(calls):
        function()
    return (time.perf_counter_ns() - started) / calls


def interleaved(candidates: Mapping[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    """Median nanoseconds per call of each candidate; each round times every candidate once, in turn,
    so that a slow moment of the machine hits them all alike."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for function in candidates.values():
        function()
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, function in candidates.items():
                samples[name].append(per_call_ns(function, calls))
    finally:
        if was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}
