"""A service's writes: a first tagging into an empty store, and single-customer ``Tagger.apply``.

* first tagging: ``Tagger.apply_many`` of 100,000 retail customers (``--quick``: 5,000), chunks of
  1,000, into an empty store, customers per second; on PostgreSQL side by side in interleaved rounds
  (medians): the earlier way (an ``INSERT`` of unnested arrays: the store's private
  ``_copy_from = None``) and rows written with ``COPY`` (the default); with change events and
  without (``emit_events=False``); and into a SQLite file;
* single-customer latency: ``Tagger.apply`` on PostgreSQL of a customer already stored, one tag
  changing each call (``personalised_requests_90d`` between 0 and 1 turns ``needs_personal_service``
  on and off), p50 and p99 in milliseconds for 1 client and for 8 concurrent clients (processes, each
  with its own customers and its own store object, all starting together); beside them, what the
  server alone takes for a one-row ``UPDATE`` and ``COMMIT`` on one connection.

PostgreSQL is reached at ``TAGRULES_BENCH_POSTGRES_URL`` (default: the local server); the benchmark
writes under table prefixes of its own and drops its tables afterwards. Run with
``python -m benchmarks writes``.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import multiprocessing
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy

from benchmarks.storage import POSTGRES_URL, _drop
from tagrules import SQLStore, StoreError, Tagger
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

__all__ = ["run", "table"]

CHUNK_SIZE = 1000
CLIENTS = 8
#: the tag the latency calls turn on and off, and the field that decides it
FLIP_FIELD = "personalised_requests_90d"

_EMITS = "emit_events" in inspect.signature(Tagger.apply_many).parameters


#: PostgreSQL variants of the first tagging: whether rows are written with COPY
PATHS = {"arrays": False, "copy": True}


@contextlib.contextmanager
def _postgres_store(copy: bool = True) -> Iterator[SQLStore]:
    prefix = f"bench{secrets.token_hex(3)}_"
    store = SQLStore(POSTGRES_URL, prefix=prefix, migrate=True)
    if not copy:
        store._copy_from = None
    try:
        yield store
    finally:
        store.close()
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
            _drop(POSTGRES_URL, prefix)


def _first_tagging(store: SQLStore, customers: list[dict[str, Any]], events: bool = True) -> float:
    """Customers per second of a first tagging of ``customers`` into ``store``."""
    tagger = Tagger(load_catalog(), store)
    options: dict[str, Any] = {} if events else {"emit_events": False}
    started = time.perf_counter()
    tagger.apply_many(((c["id"], c) for c in customers), now=REFERENCE_NOW, chunk_size=CHUNK_SIZE, **options)
    return len(customers) / (time.perf_counter() - started)


def _first_taggings(count: int, rounds: int, directory: Path) -> dict[str, Any]:
    customers = list(generate_customers(count, seed=1))
    variants: dict[str, Any] = {}
    for events in (True, False) if _EMITS else (True,):
        for path, copy in PATHS.items():
            name = f"postgresql_{path}" + ("" if events else "_no_events")
            variants[name] = functools.partial(_in_postgres, customers, copy, events)
    variants["sqlite"] = lambda: _in_sqlite(customers, directory)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant in variants.items():
            samples[name].append(variant())
    report: dict[str, Any] = {
        "customers": count,
        "rounds": rounds,
        "emit_events_available": _EMITS,
        "per_second": {name: statistics.median(values) for name, values in samples.items()},
        "samples": samples,
    }
    per_second = report["per_second"]
    earlier = per_second["postgresql_arrays"]
    report["against_arrays"] = {
        name: value / earlier for name, value in per_second.items() if name.startswith("postgresql")
    }
    return report


def _in_postgres(customers: list[dict[str, Any]], copy: bool, events: bool) -> float:
    with _postgres_store(copy) as store:
        return _first_tagging(store, customers, events)


def _in_sqlite(customers: list[dict[str, Any]], directory: Path) -> float:
    path = directory / f"first-{secrets.token_hex(3)}.db"
    with SQLStore(f"sqlite:///{path}") as store:
        per_second = _first_tagging(store, customers)
    path.unlink()
    return per_second


def _flipped(customer: dict[str, Any], on: bool) -> dict[str, Any]:
    return {**customer, FLIP_FIELD: 1 if on else 0}


def _client(arguments: tuple[str, str, int, int, int, float]) -> list[float]:
    """One client: ``calls`` single-customer applies over its own ``customers``; seconds per call."""
    url, prefix, first, customers, calls, start = arguments
    profiles = list(generate_customers(first + customers, seed=2))[first:]
    store = SQLStore(url, prefix=prefix)
    tagger = Tagger(load_catalog(), store)
    latencies: list[float] = []
    try:
        time.sleep(max(0.0, start - time.time()))
        for call in range(calls):
            profile = profiles[call % customers]
            # one tag changes: the stored customer's requests went 0 -> 1, then back, call by call
            snapshot = _flipped(profile, (call // customers) % 2 == 0)
            now = REFERENCE_NOW + datetime.timedelta(seconds=call + 1)
            started = time.perf_counter()
            tagger.apply(profile["id"], snapshot, now=now)
            latencies.append(time.perf_counter() - started)
    finally:
        tagger.flush()
        store.close()
    return latencies


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "calls": len(ordered),
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def _latency(clients: int, customers: int, calls: int) -> dict[str, Any]:
    """Single-customer applies by ``clients`` processes at once, each over ``customers`` of its own."""
    with _postgres_store() as store:
        stored = [_flipped(profile, False) for profile in generate_customers(clients * customers, seed=2)]
        Tagger(load_catalog(), store).apply_many(
            ((c["id"], c) for c in stored), now=REFERENCE_NOW, chunk_size=CHUNK_SIZE
        )
        url = store.url.render_as_string(hide_password=False)
        start = time.time() + 3
        jobs = [(url, store.prefix, n * customers, customers, calls, start) for n in range(clients)]
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            results = pool.map(_client, jobs)
    return {"clients": clients, **_percentiles([value for result in results for value in result])}


def _floor(calls: int) -> dict[str, Any]:
    """The server's own share: one-row ``UPDATE`` and ``COMMIT`` on one connection, per call."""
    engine = sqlalchemy.create_engine(POSTGRES_URL)
    name = f"bench{secrets.token_hex(3)}_floor"
    latencies: list[float] = []
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE TABLE {name} (id int PRIMARY KEY, version int)")
            connection.exec_driver_sql(f"INSERT INTO {name} VALUES (1, 0)")
            connection.commit()
            for _ in range(calls):
                started = time.perf_counter()
                connection.exec_driver_sql(f"UPDATE {name} SET version = version + 1 WHERE id = 1")
                connection.commit()
                latencies.append(time.perf_counter() - started)
            connection.exec_driver_sql(f"DROP TABLE {name}")
            connection.commit()
    finally:
        engine.dispose()
    return {"clients": 1, **_percentiles(latencies)}


def run(quick: bool = False) -> dict[str, Any]:
    count = 5_000 if quick else 100_000
    rounds = 1 if quick else 3
    calls = 200 if quick else 2_000
    report: dict[str, Any] = {"chunk_size": CHUNK_SIZE}
    try:
        with tempfile.TemporaryDirectory(prefix="tagrules-bench-") as directory:
            report["first_tagging"] = _first_taggings(count, rounds, Path(directory))
        report["latency"] = [_latency(1, 200, calls), _latency(CLIENTS, 200, calls // 4)]
        report["update_and_commit"] = _floor(calls)
    except StoreError as error:
        report["skipped"] = str(error)
    return report


def table(report: dict[str, Any]) -> str:
    if "skipped" in report:
        return f"skipped: {report['skipped']}"
    first = report["first_tagging"]
    lines = [
        f"first tagging of {first['customers']:,} retail customers (median of {first['rounds']} rounds)",
        f"{'store / write path':<36} {'customers/s':>12} {'vs arrays':>10}",
    ]
    for name, value in first["per_second"].items():
        ratio = first["against_arrays"].get(name)
        shown = f"{ratio:>9.2f}x" if ratio is not None else ""
        lines.append(f"{name:<36} {value:>12,.0f} {shown:>10}")
    if not first["emit_events_available"]:
        lines.append("(apply_many has no emit_events here: measured with events only)")
    lines.append(f"{'Tagger.apply, PostgreSQL':<26} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for figures in report["latency"]:
        lines.append(
            f"{figures['clients']:>2} client(s){'':<15} {figures['calls']:>7,} "
            f"{figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f}"
        )
    floor = report["update_and_commit"]
    name = "one-row UPDATE + COMMIT"
    lines.append(f"{name:<26} {floor['calls']:>7,} {floor['p50_ms']:>8.2f} {floor['p99_ms']:>8.2f}")
    return "\n".join(lines)
