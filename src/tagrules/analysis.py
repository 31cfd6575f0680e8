"""Static checks of a valid catalog: findings a rule author should look at, not errors.

* **gap** — values between the tiers of an exclusive group that no tier matches (two purchases in a
  quarter and none in the last month is neither mid- nor low-frequency);
* **overlap** — two tiers whose ranges cross (neither contains the other), so that priority, not
  the rules, decides the values they share;
* **shadowed** — a tier every value of which a higher tier takes: it is never assigned;
* **always-true** / **always-false** — a rule whose outcome does not depend on the snapshot;
* **never-matched** — a tag no snapshot of a sample file was given;
* **not-checked** — a group past the budget of the checks (:data:`MAX_TRIALS` cases, or
  :data:`MAX_PAIRS` pairs of tiers for the overlap check).

The group checks read rules built from comparisons of numeric fields with constants (``and``,
``or``, ``not``, ``?:``, ``??`` defaults); a group with any other kind of rule is not checked. The
range of every field is split at the thresholds the rules compare it with, and each piece is tried,
so the answers are exact. A gap at either end of a group's ranges (no tier below 18 years of age)
is taken as intended; only holes between tiers are reported.

Examples:
    >>> from tagrules import Catalog
    >>> catalog = Catalog(
    ...     tags=[
    ...         {"key": "high", "rule": "orders >= 3", "group": "freq", "priority": 2},
    ...         {"key": "low", "rule": "orders <= 1", "group": "freq", "priority": 1},
    ...     ],
    ...     schema={"orders": "int"},
    ... )
    >>> [finding.message for finding in check_catalog(catalog)]
    ["no tier matches when orders == 2, between 'high' and 'low'"]
"""

from __future__ import annotations

import bisect
import decimal
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

from rule_engine import ast

from tagrules.catalog import Catalog
from tagrules.evaluation import Evaluator, resolve_now
from tagrules.rules._bounds import Threshold, threshold_of
from tagrules.rules._tree import format_value, unparse

__all__ = ["Finding", "check_catalog", "check_sample"]

#: The most (cell, assignment) pairs one check tries; larger rules and groups are not checked.
MAX_TRIALS = 50_000
#: The most pairs of tiers of one group checked for crossing overlaps (those of 1,414 tiers).
MAX_PAIRS = 1_000_000
_MAX_OPAQUE = 8

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@final
@dataclass(frozen=True, slots=True)
class Finding:
    """Something in a valid catalog that is probably a mistake.

    Attributes:
        code: ``gap``, ``overlap``, ``shadowed``, ``always-true``, ``always-false``, ``never-matched``
            or ``not-checked`` (a group past the checks' budget).
        message: what was found, with an example snapshot where there is one.
        file: the catalog file, or ``None`` for a catalog built in code.
        tag: the tag the finding is about, if it is about one tag.
        group: the exclusive group the finding is about, if it is about a group.
    """

    code: str
    message: str
    file: str | None = None
    tag: str | None = None
    group: str | None = None

    def __str__(self) -> str:
        where = self.file if self.file is not None else "<catalog>"
        subject = f"tag {self.tag!r}" if self.tag is not None else f"group {self.group!r}"
        return f"{where}: {subject}: warning: {self.message} [{self.code}]"


# -- rules as formulas over numeric thresholds ------------------------------------------------------

# ("const", bool) | ("atom", field, operator, Decimal) | ("opaque", index) | ("and"|"or", a, b)
# | ("not", a) | ("if", condition, a, b)
Formula = tuple[Any, ...]


class _Reader:
    """Turns a rule into a formula; parts that are not numeric thresholds become opaque variables."""

    def __init__(self, numeric: frozenset[str]) -> None:
        self.numeric = numeric
        self.opaque: dict[str, int] = {}

    def read(self, node: Any) -> Formula:
        if isinstance(node, ast.BooleanExpression):
            return ("const", bool(node.value))
        if isinstance(node, ast.LogicExpression):
            return (node.type, self.read(node.left), self.read(node.right))
        if isinstance(node, ast.UnaryExpression) and node.type == "not":
            return ("not", self.read(node.right))
        if isinstance(node, ast.TernaryExpression):
            return ("if", self.read(node.condition), self.read(node.case_true), self.read(node.case_false))
        found = _numeric_threshold(node, self.numeric)
        if found is not None:
            return ("atom", found.path[0], found.operator, found.value)
        text = unparse(node)
        return ("opaque", self.opaque.setdefault(text, len(self.opaque)))


def _numeric_threshold(node: Any, numeric: frozenset[str]) -> Threshold | None:
    found = threshold_of(node, numeric)
    if found is None or len(found.path) != 1:
        return None
    if not isinstance(found.value, decimal.Decimal) or not found.value.is_finite():
        return None
    return found


def _atoms(formula: Formula) -> Iterable[tuple[str, decimal.Decimal]]:
    if formula[0] == "atom":
        yield formula[1], formula[3]
    elif formula[0] not in ("const", "opaque"):
        for part in formula[1:]:
            yield from _atoms(part)


def _holds(formula: Formula, point: Mapping[str, decimal.Decimal], bits: tuple[bool, ...]) -> bool:
    kind = formula[0]
    if kind == "const":
        return bool(formula[1])
    if kind == "atom":
        return _COMPARE[formula[2]](point[formula[1]], formula[3])
    if kind == "opaque":
        return bits[formula[1]]
    if kind == "and":
        return _holds(formula[1], point, bits) and _holds(formula[2], point, bits)
    if kind == "or":
        return _holds(formula[1], point, bits) or _holds(formula[2], point, bits)
    if kind == "not":
        return not _holds(formula[1], point, bits)
    branch = formula[2] if _holds(formula[1], point, bits) else formula[3]
    return _holds(branch, point, bits)


# -- the range of a field, split at its thresholds ---------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class _Piece:
    """A piece of a field's range: one threshold (``low == high``), or the values strictly between two."""

    low: decimal.Decimal | None
    high: decimal.Decimal | None
    point: bool
    example: decimal.Decimal


def _pieces(values: Iterable[decimal.Decimal], integer: bool) -> list[_Piece]:
    cuts = sorted(set(values))
    pieces: list[_Piece] = []
    bounds: list[decimal.Decimal | None] = [None, *cuts, None]
    for index in range(len(cuts) + 1):
        low, high = bounds[index], bounds[index + 1]
        example = _between(low, high, integer)
        if example is not None:
            pieces.append(_Piece(low, high, False, example))
        if index < len(cuts) and (not integer or cuts[index] == cuts[index].to_integral_value()):
            pieces.append(_Piece(cuts[index], cuts[index], True, cuts[index]))
    return pieces


def _between(
    low: decimal.Decimal | None, high: decimal.Decimal | None, integer: bool
) -> decimal.Decimal | None:
    """A value strictly between ``low`` and ``high`` (integral for int fields), near the thresholds."""
    one = decimal.Decimal(1)
    if low is None and high is None:
        return decimal.Decimal(0)
    if integer:
        first = None if low is None else decimal.Decimal(math.floor(low) + 1)
        last = None if high is None else decimal.Decimal(math.ceil(high) - 1)
        if first is not None and last is not None:
            return first if first <= last else None
        return first if first is not None else last
    if low is None:
        assert high is not None
        return high - one
    if high is None:
        return low + one
    return (low + high) / 2


def _describe(name: str, pieces: list[_Piece], first: int, last: int, integer: bool) -> str | None:
    """The condition ``first..last`` pieces of a field stand for, or ``None`` for its whole range."""
    if first == 0 and last == len(pieces) - 1:
        return None
    start, end = pieces[first], pieces[last]
    lower = None if first == 0 or start.low is None else (">=" if start.point else ">", start.low)
    upper = None if last == len(pieces) - 1 or end.high is None else ("<=" if end.point else "<", end.high)
    if integer and lower is not None and lower[0] == ">":
        lower = (">=", decimal.Decimal(math.floor(lower[1]) + 1))
    if integer and upper is not None and upper[0] == "<":
        upper = ("<=", decimal.Decimal(math.ceil(upper[1]) - 1))
    if lower is None and start.point and upper is not None and start.low == upper[1]:
        lower = (">=", upper[1])  # the start of a non-negative range: said only to spot '== 0'
    if lower is not None and upper is not None and lower[1] == upper[1]:
        return f"{name} == {format_value(lower[1])}"
    parts = [f"{name} {bound[0]} {format_value(bound[1])}" for bound in (lower, upper) if bound is not None]
    return " and ".join(parts)


@final
class _Grid:
    """Every combination of the pieces of some numeric fields."""

    def __init__(
        self, formulas: Iterable[Formula], integers: frozenset[str], *, natural: bool = False
    ) -> None:
        cuts: dict[str, list[decimal.Decimal]] = {}
        for formula in formulas:
            for name, value in _atoms(formula):
                cuts.setdefault(name, []).append(value)
        self.names = sorted(cuts)
        self.integers = integers
        self.pieces = []
        for name in self.names:
            values = cuts[name]
            # counts, amounts and ages: a field only ever compared with non-negative numbers is taken
            # to hold non-negative numbers, so that no gap is reported below zero
            if natural and all(value >= 0 for value in values):
                pieces = _pieces([*values, decimal.Decimal(0)], name in integers)
                pieces = [piece for piece in pieces if piece.low is not None]
            else:
                pieces = _pieces(values, name in integers)
            self.pieces.append(pieces)
        self.size = math.prod(len(pieces) for pieces in self.pieces)

    def cells(self) -> Iterable[tuple[int, ...]]:
        return itertools.product(*(range(len(pieces)) for pieces in self.pieces))

    def point(self, cell: tuple[int, ...]) -> dict[str, decimal.Decimal]:
        return {name: self.pieces[axis][cell[axis]].example for axis, name in enumerate(self.names)}

    def describe(self, cells: set[tuple[int, ...]]) -> str:
        """The cells as conditions on the fields, with an example."""
        texts = []
        for box in _boxes(cells):
            parts = [
                _describe(name, self.pieces[axis], *box[axis], name in self.integers)
                for axis, name in enumerate(self.names)
            ]
            texts.append(" and ".join(part for part in parts if part) or "for every value")
        if len(texts) > 1:
            texts = [f"({text})" if " and " in text else text for text in texts]
        return " or ".join(sorted(texts))

    def example(self, cell: tuple[int, ...]) -> str:
        return ", ".join(f"{name} = {format_value(value)}" for name, value in self.point(cell).items())


def _boxes(cells: set[tuple[int, ...]]) -> list[list[tuple[int, int]]]:
    """Adjacent cells merged into boxes: per axis, the first and last piece."""
    boxes = [[(index, index) for index in cell] for cell in sorted(cells)]
    merged = True
    while merged:
        merged = False
        for one, two in itertools.combinations(range(len(boxes)), 2):
            first, second = boxes[one], boxes[two]
            differ = [axis for axis in range(len(first)) if first[axis] != second[axis]]
            if len(differ) != 1:
                continue
            axis = differ[0]
            low, high = sorted([first[axis], second[axis]])
            if low[1] + 1 == high[0]:
                first[axis] = (low[0], high[1])
                del boxes[two]
                merged = True
                break
    return boxes


# -- the checks ----------------------------------------------------------------------------------------


def _numeric_fields(catalog: Catalog) -> tuple[frozenset[str], frozenset[str]]:
    fields = catalog.schema.fields
    numeric = frozenset(name for name, field in fields.items() if field.kind in ("int", "float"))
    integers = frozenset(name for name in numeric if fields[name].kind == "int")
    return numeric, integers


def check_catalog(catalog: Catalog) -> list[Finding]:
    """Look for gaps, crossing overlaps and shadowed tiers in exclusive groups, and constant rules.

    Returns:
        The findings, rules first (in file order), then groups (in file order); those the
        catalog's ``checks: {ignore: [...]}`` silences are left out.
    """
    numeric, integers = _numeric_fields(catalog)
    findings: list[Finding] = []
    formulas: dict[str, tuple[Formula, int]] = {}
    fallbacks = {members[-1] for members in catalog.groups.values() if len(members) > 1}
    for definition in catalog:
        if definition.status == "retired":
            continue
        reader = _Reader(numeric)
        formula = reader.read(catalog.rule(definition.key).statement.expression)
        formulas[definition.key] = (formula, len(reader.opaque))
        outcome = _constant_outcome(formula, len(reader.opaque), integers)
        if outcome is None or (outcome and definition.key in fallbacks):
            continue
        code = "always-true" if outcome else "always-false"
        what = "true" if outcome else "false"
        findings.append(
            Finding(
                code,
                f"the rule is always {what}, whatever the snapshot",
                file=catalog.source,
                tag=definition.key,
            )
        )
    for group, members in catalog.groups.items():
        if len(members) < 2 or any(formulas[key][1] for key in members):
            continue
        findings.extend(_check_group(catalog, group, members, formulas, integers))
    return _heeded(catalog, findings)


def _heeded(catalog: Catalog, findings: list[Finding]) -> list[Finding]:
    """The findings the catalog's ``checks: {ignore: [...]}`` does not silence."""
    ignored = catalog.ignored_checks
    return [
        finding
        for finding in findings
        if not any(entry.covers(finding.code, finding.group, finding.tag) for entry in ignored)
    ]


def _constant_outcome(formula: Formula, opaque: int, integers: frozenset[str]) -> bool | None:
    if opaque > _MAX_OPAQUE:
        return None
    grid = _Grid([formula], integers)
    if grid.size * 2**opaque > MAX_TRIALS:
        return None
    seen: set[bool] = set()
    for cell in grid.cells():
        point = grid.point(cell)
        for bits in itertools.product((False, True), repeat=opaque):
            seen.add(_holds(formula, point, bits))
            if len(seen) == 2:
                return None
    return seen.pop()


def _check_group(
    catalog: Catalog,
    group: str,
    members: tuple[str, ...],
    formulas: Mapping[str, tuple[Formula, int]],
    integers: frozenset[str],
) -> list[Finding]:
    findings: list[Finding] = []

    def report(code: str, message: str) -> None:
        findings.append(Finding(code, message, file=catalog.source, group=group))

    grid = _Grid([formulas[key][0] for key in members], integers, natural=True)
    if not grid.names:
        return []
    if grid.size > MAX_TRIALS:
        report(
            "not-checked",
            f"not checked: the tiers split {', '.join(grid.names)} into {grid.size:,} cases, "
            f"more than {MAX_TRIALS:,}",
        )
        return findings
    masks = _Masks(grid)
    matches = {key: masks.of(formulas[key][0]) for key in members}
    winner: dict[tuple[int, ...], str] = {}
    unmatched = masks.everything
    for key in members:  # members are ordered by priority, highest first
        for cell in masks.cells_of(matches[key] & unmatched):
            winner[cell] = key
        unmatched &= ~matches[key]
    for component in _components(set(masks.cells_of(unmatched)), grid):
        around = sorted(
            {winner[cell] for cell in _neighbours(component, grid) if cell in winner}, key=members.index
        )
        if len(around) >= 2:
            sample = min(component)
            tiers = " and ".join(repr(key) for key in around)
            report(
                "gap",
                f"no tier matches when {grid.describe(component)}"
                + (f" (for example {grid.example(sample)})" if len(grid.names) > 1 else "")
                + f", between {tiers}",
            )
    higher = 0
    for position, key in enumerate(members):
        if matches[key] and not matches[key] & ~higher:
            takers = [other for other in members[:position] if matches[other] & matches[key]]
            report(
                "shadowed",
                f"{key!r} is never assigned: every value it matches is taken by the higher tier"
                f"{'s' if len(takers) > 1 else ''} {', '.join(repr(other) for other in takers)}",
            )
        higher |= matches[key]
    pairs = len(members) * (len(members) - 1) // 2
    if pairs > MAX_PAIRS:
        report(
            "not-checked",
            f"overlaps not checked: {len(members):,} tiers make {pairs:,} pairs, more than {MAX_PAIRS:,}",
        )
        return findings
    for first, second in itertools.combinations(members, 2):
        one, two = matches[first], matches[second]
        shared = one & two
        if shared and one & ~two and two & ~one:
            report(
                "overlap",
                f"{first!r} and {second!r} both match when {grid.describe(set(masks.cells_of(shared)))}; "
                f"priority gives those to {first!r}",
            )
    return findings


@final
class _Masks:
    """Sets of cells of a grid as the bits of an integer, so that a tier's cells, and the cells
    two tiers share, cost a few integer operations however many tiers a group has."""

    def __init__(self, grid: _Grid) -> None:
        self.grid = grid
        self.cells = list(grid.cells())
        self.everything = (1 << len(self.cells)) - 1
        sizes = [len(pieces) for pieces in grid.pieces]
        strides = [math.prod(sizes[axis + 1 :]) for axis in range(len(sizes))]
        # prefixes[axis][k]: the cells whose piece on that axis is one of the first k
        self.prefixes: list[list[int]] = []
        for axis, size in enumerate(sizes):
            width = size * strides[axis]
            repeat = sum(1 << (block * width) for block in range(len(self.cells) // width))
            self.prefixes.append([repeat * ((1 << (count * strides[axis])) - 1) for count in range(size + 1)])
        self.examples = [[piece.example for piece in pieces] for pieces in grid.pieces]
        self.atoms: dict[tuple[str, str, decimal.Decimal], int] = {}

    def cells_of(self, mask: int) -> Iterable[tuple[int, ...]]:
        while mask:
            lowest = mask & -mask
            yield self.cells[lowest.bit_length() - 1]
            mask ^= lowest

    def _atom(self, name: str, symbol: str, value: decimal.Decimal) -> int:
        axis = self.grid.names.index(name)
        examples, prefixes = self.examples[axis], self.prefixes[axis]
        before, through = bisect.bisect_left(examples, value), bisect.bisect_right(examples, value)
        size = len(examples)
        span = {
            "<": (0, before),
            "<=": (0, through),
            ">": (through, size),
            ">=": (before, size),
            "==": (before, through),
        }
        if symbol == "!=":
            return self.everything & ~(prefixes[through] ^ prefixes[before])
        low, high = span[symbol]
        return prefixes[high] ^ prefixes[low]

    def of(self, formula: Formula) -> int:
        kind = formula[0]
        if kind == "const":
            return self.everything if formula[1] else 0
        if kind == "atom":
            key = (formula[1], formula[2], formula[3])
            if key not in self.atoms:
                self.atoms[key] = self._atom(*key)
            return self.atoms[key]
        if kind == "and":
            return self.of(formula[1]) & self.of(formula[2])
        if kind == "or":
            return self.of(formula[1]) | self.of(formula[2])
        if kind == "not":
            return self.everything & ~self.of(formula[1])
        condition = self.of(formula[1])
        return (condition & self.of(formula[2])) | (self.everything & ~condition & self.of(formula[3]))


def _neighbours(cells: set[tuple[int, ...]], grid: _Grid) -> set[tuple[int, ...]]:
    found = set()
    for cell in cells:
        for axis, size in enumerate(len(pieces) for pieces in grid.pieces):
            for step in (-1, 1):
                index = cell[axis] + step
                if 0 <= index < size:
                    found.add((*cell[:axis], index, *cell[axis + 1 :]))
    return found - cells


def _components(cells: set[tuple[int, ...]], grid: _Grid) -> list[set[tuple[int, ...]]]:
    remaining = set(cells)
    components = []
    while remaining:
        start = min(remaining)
        component = {start}
        frontier = [start]
        remaining.discard(start)
        while frontier:
            for cell in _neighbours({frontier.pop()}, grid):
                if cell in remaining:
                    remaining.discard(cell)
                    component.add(cell)
                    frontier.append(cell)
        components.append(component)
    return components


def check_sample(
    catalog: Catalog, snapshots: Iterable[Any], *, now: Any = None, file: str | None = None
) -> list[Finding]:
    """Find the active tags that no snapshot of a sample was given.

    Args:
        catalog: the catalog.
        snapshots: the sample (mappings or pydantic models).
        now: the evaluation time (default: the current time).
        file: the sample's name, for the messages.

    Returns:
        One ``never-matched`` finding per active tag no snapshot was given, in file order.
    """
    evaluator = Evaluator(catalog)
    moment = resolve_now(now)
    matched: set[str] = set()
    failed: dict[str, int] = {}
    count = 0
    for snapshot in snapshots:
        count += 1
        evaluation = evaluator.evaluate(snapshot, now=moment)
        matched |= evaluation.tags
        for key in evaluation.errors:
            failed[key] = failed.get(key, 0) + 1
    name = file or "the sample"
    findings = []
    for definition in catalog.active:
        if definition.key in matched:
            continue
        noun = "snapshot" if count == 1 else "snapshots"
        message = f"no snapshot of {name} was given the tag ({count} {noun})"
        if definition.key in failed:
            message += f"; its rule failed on {failed[definition.key]} of them"
        findings.append(Finding("never-matched", message, file=catalog.source, tag=definition.key))
    return _heeded(catalog, findings)
