"""tagrules-loyalty: an example tagrules plugin.

Everything a plugin can provide, in one package: a pack (``loyalty``), typed rule functions
(``$days_since``, ``$count_within``), a derived field (``days_since_last_order``) and a change
listener. tagrules finds it through the ``tagrules.plugins`` entry point in ``pyproject.toml``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tagrules.extensions import DerivedField, RuleFunction
from tagrules.plugins import Plugin
from tagrules.stores import ChangeEvent

__all__ = ["count_within", "days_since", "log_change", "plugin"]

logger = logging.getLogger("tagrules_loyalty")


def days_since(now: datetime.datetime, moment: datetime.datetime | None) -> int | None:
    """Whole days from ``moment`` to ``now``; ``None`` when there is no moment."""
    if moment is None:
        return None
    return (now - moment).days


def count_within(now: datetime.datetime, events: tuple[Any, ...], window: datetime.timedelta) -> int:
    """How many ``events`` fall within ``window`` before ``now``.

    An event is a datetime or a record with an ``at`` datetime (an order, a visit).
    """
    start = now - window
    count = 0
    for event in events:
        moment = event if isinstance(event, datetime.datetime) else event["at"]
        if start <= moment <= now:
            count += 1
    return count


def _days_since_last_order(snapshot: Mapping[str, Any], now: datetime.datetime) -> int | None:
    # the snapshot holds the schema's values: an aware UTC datetime, whatever the input gave
    last = snapshot.get("last_order_at")
    return None if last is None else (now - last).days


def log_change(event: ChangeEvent) -> None:
    """Log one tag change (a listener: called after the change is committed).

    With ``TAGRULES_LOYALTY_AUDIT`` set to a file name, each change is also appended to that file
    as one JSON line, an audit trail a compliance team can keep.
    """
    logger.info("%s %s %s (%s)", event.customer_id, event.change, event.tag, event.reason)
    audit = os.environ.get("TAGRULES_LOYALTY_AUDIT")
    if audit:
        with open(audit, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(event.to_data()) + "\n")


plugin = Plugin(
    name="loyalty",
    description="loyalty-programme tags and date functions (an example plugin)",
    packs={"loyalty": Path(__file__).with_name("catalog.yaml")},
    functions=[
        RuleFunction(
            "days_since",
            days_since,
            arguments=["datetime | None"],
            returns="int | None",
            uses_now=True,
            description="whole days from a moment to now; null for a null moment",
        ),
        RuleFunction(
            "count_within",
            count_within,
            arguments=["list", "timedelta"],
            returns="int",
            uses_now=True,
            description="how many events (datetimes, or records with 'at') fall within a window ending now",
        ),
    ],
    derived_fields=[
        DerivedField(
            "days_since_last_order",
            "int | None",
            _days_since_last_order,
            reads=["last_order_at"],
            description="whole days since the last order; null without orders",
        )
    ],
    listeners=[log_change],
)
