"""Evaluating a catalog on snapshots, and diffing the result against the tags held before."""

from __future__ import annotations

import datetime
import decimal
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

from pydantic import BaseModel

from tagrules._compiled import compile_catalog
from tagrules.catalog import Catalog, EvaluationUnit
from tagrules.errors import SnapshotError
from tagrules.rules._explain import Explanation, describe_failure, explain_statement
from tagrules.rules._language import DECIMAL_CONTEXT, UTC, Scope, evaluation_state
from tagrules.schema import FailedValue

__all__ = ["Evaluation", "Evaluator", "TagDiff", "TagExplanation", "diff", "parse_now", "resolve_now"]

_NO_ERRORS: Mapping[str, str] = types.MappingProxyType({})
_NONE: frozenset[str] = frozenset()


def parse_now(text: str) -> datetime.datetime:
    """An evaluation time written as ISO 8601 text (``Z`` for UTC; naive means UTC).

    Raises:
        ValueError: the text is not such a datetime (the message shows an example).
    """
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(f'{text!r} is not an ISO 8601 datetime such as "2026-06-01T00:00:00Z"') from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def resolve_now(now: datetime.datetime | None) -> datetime.datetime:
    """The evaluation time: ``now`` itself, UTC when naive, the current UTC time when ``None``."""
    if type(now) is datetime.datetime and now.tzinfo is not None:
        return now
    if now is None:
        return datetime.datetime.now(UTC)
    if not isinstance(now, datetime.datetime):
        raise TypeError(f"now must be a datetime, not {type(now).__name__}")
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now


@final
@dataclass(frozen=True, slots=True)
class Evaluation:
    """The tags a catalog assigns to one snapshot at one time.

    Attributes:
        tags: the keys of the tags assigned.
        errors: tag key -> why its rule failed on this snapshot. Such a tag's state is unknown: it is
            not in ``tags``, and :func:`diff` keeps whatever state it had before.
        now: the time the rules saw as ``$now``.
    """

    tags: frozenset[str]
    errors: Mapping[str, str]
    now: datetime.datetime

    def to_data(self) -> dict[str, Any]:
        """Plain data: sorted tag keys, the errors, and ``now`` in ISO 8601."""
        return {"tags": sorted(self.tags), "errors": dict(self.errors), "now": self.now.isoformat()}


# Evaluations are made once per snapshot: skip the frozen dataclass's slower __init__ on that path.
_new_evaluation = object.__new__
_set_tags = Evaluation.__dict__["tags"].__set__
_set_errors = Evaluation.__dict__["errors"].__set__
_set_now = Evaluation.__dict__["now"].__set__


@final
@dataclass(frozen=True, slots=True)
class TagDiff:
    """How a customer's tags change from what they held to what an evaluation assigns.

    Attributes:
        added: tags assigned now and not held before.
        removed: tags held before and known not to apply now.
        unchanged: tags held before and still held, including tags whose rule failed (unknown tags
            keep their previous state).
        errors: tag key -> why its rule failed, as in :attr:`Evaluation.errors`.
    """

    added: frozenset[str]
    removed: frozenset[str]
    unchanged: frozenset[str]
    errors: Mapping[str, str]

    @property
    def tags(self) -> frozenset[str]:
        """The tags held after the change: ``previous - removed + added``."""
        return self.unchanged | self.added

    @property
    def changed(self) -> bool:
        """Whether anything was added or removed."""
        return bool(self.added or self.removed)


def diff(previous_tags: Iterable[str], evaluation: Evaluation) -> TagDiff:
    """Compare the tags held before with an evaluation.

    A tag whose rule failed (in ``evaluation.errors``) never moves: held before, it stays held;
    not held, it is not added.

    Examples:
        >>> from datetime import datetime, timezone
        >>> now = datetime(2026, 6, 1, tzinfo=timezone.utc)
        >>> change = diff({"vip", "churned"}, Evaluation(frozenset({"vip", "spend_high"}), {}, now))
        >>> sorted(change.added), sorted(change.removed), sorted(change.unchanged)
        (['spend_high'], ['churned'], ['vip'])
    """
    previous = previous_tags if isinstance(previous_tags, frozenset) else frozenset(previous_tags)
    current = evaluation.tags
    errors = evaluation.errors
    removed = previous - current
    if errors:
        removed = removed.difference(errors)
    return TagDiff(
        added=current - previous,
        removed=removed,
        unchanged=previous - removed,
        errors=errors,
    )


@final
@dataclass(frozen=True)
class TagExplanation:
    """Why one tag was or was not assigned to one snapshot.

    Attributes:
        key: the tag.
        outcome: ``assigned``, ``not assigned`` or ``unknown``.
        reason: the outcome in words (the rule was false; a higher tier won; the rule failed ...).
        rule: the rule's explanation tree, or ``None`` when the rule did not run.
    """

    key: str
    outcome: str
    reason: str
    rule: Explanation | None

    def __str__(self) -> str:
        lines = [f"{self.key}: {self.outcome} ({self.reason})"]
        if self.rule is not None:
            lines.extend(self.rule.lines())
        return "\n".join(lines)


class _Run:
    """The state of one evaluation: the scope rules see, what is assigned, and what failed."""

    __slots__ = ("assigned", "errors", "results", "scope", "suppressed")

    def __init__(self, scope: Scope, suppressed: frozenset[str]) -> None:
        self.scope = scope
        self.suppressed = suppressed
        self.assigned: set[str] = set()
        self.errors: dict[str, str] = {}
        self.results: dict[str, bool] = {}


@final
class Evaluator:
    """Computes the tags a catalog assigns to snapshots.

    Args:
        catalog: the validated catalog whose active tags are evaluated.
        compiled: evaluate with the catalog compiled to Python (the default), or with rule-engine's
            interpreter. Both give the same tags and errors; the compiled form is much faster.

    Examples:
        >>> from datetime import datetime, timezone
        >>> catalog = Catalog(
        ...     tags=[
        ...         {"key": "spend_high", "rule": "spend_365d >= 100000", "group": "spend", "priority": 2},
        ...         {"key": "spend_mid", "rule": "spend_365d >= 30000", "group": "spend", "priority": 1},
        ...         {"key": "vip", "rule": "'spend_high' in tags and orders_30d >= 3"},
        ...     ],
        ...     schema={"spend_365d": "float", "orders_30d": "int"},
        ... )
        >>> evaluation = Evaluator(catalog).evaluate(
        ...     {"spend_365d": 150000.0, "orders_30d": 4}, now=datetime(2026, 6, 1, tzinfo=timezone.utc)
        ... )
        >>> sorted(evaluation.tags)
        ['spend_high', 'vip']
    """

    def __init__(self, catalog: Catalog, *, compiled: bool = True) -> None:
        self.catalog = catalog
        self._compiled = compile_catalog(catalog) if compiled else None
        self._function = self._compiled.function if self._compiled is not None else None
        self._context = catalog.language.context
        self._order = catalog.evaluation_order
        self._statements = {key: catalog.rule(key).statement for unit in self._order for key in unit.keys}
        self._dependencies = {key: sorted(catalog.dependencies.get(key, ())) for key in self._statements}
        used = frozenset().union(*(catalog.rule(key).fields for key in self._statements))
        self._derived = tuple(field for name, field in catalog.derived_fields.items() if name in used)
        # compiled rules take ``now`` as an argument; functions that use it read the evaluation state
        self._functions_use_now = any(function.uses_now for function in catalog.functions.values())

    def evaluate(
        self,
        snapshot: Mapping[str, Any] | Any,
        now: datetime.datetime | None = None,
        tags: Iterable[str] = (),
        *,
        suppressed: Iterable[str] = (),
    ) -> Evaluation:
        """Evaluate every active tag on ``snapshot`` at ``now``.

        Args:
            snapshot: the customer's data, a mapping or a pydantic model instance. Fields the schema
                does not name are ignored; a missing or wrong-typed field fails only the rules that read it.
            now: the time ``$now`` and ``$today`` stand for; naive datetimes are UTC; default: the
                current time.
            tags: tags given by people (manual tags); rules see them in ``tags``.
            suppressed: tags people have excluded for this customer; they are never assigned and rules do
                not see them (in a group, the next matching tier is assigned instead).

        Returns:
            The tags assigned and, per failed rule, why it failed.
        """
        # the common case first, checked cheaply: an aware UTC datetime needs no resolving
        moment = now if type(now) is datetime.datetime and now.tzinfo is UTC else resolve_now(now)
        if self._derived:
            snapshot = self._with_derived(snapshot, moment)
        excluded = (
            _NONE
            if not suppressed
            else suppressed
            if type(suppressed) is frozenset
            else frozenset(suppressed)
        )
        function = self._function
        if function is not None:
            if self._functions_use_now:
                evaluation_state.now = moment
            assigned, failures = function(snapshot, moment, tags, excluded)
        else:
            values, bad = self.catalog.schema.read(snapshot)
            run = _Run(Scope(values, bad, set(tags)), excluded)
            self._run(run, moment, self._order)
            assigned, failures = run.assigned, run.errors
        # the Evaluation built in place: one call less on the path every snapshot takes
        evaluation = _new_evaluation(Evaluation)
        _set_tags(evaluation, frozenset(assigned))
        _set_errors(evaluation, types.MappingProxyType(failures) if failures else _NO_ERRORS)
        _set_now(evaluation, moment)
        return evaluation

    @property
    def interpreted(self) -> Mapping[str, str]:
        """Tag key -> why its rule runs in rule-engine's interpreter rather than compiled."""
        if self._compiled is None:
            return types.MappingProxyType(dict.fromkeys(self._statements, "the evaluator is interpreted"))
        return self._compiled.interpreted

    def validate(self, snapshot: Mapping[str, Any] | Any) -> None:
        """Check that ``snapshot`` fits the schema: every field present and of its type.

        Raises:
            SnapshotError: naming each missing or bad field.
        """
        values, bad = self.catalog.schema.read(snapshot)
        for name in self.catalog.schema.fields:
            if name not in values and name not in bad and name not in self.catalog.derived_fields:
                bad[name] = "missing"
        if bad:
            raise SnapshotError(bad)

    def explain(
        self,
        snapshot: Mapping[str, Any] | Any,
        key: str,
        now: datetime.datetime | None = None,
        tags: Iterable[str] = (),
        *,
        suppressed: Iterable[str] = (),
    ) -> TagExplanation:
        """Explain why the tag ``key`` is or is not assigned to ``snapshot`` at ``now``.

        Raises:
            KeyError: the catalog has no tag ``key``.
        """
        definition = self.catalog[key]
        if not definition.is_active:
            return TagExplanation(key, "not assigned", f"the tag is {definition.status}", None)
        moment = resolve_now(now)
        if self._derived:
            snapshot = self._with_derived(snapshot, moment)
        values, bad = self.catalog.schema.read(snapshot)
        run = _Run(Scope(values, bad, set(tags)), frozenset(suppressed))
        target = next(index for index, unit in enumerate(self._order) if key in unit.keys)
        self._run(run, moment, self._order[:target])
        visible = set(run.scope.tags)
        self._run(run, moment, self._order[target : target + 1])
        evaluation_state.now = moment
        run.scope.tags = visible
        tree = explain_statement(self._statements[key], self._context, run.scope)
        unit = self._order[target]
        return TagExplanation(key, *self._outcome(key, unit, run), tree)

    def _with_derived(self, snapshot: Mapping[str, Any] | Any, now: datetime.datetime) -> dict[str, Any]:
        """The snapshot's fields plus the derived fields the rules read, computed at ``now``."""
        if isinstance(snapshot, Mapping):
            values = dict(snapshot)
        elif isinstance(snapshot, BaseModel):
            values = {name: getattr(snapshot, name) for name in type(snapshot).model_fields}
        else:
            raise TypeError(
                f"a snapshot must be a mapping or a pydantic model, not {type(snapshot).__name__}"
            )
        view = types.MappingProxyType(values)
        for field in self._derived:
            try:
                values[field.name] = field.compute(view, now)
            except Exception as error:
                values[field.name] = FailedValue(f"derived field failed: {type(error).__name__}: {error}")
        return values

    def _outcome(self, key: str, unit: EvaluationUnit, run: _Run) -> tuple[str, str]:
        if key in run.errors:
            return "unknown", run.errors[key]
        if key in run.assigned:
            return "assigned", "the rule is true"
        if key in run.suppressed:
            return "not assigned", "the tag is suppressed for this customer"
        if not run.results.get(key, False):
            return "not assigned", "the rule is false"
        winner = next((member for member in unit.keys if member in run.assigned), None)
        if winner is not None:
            priority = self.catalog[winner].priority
            return "not assigned", f"{winner!r} (priority {priority}) wins the exclusive group {unit.group!r}"
        return "not assigned", "the rule is true, but the tag was not assigned"  # pragma: no cover

    def _run(self, run: _Run, now: datetime.datetime, units: Iterable[EvaluationUnit]) -> None:
        evaluation_state.now = now
        with decimal.localcontext(DECIMAL_CONTEXT):
            for unit in units:
                for key in unit.keys:
                    self._evaluate_tag(key, run)
                failed = next((key for key in unit.keys if key in run.errors), None)
                if failed is not None:
                    message = f"the exclusive group {unit.group!r} is unknown because {failed!r} failed"
                    for key in unit.keys:
                        run.errors.setdefault(key, f"{message}: {run.errors[failed]}")
                    continue
                for key in unit.keys:
                    if run.results[key] and key not in run.suppressed:
                        run.assigned.add(key)
                        run.scope.tags.add(key)
                        break

    def _evaluate_tag(self, key: str, run: _Run) -> None:
        for dependency in self._dependencies[key]:
            failure = run.errors.get(dependency)
            if failure is not None:
                run.errors[key] = f"depends on {dependency!r}, which failed: {failure}"
                return
        evaluation_state.steps = 0
        self._context._tls.reset()
        try:
            run.results[key] = bool(self._statements[key].evaluate(run.scope))
        except Exception as error:
            run.errors[key] = describe_failure(error)
