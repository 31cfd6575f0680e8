"""Columnar files in the CLI: Parquet and CSV snapshots read through DuckDB, Parquet results and
samples written through pyarrow (``tagrules[duckdb]``)."""

from __future__ import annotations

import datetime
import glob
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagrules.catalog import Catalog
from tagrules.cli._common import CommandError, open_output
from tagrules.errors import SourceError
from tagrules.evaluation import Evaluation
from tagrules.schema import FieldType, Schema

__all__ = [
    "Writer",
    "evaluate_file",
    "is_columnar",
    "result_writer",
    "write_evaluation",
    "write_parquet_rows",
]

#: Writes one result: the id, the tags, the errors by tag, and extra keys (JSON Lines only).
Writer = Callable[[Any, Sequence[str], Mapping[str, str], Mapping[str, Any]], None]

_BATCH = 10_000


def is_columnar(path: str) -> bool:
    """Whether ``path`` names snapshots DuckDB reads: Parquet (a file, a directory, a glob) or CSV."""
    if path == "-":
        return False
    lowered = path.lower()
    return lowered.endswith((".parquet", ".csv")) or Path(path).is_dir() or glob.has_magic(path)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise CommandError("writing Parquet needs pyarrow (install tagrules[duckdb])") from None
    return pyarrow


@contextmanager
def _parquet_file(path: str, schema: Any) -> Iterator[Any]:
    """A Parquet writer to ``path``, written through a temporary name and moved in place when done."""
    pyarrow = _pyarrow()
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with pyarrow.parquet.ParquetWriter(str(partial), schema) as writer:
            yield writer
        partial.replace(target)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def result_writer(path: str | None) -> Iterator[Writer]:
    """A function writing one evaluation result: a JSON Lines object to stdout or ``path``, or, where
    ``path`` ends in ``.parquet``, a row of a Parquet file (columns ``id``, ``tags`` list of strings,
    ``errors`` map of tag key to message)."""
    if path is None or not path.lower().endswith(".parquet"):
        with open_output(path) as output:

            def write_line(
                identifier: Any, tags: Sequence[str], errors: Mapping[str, str], extra: Mapping[str, Any]
            ) -> None:
                result: dict[str, Any] = {"id": identifier, "tags": list(tags)}
                if errors:
                    result["errors"] = dict(errors)
                result.update(extra)
                output.write(json.dumps(result, ensure_ascii=False) + "\n")

            yield write_line
        return
    pyarrow = _pyarrow()
    schema = pyarrow.schema(
        [
            ("id", pyarrow.string()),
            ("tags", pyarrow.list_(pyarrow.string())),
            ("errors", pyarrow.map_(pyarrow.string(), pyarrow.string())),
        ]
    )
    rows: list[dict[str, Any]] = []
    with _parquet_file(path, schema) as writer:

        def write_row(
            identifier: Any, tags: Sequence[str], errors: Mapping[str, str], extra: Mapping[str, Any]
        ) -> None:
            rows.append({"id": str(identifier), "tags": list(tags), "errors": list(errors.items())})
            if len(rows) >= _BATCH:
                writer.write_table(pyarrow.Table.from_pylist(rows, schema=schema))
                rows.clear()

        yield write_row
        if rows:
            writer.write_table(pyarrow.Table.from_pylist(rows, schema=schema))


def write_evaluation(
    write: Writer, identifier: Any, evaluation: Evaluation, *, valid_until: bool = False
) -> None:
    """One result: the tags sorted, the errors by tag key (and ``valid_until``, when asked)."""
    extra: dict[str, Any] = {}
    if valid_until:
        until = evaluation.valid_until
        extra["valid_until"] = None if until is None else until.isoformat()
    write(identifier, sorted(evaluation.tags), dict(sorted(evaluation.errors.items())), extra)


def evaluate_file(
    catalog: Catalog,
    path: str,
    id_field: str,
    now: datetime.datetime,
    write: Writer,
    *,
    valid_until: bool = False,
) -> int:
    """Evaluate every row of a Parquet or CSV source in order; a row the schema refuses is reported
    on stderr by its number and skipped. Returns the number of rows skipped.

    Raises:
        CommandError: the file cannot be read, or lacks the id column or a column a rule reads.
    """
    # DuckDB and SQLAlchemy only once a file is read: `evaluate` of JSON Lines imports neither
    from tagrules.duckdb import evaluate

    skipped = 0

    def invalid(number: int, problem: str) -> None:
        nonlocal skipped
        skipped += 1
        print(f"{path}: row {number}: {problem}; row skipped", file=sys.stderr)

    try:
        results = evaluate(
            catalog, path, now=now, id_column=id_field, valid_until=valid_until, invalid=invalid
        )
        for identifier, evaluation in results:
            write_evaluation(write, identifier, evaluation, valid_until=valid_until)
    except SourceError as error:
        message = str(error)
        if message.endswith("for the snapshots' ids"):
            message += " (--id-field)"
        raise CommandError(message) from None
    return skipped


def _arrow_type(pyarrow: Any, field_type: FieldType) -> Any:
    kind = field_type.kind
    if kind == "enum":
        return pyarrow.int64() if field_type.is_number else pyarrow.string()
    simple = {
        "int": pyarrow.int64(),
        "float": pyarrow.float64(),
        "str": pyarrow.string(),
        "bool": pyarrow.bool_(),
        "datetime": pyarrow.timestamp("us", tz="UTC"),
        "date": pyarrow.date32(),
    }
    # collections as JSON text, which push-down and the Python side both read
    return simple.get(kind, pyarrow.string())


def _arrow_value(value: Any, field_type: FieldType) -> Any:
    if value is None:
        return None
    if field_type.kind in ("list", "set", "dict", "object"):
        return json.dumps(value, sort_keys=True, default=str)
    if field_type.kind == "enum":
        return getattr(value, "value", value)
    return value


def write_parquet_rows(path: str, schema: Schema, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write snapshots of ``schema`` to a Parquet file in batches, one column per field (collections as
    JSON text), through a temporary name moved in place when done."""
    pyarrow = _pyarrow()
    arrow_schema = pyarrow.schema(
        [(name, _arrow_type(pyarrow, field_type)) for name, field_type in schema.fields.items()]
    )
    batch: list[dict[str, Any]] = []
    with _parquet_file(path, arrow_schema) as writer:
        for row in rows:
            batch.append({name: _arrow_value(row.get(name), field) for name, field in schema.fields.items()})
            if len(batch) >= _BATCH:
                writer.write_table(pyarrow.Table.from_pylist(batch, schema=arrow_schema))
                batch.clear()
        writer.write_table(pyarrow.Table.from_pylist(batch, schema=arrow_schema))
