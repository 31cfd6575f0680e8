"""A customer's :class:`~tagrules.stores.Due` as a SQL store keeps it: ``due_at``, and the lapses
of its computed memberships as one text, ``tag instant`` pairs separated by spaces (tags have no
spaces, ISO 8601 instants neither); empty when none lapses, ``NULL`` while not known. Read for every
customer of every chunk, so parsed with ``str.split`` and ``datetime.fromisoformat`` alone."""

from __future__ import annotations

import datetime

from tagrules.stores._base import UNKNOWN_DUE, Due

__all__ = ["due_from", "lapses_text"]

_UTC = datetime.timezone.utc


def lapses_text(due: Due) -> str | None:
    """The text of ``due``'s lapses, sorted by tag; ``None`` when not known."""
    if not due.known:
        return None
    return " ".join(f"{tag} {due.lapses[tag].astimezone(_UTC).isoformat()}" for tag in sorted(due.lapses))


def due_from(at: datetime.datetime | None, text: str | None) -> Due:
    """The :class:`Due` of a stored ``due_at`` and lapses text."""
    if text is None:
        return UNKNOWN_DUE
    if not text:
        return Due(at, {})
    parts = text.split(" ")
    return Due(at, dict(zip(parts[::2], map(datetime.datetime.fromisoformat, parts[1::2]), strict=True)))
