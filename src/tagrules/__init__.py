"""tagrules: rule-based customer tagging.

Tags are declarative definitions whose boolean rules, written in rule-engine's expression language,
run against a typed customer snapshot. An :class:`Evaluator` computes a customer's tags and
:func:`diff` tells what changed against the tags held before. A :class:`Tagger` keeps customers'
tags, their history and change events in a :class:`TagStore` (:class:`MemoryStore`, :class:`SQLStore`).
:func:`count_tags` and :func:`tag_query` evaluate a catalog inside a database, on a table of snapshots;
:func:`retag_from_table` retags a table's rows into a store.
"""

from __future__ import annotations

from tagrules._flips import Flip
from tagrules.catalog import Catalog, EvaluationUnit
from tagrules.definitions import TagDefinition, TagStatus
from tagrules.errors import (
    ConcurrentUpdate,
    DefinitionError,
    InvalidArgument,
    NotPushable,
    Problem,
    SnapshotError,
    SourceError,
    StaleSnapshot,
    StoreError,
    TagrulesError,
    TimeUnknown,
)
from tagrules.evaluation import Evaluation, Evaluator, TagDiff, TagExplanation, diff
from tagrules.impact import ImpactReport, TagImpact, impact
from tagrules.rules._explain import Explanation
from tagrules.schema import FieldType, Schema
from tagrules.sources.retag import RetagReport, retag_from_table
from tagrules.sources.tables import CountReport, TagQuery, count_tags, tag_query
from tagrules.stores import (
    ChangeEvent,
    HistoryEntry,
    Membership,
    MemoryStore,
    Override,
    RunRecord,
    SQLStore,
    TagSeries,
    TagStatistics,
    TagStore,
    TierFlow,
)
from tagrules.tagger import ApplyReport, TagCounts, Tagger

__version__ = "0.1.0"

__all__ = [
    "ApplyReport",
    "Catalog",
    "ChangeEvent",
    "ConcurrentUpdate",
    "CountReport",
    "DefinitionError",
    "Evaluation",
    "EvaluationUnit",
    "Evaluator",
    "Explanation",
    "FieldType",
    "Flip",
    "HistoryEntry",
    "ImpactReport",
    "InvalidArgument",
    "Membership",
    "MemoryStore",
    "NotPushable",
    "Override",
    "Problem",
    "RetagReport",
    "RunRecord",
    "SQLStore",
    "Schema",
    "SnapshotError",
    "SourceError",
    "StaleSnapshot",
    "StoreError",
    "TagCounts",
    "TagDefinition",
    "TagDiff",
    "TagExplanation",
    "TagImpact",
    "TagQuery",
    "TagSeries",
    "TagStatistics",
    "TagStatus",
    "TagStore",
    "Tagger",
    "TagrulesError",
    "TierFlow",
    "TimeUnknown",
    "__version__",
    "count_tags",
    "diff",
    "impact",
    "retag_from_table",
    "tag_query",
]
