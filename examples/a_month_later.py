"""The demo's second month: rewrite a JSON Lines file of retail customers as they stand a month later.

Usage: python examples/a_month_later.py CUSTOMERS.jsonl > LATER.jsonl

Every customer's 30-day windows roll over (their orders of last month age into the 90-day window);
C0000001 places their first orders and spends, C0000003 becomes a big spender, C0000012 files three
complaints. The result is what ``tagrules run`` sees on the second run of ``make demo``.
"""

from __future__ import annotations

import json
import sys

LATER = "2026-06-28T12:00:00+00:00"


def a_month_later(customer: dict[str, object]) -> dict[str, object]:
    """The customer one month on: the 30-day counts rolled over, plus the demo's few events."""
    later = dict(customer)
    later["orders_30d"] = 0
    later["views_hot_30d"] = 0
    later["views_new_30d"] = 0
    if customer["id"] == "C0000001":
        later.update(orders_30d=3, orders_90d=3, orders_365d=3, orders_total=3, spend_365d=1200.0)
        later.update(spend_total=1200.0, first_order_at="2026-06-05T09:30:00+00:00", last_order_at=LATER)
    if customer["id"] == "C0000003":
        spend = float(customer["spend_365d"]) + 80_000.0  # type: ignore[arg-type]
        later.update(orders_30d=4, spend_365d=spend, last_order_at=LATER)
    if customer["id"] == "C0000012":
        later["complaints_90d"] = 3
    return later


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as stream:
        for line in stream:
            if line.strip():
                print(json.dumps(a_month_later(json.loads(line))))


if __name__ == "__main__":
    main()
