"""The population diff on DuckDB: every customer's tags and what changed since the previous tags,
computed set-wise in process (``tagrules[duckdb]``).

:func:`diff_tags` evaluates a catalog over a file (Parquet, a directory or glob of Parquet files,
CSV, JSON Lines) or a DataFrame (pandas, Polars) or pyarrow Table, and compares the tags with the
previous ones as a :class:`~tagrules.Tagger` run does with the tags in its store: a tag whose rule
failed on a row keeps its previous state, a tag no longer active in the catalog is removed from
every customer, and the customers the source does not hold keep their other tags. (Manual tags and
exclusions, which only a store holds, play no part.)
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagrules.catalog import Catalog
from tagrules.errors import SourceError
from tagrules.evaluation import resolve_now

__all__ = ["diff_tags"]


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
        catalog: the catalog; every active tag must have exact DuckDB SQL.
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
        NotPushable: a tag DuckDB cannot evaluate exactly.

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
