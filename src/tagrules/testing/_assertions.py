"""Asserting the tags a snapshot gets, with the explanation of every tag that is wrong."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

from pydantic import BaseModel

from tagrules.catalog import Catalog
from tagrules.evaluation import Evaluation, Evaluator, TagDiff, TagExplanation, parse_now, resolve_now
from tagrules.schema import Schema, suggest
from tagrules.stores import TagStore
from tagrules.tagger import ApplyReport, Tagger

__all__ = [
    "FrozenEvaluator",
    "FrozenTagger",
    "TagAssertionError",
    "TagMismatch",
    "assert_tags",
    "check_tags",
    "with_model_defaults",
]


@final
class FrozenEvaluator:
    """An evaluator whose clock is stopped: every evaluation sees the same ``now``.

    Args:
        catalog: the catalog to evaluate, or an :class:`~tagrules.Evaluator` of it to reuse.
        now: the time rules see as ``$now``; naive datetimes are UTC.

    Examples:
        >>> from datetime import datetime, timezone
        >>> catalog = Catalog(tags=[{"key": "adult", "rule": "age >= 18"}], schema={"age": "int"})
        >>> evaluator = FrozenEvaluator(catalog, datetime(2026, 6, 1, tzinfo=timezone.utc))
        >>> sorted(evaluator.evaluate({"age": 30}).tags)
        ['adult']
    """

    def __init__(self, catalog: Catalog | Evaluator, now: datetime.datetime) -> None:
        self.evaluator = catalog if isinstance(catalog, Evaluator) else Evaluator(catalog)
        self.catalog = self.evaluator.catalog
        self.now = resolve_now(now)

    def __repr__(self) -> str:
        return f"<FrozenEvaluator of {self.catalog!r} at {self.now.isoformat()}>"

    def evaluate(
        self, snapshot: Mapping[str, Any] | Any, tags: Iterable[str] = (), *, suppressed: Iterable[str] = ()
    ) -> Evaluation:
        """Evaluate ``snapshot`` at the frozen time (see :meth:`tagrules.Evaluator.evaluate`)."""
        return self.evaluator.evaluate(snapshot, now=self.now, tags=tags, suppressed=suppressed)

    def explain(
        self,
        snapshot: Mapping[str, Any] | Any,
        key: str,
        tags: Iterable[str] = (),
        *,
        suppressed: Iterable[str] = (),
    ) -> TagExplanation:
        """Explain tag ``key`` on ``snapshot`` at the frozen time (see :meth:`tagrules.Evaluator.explain`)."""
        return self.evaluator.explain(snapshot, key, now=self.now, tags=tags, suppressed=suppressed)


@final
class FrozenTagger:
    """A :class:`~tagrules.Tagger` whose clock is stopped: calls without ``now`` happen at the frozen time.

    ``apply``, ``apply_many``, ``retire``, ``include``, ``exclude`` and ``clear_override`` take
    ``now`` as the tagger's do, defaulting to the frozen time; everything else is the tagger's.

    Args:
        catalog: the catalog to evaluate, or a :class:`~tagrules.Tagger` to wrap.
        store: the store (when ``catalog`` is a catalog).
        now: the frozen time; naive datetimes are UTC.
        evaluator: the evaluator the tagger uses (default: ``Evaluator(catalog)``).

    Examples:
        >>> from datetime import datetime, timezone
        >>> from tagrules import MemoryStore
        >>> catalog = Catalog(tags=[{"key": "adult", "rule": "age >= 18"}], schema={"age": "int"})
        >>> tagger = FrozenTagger(catalog, MemoryStore(), now=datetime(2026, 6, 1, tzinfo=timezone.utc))
        >>> sorted(tagger.apply("c1", {"age": 30}).added)
        ['adult']
        >>> [entry.since.year for entry in tagger.store.history("c1")]
        [2026]
    """

    def __init__(
        self,
        catalog: Catalog | Tagger,
        store: TagStore | None = None,
        *,
        now: datetime.datetime,
        evaluator: Evaluator | None = None,
    ) -> None:
        if isinstance(catalog, Tagger):
            self.tagger = catalog
        elif store is None:
            raise TypeError("FrozenTagger needs a store when given a catalog")
        else:
            self.tagger = Tagger(catalog, store, evaluator=evaluator)
        self.now = resolve_now(now)

    def __repr__(self) -> str:
        return f"<FrozenTagger of {self.tagger.catalog!r} at {self.now.isoformat()}>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tagger, name)

    def _at(self, now: datetime.datetime | None) -> datetime.datetime:
        return self.now if now is None else now

    def apply(
        self, customer_id: str, snapshot: Mapping[str, Any] | Any, now: datetime.datetime | None = None
    ) -> TagDiff:
        """:meth:`tagrules.Tagger.apply` at the frozen time unless ``now`` is given."""
        return self.tagger.apply(customer_id, snapshot, self._at(now))

    def apply_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any] | Any]],
        now: datetime.datetime | None = None,
        **options: Any,
    ) -> ApplyReport:
        """:meth:`tagrules.Tagger.apply_many` at the frozen time unless ``now`` is given."""
        return self.tagger.apply_many(items, self._at(now), **options)

    def retire(self, now: datetime.datetime | None = None, **options: Any) -> int:
        """:meth:`tagrules.Tagger.retire` at the frozen time unless ``now`` is given."""
        return self.tagger.retire(self._at(now), **options)

    def include(
        self, customer_id: str, tag: str, *, by: str, reason: str, now: datetime.datetime | None = None
    ) -> None:
        """:meth:`tagrules.Tagger.include` at the frozen time unless ``now`` is given."""
        self.tagger.include(customer_id, tag, by=by, reason=reason, now=self._at(now))

    def exclude(
        self, customer_id: str, tag: str, *, by: str, reason: str, now: datetime.datetime | None = None
    ) -> None:
        """:meth:`tagrules.Tagger.exclude` at the frozen time unless ``now`` is given."""
        self.tagger.exclude(customer_id, tag, by=by, reason=reason, now=self._at(now))

    def clear_override(self, customer_id: str, tag: str, *, now: datetime.datetime | None = None) -> None:
        """:meth:`tagrules.Tagger.clear_override` at the frozen time unless ``now`` is given."""
        self.tagger.clear_override(customer_id, tag, now=self._at(now))


@final
@dataclass(frozen=True)
class TagMismatch:
    """A tag that is not as expected: lacked, held, or known where its rule was expected to fail.

    Attributes:
        key: the tag.
        expected: ``True`` when the snapshot should have the tag, ``False`` when it should not (a
            tag whose rule failed is unknown, not absent), ``None`` when its rule should fail.
        explanation: why the tag is or is not assigned, with the rule's explanation tree (and the
            error of a failed rule).
    """

    key: str
    expected: bool | None
    explanation: TagExplanation

    def __str__(self) -> str:
        outcome = self.explanation.outcome
        if self.expected is None:
            head = f"tag {self.key!r}: expected unknown (a failed rule), but {outcome}"
        elif self.expected:
            head = f"tag {self.key!r}: expected, but {outcome}"
        elif outcome == "unknown":
            head = f"tag {self.key!r}: not expected, but unknown (its rule failed, so absence is not known)"
        else:
            head = f"tag {self.key!r}: not expected, but {outcome}"
        body = "\n".join("    " + line for line in str(self.explanation).splitlines())
        return f"{head}\n{body}"


class TagAssertionError(AssertionError):
    """A snapshot does not have the tags it should; ``mismatches`` explains each wrong tag."""

    mismatches: tuple[TagMismatch, ...]

    def __init__(self, mismatches: Iterable[TagMismatch], heading: str = "") -> None:
        self.mismatches = tuple(mismatches)
        count = len(self.mismatches)
        lines = [heading or f"{count} tag{'s' if count != 1 else ''} not as expected:"]
        lines.extend(str(mismatch) for mismatch in self.mismatches)
        super().__init__("\n".join(lines))


def with_model_defaults(schema: Schema, snapshot: Any) -> Any:
    """``snapshot`` with the defaults of the schema's pydantic model for the fields it leaves out.

    A mapping snapshot of a catalog whose schema is a model need not repeat every default
    (``orders_30d: 0``); snapshots of inline schemas and model instances are returned as they are.
    """
    model = schema.model
    if model is None or not isinstance(snapshot, Mapping):
        return snapshot
    completed = dict(snapshot)
    for name, info in model.model_fields.items():
        if name not in completed and name in schema.fields and not info.is_required():
            value = info.get_default(call_default_factory=True)
            completed[name] = value.model_dump() if isinstance(value, BaseModel) else value
    return completed


def _keys(catalog: Catalog, keys: Iterable[str] | str, role: str) -> list[str]:
    chosen = [keys] if isinstance(keys, str) else list(keys)
    known = [tag.key for tag in catalog]
    for key in chosen:
        if key not in catalog:
            raise KeyError(f"{role}: no tag {key!r} in the catalog{suggest(key, known)}")
    return chosen


def as_time(now: datetime.datetime | str | None) -> datetime.datetime | None:
    """``now`` as a datetime: ISO 8601 text is parsed as the ini option and markers are (naive is UTC).

    Raises:
        ValueError: the text is not an ISO 8601 datetime.
    """
    if isinstance(now, str):
        return parse_now(now)
    return None if now is None else resolve_now(now)


def check_tags(
    evaluator: Evaluator | FrozenEvaluator,
    snapshot: Mapping[str, Any] | Any,
    has: Iterable[str] | str = (),
    lacks: Iterable[str] | str = (),
    *,
    unknown: Iterable[str] | str = (),
    now: datetime.datetime | str | None = None,
    tags: Iterable[str] = (),
) -> list[TagMismatch]:
    """The tags of ``has`` the snapshot lacks, of ``lacks`` it has or cannot tell, of ``unknown`` it knows.

    A tag whose rule failed on the snapshot is unknown: it satisfies neither ``has`` nor ``lacks``,
    only ``unknown``.

    Raises:
        KeyError: a key of ``has``, ``lacks`` or ``unknown`` is not a tag of the catalog.
        ValueError: a key is in two of them, or ``now`` is text that is not an ISO 8601 datetime.
    """
    catalog = evaluator.catalog
    expectations: dict[str, bool | None] = {}
    for role, keys, expected in (("has", has, True), ("lacks", lacks, False), ("unknown", unknown, None)):
        for key in _keys(catalog, keys, role):
            if key in expectations and expectations[key] is not expected:
                first = {True: "has", False: "lacks", None: "unknown"}[expectations[key]]
                raise ValueError(f"tags in both {first!r} and {role!r}: {key}")
            expectations[key] = expected
    manual = tuple(tags)
    moment = as_time(now)
    if isinstance(evaluator, FrozenEvaluator):
        moment = evaluator.now if moment is None else moment
        plain = evaluator.evaluator
    else:
        moment = resolve_now(moment)
        plain = evaluator
    snapshot = with_model_defaults(catalog.schema, snapshot)
    evaluation = plain.evaluate(snapshot, now=moment, tags=manual)
    mismatches = []
    for key, expected in expectations.items():
        state = None if key in evaluation.errors else key in evaluation.tags
        if state is not expected:
            explanation = plain.explain(snapshot, key, now=moment, tags=manual)
            mismatches.append(TagMismatch(key, expected, explanation))
    return mismatches


def assert_tags(
    snapshot: Mapping[str, Any] | Any,
    has: Iterable[str] | str = (),
    lacks: Iterable[str] | str = (),
    *,
    evaluator: Evaluator | FrozenEvaluator,
    unknown: Iterable[str] | str = (),
    now: datetime.datetime | str | None = None,
    tags: Iterable[str] = (),
) -> None:
    """Assert that ``snapshot`` gets every tag of ``has``, none of ``lacks``, and fails ``unknown``'s rules.

    The pytest plugin's ``assert_tags`` fixture is this function with ``evaluator`` bound to the
    ``tagrules_evaluator`` fixture, so that tests write ``assert_tags(snapshot, has={"vip"})``.

    Args:
        snapshot: the customer's data, a mapping or a pydantic model. Fields a mapping leaves out take
            the defaults of the schema's pydantic model, if the schema is one.
        has: the tags the snapshot must get.
        lacks: the tags the snapshot must not get. A tag whose rule fails on the snapshot is unknown,
            not absent: it fails ``lacks`` (the message gives the rule's error).
        evaluator: evaluates the catalog; a :class:`FrozenEvaluator` gives its ``now``.
        unknown: the tags whose rules must fail on the snapshot (their state is unknown).
        now: the evaluation time, overriding the frozen one: a datetime, or ISO 8601 text such as
            ``"2026-06-01T00:00:00Z"`` (naive is UTC).
        tags: manual tags, as in :meth:`tagrules.Evaluator.evaluate`.

    Raises:
        TagAssertionError: some tags are wrong; the message explains the rule of each on the snapshot.
        KeyError: a key of ``has``, ``lacks`` or ``unknown`` is not a tag of the catalog.
        ValueError: a key is given twice, or ``now`` is text that is not an ISO 8601 datetime.

    Examples:
        >>> from datetime import datetime, timezone
        >>> catalog = Catalog(tags=[{"key": "adult", "rule": "age >= 18"}], schema={"age": "int"})
        >>> evaluator = FrozenEvaluator(catalog, datetime(2026, 6, 1, tzinfo=timezone.utc))
        >>> assert_tags({"age": 30}, has={"adult"}, evaluator=evaluator)
        >>> assert_tags({"age": 17}, has={"adult"}, evaluator=evaluator)
        Traceback (most recent call last):
        ...
        tagrules.testing._assertions.TagAssertionError: 1 tag not as expected:
        tag 'adult': expected, but not assigned
            adult: not assigned (the rule is false)
            age >= 18 -> false (age = 17)
    """
    __tracebackhide__ = True
    mismatches = check_tags(evaluator, snapshot, has, lacks, unknown=unknown, now=now, tags=tags)
    if mismatches:
        raise TagAssertionError(mismatches)
