"""tagrules: rule-based customer tagging.

Tags are declarative definitions whose boolean rules, written in rule-engine's expression language,
run against a typed customer snapshot. An :class:`Evaluator` computes a customer's tags and
:func:`diff` tells what changed against the tags held before. A :class:`Tagger` keeps customers'
tags, their history and change events in a :class:`TagStore` (:class:`MemoryStore`, :class:`SQLStore`);
:class:`AsyncTagger` and :class:`AsyncSQLStore` do the same for asyncio services.
:func:`count_tags` and :func:`tag_query` evaluate a catalog inside a database, on a table of snapshots;
:func:`retag_from_table` retags a table's rows into a store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagrules._lazy import lazy_attributes
from tagrules._parser_tables import install as _install_parser_tables

_install_parser_tables()

if TYPE_CHECKING:
    from tagrules._flips import Flip
    from tagrules._impact import ImpactReport, TagImpact, impact
    from tagrules.async_tagger import AsyncTagger
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
    from tagrules.rules._explain import Explanation
    from tagrules.schema import FieldType, Schema
    from tagrules.sources.retag import RetagReport, retag_from_table
    from tagrules.sources.tables import CountReport, TagQuery, count_tags, tag_query
    from tagrules.stores import (
        AsyncSQLStore,
        CatalogVersion,
        ChangeEvent,
        Due,
        FeedConsumer,
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

# public name -> the module defining it; each module is imported when one of its names is first used,
# so that ``import tagrules`` costs almost nothing (no SQLAlchemy, pydantic or rule-engine yet)
_LAZY = {
    "ApplyReport": "tagrules.tagger",
    "AsyncSQLStore": "tagrules.stores",
    "AsyncTagger": "tagrules.async_tagger",
    "Catalog": "tagrules.catalog",
    "CatalogVersion": "tagrules.stores",
    "ChangeEvent": "tagrules.stores",
    "ConcurrentUpdate": "tagrules.errors",
    "CountReport": "tagrules.sources.tables",
    "DefinitionError": "tagrules.errors",
    "Due": "tagrules.stores",
    "FeedConsumer": "tagrules.stores",
    "Evaluation": "tagrules.evaluation",
    "EvaluationUnit": "tagrules.catalog",
    "Evaluator": "tagrules.evaluation",
    "Explanation": "tagrules.rules._explain",
    "FieldType": "tagrules.schema",
    "Flip": "tagrules._flips",
    "HistoryEntry": "tagrules.stores",
    "ImpactReport": "tagrules._impact",
    "InvalidArgument": "tagrules.errors",
    "Membership": "tagrules.stores",
    "MemoryStore": "tagrules.stores",
    "NotPushable": "tagrules.errors",
    "Override": "tagrules.stores",
    "Problem": "tagrules.errors",
    "RetagReport": "tagrules.sources.retag",
    "RunRecord": "tagrules.stores",
    "SQLStore": "tagrules.stores",
    "Schema": "tagrules.schema",
    "SnapshotError": "tagrules.errors",
    "SourceError": "tagrules.errors",
    "StaleSnapshot": "tagrules.errors",
    "StoreError": "tagrules.errors",
    "TagCounts": "tagrules.tagger",
    "TagDefinition": "tagrules.definitions",
    "TagDiff": "tagrules.evaluation",
    "TagExplanation": "tagrules.evaluation",
    "TagImpact": "tagrules._impact",
    "TagQuery": "tagrules.sources.tables",
    "TagSeries": "tagrules.stores",
    "TagStatistics": "tagrules.stores",
    "TagStatus": "tagrules.definitions",
    "TagStore": "tagrules.stores",
    "Tagger": "tagrules.tagger",
    "TagrulesError": "tagrules.errors",
    "TierFlow": "tagrules.stores",
    "TimeUnknown": "tagrules.errors",
    "count_tags": "tagrules.sources.tables",
    "diff": "tagrules.evaluation",
    "impact": "tagrules._impact",
    "retag_from_table": "tagrules.sources.retag",
    "tag_query": "tagrules.sources.tables",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "ApplyReport",
    "AsyncSQLStore",
    "AsyncTagger",
    "Catalog",
    "CatalogVersion",
    "ChangeEvent",
    "ConcurrentUpdate",
    "CountReport",
    "DefinitionError",
    "Due",
    "Evaluation",
    "EvaluationUnit",
    "Evaluator",
    "Explanation",
    "FeedConsumer",
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
