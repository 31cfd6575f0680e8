"""What the commands share: reading catalogs, snapshot files and times."""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tagrules.catalog import Catalog
from tagrules.errors import DefinitionError
from tagrules.evaluation import parse_now as parse_iso
from tagrules.plugins import PluginRegistry, installed_plugins

__all__ = ["CommandError", "load_catalog", "open_output", "parse_now", "plugins", "read_jsonl"]


class CommandError(Exception):
    """A failure the command reports in one line and exits 1 for."""


def parse_now(text: str) -> datetime.datetime:
    """``--now``: an ISO 8601 datetime; naive means UTC."""
    try:
        return parse_iso(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@functools.cache
def plugins() -> PluginRegistry:
    """The installed plugins; each one that failed to load is reported once on stderr."""
    registry = installed_plugins()
    for failure in registry.failures:
        print(f"tagrules: warning: {failure}; it is not used", file=sys.stderr)
    return registry


def load_catalog(reference: str) -> Catalog:
    """A catalog file, or the name of a pack (``retail``, or one an installed plugin provides).

    Catalog files see the functions and derived fields of every installed plugin.

    Raises:
        DefinitionError: the catalog is not valid (the caller prints its problems).
    """
    registry = plugins()
    path = Path(reference)
    if not path.exists() and reference in registry.packs:
        return registry.load_pack(reference)
    return registry.load_catalog(path)


def print_problems(error: DefinitionError, stream: IO[str]) -> None:
    """Every problem of a definition error, one per line."""
    for problem in error.problems:
        print(problem, file=stream)


def read_jsonl(path: str) -> Iterator[tuple[int, Any | None, str | None]]:
    """Each line of a JSON Lines file: (line number, parsed value or None, error or None).

    Blank lines are skipped. ``-`` reads standard input.
    """
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line), None
            except json.JSONDecodeError as error:
                yield number, None, f"not valid JSON ({error.msg}, column {error.colno})"
            except RecursionError:
                yield number, None, "not valid JSON (nested too deeply)"
    except UnicodeDecodeError as error:
        raise CommandError(f"{path}: not UTF-8 text (byte {error.start})") from None
    finally:
        if stream is not sys.stdin:
            stream.close()


@contextmanager
def open_output(path: str | None) -> Iterator[IO[str]]:
    """Standard output, or a file written through a temporary name and moved in place when done."""
    if path is None or path == "-":
        yield sys.stdout
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as stream:
            yield stream
        partial.replace(target)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        partial.unlink(missing_ok=True)
