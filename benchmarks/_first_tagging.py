"""One first tagging in a process of its own: ``python -m benchmarks._first_tagging URL PREFIX COUNT EVENTS``.

Run by :mod:`benchmarks.writes` with the library it measures first on ``PYTHONPATH`` (the working
tree's, or an earlier commit's), so it uses only what every version of the library has had: the
store, the tagger and the retail pack. Prints the customers per second as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from tagrules import SQLStore, Tagger
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog

__all__ = ["main"]

CHUNK_SIZE = 1000


def main(argv: list[str]) -> None:
    url, prefix, count, events = argv[0], argv[1], int(argv[2]), argv[3] == "events"
    customers = list(generate_customers(count, seed=1))
    options: dict[str, Any] = {} if events else {"emit_events": False}
    with SQLStore(url, prefix=prefix, migrate=True) as store:
        tagger = Tagger(load_catalog(), store)
        started = time.perf_counter()
        tagger.apply_many(
            ((c["id"], c) for c in customers), now=REFERENCE_NOW, chunk_size=CHUNK_SIZE, **options
        )
        seconds = time.perf_counter() - started
    print(json.dumps({"per_second": count / seconds}))


if __name__ == "__main__":
    main(sys.argv[1:])
