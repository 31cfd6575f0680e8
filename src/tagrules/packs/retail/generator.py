"""A deterministic generator of realistic retail customers, for demos, tests and benchmarks.

The same ``seed`` and ``now`` always give the same customers, on every machine and Python version
(only :class:`random.Random`'s documented, stable methods are used).
"""

from __future__ import annotations

import datetime
import json
import math
import random
from collections.abc import Iterator
from typing import Any

__all__ = ["REFERENCE_NOW", "customer_to_json", "generate_customers"]

#: The default ``now`` of generated samples, so that they are the same whenever they are made.
REFERENCE_NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)

_CATEGORIES = ("electronics", "beauty", "home", "food", "fashion")
_CITY_TIERS = (("tier1", 0.25), ("tier2", 0.35), ("tier3", 0.25), ("rural", 0.15))
_OCCUPATIONS = (
    ("employee", 0.42),
    ("civil_servant", 0.08),
    ("teacher", 0.07),
    ("student", 0.15),
    ("freelancer", 0.13),
    ("other", 0.15),
)
# segment: (share, purchases a year, mean order value in CNY)
_SEGMENTS = (
    ("prospect", 0.18, 0.0, 0.0),
    ("lapsed", 0.12, 0.0, 400.0),
    ("occasional", 0.38, 4.0, 350.0),
    ("regular", 0.22, 16.0, 600.0),
    ("heavy", 0.10, 45.0, 2600.0),
)
_AOV_BY_TIER = {"tier1": 1.35, "tier2": 1.1, "tier3": 0.9, "rural": 0.7, None: 1.0}


def _choose(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    point = rng.random()
    for value, weight in weighted:
        point -= weight
        if point < 0:
            return value
    return weighted[-1][0]


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _thin(rng: random.Random, count: int, share: float) -> int:
    return sum(1 for _ in range(count) if rng.random() < share)


def _customer(rng: random.Random, number: int, now: datetime.datetime) -> dict[str, Any]:
    segment, _, yearly, order_value = _choose_segment(rng)
    tier = _choose(rng, _CITY_TIERS) if rng.random() > 0.04 else None
    age = int(min(80, max(16, rng.gauss(36, 12)))) if rng.random() > 0.06 else None
    occupation = _choose(rng, _OCCUPATIONS) if rng.random() > 0.1 else None
    if age is not None and age < 24 and rng.random() < 0.7:
        occupation = "student"
    registered_at = now - datetime.timedelta(days=rng.uniform(1, 5 * 365), seconds=rng.randrange(86400))
    tenure_days = (now - registered_at).days
    orders_365d = _poisson(rng, yearly * min(1.0, tenure_days / 365)) if yearly else 0
    orders_90d = _thin(rng, orders_365d, 0.25)
    orders_30d = _thin(rng, orders_90d, 0.35)
    earlier = 0
    if segment != "prospect" and tenure_days > 365:
        earlier = _poisson(rng, max(1.0, yearly) * (tenure_days - 365) / 365 * 0.8) + (segment == "lapsed")
    orders_total = orders_365d + earlier
    aov = order_value * _AOV_BY_TIER[tier] * rng.lognormvariate(0, 0.35)
    spend_365d = round(orders_365d * aov, 2)
    spend_total = round(spend_365d + earlier * aov * 0.9, 2)
    last_order_at = first_order_at = None
    if orders_total:
        if orders_30d:
            recent_days = rng.uniform(0, 30)
        elif orders_90d:
            recent_days = rng.uniform(30, 90)
        elif orders_365d:
            recent_days = rng.uniform(90, 365)
        else:
            recent_days = rng.uniform(365, max(366, tenure_days))
        last_order_at = now - datetime.timedelta(days=min(recent_days, tenure_days))
        first_order_at = registered_at + datetime.timedelta(
            days=rng.uniform(0, max(0.0, (last_order_at - registered_at).days))
        )
    favourite = rng.choice(_CATEGORIES)
    category_spend = {}
    if spend_365d:
        shares = [rng.random() + (2.0 if category == favourite else 0.0) for category in _CATEGORIES]
        total = sum(shares)
        category_spend = {
            category: round(spend_365d * share / total, 2)
            for category, share in zip(_CATEGORIES, shares, strict=False)
            if share / total > 0.08
        }
    engagement = {"prospect": 0.6, "lapsed": 0.2, "occasional": 1.0, "regular": 1.8, "heavy": 2.5}[segment]
    category_views = {
        category: views
        for category in _CATEGORIES
        if (views := _poisson(rng, engagement * (9 if category == favourite else 2))) > 0
    }
    service_contacts = _poisson(rng, 0.4 + engagement * 0.5)
    complaints = _thin(rng, service_contacts, 0.25)
    return {
        "id": f"C{number:07d}",
        "age": age,
        "gender": rng.choice(("male", "female")) if rng.random() > 0.05 else None,
        "city_tier": tier,
        "occupation": occupation,
        "registered_at": registered_at.replace(microsecond=0),
        "first_order_at": first_order_at.replace(microsecond=0) if first_order_at else None,
        "last_order_at": last_order_at.replace(microsecond=0) if last_order_at else None,
        "orders_30d": orders_30d,
        "orders_90d": orders_90d,
        "orders_365d": orders_365d,
        "orders_total": orders_total,
        "spend_365d": spend_365d,
        "spend_total": spend_total,
        "category_spend_365d": category_spend,
        "views_hot_30d": _poisson(rng, engagement * 2.5),
        "views_new_30d": _poisson(rng, engagement * 2.0),
        "category_views_30d": category_views,
        "intent_signals_30d": _poisson(rng, 0.8 if segment == "prospect" else 0.3 * engagement),
        "inquiries_90d": _poisson(rng, 0.3 * engagement),
        "complaints_90d": complaints,
        "service_contacts_90d": service_contacts,
        "online_service_share": round(rng.betavariate(2, 1.4), 2) if service_contacts else None,
        "personalised_requests_90d": _poisson(rng, 0.15 * engagement),
        "strategic_partner": segment == "heavy" and rng.random() < 0.05,
    }


def _choose_segment(rng: random.Random) -> tuple[str, float, float, float]:
    point = rng.random()
    for segment in _SEGMENTS:
        point -= segment[1]
        if point < 0:
            return segment
    return _SEGMENTS[-1]


def generate_customers(
    count: int, *, seed: int = 0, now: datetime.datetime = REFERENCE_NOW, start: int = 1
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` realistic customers as dicts fitting :class:`~tagrules.packs.retail.Customer`.

    Args:
        count: how many customers to make.
        seed: the random seed; the same seed gives the same customers.
        now: the time the customers' histories end at.
        start: the number of the first customer (ids are ``C0000001``, ``C0000002``, ...).

    Datetimes are timezone-aware ``datetime`` objects; :func:`customer_to_json` writes one as JSON.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    rng = random.Random(seed)
    for number in range(start, start + count):
        yield _customer(rng, number, now)


def customer_to_json(customer: dict[str, Any]) -> str:
    """One customer as a JSON line, datetimes in ISO 8601."""
    return json.dumps(
        customer,
        ensure_ascii=False,
        default=lambda value: value.isoformat() if isinstance(value, datetime.datetime) else str(value),
    )
