"""Asserting the tags a snapshot gets, with the explanation of every tag that is wrong."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

from pydantic import BaseModel

from tagrules.catalog import Catalog
from tagrules.evaluation import Evaluation, Evaluator, TagExplanation, resolve_now
from tagrules.schema import Schema, suggest

__all__ = [
    "FrozenEvaluator",
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
@dataclass(frozen=True)
class TagMismatch:
    """A tag a snapshot was expected to have and lacks, or to lack and has.

    Attributes:
        key: the tag.
        expected: ``True`` when the snapshot should have the tag, ``False`` when it should not.
        explanation: why the tag is or is not assigned, with the rule's explanation tree.
    """

    key: str
    expected: bool
    explanation: TagExplanation

    def __str__(self) -> str:
        if self.expected:
            head = f"tag {self.key!r}: expected, but {self.explanation.outcome}"
        else:
            head = f"tag {self.key!r}: not expected, but {self.explanation.outcome}"
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


def check_tags(
    evaluator: Evaluator | FrozenEvaluator,
    snapshot: Mapping[str, Any] | Any,
    has: Iterable[str] | str = (),
    lacks: Iterable[str] | str = (),
    *,
    now: datetime.datetime | None = None,
    tags: Iterable[str] = (),
) -> list[TagMismatch]:
    """The tags of ``has`` the snapshot lacks and of ``lacks`` it has, each explained.

    Raises:
        KeyError: a key of ``has`` or ``lacks`` is not a tag of the catalog.
        ValueError: a key is in both ``has`` and ``lacks``.
    """
    catalog = evaluator.catalog
    wanted = _keys(catalog, has, "has")
    unwanted = _keys(catalog, lacks, "lacks")
    both = sorted(set(wanted) & set(unwanted))
    if both:
        raise ValueError(f"tags in both 'has' and 'lacks': {', '.join(both)}")
    manual = tuple(tags)
    if isinstance(evaluator, FrozenEvaluator):
        moment = evaluator.now if now is None else resolve_now(now)
        plain = evaluator.evaluator
    else:
        moment = resolve_now(now)
        plain = evaluator
    snapshot = with_model_defaults(catalog.schema, snapshot)
    assigned = plain.evaluate(snapshot, now=moment, tags=manual).tags
    mismatches = []
    for key, expected in [*((key, True) for key in wanted), *((key, False) for key in unwanted)]:
        if (key in assigned) != expected:
            explanation = plain.explain(snapshot, key, now=moment, tags=manual)
            mismatches.append(TagMismatch(key, expected, explanation))
    return mismatches


def assert_tags(
    snapshot: Mapping[str, Any] | Any,
    has: Iterable[str] | str = (),
    lacks: Iterable[str] | str = (),
    *,
    evaluator: Evaluator | FrozenEvaluator,
    now: datetime.datetime | None = None,
    tags: Iterable[str] = (),
) -> None:
    """Assert that ``snapshot`` gets every tag of ``has`` and none of ``lacks``.

    The pytest plugin's ``assert_tags`` fixture is this function with ``evaluator`` bound to the
    ``tagrules_evaluator`` fixture, so that tests write ``assert_tags(snapshot, has={"vip"})``.

    Args:
        snapshot: the customer's data, a mapping or a pydantic model. Fields a mapping leaves out take
            the defaults of the schema's pydantic model, if the schema is one.
        has: the tags the snapshot must get.
        lacks: the tags the snapshot must not get.
        evaluator: evaluates the catalog; a :class:`FrozenEvaluator` gives its ``now``.
        now: the evaluation time, overriding the frozen one.
        tags: manual tags, as in :meth:`tagrules.Evaluator.evaluate`.

    Raises:
        TagAssertionError: some tags are wrong; the message explains the rule of each on the snapshot.
        KeyError: a key of ``has`` or ``lacks`` is not a tag of the catalog.

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
    mismatches = check_tags(evaluator, snapshot, has, lacks, now=now, tags=tags)
    if mismatches:
        raise TagAssertionError(mismatches)
