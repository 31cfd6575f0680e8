"""Evaluating a catalog on snapshots, and diffing the result against the tags held before."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

from pydantic import BaseModel

from tagrules import _flips, _lapse
from tagrules._compiled import ResultType, compile_catalog
from tagrules.catalog import Catalog, EvaluationUnit
from tagrules.errors import InvalidArgument, SnapshotError
from tagrules.rules._explain import Explanation, describe_failure, explain_statement
from tagrules.rules._language import DECIMAL_CONTEXT, UTC, Scope, evaluation_state
from tagrules.schema import FailedValue, suggest

__all__ = ["Evaluation", "Evaluator", "TagDiff", "TagExplanation", "diff", "parse_now", "resolve_now"]

_NO_ERRORS: Mapping[str, str] = types.MappingProxyType({})
_NONE: frozenset[str] = frozenset()


def parse_now(text: str) -> datetime.datetime:
    """An evaluation time written as ISO 8601 text (``Z`` for UTC; naive means UTC).

    Raises:
        ValueError: the text is not such a datetime (the message shows an example), or it is one
            that falls outside the years 1 to 9999 in UTC (``0001-01-01T00:00:00+01:00``).
    """
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(f'{text!r} is not an ISO 8601 datetime such as "2026-06-01T00:00:00Z"') from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the years 1 to 9999 once converted to UTC") from None
    return moment


def resolve_now(now: datetime.datetime | None) -> datetime.datetime:
    """The evaluation time in UTC: ``now`` itself, UTC when naive, converted to UTC when it has another
    offset (so ``$now - t'PT24H'`` is 24 real hours across a daylight-saving change), the current
    UTC time when ``None``.

    Raises:
        TypeError: ``now`` is not a datetime.
        InvalidArgument: ``now`` falls outside the datetimes Python can hold once converted to UTC.
    """
    if type(now) is datetime.datetime and now.tzinfo is UTC:
        return now
    if now is None:
        return datetime.datetime.now(UTC)
    if not isinstance(now, datetime.datetime):
        raise TypeError(f"now must be a datetime, not {type(now).__name__}")
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    try:
        return now.astimezone(UTC)
    except OverflowError:
        raise InvalidArgument(
            f"now {now.isoformat()} is outside the range of datetimes once converted to UTC"
        ) from None


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
    _valid_until: Any = dataclasses.field(default=_lapse.NOT_ASKED, repr=False, compare=False)

    @property
    def valid_until(self) -> datetime.datetime | None:
        """The first instant after ``now`` at which the catalog assigns other tags (or fails other
        rules) on the same snapshot if nothing but time changes; ``None`` if time alone never changes
        them. Computed when asked for: ``Evaluator.evaluate(..., valid_until=True)``.

        Raises:
            AttributeError: the evaluation was made without ``valid_until=True``.
        """
        return _lapse.asked(getattr(self, "_valid_until", _lapse.NOT_ASKED))

    def to_data(self) -> dict[str, Any]:
        """Plain data: sorted tag keys, the errors, and ``now`` in ISO 8601."""
        return {"tags": sorted(self.tags), "errors": dict(self.errors), "now": self.now.isoformat()}


# Evaluations are made once per snapshot: skip the frozen dataclass's slower __init__ on that path.
_new_evaluation = object.__new__
_set_tags = Evaluation.__dict__["tags"].__set__
_set_errors = Evaluation.__dict__["errors"].__set__
_set_now = Evaluation.__dict__["now"].__set__
_set_valid_until = Evaluation.__dict__["_valid_until"].__set__
#: compiled catalogs return Evaluations built in place, as the interpreted path builds them
_RESULT = ResultType(Evaluation, _NO_ERRORS)


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
        self._compiled = compile_catalog(catalog, _RESULT) if compiled else None
        self._function = self._compiled.function if self._compiled is not None else None
        self._context = catalog.language.context
        self._order = catalog.evaluation_order
        self._statements = {key: catalog.rule(key).statement for unit in self._order for key in unit.keys}
        self._dependencies = {key: sorted(catalog.dependencies.get(key, ())) for key in self._statements}
        used = frozenset().union(*(catalog.rule(key).fields for key in self._statements))
        self._derived = tuple(field for name, field in catalog.derived_fields.items() if name in used)
        # derived fields compute from the schema's typed values of the fields they read (all, if one
        # does not say), not from the raw snapshot: JSON text, naive datetimes and ints become typed
        snapshot_fields = catalog.snapshot_schema.fields
        inputs = (
            {name for field in self._derived for name in field.reads}
            if all(field.reads for field in self._derived)
            else set(snapshot_fields)
        )
        self._derived_inputs = tuple(name for name in sorted(inputs) if name in snapshot_fields)
        # compiled rules take ``now`` as an argument; functions that use it read the evaluation state
        self._functions_use_now = any(function.uses_now for function in catalog.functions.values())
        self._keys = frozenset(definition.key for definition in catalog)
        self._windows: _lapse.TimeWindows | None = None

    def evaluate(
        self,
        snapshot: Mapping[str, Any] | Any,
        now: datetime.datetime | None = None,
        tags: Iterable[str] = (),
        *,
        suppressed: Iterable[str] = (),
        valid_until: bool = False,
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
            valid_until: also compute :attr:`Evaluation.valid_until` (it costs evaluations at the
                instants the rules' comparisons with ``$now`` and ``$today`` turn).

        Returns:
            The tags assigned and, per failed rule, why it failed.

        Raises:
            InvalidArgument: ``tags`` or ``suppressed`` names a tag the catalog does not define (the
                message suggests the nearest key).
            TimeUnknown: with ``valid_until``, a rule reads time in a way the instant cannot be derived from.
        """
        # the common case first, checked cheaply: an aware UTC datetime needs no resolving
        moment = now if type(now) is datetime.datetime and now.tzinfo is UTC else resolve_now(now)
        if self._derived:
            snapshot = self._with_derived(snapshot, moment)
        manual = self._known(tags, "tags") if tags else _NONE
        excluded = self._known(suppressed, "suppressed") if suppressed else _NONE
        function = self._function
        found = windows = None
        fused = None
        if function is not None:
            if self._functions_use_now:
                evaluation_state.now = moment
            if valid_until:
                windows = self._windows or self._time_windows()
                fused = windows.fused
        if fused is not None:
            # the rules and the instants their comparisons with time turn, in one call
            assigned, failures, found = fused(snapshot, moment, manual, excluded)
            evaluation = _new_evaluation(Evaluation)
            _set_tags(evaluation, frozenset(assigned))
            _set_errors(evaluation, types.MappingProxyType(failures) if failures else _NO_ERRORS)
            _set_now(evaluation, moment)
        elif function is not None:
            # the compiled function builds the Evaluation in place (see _RESULT)
            evaluation = function(snapshot, moment, manual, excluded)
        else:
            values, bad = self.catalog.schema.read(snapshot)
            run = _Run(Scope(values, bad, set(manual)), excluded)
            self._run(run, moment, self._order)
            evaluation = _new_evaluation(Evaluation)
            _set_tags(evaluation, frozenset(run.assigned))
            _set_errors(evaluation, types.MappingProxyType(run.errors) if run.errors else _NO_ERRORS)
            _set_now(evaluation, moment)
        if found is not None and windows is not None:
            lapse = (
                _lapse.confirm(
                    windows,
                    snapshot,
                    found,
                    evaluation.tags,
                    evaluation.errors,
                    manual,
                    excluded,
                    self.evaluate,
                )
                if found
                else None
            )
            _set_valid_until(evaluation, lapse)
        elif valid_until:
            _set_valid_until(evaluation, self._valid_until(snapshot, evaluation, manual, excluded))
        return evaluation

    def _time_windows(self) -> _lapse.TimeWindows:
        if self._windows is None:
            self._windows = _lapse.TimeWindows(self.catalog, Evaluator)
        return self._windows

    def _valid_until(
        self, snapshot: Any, evaluation: Evaluation, tags: frozenset[str], suppressed: frozenset[str]
    ) -> datetime.datetime | None:
        windows = self._time_windows()
        plain = snapshot if type(snapshot) is dict or isinstance(snapshot, Mapping) else self._plain(snapshot)
        return _lapse.valid_until(windows, plain, evaluation.now, evaluation, tags, suppressed, self.evaluate)

    def _lapses(
        self,
        snapshot: Any,
        evaluation: Evaluation,
        tags: frozenset[str],
        suppressed: frozenset[str],
    ) -> tuple[datetime.datetime | None, dict[str, datetime.datetime]] | None:
        """``valid_until`` of ``evaluation`` (made by :meth:`evaluate` with ``tags`` and
        ``suppressed``) and the instant each assigned tag lapses by time alone; ``None`` when the
        catalog reads time in a way they cannot be derived from, or does not read time at all."""
        windows = self._windows or self._time_windows()
        if windows.unknown is not None or not windows.comparisons:
            return None
        plain = snapshot if type(snapshot) is dict or isinstance(snapshot, Mapping) else self._plain(snapshot)
        return _lapse.lapses(
            windows,
            plain,
            evaluation.now,
            evaluation.tags,
            evaluation.errors,
            tags,
            suppressed,
            self.evaluate,
        )

    def _known(self, keys: Iterable[str], argument: str) -> frozenset[str]:
        """``keys`` as a frozenset, if the catalog defines each of them."""
        given = keys if type(keys) is frozenset else frozenset(keys)
        if given <= self._keys:
            return given
        unknown = sorted(str(key) for key in given if key not in self._keys)[0]
        raise InvalidArgument(
            f"{argument}: the catalog defines no tag {unknown!r}{suggest(unknown, self._keys)}"
        )

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
        tags = self._known(tags, "tags") if tags else _NONE
        suppressed = self._known(suppressed, "suppressed") if suppressed else _NONE
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
        failed = dict(run.errors)  # the tags before this one whose rules failed: unknown in the tree
        self._run(run, moment, self._order[target : target + 1])
        evaluation_state.now = moment
        run.scope.tags = visible
        tree = explain_statement(self._statements[key], self._context, run.scope, failed)
        unit = self._order[target]
        return TagExplanation(key, *self._outcome(key, unit, run), tree)

    def flips(
        self, snapshot: Mapping[str, Any] | Any, tag: str, *, now: datetime.datetime | None = None
    ) -> list[_flips.Flip]:
        """The single-field changes to ``snapshot`` that would flip tag ``tag`` (assign it if it is not
        assigned, remove it if it is), every other field held fixed.

        For each number, date or datetime field that decides the tag (read by its rule, by the rules
        of the tags it depends on, or by its exclusive groups' tiers), the nearest value that flips it,
        with the difference; for text, booleans, lists and sets, each compared value that does. Every
        change is checked by evaluating the changed snapshot. An empty list: no single field flips it.

        Raises:
            KeyError: the catalog has no tag ``tag``.

        Examples:
            >>> from datetime import datetime, timezone
            >>> catalog = Catalog([{"key": "vip", "rule": "spend >= 100000"}], {"spend": "float"})
            >>> [flip.to_data() for flip in Evaluator(catalog).flips({"spend": 81234.0}, "vip")]
            [{'field': 'spend', 'from': 81234.0, 'to': 100000.0}]
        """
        if not self.catalog[tag].is_active:
            return []
        moment = resolve_now(now)
        plain = self._plain(snapshot)

        def assigned_in(changed: Mapping[str, Any]) -> bool | None:
            evaluation = self.evaluate(changed, moment)
            return None if tag in evaluation.errors else tag in evaluation.tags

        return _flips.flips(self.catalog, plain, tag, moment, assigned_in)

    def _plain(self, snapshot: Mapping[str, Any] | Any) -> dict[str, Any]:
        if isinstance(snapshot, Mapping):
            return dict(snapshot)
        if isinstance(snapshot, BaseModel):
            return {name: getattr(snapshot, name) for name in type(snapshot).model_fields}
        raise TypeError(f"a snapshot must be a mapping or a pydantic model, not {type(snapshot).__name__}")

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
        typed, bad = self.catalog.snapshot_schema.read(
            {name: values[name] for name in self._derived_inputs if name in values}
        )
        view = types.MappingProxyType(typed)
        for field in self._derived:
            failed = next((name for name in field.reads if name in bad), None)
            if failed is not None:
                values[field.name] = FailedValue(
                    f"derived field not computed: field {failed!r}: {bad[failed]}"
                )
                continue
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
