"""The population diff in DuckDB: every customer's tags and the changes since the previous tags,
computed set-wise in one database, with the store's semantics.

The catalog query gives each row's state per tag (1, 0, NULL unknown); tags with no exact DuckDB SQL
get theirs from the :class:`~tagrules.Evaluator` over the rows streamed from DuckDB, handed back to
DuckDB as an Arrow table, and the diff is computed set-wise over both. The new tags are the tags
assigned, the previous tags of a rule that failed on the row (an unknown tag keeps its state), and
every previous tag, still active, of a customer the source does not hold (a run evaluates only
the customers it holds). A tag no longer active is removed from every customer, as
:meth:`~tagrules.Tagger.apply_many` retires it. The changes are the new tags not held before
(``added``) and the previous tags no longer held (``removed``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tagrules.catalog import Catalog
from tagrules.errors import SourceError
from tagrules.evaluation import Evaluator
from tagrules.sources.tables import _python_catalog, _rule_fields, stream_snapshots, tag_query

__all__ = ["CHANGES_VIEW", "TAGS_VIEW", "create_diff_views"]

#: the views holding the result, in the connection's temporary schema
TAGS_VIEW = "tagrules_tags"
CHANGES_VIEW = "tagrules_changes"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_diff_views(
    connection: Connection,
    catalog: Catalog,
    table: sa.FromClause,
    previous: str | None,
    now: datetime.datetime,
    *,
    id_column: str = "id",
    columns: Mapping[str, str] | None = None,
) -> None:
    """Create the temporary table ``tagrules_tags`` (``id``, ``tag``) and view ``tagrules_changes``
    (``id``, ``tag``, ``change``) over ``table``, against the relation named ``previous`` (its columns
    ``id`` and ``tag``; ``None``: no previous tags, every tag is added).

    Raises:
        SourceError: the table lacks the id column or a field's column.
    """
    if id_column not in table.c:
        raise SourceError(f"no column {id_column!r} for the customers' ids (--id-column)")
    query = tag_query(
        catalog,
        table,
        dialect="duckdb",
        now=now,
        columns=columns,
        id_columns=[id_column],
        mode="auto",
    )
    labels = list(query.tag_columns.items())
    python_keys = [d.key for d in catalog.active if d.key in query.in_python]
    tagged = query.select.subquery("tagged")
    # the state columns named by their tags, one row per customer and tag
    states = sa.select(
        sa.cast(tagged.c[id_column], sa.String()).label("id"),
        *[tagged.c[label].label(key) for key, label in labels],
    )
    raw: Any = connection.connection.driver_connection
    statement = states.compile(dialect=connection.dialect)
    parameters = [statement.params[name] for name in statement.positiontup or []]
    # a view cannot hold parameters: the states are a temporary table (one pass over the source)
    raw.execute(f"CREATE OR REPLACE TEMP TABLE tagrules_states AS {statement}", parameters)
    parts = []
    if labels:
        keys = ", ".join(_identifier(key) for key, _ in labels)
        parts.append(
            f"SELECT id, tag, state FROM tagrules_states UNPIVOT INCLUDE NULLS (state FOR tag IN ({keys}))"
        )
    if python_keys:
        raw.register(
            "tagrules_python_states",
            _python_states(connection, catalog, table, python_keys, now, id_column, columns),
        )
        parts.append("SELECT id, tag, state FROM tagrules_python_states")
    if not parts:
        parts.append("SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS tag, NULL::INTEGER AS state WHERE false")
    raw.execute("CREATE OR REPLACE TEMP VIEW tagrules_current AS " + " UNION ALL ".join(parts))
    if previous is None:
        raw.execute(
            "CREATE OR REPLACE TEMP VIEW tagrules_previous AS "
            "SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS tag WHERE false"
        )
    else:
        raw.execute(
            "CREATE OR REPLACE TEMP VIEW tagrules_previous AS SELECT DISTINCT CAST(id AS VARCHAR) AS id, "
            f"CAST(tag AS VARCHAR) AS tag FROM {previous}"
        )
    active = ", ".join(_literal(d.key) for d in catalog.active) or "NULL"
    raw.execute(
        f"CREATE OR REPLACE TEMP TABLE {TAGS_VIEW} AS "
        "SELECT id, tag FROM tagrules_current WHERE state = 1 "
        "UNION ALL SELECT p.id, p.tag FROM tagrules_previous AS p "
        "JOIN tagrules_current AS c ON c.id = p.id AND c.tag = p.tag WHERE c.state IS NULL "
        "UNION ALL SELECT p.id, p.tag FROM tagrules_previous AS p "
        f"ANTI JOIN tagrules_states AS s ON s.id = p.id WHERE p.tag IN ({active})"
    )
    raw.execute(
        f"CREATE OR REPLACE TEMP VIEW {CHANGES_VIEW} AS "
        f"SELECT n.id, n.tag, 'added' AS change FROM {TAGS_VIEW} AS n "
        "ANTI JOIN tagrules_previous AS p ON p.id = n.id AND p.tag = n.tag "
        "UNION ALL SELECT p.id, p.tag, 'removed' AS change FROM tagrules_previous AS p "
        f"ANTI JOIN {TAGS_VIEW} AS n ON n.id = p.id AND n.tag = p.tag"
    )


def _python_states(
    connection: Connection,
    catalog: Catalog,
    table: sa.FromClause,
    keys: list[str],
    now: datetime.datetime,
    id_column: str,
    columns: Mapping[str, str] | None,
) -> Any:
    """The states of ``keys`` (tags with no exact DuckDB SQL) on every row, by the Evaluator over the
    rows streamed from DuckDB: a pyarrow Table of ``id``, ``tag``, ``state`` (1, 0, null unknown)."""
    import pyarrow

    sub_catalog = _python_catalog(catalog, keys)
    evaluator = Evaluator(sub_catalog)
    needed = sorted(_rule_fields(sub_catalog, [definition.key for definition in sub_catalog.active]))
    fields = [id_column, *(name for name in needed if name != id_column)]
    mapping = {name: column for name, column in (columns or {}).items() if name != id_column}
    ids: list[str | None] = []
    tags: list[str] = []
    states: list[int | None] = []
    for snapshot in stream_snapshots(connection, table, catalog.schema, columns=mapping, fields=fields):
        identifier = snapshot.pop(id_column, None)
        evaluation = evaluator.evaluate(snapshot, now=now)
        shown = None if identifier is None else str(identifier)
        for key in keys:
            ids.append(shown)
            tags.append(key)
            states.append(None if key in evaluation.errors else int(key in evaluation.tags))
    return pyarrow.table(
        {
            "id": pyarrow.array(ids, pyarrow.string()),
            "tag": pyarrow.array(tags, pyarrow.string()),
            "state": pyarrow.array(states, pyarrow.int32()),
        }
    )
