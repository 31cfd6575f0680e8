"""The population diff on Spark."""

from __future__ import annotations

__all__ = ["diff_tags"]


def diff_tags() -> None:
    raise NotImplementedError
