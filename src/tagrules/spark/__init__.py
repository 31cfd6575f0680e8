"""A catalog on Apache Spark (``tagrules[spark]``): the same tags as the Python evaluator, computed
where the data is.

:func:`tag_columns` adds one boolean column per active tag to a DataFrame; :func:`count_tags`
counts them into a :class:`~tagrules.sources.tables.CountReport`; :func:`diff_tags` gives every
row's tags and what changed against the tags of a previous run. The tags Spark SQL evaluates exactly
(:mod:`tagrules.sql._spark`) run in one query with named parameters; the others run with the
compiled Python evaluator on the executors. pyspark is imported only when one of them runs.
"""

from __future__ import annotations

from tagrules.spark._columns import count_tags, tag_columns
from tagrules.spark._diff import diff_tags

__all__ = ["count_tags", "diff_tags", "tag_columns"]
