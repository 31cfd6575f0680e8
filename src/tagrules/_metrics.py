"""OpenTelemetry metrics, when the ``opentelemetry-api`` package is installed (``tagrules[otel]``).

:func:`instruments` looks for the API once per process (a :class:`~tagrules.Tagger` asks when it is
created) and returns the tagger's instruments on the ``tagrules`` meter of the global meter
provider; without the API it returns :data:`NO_METRICS`, whose methods do nothing and which the
callers skip (``enabled`` is false), so a run pays nothing and nothing of OpenTelemetry is imported.
With the API but no SDK configured, the API's meter is a no-op one; an SDK configured later (at any
time, as OpenTelemetry allows) receives the measurements from then on.

The instruments:

* ``tagrules.evaluations`` (counter, customers evaluated; attribute ``operation``);
* ``tagrules.tag_changes`` (counter, memberships written; attributes ``tag`` and ``change``,
  ``added`` or ``removed``);
* ``tagrules.errors`` (counter, failed rule evaluations; attribute ``tag``);
* ``tagrules.chunk.duration`` (histogram, seconds per chunk; attribute ``operation``).

``operation`` is ``apply`` (:meth:`Tagger.apply`), ``apply_many`` (a chunk of
:meth:`Tagger.apply_many`) or ``retag`` (in a set-wise retag in the database: a chunk, or the
customers of a segment found unchanged as it is filled).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["NO_METRICS", "Metrics", "Operation", "instruments"]

Operation = Literal["apply", "apply_many", "retag"]


class Metrics:
    """Records a tagger's measurements; this base records nothing (OpenTelemetry is not installed)."""

    enabled = False

    def chunk(
        self, operation: Operation, evaluations: int, errors: Mapping[str, int], seconds: float
    ) -> None:
        """A chunk of ``evaluations`` customers took ``seconds``; ``errors``: tag -> failed rules."""

    def changes(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Memberships written: ``(tag, change) -> count``."""


NO_METRICS = Metrics()


class _Instruments(Metrics):
    enabled = True

    def __init__(self, meter: Any) -> None:
        self._evaluations = meter.create_counter(
            "tagrules.evaluations", unit="{customer}", description="customers evaluated"
        )
        self._changes = meter.create_counter(
            "tagrules.tag_changes", unit="{membership}", description="memberships added or removed"
        )
        self._errors = meter.create_counter(
            "tagrules.errors", unit="{evaluation}", description="rule evaluations that failed"
        )
        self._duration = meter.create_histogram(
            "tagrules.chunk.duration", unit="s", description="time to evaluate and store a chunk"
        )
        # attribute mappings reused, not built anew for every measurement
        self._operations: dict[str, Mapping[str, str]] = {}
        self._tags: dict[str, Mapping[str, str]] = {}
        self._tag_changes: dict[tuple[str, str], Mapping[str, str]] = {}

    def chunk(
        self, operation: Operation, evaluations: int, errors: Mapping[str, int], seconds: float
    ) -> None:
        attributes = self._operations.get(operation)
        if attributes is None:
            attributes = self._operations[operation] = {"operation": operation}
        self._duration.record(seconds, attributes)
        if evaluations:
            self._evaluations.add(evaluations, attributes)
        for tag, count in errors.items():
            if count:
                tagged = self._tags.get(tag)
                if tagged is None:
                    tagged = self._tags[tag] = {"tag": tag}
                self._errors.add(count, tagged)

    def changes(self, counts: Mapping[tuple[str, str], int]) -> None:
        for key, count in counts.items():
            attributes = self._tag_changes.get(key)
            if attributes is None:
                attributes = self._tag_changes[key] = {"tag": key[0], "change": key[1]}
            self._changes.add(count, attributes)


@functools.cache
def instruments() -> Metrics:
    """The instruments of the ``tagrules`` meter, or :data:`NO_METRICS` without OpenTelemetry's API."""
    try:
        from opentelemetry import metrics
    except ImportError:
        return NO_METRICS
    import sys

    # the package's version, read where it is kept without importing the package from below it
    version = getattr(sys.modules.get("tagrules"), "__version__", "")
    return _Instruments(metrics.get_meter("tagrules", str(version)))
