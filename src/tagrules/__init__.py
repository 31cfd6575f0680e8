"""tagrules: rule-based customer tagging.

Tags are declarative definitions whose boolean rules, written in rule-engine's expression language,
run against a typed customer snapshot. An :class:`Evaluator` computes a customer's tags and
:func:`diff` tells what changed against the tags held before.
"""

from __future__ import annotations

from tagrules.catalog import Catalog, EvaluationUnit
from tagrules.definitions import TagDefinition, TagStatus
from tagrules.errors import DefinitionError, Problem, SnapshotError, TagrulesError
from tagrules.evaluation import Evaluation, Evaluator, TagDiff, TagExplanation, diff
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
    "Problem",
    "Schema",
    "SnapshotError",
    "TagDefinition",
    "TagDiff",
    "TagExplanation",
    "TagStatus",
    "TagrulesError",
    "__version__",
    "diff",
]
