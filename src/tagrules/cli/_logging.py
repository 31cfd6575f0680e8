"""The command's log: ``-v``/``-vv`` and ``--log-format``, written to standard error.

Without ``-v`` or ``--log-format`` the command configures nothing and the library stays silent.
``-v`` shows the ``tagrules.*`` records of level INFO and above, ``-vv`` DEBUG too; ``--log-format
json`` alone shows WARNING and above. Only the ``tagrules`` loggers are shown (not the drivers').
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["JsonFormatter", "command_log", "level_of"]

#: the attributes every LogRecord has: whatever else a record carries came in ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the
    record's ``extra`` fields, and ``exception`` (the traceback) when it carries one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in data:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        return moment.isoformat(timespec="milliseconds")


class _StandardError(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment (the one a test captures, too)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def level_of(verbosity: int) -> int:
    """The level ``-v`` given ``verbosity`` times shows."""
    if verbosity >= 2:
        return logging.DEBUG
    return logging.INFO if verbosity == 1 else logging.WARNING


@contextmanager
def command_log(verbosity: int, log_format: str) -> Iterator[None]:
    """Show the ``tagrules`` loggers' records on standard error while the command runs."""
    logger = logging.getLogger("tagrules")
    handler = _StandardError()
    handler.setFormatter(JsonFormatter() if log_format == "json" else _TextFormatter())
    previous = logger.level
    logger.setLevel(level_of(verbosity))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
