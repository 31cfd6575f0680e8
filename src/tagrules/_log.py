"""The loggers tagrules writes to: silent until the application configures logging.

Every logger is a child of ``tagrules``, which carries a :class:`logging.NullHandler` (as libraries
should), so nothing is printed unless the application adds a handler. Each record carries its
figures as ``extra`` fields (attributes of the :class:`logging.LogRecord`), for structured output:

* ``tagrules.runs``: a run started and finished (:meth:`Tagger.apply_many`, a set-wise retag), and a
  chunk read again after a concurrent update;
* ``tagrules.pushdown``: a tag evaluated in Python instead of the database, and why;
* ``tagrules.plugins``: a plugin that could not be loaded;
* ``tagrules.listeners``: a listener that raised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

__all__ = ["LISTENERS", "PLUGINS", "PUSHDOWN", "RUNS", "log_in_python"]

logging.getLogger("tagrules").addHandler(logging.NullHandler())

RUNS = logging.getLogger("tagrules.runs")
PUSHDOWN = logging.getLogger("tagrules.pushdown")
PLUGINS = logging.getLogger("tagrules.plugins")
LISTENERS = logging.getLogger("tagrules.listeners")


def log_in_python(in_python: Mapping[str, str], source: str) -> None:
    """Log each tag of ``in_python`` (tag key -> why) that is evaluated in Python, not in the database
    holding ``source``."""
    if not PUSHDOWN.isEnabledFor(logging.INFO):
        return
    for tag, reason in in_python.items():
        PUSHDOWN.info(
            "tag %r is evaluated in Python, not in the database: %s",
            tag,
            reason,
            extra={"tag": tag, "reason": reason, "source": source},
        )
