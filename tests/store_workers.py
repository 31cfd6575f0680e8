"""Worker processes for the concurrency and crash tests: ``python tests/store_workers.py KIND ...``.

* ``race URL PREFIX SEED ROUNDS CUSTOMERS START [COPY_FROM]``: from the wall-clock time START on (so
  that all workers begin together), applies random snapshots to the same few customers, in small
  chunks, as fast as it can;
* ``batch URL PREFIX COUNT CHUNK [COPY_FROM]``: applies COUNT generated retail customers, printing
  ``committed N`` after each chunk.

COPY_FROM sets how a PostgreSQL store writes its rows: ``1`` with ``COPY`` for every insert, ``none``
with the ``INSERT`` of unnested arrays (default: the store's own choice).
"""

from __future__ import annotations

import random
import sys
import time

from store_helpers import catalog
from tagrules import SQLStore, Tagger
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

SNAPSHOTS = [
    {"spend": 2000.0, "orders": 4},
    {"spend": 200.0, "orders": 1},
    {"spend": 10.0, "orders": 0},
    {"spend": 1500.0, "orders": 1},
]


def open_store(url: str, prefix: str, copy_from: str | None) -> SQLStore:
    store = SQLStore(url, prefix=prefix)
    if copy_from is not None:
        store._copy_from = None if copy_from == "none" else int(copy_from)
    return store


def race(
    url: str, prefix: str, seed: int, rounds: int, customers: int, start: float, copy_from: str | None
) -> None:
    rng = random.Random(seed)
    store = open_store(url, prefix, copy_from)
    tagger = Tagger(catalog(), store)
    time.sleep(max(0.0, start - time.time()))
    ids = [f"c{number}" for number in range(customers)]
    retries = 0
    for _ in range(rounds):
        chosen = rng.sample(ids, k=max(1, customers // 2))
        items = [(customer_id, rng.choice(SNAPSHOTS)) for customer_id in chosen]
        retries += tagger.apply_many(items, now=REFERENCE_NOW, chunk_size=5).retries
    store.close()
    print(f"retries {retries}", flush=True)


def batch(url: str, prefix: str, count: int, chunk: int, copy_from: str | None) -> None:
    store = open_store(url, prefix, copy_from)
    tagger = Tagger(load_catalog(), store)
    items = ((customer["id"], customer) for customer in generate_customers(count, seed=3))

    def progress(done: int) -> None:
        print(f"committed {done}", flush=True)

    tagger.apply_many(items, now=REFERENCE_NOW, chunk_size=chunk, progress=progress)
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    kind, url, prefix, *numbers = sys.argv[1:]
    if kind == "race":
        seed, rounds, customers = map(int, numbers[:3])
        copy_from = numbers[4] if len(numbers) > 4 else None
        race(url, prefix, seed, rounds, customers, float(numbers[3]), copy_from)
    else:
        batch(url, prefix, int(numbers[0]), int(numbers[1]), numbers[2] if len(numbers) > 2 else None)
