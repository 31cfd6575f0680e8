"""Tag packs: ready-made catalogs, shipped with tagrules or installed as plugins.

A pack is found by name with :func:`load_pack`; the command line and the testing kit accept a pack
name wherever they accept a catalog file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from tagrules.catalog import Catalog
from tagrules.schema import suggest

__all__ = ["available_packs", "load_pack"]

#: Packs shipped with tagrules: name -> "module:function" returning the pack's catalog.
_BUILTIN_PACKS = {"retail": "tagrules.packs.retail:load_catalog"}


def available_packs() -> list[str]:
    """The names of the packs that can be loaded."""
    return sorted(_BUILTIN_PACKS)


def load_pack(name: str) -> Catalog:
    """The catalog of the pack called ``name``.

    Raises:
        LookupError: no pack has that name (the message suggests the nearest one).
    """
    target = _BUILTIN_PACKS.get(name)
    if target is None:
        raise LookupError(f"no pack named {name!r}{suggest(name, _BUILTIN_PACKS)}")
    module_name, _, function_name = target.partition(":")
    loader: Callable[[], Catalog] = getattr(importlib.import_module(module_name), function_name)
    return loader()
