"""tagrules: rule-based customer tagging.

Tags are declarative definitions whose boolean rules, written in rule-engine's expression language,
run against a typed customer snapshot. An :class:`Evaluator` computes a customer's tags and
:func:`diff` tells what changed against the tags held before. :func:`count_tags` and
:func:`tag_query` evaluate a catalog inside a database, on a table of snapshots.
"""

from __future__ import annotations

from tagrules.catalog import Catalog, EvaluationUnit
from tagrules.definitions import TagDefinition, TagStatus
from tagrules.errors import DefinitionError, NotPushable, Problem, SnapshotError, SourceError, TagrulesError
from tagrules.evaluation import Evaluation, Evaluator, TagDiff, TagExplanation, diff
from tagrules.pushdown import TagCounts, TagQuery, count_tags, tag_query
from tagrules.rules._explain import Explanation
from tagrules.schema import FieldType, Schema

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "DefinitionError",
    "Evaluation",
    "EvaluationUnit",
    "Evaluator",
    "Explanation",
    "FieldType",
    "NotPushable",
    "Problem",
    "Schema",
    "SnapshotError",
    "SourceError",
    "TagCounts",
    "TagDefinition",
    "TagDiff",
    "TagExplanation",
    "TagQuery",
    "TagStatus",
    "TagrulesError",
    "__version__",
    "count_tags",
    "diff",
    "tag_query",
]
