"""Tag packs: ready-made catalogs provided by plugins, tagrules' own retail pack among them.

A pack is found by name with :func:`load_pack`; the command line and the testing kit accept a pack
name wherever they accept a catalog file. Packs come from installed plugins
(:mod:`tagrules.plugins`); tagrules registers ``retail`` through its own entry point.
"""

from __future__ import annotations

from tagrules.catalog import Catalog
from tagrules.plugins import installed_plugins

__all__ = ["available_packs", "load_pack"]


def available_packs() -> list[str]:
    """The names of the packs that can be loaded."""
    return installed_plugins().packs


def load_pack(name: str) -> Catalog:
    """The catalog of the pack called ``name``.

    Raises:
        LookupError: no pack has that name (the message suggests the nearest one).
        DefinitionError: the pack's catalog is not valid.
    """
    return installed_plugins().load_pack(name)
