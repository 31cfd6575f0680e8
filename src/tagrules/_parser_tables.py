"""rule-engine's parser tables, computed ahead of time.

rule-engine builds its LALR parser when it is first imported: PLY computes the parse tables from
the grammar, about half a second at the start of every process. PLY first tries to import them
from a tables module (``rule_engine.parser.parsetab``, which rule-engine does not ship) and uses
them when their signature matches the grammar. :mod:`tagrules._parsetab` holds the tables of the
rule-engine version tagrules is tested with (``make parser-tables`` writes it); the finder
installed here gives it to PLY under that name, only when PLY asks. With another rule-engine
version the signature differs and PLY builds its tables as before: slower, never wrong.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["TABLES_MODULE", "install"]

#: The module PLY imports the tables of rule-engine's parser from.
TABLES_MODULE = "rule_engine.parser.parsetab"
_TABLES_FILE = os.path.join(os.path.dirname(__file__), "_parsetab.py")


class _TablesFinder:
    """An import finder answering only for :data:`TABLES_MODULE`, with :mod:`tagrules._parsetab`."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != TABLES_MODULE:
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(name, _TABLES_FILE)


def install() -> None:
    """Put the finder last on ``sys.meta_path`` (once): a tables module rule-engine ships would win."""
    if not any(isinstance(finder, _TablesFinder) for finder in sys.meta_path):
        sys.meta_path.append(_TablesFinder())
