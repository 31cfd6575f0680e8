"""Rule coverage: which clauses of which rules a set of snapshots saw both true and false.

A clause is each part a rule's explanation opens into: the rule itself, both sides of every
``and`` / ``or``, what a ``not`` negates, the condition and branches of a ``?:``. A clause seen only
true (or only false, or never evaluated) is an edge of the rule no case probes.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, final

from rule_engine import ast

from tagrules.catalog import Catalog
from tagrules.evaluation import Evaluator, resolve_now
from tagrules.rules._explain import Explanation
from tagrules.rules._tree import unparse
from tagrules.testing._assertions import with_model_defaults

__all__ = ["ClauseCoverage", "RuleCoverage"]

_Path = tuple[int, ...]


@final
@dataclass(frozen=True, slots=True)
class ClauseCoverage:
    """How often one clause of one rule was seen true and false.

    Attributes:
        tag: the tag whose rule the clause is part of.
        clause: the clause, as rule text.
        true: how many snapshots saw it true.
        false: how many snapshots saw it false.
    """

    tag: str
    clause: str
    true: int
    false: int

    @property
    def covered(self) -> bool:
        """Whether the clause was seen both true and false."""
        return self.true > 0 and self.false > 0

    def __str__(self) -> str:
        if self.true == 0 and self.false == 0:
            state = "never evaluated"
        elif self.true == 0:
            state = "never true"
        elif self.false == 0:
            state = "never false"
        else:
            state = "covered"
        return f"{self.tag}: {self.clause}: {state}"


def _opens(node: Any) -> bool:
    return isinstance(node, (ast.LogicExpression, ast.TernaryExpression)) or (
        isinstance(node, ast.UnaryExpression) and node.type == "not"
    )


def _clauses(node: Any, path: _Path = ()) -> Iterator[tuple[_Path, Any]]:
    yield path, node
    if isinstance(node, ast.LogicExpression):
        yield from _clauses(node.left, (*path, 0))
        yield from _clauses(node.right, (*path, 1))
    elif isinstance(node, ast.UnaryExpression) and node.type == "not" and _opens(node.right):
        yield from _clauses(node.right, (*path, 0))
    elif isinstance(node, ast.TernaryExpression):
        yield from _clauses(node.condition, (*path, 0))
        yield from _clauses(node.case_true, (*path, 1))
        yield from _clauses(node.case_false, (*path, 2))


@final
class RuleCoverage:
    """Records the clauses of a catalog's active rules that snapshots make true and false.

    Args:
        catalog: the catalog whose rules are covered.
        evaluator: an evaluator of the catalog to reuse (one is made otherwise).

    Examples:
        >>> from datetime import datetime, timezone
        >>> catalog = Catalog(tags=[{"key": "mid", "rule": "age >= 18 and age < 65"}], schema={"age": "int"})
        >>> coverage = RuleCoverage(catalog)
        >>> coverage.record({"age": 30}, now=datetime(2026, 6, 1, tzinfo=timezone.utc))
        >>> print(coverage.report())
        rule coverage: 0 of 3 clauses seen both true and false
        mid: age >= 18 and age < 65: never false
        mid: age >= 18: never false
        mid: age < 65: never false
    """

    def __init__(self, catalog: Catalog, evaluator: Evaluator | None = None) -> None:
        self.catalog = catalog
        self._evaluator = evaluator if evaluator is not None else Evaluator(catalog)
        self._texts: dict[str, dict[_Path, str]] = {}
        self._counts: dict[tuple[str, _Path], list[int]] = {}
        for definition in catalog.active:
            expression = catalog.rule(definition.key).statement.expression
            clauses = {path: unparse(node) for path, node in _clauses(expression)}
            self._texts[definition.key] = clauses
            for path in clauses:
                self._counts[(definition.key, path)] = [0, 0]
        self.snapshots = 0

    def record(
        self,
        snapshot: Mapping[str, Any] | Any,
        *,
        now: datetime.datetime | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Evaluate every active rule on ``snapshot`` and count what each clause came to."""
        moment = resolve_now(now)
        snapshot = with_model_defaults(self.catalog.schema, snapshot)
        manual = tuple(tags)
        self.snapshots += 1
        for key in self._texts:
            explanation = self._evaluator.explain(snapshot, key, now=moment, tags=manual)
            if explanation.rule is not None:
                expression = self.catalog.rule(key).statement.expression
                self._visit(key, expression, explanation.rule, ())

    def _visit(self, key: str, node: Any, explanation: Explanation, path: _Path) -> None:
        if not explanation.evaluated or explanation.error is not None:
            return
        counts = self._counts[(key, path)]
        if explanation.value == "true":
            counts[0] += 1
        elif explanation.value == "false":
            counts[1] += 1
        parts = explanation.children
        if isinstance(node, ast.LogicExpression) and len(parts) == 2:
            self._visit(key, node.left, parts[0], (*path, 0))
            self._visit(key, node.right, parts[1], (*path, 1))
        elif isinstance(node, ast.UnaryExpression) and len(parts) == 1:
            self._visit(key, node.right, parts[0], (*path, 0))
        elif isinstance(node, ast.TernaryExpression) and parts:
            self._visit(key, node.condition, parts[0], (*path, 0))
            if len(parts) == 3:
                taken = (1, node.case_true) if parts[0].value == "true" else (2, node.case_false)
                self._visit(key, taken[1], parts[1], (*path, taken[0]))

    @property
    def clauses(self) -> list[ClauseCoverage]:
        """Every clause of every active rule, tags in file order, clauses in rule order."""
        found = []
        for key, texts in self._texts.items():
            for path, text in texts.items():
                true, false = self._counts[(key, path)]
                found.append(ClauseCoverage(key, text, true, false))
        return found

    @property
    def uncovered(self) -> list[ClauseCoverage]:
        """The clauses not seen both true and false."""
        return [clause for clause in self.clauses if not clause.covered]

    def report(self, *, tags: Iterable[str] | None = None) -> str:
        """A summary line, then one line per clause not seen both true and false.

        Args:
            tags: report only these tags' rules (default: every active tag).
        """
        chosen = None if tags is None else set(tags)
        clauses = [clause for clause in self.clauses if chosen is None or clause.tag in chosen]
        covered = sum(1 for clause in clauses if clause.covered)
        noun = "clause" if len(clauses) == 1 else "clauses"
        lines = [f"rule coverage: {covered} of {len(clauses)} {noun} seen both true and false"]
        lines.extend(str(clause) for clause in clauses if not clause.covered)
        return "\n".join(lines)
