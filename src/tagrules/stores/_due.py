"""A customer's :class:`~tagrules.stores.Due` as a SQL store keeps it: ``due_at`` and the lapses of
its computed memberships as one JSON text (``NULL`` while not known)."""

from __future__ import annotations

import datetime
import json
import types

from tagrules.stores._base import UNKNOWN_DUE, Due

__all__ = ["due_from", "lapses_text"]


def lapses_text(due: Due) -> str | None:
    """The JSON text of ``due``'s lapses, sorted by tag; ``None`` when not known."""
    if not due.known:
        return None
    return json.dumps(
        {tag: due.lapses[tag].astimezone(datetime.timezone.utc).isoformat() for tag in sorted(due.lapses)},
        separators=(",", ":"),
    )


def due_from(at: datetime.datetime | None, text: str | None) -> Due:
    """The :class:`Due` of a stored ``due_at`` and lapses text."""
    if text is None:
        return UNKNOWN_DUE
    lapses = {tag: datetime.datetime.fromisoformat(value) for tag, value in json.loads(text).items()}
    return Due(at, types.MappingProxyType(lapses))
