"""The public names of tagrules."""

from __future__ import annotations

import tagrules


class TestPublicApi:
    def test_all_is_pinned(self) -> None:
        """The package exports exactly the documented names, sorted."""
        assert tagrules.__all__ == [
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

    def test_every_exported_name_exists(self) -> None:
        """Each name in __all__ is importable from the package."""
        for name in tagrules.__all__:
            assert hasattr(tagrules, name), name

    def test_errors_share_one_base(self) -> None:
        """Every tagrules error is a TagrulesError, so one except clause catches them all."""
        assert issubclass(tagrules.DefinitionError, tagrules.TagrulesError)
        assert issubclass(tagrules.SnapshotError, tagrules.TagrulesError)
        assert issubclass(tagrules.StoreError, tagrules.TagrulesError)
        assert issubclass(tagrules.ConcurrentUpdate, tagrules.StoreError)
        assert issubclass(tagrules.NotPushable, tagrules.TagrulesError)
        assert issubclass(tagrules.SourceError, tagrules.TagrulesError)
        assert issubclass(tagrules.StaleSnapshot, tagrules.TagrulesError)
        assert issubclass(tagrules.InvalidArgument, tagrules.TagrulesError)
