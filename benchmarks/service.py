"""Single-customer applies in a service: ``AsyncTagger.apply`` from 50 tasks on ``postgresql+asyncpg``
next to ``Tagger.apply`` from 8 threads on ``postgresql+psycopg``, retail pack.

Each writer applies stored retail customers one call at a time, every call a change (the customer's
snapshot alternates between two months). Four candidates, each on customers of its own, are timed in
interleaved rounds (so that a slow moment of the shared machine hits them alike), after a first
round untimed (the pools open their connections): one thread, 8 threads, one task and 50 tasks.
Each reports applies per second (the median over the rounds), the latency of a call (p50 and p99
over every timed call), and the CPU time of the benchmark's process per apply (the median over the
rounds: what the asyncio bridge costs, less noisy than wall time on a shared machine). Both stores
are made from a URL, so each has SQLAlchemy's default pool (up to 15 connections): the 50 tasks
share them.

PostgreSQL is reached at ``TAGRULES_BENCH_POSTGRES_URL`` (default: the local server); the benchmark
writes under its own table prefix and drops its tables afterwards. Run with
``python -m benchmarks service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy
from sqlalchemy.engine import make_url

from benchmarks.storage import _changed, _drop
from tagrules import AsyncSQLStore, AsyncTagger, SQLStore, StoreError, Tagger
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

__all__ = ["run", "table"]

POSTGRES_URL = os.environ.get(
    "TAGRULES_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
THREADS = 8
TASKS = 50

Customer = dict[str, Any]


def _snapshot(customer: Customer, round_number: int) -> Customer:
    return _changed(customer) if round_number % 2 == 0 else customer


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _threads(
    tagger: Tagger, customers: list[Customer], writers: int, round_number: int, latencies: list[float]
) -> float:
    """Seconds for ``writers`` threads to apply ``customers`` between them, one call each."""
    slices = [customers[number::writers] for number in range(writers)]

    def work(mine: list[Customer]) -> None:
        for customer in mine:
            started = time.perf_counter()
            tagger.apply(customer["id"], _snapshot(customer, round_number))
            latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=work, args=(mine,)) for mine in slices]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


async def _tasks(
    tagger: AsyncTagger, customers: list[Customer], writers: int, round_number: int, latencies: list[float]
) -> float:
    """Seconds for ``writers`` tasks to apply ``customers`` between them, one call each."""

    async def work(mine: list[Customer]) -> None:
        for customer in mine:
            started = time.perf_counter()
            await tagger.apply(customer["id"], _snapshot(customer, round_number))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(work(customers[number::writers]) for number in range(writers)))
    return time.perf_counter() - started


def _measure(url: str, per_candidate: int, rounds: int) -> dict[str, Any]:
    prefix = f"bench{secrets.token_hex(3)}_"
    names = ["sync, 1 thread", f"sync, {THREADS} threads", "async, 1 task", f"async, {TASKS} tasks"]
    everyone = list(generate_customers(per_candidate * len(names), seed=11))
    groups = {name: everyone[number :: len(names)] for number, name in enumerate(names)}
    catalog = load_catalog()
    store = SQLStore(url, prefix=prefix, migrate=True)
    loop = asyncio.new_event_loop()
    async_url = make_url(url).set(drivername="postgresql+asyncpg")
    async_store = AsyncSQLStore(async_url, prefix=prefix)
    try:
        tagger = Tagger(catalog, store)
        tagger.apply_many(((c["id"], c) for c in everyone), now=REFERENCE_NOW)
        async_tagger = AsyncTagger(catalog, async_store)
        candidates: dict[str, Callable[[int, list[float]], float]] = {
            names[0]: lambda n, lat: _threads(tagger, groups[names[0]], 1, n, lat),
            names[1]: lambda n, lat: _threads(tagger, groups[names[1]], THREADS, n, lat),
            names[2]: lambda n, lat: loop.run_until_complete(
                _tasks(async_tagger, groups[names[2]], 1, n, lat)
            ),
            names[3]: lambda n, lat: loop.run_until_complete(
                _tasks(async_tagger, groups[names[3]], TASKS, n, lat)
            ),
        }
        seconds: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        latencies: dict[str, list[float]] = {name: [] for name in names}
        for candidate in candidates.values():
            # a first round untimed: the pools open their connections (asyncpg's set up its codecs)
            candidate(0, [])
        for round_number in range(1, rounds + 1):
            for name, candidate in candidates.items():
                used = time.process_time()
                seconds[name].append(candidate(round_number, latencies[name]))
                cpu[name].append(time.process_time() - used)
        tagger.flush()
        loop.run_until_complete(async_tagger.flush())
    finally:
        loop.run_until_complete(async_store.close())
        loop.close()
        store.close()
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
            _drop(url, prefix)
    return {
        name: {
            "applies": per_candidate,
            "rounds": rounds,
            "per_second": per_candidate / statistics.median(seconds[name]),
            "p50_ms": 1000 * _percentile(latencies[name], 0.5),
            "p99_ms": 1000 * _percentile(latencies[name], 0.99),
            "cpu_ms_per_apply": 1000 * statistics.median(cpu[name]) / per_candidate,
        }
        for name in names
    }


def run(quick: bool = False) -> dict[str, Any]:
    per_candidate = 200 if quick else 1_000
    rounds = 1 if quick else 3
    try:
        return {"postgresql": _measure(POSTGRES_URL, per_candidate, rounds)}
    except StoreError as error:
        return {"postgresql": {"skipped": str(error)}}


def table(report: dict[str, Any]) -> str:
    figures = report["postgresql"]
    if "skipped" in figures:
        return f"postgresql skipped: {figures['skipped']}"
    lines = [f"{'writers (PostgreSQL)':<22} {'applies/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>7}"]
    for name, row in figures.items():
        lines.append(
            f"{name:<22} {row['per_second']:>10,.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['cpu_ms_per_apply']:>7.2f}"
        )
    best_sync, best_async = figures[f"sync, {THREADS} threads"], figures[f"async, {TASKS} tasks"]
    lines.append(
        f"{TASKS} tasks / {THREADS} threads: {best_async['per_second'] / best_sync['per_second']:.2f}x the "
        "applies per second"
    )
    return "\n".join(lines)
