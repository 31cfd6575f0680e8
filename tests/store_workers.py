"""Worker processes for the concurrency and crash tests: ``python tests/store_workers.py KIND ...``.

* ``race URL PREFIX SEED ROUNDS CUSTOMERS START``: from the wall-clock time START on (so that all
  workers begin together), applies random snapshots to the same few customers, in small chunks, as
  fast as it can;
* ``race-async URL PREFIX SEED ROUNDS CUSTOMERS START``: the same in each of two tasks of an
  asyncio process sharing one AsyncTagger, over the database's asyncio driver;
* ``batch URL PREFIX COUNT CHUNK``: applies COUNT generated retail customers, printing ``committed N``
  after each chunk.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

from sqlalchemy.engine import make_url

from store_helpers import ASYNC_DRIVERS, catalog
from tagrules import AsyncSQLStore, AsyncTagger, SQLStore, Tagger
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

SNAPSHOTS = [
    {"spend": 2000.0, "orders": 4},
    {"spend": 200.0, "orders": 1},
    {"spend": 10.0, "orders": 0},
    {"spend": 1500.0, "orders": 1},
]


def race(url: str, prefix: str, seed: int, rounds: int, customers: int, start: float) -> None:
    rng = random.Random(seed)
    store = SQLStore(url, prefix=prefix)
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


async def race_async(url: str, prefix: str, seed: int, rounds: int, customers: int, start: float) -> None:
    parsed = make_url(url)
    async_url = parsed.set(drivername=ASYNC_DRIVERS[parsed.get_backend_name()])
    async with AsyncSQLStore(async_url, prefix=prefix) as store:
        tagger = AsyncTagger(catalog(), store)
        await asyncio.sleep(max(0.0, start - time.time()))
        ids = [f"c{number}" for number in range(customers)]

        async def task(rng: random.Random) -> int:
            retries = 0
            for _ in range(rounds):
                chosen = rng.sample(ids, k=max(1, customers // 2))
                items = [(customer_id, rng.choice(SNAPSHOTS)) for customer_id in chosen]
                report = await tagger.apply_many(items, now=REFERENCE_NOW, chunk_size=5)
                retries += report.retries
            return retries

        found = await asyncio.gather(*(task(random.Random(seed * 100 + number)) for number in range(2)))
    print(f"retries {sum(found)}", flush=True)


def batch(url: str, prefix: str, count: int, chunk: int) -> None:
    store = SQLStore(url, prefix=prefix)
    tagger = Tagger(load_catalog(), store)
    items = ((customer["id"], customer) for customer in generate_customers(count, seed=3))

    def progress(done: int) -> None:
        print(f"committed {done}", flush=True)

    tagger.apply_many(items, now=REFERENCE_NOW, chunk_size=chunk, progress=progress)
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    kind, url, prefix, *numbers = sys.argv[1:]
    if kind in ("race", "race-async"):
        seed, rounds, customers = map(int, numbers[:3])
        if kind == "race":
            race(url, prefix, seed, rounds, customers, float(numbers[3]))
        else:
            asyncio.run(race_async(url, prefix, seed, rounds, customers, float(numbers[3])))
    else:
        batch(url, prefix, *map(int, numbers))
