"""What the commands share: reading catalogs, snapshot files and times."""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tagrules._files import huge_integer_problem
from tagrules.catalog import Catalog
from tagrules.errors import DefinitionError, Problem
from tagrules.evaluation import parse_now as parse_iso
from tagrules.plugins import PluginRegistry, installed_plugins
from tagrules.schema import Schema, suggest
from tagrules.stores._ids import customer_id_problem

__all__ = [
    "CommandError",
    "field_column",
    "load_catalog",
    "open_output",
    "parse_now",
    "plugins",
    "plural",
    "read_jsonl",
    "read_snapshots",
    "snapshot_id",
]


class CommandError(Exception):
    """A failure the command reports in one line and exits 1 for."""


def plural(count: int, word: str) -> str:
    """``1 tag``, ``2 tags``, ``0 tags``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def field_column(text: str) -> tuple[str, str]:
    """``--column FIELD=COLUMN``: a field read from a column of another name."""
    field, separator, column = text.partition("=")
    if not separator or not field or not column:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=COLUMN")
    return field, column


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
    if not path.exists() and not path.suffix:
        hint = suggest(reference, list(registry.packs)) or f" (packs: {', '.join(sorted(registry.packs))})"
        raise DefinitionError([Problem(f"no such file or pack{hint}", file=reference)])
    return registry.load_catalog(path)


def print_problems(error: DefinitionError, stream: IO[str]) -> None:
    """Every problem of a definition error, one per line."""
    for problem in error.problems:
        print(problem, file=stream)


def _open_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from None


def _parse_line(raw: bytes, number: int) -> tuple[Any | None, str | None]:
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 text (byte {error.start + 1} of the line)"
    if not line.strip():
        return None, None
    try:
        return json.loads(line), None
    except json.JSONDecodeError as error:
        return None, f"not valid JSON ({error.msg}, column {error.colno})"
    except RecursionError:
        return None, "not valid JSON (nested too deeply)"
    except ValueError:  # int() refusing a huge integer
        where = huge_integer_problem(line) or "a value out of range"
        return None, f"not valid JSON ({where.replace('line 1, ', '')})"


def _jsonl_lines(path: str, stream: IO[bytes]) -> Iterator[tuple[int, Any | None, str | None]]:
    try:
        for number, raw in enumerate(stream, start=1):
            value, problem = _parse_line(raw, number)
            if value is not None or problem is not None:
                yield number, value, problem
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_jsonl(path: str) -> Iterator[tuple[int, Any | None, str | None]]:
    """Each line of a JSON Lines file: (line number, parsed value or None, error or None).

    The file is opened at once (a missing file is a ``CommandError`` here, before anything else is
    done); its lines are read as the iterator is. Blank lines are skipped, a UTF-8 byte-order mark is
    accepted, a line that is not UTF-8 is that line's error. ``-`` reads standard input.
    """
    return _jsonl_lines(path, _open_input(path))


def snapshot_id(value: dict[str, Any], field: str) -> tuple[str | int | None, str | None]:
    """The id in ``field`` of a snapshot, or ``None`` and what is wrong with it."""
    if field not in value:
        return None, f"no {field!r} field"
    identifier = value[field]
    if not isinstance(identifier, (str, int)) or isinstance(identifier, bool):
        return None, f"the {field!r} field must be a string or an integer"
    problem = customer_id_problem(str(identifier))
    if problem is not None:
        return None, f"field {field!r}: {problem}"
    return identifier, None


def _snapshot_problem(value: dict[str, Any], schema: Schema) -> str | None:
    values, bad = schema.read(value)
    for name, read in values.items():
        if type(read) is float and math.isinf(read):
            bad[name] = "an infinite number (Infinity, or beyond 1.8e308) is not a number a rule can compare"
    if not bad:
        return None
    return "; ".join(f"field {name!r}: {message}" for name, message in bad.items())


def read_snapshots(
    path: str, schema: Schema, *, id_field: str = "id", failures: list[str]
) -> Iterator[tuple[int, str | int, dict[str, Any]]]:
    """The good snapshots of a JSON Lines file as ``(line number, id, snapshot)``; every bad line is
    reported on stderr (``FILE:LINE: problem; line skipped``) and its problem added to ``failures``.

    A line is bad when it is not a JSON object, has no usable id in ``id_field``, or holds a value
    the schema refuses; the ids are those every store can hold, for ``evaluate`` as for ``run``. The
    file is opened at once, as :func:`read_jsonl` does.
    """
    lines = read_jsonl(path)

    def snapshots() -> Iterator[tuple[int, str | int, dict[str, Any]]]:
        for number, value, problem in lines:
            if problem is None and not isinstance(value, dict):
                problem = "a snapshot must be a JSON object"
            if problem is None and isinstance(value, dict):
                identifier, problem = snapshot_id(value, id_field)
                problem = problem or _snapshot_problem(value, schema)
                if problem is None and identifier is not None:
                    yield number, identifier, value
                    continue
            failures.append(problem or "")
            print(f"{path}:{number}: {problem}; line skipped", file=sys.stderr)

    return snapshots()


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
