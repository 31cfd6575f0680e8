"""A service's writes: a first tagging into an empty store, and single-customer ``Tagger.apply``.

* first tagging: ``Tagger.apply_many`` of 100,000 retail customers (``--quick``: 5,000), chunks of
  1,000, into an empty store, customers per second, every variant in a process of its own, side by
  side in interleaved rounds (medians): the earlier library (commit :data:`EARLIER`, taken out of
  the repository with ``git archive``: an ``INSERT`` of unnested arrays per table) and the library of
  the working tree, each with change events and without (``emit_events=False``) on PostgreSQL, and
  with events into a SQLite file; the load average at the start of each round and at the end;
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
import io
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tarfile
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

#: The library before the write path's work (the parent of the merge that brought ``COPY``): each
#: table's rows an ``INSERT`` of unnested arrays, a new customer's due time and its memberships' lapses
#: ``UPDATE``\ d after their ``INSERT``, every index of revision v0005. Measured from a copy of its
#: ``src`` taken out of the repository with ``git archive``.
EARLIER = "bb09ba2"
ROOT = Path(__file__).resolve().parent.parent

#: first tagging variants: name -> (library: "earlier" or "now", store: "postgresql" or "sqlite", events)
VARIANTS = {
    "postgresql_earlier": ("earlier", "postgresql", True),
    "postgresql_now": ("now", "postgresql", True),
    "postgresql_earlier_no_events": ("earlier", "postgresql", False),
    "postgresql_now_no_events": ("now", "postgresql", False),
    "sqlite_earlier": ("earlier", "sqlite", True),
    "sqlite_now": ("now", "sqlite", True),
}


@contextlib.contextmanager
def _postgres_store() -> Iterator[SQLStore]:
    prefix = f"bench{secrets.token_hex(3)}_"
    store = SQLStore(POSTGRES_URL, prefix=prefix, migrate=True)
    try:
        yield store
    finally:
        store.close()
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
            _drop(POSTGRES_URL, prefix)


def _earlier_source(directory: Path) -> Path | None:
    """The earlier library's ``src``, taken out of the repository; ``None`` without git or history."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", EARLIER, "src"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    target = directory / "earlier"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        # (the filter where this Python has it: the archive is the repository's own)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:
            tar.extractall(target)
    return target / "src"


def _first_tagging(source: Path, url: str, prefix: str, count: int, events: bool) -> float:
    """Customers per second of a first tagging of ``count`` customers, in a process of its own that
    imports the library from ``source``."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(ROOT)])}
    arguments = [url, prefix, str(count), "events" if events else "no-events"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._first_tagging", *arguments],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    per_second: float = json.loads(done.stdout.splitlines()[-1])["per_second"]
    return per_second


def _variant(sources: dict[str, Path], name: str, count: int, directory: Path) -> float:
    library, kind, events = VARIANTS[name]
    prefix = f"bench{secrets.token_hex(3)}_"
    if kind == "sqlite":
        path = directory / f"first-{secrets.token_hex(3)}.db"
        try:
            return _first_tagging(sources[library], f"sqlite:///{path}", prefix, count, events)
        finally:
            path.unlink(missing_ok=True)
    try:
        return _first_tagging(sources[library], POSTGRES_URL, prefix, count, events)
    finally:
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
            _drop(POSTGRES_URL, prefix)


def _first_taggings(count: int, rounds: int, directory: Path) -> dict[str, Any]:
    sources = {"now": ROOT / "src"}
    earlier = _earlier_source(directory)
    if earlier is not None:
        sources["earlier"] = earlier
    names = [name for name, (library, _, _) in VARIANTS.items() if library in sources]
    samples: dict[str, list[float]] = {name: [] for name in names}
    loads: list[float] = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for name in names:
            samples[name].append(_variant(sources, name, count, directory))
    loads.append(os.getloadavg()[0])
    per_second = {name: statistics.median(values) for name, values in samples.items()}
    against: dict[str, float] = {}
    for name, value in per_second.items():
        _, kind, events = VARIANTS[name]
        base = f"{kind}_earlier" + ("" if events else "_no_events")
        if base in per_second:
            against[name] = value / per_second[base]
    if "postgresql_earlier" in per_second:
        # the target's measure: every variant against the earlier path with events, as measured before
        against["postgresql_now_no_events_vs_earlier_with_events"] = (
            per_second["postgresql_now_no_events"] / per_second["postgresql_earlier"]
        )
    return {
        "customers": count,
        "rounds": rounds,
        "earlier": EARLIER if earlier is not None else None,
        "load_average": loads,
        "per_second": per_second,
        "against_earlier": against,
        "samples": samples,
    }


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
    loads = ", ".join(f"{load:.1f}" for load in first["load_average"])
    lines = [
        f"first tagging of {first['customers']:,} retail customers (median of {first['rounds']} "
        f"interleaved rounds; load average {loads})",
        f"{'store / library / events':<36} {'customers/s':>12} {'vs earlier':>11}",
    ]
    for name, value in first["per_second"].items():
        ratio = first["against_earlier"].get(name)
        shown = f"{ratio:>10.2f}x" if ratio is not None else ""
        rounds = " / ".join(f"{sample:,.0f}" for sample in first["samples"][name])
        lines.append(f"{name:<36} {value:>12,.0f} {shown:>11}   ({rounds})")
    crossed = first["against_earlier"].get("postgresql_now_no_events_vs_earlier_with_events")
    if crossed is not None:
        lines.append(f"postgresql_now_no_events against postgresql_earlier (with events): {crossed:.2f}x")
    if first["earlier"] is None:
        lines.append(f"(no git history: the earlier library, {EARLIER}, was not measured)")
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
