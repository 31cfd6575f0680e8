"""Tag packs shipped with tagrules: ready-made catalogs with their models and sample data."""

from __future__ import annotations

__all__: list[str] = []
