"""OpenTelemetry metrics: the tagger's counters and chunk durations through a real SDK reader, and
nothing imported or measured when the API is not installed."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry import metrics
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from sqlalchemy.engine import URL

from sql_tables import fill, snapshot_table
from store_helpers import catalog, drop_store, unique_prefix
from tagrules import Catalog, MemoryStore, SQLStore, Tagger, retag_from_table
from tagrules._metrics import NO_METRICS, instruments
from test_tagger import BROKEN, MID, RICH

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
_DELTA: dict[type, AggregationTemporality] = {
    SdkCounter: AggregationTemporality.DELTA,
    SdkHistogram: AggregationTemporality.DELTA,
}
_READER: list[InMemoryMetricReader] = []

Measured = dict[tuple[str, frozenset[tuple[str, Any]]], float]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    """The process's meter provider reads into memory (set once: OpenTelemetry allows one), its
    measurements so far dropped."""
    if not _READER:
        _READER.append(InMemoryMetricReader(preferred_temporality=_DELTA))
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER[0]]))
    _READER[0].get_metrics_data()
    return _READER[0]


def measured(reader: InMemoryMetricReader) -> Measured:
    """``(instrument, attributes) -> sum`` (a histogram: its count of measurements)."""
    found: Measured = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            if scope.scope.name != "tagrules":
                continue
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset((point.attributes or {}).items()))
                    value = point.count if hasattr(point, "count") else point.value
                    found[key] = found.get(key, 0) + value
    return {key: value for key, value in found.items() if value}


def changes_of(found: Measured) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for (name, attributes), value in found.items():
        if name == "tagrules.tag_changes":
            labels = dict(attributes)
            counts[labels["tag"], labels["change"]] += int(value)
    return counts


def of(found: Measured, name: str, **attributes: str) -> float:
    return found.get((name, frozenset(attributes.items())), 0)


class TestTagger:
    def test_a_run_counts_evaluations_changes_errors_and_chunks(self, reader: InMemoryMetricReader) -> None:
        """``apply_many`` counts each customer evaluated, each membership added or removed by tag,
        each failed rule by tag, and records one duration per chunk."""
        tagger = Tagger(catalog(), MemoryStore())
        items = [("a", MID), ("b", RICH), ("c", BROKEN), ("d", MID), ("e", RICH)]
        first = tagger.apply_many(items, now=T0, chunk_size=2)
        found = measured(reader)
        assert of(found, "tagrules.evaluations", operation="apply_many") == 5
        assert of(found, "tagrules.chunk.duration", operation="apply_many") == 3
        assert changes_of(found) == Counter(
            {(key, "added"): counts.added for key, counts in first.tags.items() if counts.added}
        )
        errors = {key: counts.errors for key, counts in first.tags.items() if counts.errors}
        assert errors
        assert {key: of(found, "tagrules.errors", tag=key) for key in errors} == errors

        later = T0 + datetime.timedelta(days=1)
        second = tagger.apply_many([("b", MID), ("a", MID)], now=later)
        found = measured(reader)
        assert of(found, "tagrules.evaluations", operation="apply_many") == 2
        assert changes_of(found) == Counter(
            {(key, "removed"): counts.removed for key, counts in second.tags.items() if counts.removed}
            | {(key, "added"): counts.added for key, counts in second.tags.items() if counts.added}
        )
        assert second.removed > 0

    def test_single_applies_and_retired_tags(self, reader: InMemoryMetricReader) -> None:
        """``apply`` is measured as its own operation; memberships of a retired tag closed before a
        run count as removed."""
        store = MemoryStore()
        diff = Tagger(catalog(), store).apply("a", RICH, now=T0)
        found = measured(reader)
        assert of(found, "tagrules.evaluations", operation="apply") == 1
        assert of(found, "tagrules.chunk.duration", operation="apply") == 1
        assert changes_of(found) == Counter({(key, "added"): 1 for key in diff.added})

        Tagger(catalog(vip="retired"), store).apply_many([], now=T0 + datetime.timedelta(days=1))
        assert changes_of(measured(reader)) == Counter({("vip", "removed"): 1})

    def test_a_set_wise_retag_is_measured(self, reader: InMemoryMetricReader, postgres_url: URL) -> None:
        """A set-wise retag in PostgreSQL counts its customers (operation ``retag``) and its changes."""
        big = {"key": "big", "rule": "spend >= 100"}
        table_catalog = Catalog.from_data({"schema": {"spend": "float"}, "tags": [big]})
        engine = sa.create_engine(postgres_url)
        table = snapshot_table(f"metric_rows_{unique_prefix()}", table_catalog.schema, "postgresql")
        with engine.begin() as connection:
            rows = [{"id": f"c{n}", "spend": float(n * 40)} for n in range(6)]
            fill(connection, table, table_catalog.schema, rows)
        prefix = unique_prefix()
        store = SQLStore(postgres_url, prefix=prefix, migrate=True)
        try:
            report = retag_from_table(table_catalog, engine, table.name, store, now=T0, set_wise=True)
            found = measured(reader)
            assert report.set_wise
            assert of(found, "tagrules.evaluations", operation="retag") == 6
            assert of(found, "tagrules.chunk.duration", operation="retag") >= 1
            assert changes_of(found) == Counter({("big", "added"): report.tags["big"].added})
            assert report.tags["big"].added == 3
        finally:
            store.close()
            drop_store(postgres_url, prefix)
            table.drop(engine)
            engine.dispose()


_HIDDEN = """
import importlib.abc, sys

class Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Hidden())
"""
_RUN = """
import sys
from tagrules import Catalog, MemoryStore, Tagger
catalog = Catalog([{"key": "a", "rule": "x > 1"}], {"x": "int"})
tagger = Tagger(catalog, MemoryStore())
tagger.apply_many([("c1", {"x": 2}), ("c2", {"x": 0})])
tagger.apply("c1", {"x": 0})
from tagrules import _metrics
print(_metrics.instruments() is _metrics.NO_METRICS)
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""


def run_python(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


class TestWithoutTheExtra:
    def test_nothing_of_opentelemetry_is_imported_without_it(self) -> None:
        """With the package absent, a tagger's run imports no OpenTelemetry and measures nothing."""
        assert run_python(_HIDDEN + _RUN) == ["True", "[]"]

    def test_with_the_api_only_the_api_is_imported(self) -> None:
        """With the API installed, a tagger uses its meter and imports no SDK; ``import tagrules``
        alone imports nothing of OpenTelemetry."""
        found, modules = run_python(_RUN)
        assert found == "False"
        assert "'opentelemetry.metrics'" in modules
        assert "opentelemetry.sdk" not in modules
        probe = "import sys, tagrules\nprint([m for m in sys.modules if 'opentelemetry' in m])"
        assert run_python(probe) == ["[]"]

    def test_the_no_op_instruments_are_disabled(self) -> None:
        """The instruments of a process without the API say so, for the callers to skip them."""
        assert not NO_METRICS.enabled
        assert instruments().enabled  # the test environment installs the extra
