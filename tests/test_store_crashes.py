"""Concurrent writers and killed batches, with real processes on real databases."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from store_helpers import drop_store, unique_prefix
from tagrules import SQLStore

WORKERS = Path(__file__).with_name("store_workers.py")


def worker(*arguments: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKERS), *map(str, arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def prefixes(database_url: URL) -> Iterator[list[str]]:
    """Table prefixes to use in the test's database, each store set up; dropped afterwards."""
    made = [unique_prefix() for _ in range(2)]
    for prefix in made:
        SQLStore(database_url, prefix=prefix, migrate=True).close()
    yield made
    for prefix in made:
        drop_store(database_url, prefix)


def url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def snapshot_of(
    store: SQLStore,
) -> tuple[set[tuple[str, str, str]], collections.Counter[tuple[str, str, str]], list[tuple[object, ...]]]:
    """Memberships, the outbox as a multiset, and the history, of every customer of the store."""
    events = store.pending_events(limit=10_000_000)
    customers = sorted({event.customer_id for event in events})
    memberships = {(m.customer_id, m.tag, str(m.source)) for c in customers for m in store.memberships(c)}
    outbox = collections.Counter((e.customer_id, e.tag, str(e.change)) for e in events)
    history: list[tuple[Any, ...]] = sorted(
        (e.customer_id, e.tag, e.since, e.until, e.reason) for c in customers for e in store.history(c)
    )
    return memberships, outbox, history


class TestConcurrentWriters:
    @pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)
    def test_no_lost_update_and_no_duplicate_event(self, database_url: URL, prefixes: list[str]) -> None:
        """Four processes applying random snapshots to the same customers leave, for every customer and
        tag, an outbox alternating added/removed that replays to the stored memberships."""
        race_and_check(database_url, prefixes[0])

    @pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    def test_no_lost_update_when_every_insert_is_a_copy(self, database_url: URL, prefixes: list[str]) -> None:
        """The same race with every PostgreSQL insert written by ``COPY`` (however few its rows): a
        customer inserted by two writers at once, or changed since it was read, fails the later
        writer's batch, which starts over; nothing is lost or written twice."""
        race_and_check(database_url, prefixes[0], copy_from="1")


def race_and_check(database_url: URL, prefix: str, *, copy_from: str | None = None) -> None:
    """Four racing writer processes, then the outbox checked against memberships and history."""
    start = time.time() + 5
    extra = [] if copy_from is None else [copy_from]
    processes = [
        worker("race", url_text(database_url), prefix, seed, 12, 16, start, *extra) for seed in range(4)
    ]
    retries = 0
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        retries += int(out.split()[-1])
    store = SQLStore(database_url, prefix=prefix)
    try:
        events = store.pending_events(limit=1_000_000)
        assert events
        assert retries > 0, "the workers never raced: the test proves nothing"
        timeline: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        for event in events:
            timeline[event.customer_id, event.tag].append(event.change)
        for (customer_id, tag), changes in timeline.items():
            expected = ["added", "removed"] * len(changes)
            assert changes == expected[: len(changes)], (customer_id, tag, changes)
            held = tag in {m.tag for m in store.memberships(customer_id)}
            assert held == (changes[-1] == "added"), (customer_id, tag)
            periods = [e for e in store.history(customer_id) if e.tag == tag]
            assert len(periods) == changes.count("added")
            assert sum(1 for p in periods if p.until is not None) == changes.count("removed")
    finally:
        store.close()


class TestKilledBatch:
    def test_rerun_after_sigkill_converges(self, database_url: URL, prefixes: list[str]) -> None:
        """A batch killed with SIGKILL mid-run, then run again, leaves the same memberships, history and
        outbox events (none missing, none twice) as a run that was never interrupted."""
        kill_rerun_and_compare(database_url, prefixes)

    @pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    def test_copy_killed_mid_batch_converges_to_the_arrays_path(
        self, database_url: URL, prefixes: list[str]
    ) -> None:
        """A batch writing every insert with ``COPY``, killed with SIGKILL mid-run and run again,
        leaves exactly what an uninterrupted run writing with the INSERT
        of unnested arrays leaves: memberships, every history period, every event once."""
        kill_rerun_and_compare(database_url, prefixes, copy_from=("1", "none"))


def kill_rerun_and_compare(
    database_url: URL, prefixes: list[str], *, copy_from: tuple[str, str] | None = None
) -> None:
    """Kill a batch, run it again; run it uninterrupted into the other store; compare both stores."""
    interrupted, clean = prefixes
    url = url_text(database_url)
    count, chunk = 3000, 50
    paths = ([], []) if copy_from is None else ([copy_from[0]], [copy_from[1]])
    process = worker("batch", url, interrupted, count, chunk, *paths[0])
    assert process.stdout is not None
    committed = 0
    for line in process.stdout:
        committed = int(line.split()[1]) if line.startswith("committed") else committed
        if committed >= 5 * chunk:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the batch finished before it could be killed"
    # the rerun and the uninterrupted run write to stores of their own: run them side by side
    runs = [
        worker("batch", url, prefix, count, chunk, *path)
        for prefix, path in ((interrupted, paths[0]), (clean, paths[1]))
    ]
    for finished in runs:
        out, err = finished.communicate(timeout=600)
        assert finished.returncode == 0, err
        assert out.splitlines()[-1] == "done"
    store_a = SQLStore(database_url, prefix=interrupted)
    store_b = SQLStore(database_url, prefix=clean)
    try:
        memberships_a, outbox_a, history_a = snapshot_of(store_a)
        memberships_b, outbox_b, history_b = snapshot_of(store_b)
    finally:
        store_a.close()
        store_b.close()
    assert memberships_a == memberships_b
    assert outbox_a == outbox_b
    assert max(outbox_a.values()) == 1
    assert history_a == history_b
