"""A population on DuckDB (``tagrules[duckdb]``): the population diff, every customer's tags and
what changed since the previous tags, computed set-wise in process; and each row's evaluation.

:func:`diff_tags` evaluates a catalog over a file (Parquet, a directory or glob of Parquet files,
CSV, JSON Lines) or a DataFrame (pandas, Polars) or pyarrow Table, and compares the tags with the
previous ones as a :class:`~tagrules.Tagger` run does with the tags in its store: a tag whose rule
failed on a row keeps its previous state, a tag no longer active in the catalog is removed from
every customer, and the customers the source does not hold keep their other tags. (Manual tags and
exclusions, which only a store holds, play no part.)

:func:`evaluate` gives each row's :class:`~tagrules.Evaluation` of a file or a DataFrame, in input
order: what ``tagrules evaluate CATALOG PATH --engine duckdb`` prints.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagrules.catalog import Catalog
from tagrules.errors import SourceError
from tagrules.evaluation import Evaluation, Evaluator, resolve_now

__all__ = ["diff_tags", "evaluate"]


def diff_tags(
    catalog: Catalog,
    source: str | Path | Any,
    previous: str | Path | Any | None = None,
    *,
    now: datetime.datetime | None = None,
    id_column: str = "id",
    columns: Mapping[str, str] | None = None,
) -> tuple[Any, Any]:
    """Every customer's tags and the changes against ``previous``, computed in DuckDB.

    Args:
        catalog: the catalog; tags with no exact DuckDB SQL are evaluated in Python over the rows
            DuckDB reads, and their states join the diff in DuckDB.
        source: the snapshots: a file path (Parquet, a directory or glob of Parquet files, CSV,
            JSON Lines), or a pandas or Polars DataFrame or a pyarrow Table.
        previous: the previous tags (columns ``id``, ``tag``): a Parquet file, a DataFrame or a
            pyarrow Table; ``None``: none, every tag is added.
        now: the time the rules see as ``$now``; default: the current time.
        id_column: the source's customer id column (read as text).
        columns: field name -> column name, where they differ.

    Returns:
        Two pyarrow Tables: the tags (``id``, ``tag``) and the changes (``id``, ``tag``, ``change``
        = ``added`` or ``removed``), in no particular order.

    Raises:
        SourceError: a file is missing or unreadable, or a column is missing or of the wrong type.

    Examples:
        >>> import pyarrow
        >>> from tagrules import Catalog
        >>> catalog = Catalog([{"key": "big", "rule": "spend >= 100"}], {"spend": "float"})
        >>> rows = pyarrow.table({"id": ["a", "b"], "spend": [150.0, 20.0]})
        >>> before = pyarrow.table({"id": ["b"], "tag": ["big"]})
        >>> tags, changes = diff_tags(catalog, rows, before)
        >>> sorted((row["id"], row["change"]) for row in changes.to_pylist())
        [('a', 'added'), ('b', 'removed')]
    """
    from tagrules.sources._population import CHANGES_VIEW, TAGS_VIEW

    with population_diff(catalog, source, previous, resolve_now(now), id_column, columns) as raw:
        return _arrow(raw, TAGS_VIEW), _arrow(raw, CHANGES_VIEW)


def _arrow(raw: Any, view: str) -> Any:
    relation = raw.sql(f"SELECT * FROM {view}")
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    return fetch()


@contextmanager
def population_diff(
    catalog: Catalog,
    source: str | Path | Any,
    previous: str | Path | Any | None,
    now: datetime.datetime,
    id_column: str,
    columns: Mapping[str, str] | None,
) -> Iterator[Any]:
    """A DuckDB connection holding the diff's views ``tagrules_tags`` and ``tagrules_changes``."""
    from tagrules.sources._duckdb import check_columns, file_source, frame_source, is_frame, parquet_reader
    from tagrules.sources._population import create_diff_views

    where = "the DataFrame" if is_frame(source) else str(source)
    opened = frame_source(source) if is_frame(source) else file_source(str(source))
    with opened as (connection, table):
        check_columns(catalog, table, where, columns)
        raw: Any = connection.connection.driver_connection
        relation = None
        if previous is not None:
            if is_frame(previous):
                raw.register("tagrules_previous_rows", previous)
                relation = "tagrules_previous_rows"
            else:
                relation = parquet_reader(str(previous))
            described = raw.sql(f"SELECT * FROM {relation} LIMIT 0").columns
            missing = [name for name in ("id", "tag") if name not in described]
            if missing:
                shown = "the previous tags" if is_frame(previous) else str(previous)
                raise SourceError(f"{shown}: no column {missing[0]!r} (the previous tags hold id and tag)")
        create_diff_views(connection, catalog, table, relation, now, id_column=id_column, columns=columns)
        yield raw


def evaluate(
    catalog: Catalog,
    source: str | Path | Any,
    *,
    now: datetime.datetime | None = None,
    id_column: str = "id",
    valid_until: bool = False,
    invalid: Callable[[int, str], None] | None = None,
) -> Iterator[tuple[str | int, Evaluation]]:
    """Each row's id and evaluation of ``catalog``, in input order: the rows read by DuckDB from a
    file or scanned in place from a DataFrame, typed by the catalog's schema and evaluated by the
    :class:`~tagrules.Evaluator` (every tag, whether or not it has SQL).

    Args:
        catalog: the catalog whose active tags are evaluated.
        source: a file path (Parquet, a directory or glob of Parquet files, CSV, JSON Lines), or a
            pandas or Polars DataFrame or a pyarrow Table.
        now: the time the rules see as ``$now``; default: the current time (the same for every row).
        id_column: the column holding each row's id (text or an integer).
        valid_until: compute :attr:`~tagrules.Evaluation.valid_until` too.
        invalid: called with a row's number (from 1) and what is wrong with it when the schema
            refuses the row, which is then skipped; default: :class:`SourceError` is raised.

    Raises:
        SourceError: (when the first row is asked for) the file is missing or unreadable, a column is
            missing or of the wrong type; (at the row, without ``invalid``) a row the schema refuses.

    Examples:
        >>> import pyarrow
        >>> from tagrules import Catalog
        >>> catalog = Catalog([{"key": "big", "rule": "spend >= 100"}], {"spend": "float"})
        >>> rows = pyarrow.table({"id": ["a", "b"], "spend": [150.0, 20.0]})
        >>> [(identifier, sorted(result.tags)) for identifier, result in evaluate(catalog, rows)]
        [('a', ['big']), ('b', [])]
    """
    moment = resolve_now(now)  # one instant for every row, fixed at the call
    return _evaluations(catalog, source, moment, id_column, valid_until, invalid)


def _evaluations(
    catalog: Catalog,
    source: str | Path | Any,
    now: datetime.datetime,
    id_column: str,
    valid_until: bool,
    invalid: Callable[[int, str], None] | None,
) -> Iterator[tuple[str | int, Evaluation]]:
    from tagrules.sources._duckdb import check_columns, file_source, frame_source, is_frame
    from tagrules.sources.tables import stream_snapshots

    where = "the DataFrame" if is_frame(source) else str(source)
    opened = frame_source(source) if is_frame(source) else file_source(str(source))
    evaluator = Evaluator(catalog)
    schema = catalog.schema
    with opened as (connection, table):
        check_columns(catalog, table, where, None)
        if id_column not in table.c:
            raise SourceError(f"{where}: no column {id_column!r} for the snapshots' ids")
        fields = [id_column, *(name for name in schema.fields if name != id_column)]
        for number, snapshot in enumerate(stream_snapshots(connection, table, schema, fields=fields), 1):
            identifier = snapshot.get(id_column)
            if isinstance(identifier, (str, int)) and not isinstance(identifier, bool):
                problem = _schema_problem(catalog, snapshot)
                if problem is None:
                    yield identifier, evaluator.evaluate(snapshot, now=now, valid_until=valid_until)
                    continue
            else:
                problem = f"the {id_column!r} column must hold a string or an integer"
            if invalid is None:
                raise SourceError(f"{where}: row {number}: {problem}")
            invalid(number, problem)


def _schema_problem(catalog: Catalog, snapshot: Any) -> str | None:
    """What the schema refuses in ``snapshot``, field by field; ``None`` when it reads it."""
    _, bad = catalog.schema.read(snapshot)
    if not bad:
        return None
    return "; ".join(f"field {name!r}: {message}" for name, message in bad.items())
