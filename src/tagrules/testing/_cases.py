"""Case files: snapshots with the tags they must and must not get, written in YAML.

A case file (``*.cases.yaml``)::

    catalog: catalog.yaml            # relative to this file, or the name of a pack such as retail
    now: "2026-06-01T00:00:00Z"
    cases:
      - name: frequent big spender is VIP
        snapshot: {spend_365d: 150000.0, orders_30d: 4}
        has: [vip, spend_high]
        lacks: [churned]

A case may also give ``now`` (overriding the file's), ``tags`` (manual tags), ``unknown`` (tags
whose rules must fail on the snapshot: a failed rule satisfies neither ``has`` nor ``lacks``) and
a ``description``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

from tagrules._files import load_document
from tagrules.catalog import Catalog
from tagrules.errors import DefinitionError, Problem
from tagrules.evaluation import Evaluator, parse_now
from tagrules.plugins import PluginRegistry, installed_plugins
from tagrules.schema import suggest
from tagrules.testing._assertions import FrozenEvaluator, TagMismatch, check_tags

if TYPE_CHECKING:
    from tagrules.testing._coverage import RuleCoverage

__all__ = [
    "Case",
    "CaseFile",
    "CaseResult",
    "load_case_file",
    "parse_time",
    "resolve_catalog",
    "run_case",
    "run_cases",
    "shared_evaluator",
]

_FILE_KEYS = ("catalog", "now", "cases", "description")
_CASE_KEYS = ("name", "description", "snapshot", "has", "lacks", "unknown", "tags", "now")


@final
@dataclass(frozen=True)
class Case:
    """One case: a snapshot, the time it is evaluated at, and the tags it must and must not get.

    Attributes:
        name: the case's name, unique in its file.
        snapshot: the customer's data.
        has: the tags the snapshot must get.
        lacks: the tags the snapshot must not get (a tag whose rule fails is not absent).
        now: the evaluation time.
        tags: manual tags given with the snapshot.
        description: words for people.
        unknown: the tags whose rules must fail on the snapshot.
    """

    name: str
    snapshot: Mapping[str, Any]
    has: tuple[str, ...]
    lacks: tuple[str, ...]
    now: datetime.datetime
    tags: tuple[str, ...] = ()
    description: str = ""
    unknown: tuple[str, ...] = ()


@final
@dataclass(frozen=True)
class CaseFile:
    """A loaded case file: its catalog and its cases, every one checked against the catalog.

    Attributes:
        path: the file.
        catalog: the catalog the cases are written against.
        cases: the cases, in file order.
    """

    path: Path
    catalog: Catalog
    cases: tuple[Case, ...]
    evaluator: Evaluator = field(repr=False, compare=False)


@final
@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case.

    Attributes:
        file: the case file's path, as text.
        case: the case.
        mismatches: the tags that are not as the case expects, each explained.
    """

    file: str
    case: Case
    mismatches: tuple[TagMismatch, ...]

    @property
    def passed(self) -> bool:
        """Whether every tag is as the case expects."""
        return not self.mismatches

    def __str__(self) -> str:
        if self.passed:
            return f"{self.file}: case {self.case.name!r}: passed"
        count = len(self.mismatches)
        lines = [
            f"{self.file}: case {self.case.name!r}: {count} tag{'s' if count != 1 else ''} not as expected"
        ]
        lines.extend("  " + line for mismatch in self.mismatches for line in str(mismatch).splitlines())
        return "\n".join(lines)


# catalogs and their compiled evaluators, shared by every case file that names the same catalog
_LOADED: dict[tuple[str, int, int, int], tuple[Catalog, PluginRegistry | None]] = {}
_EVALUATORS: dict[int, tuple[Catalog, Evaluator]] = {}


def resolve_catalog(
    reference: str, base: Path | None = None, *, plugins: PluginRegistry | None = None
) -> Catalog:
    """A catalog file (relative to ``base``), or the name of a pack such as ``retail``.

    Args:
        reference: the file or the pack name.
        base: the folder a relative file name is relative to.
        plugins: the plugins whose functions and derived fields a catalog file sees, and whose packs
            a name finds, as in :meth:`tagrules.Catalog.load`; the ``tagrules test`` command and the
            pytest plugin pass ``installed_plugins()``. Without it, a file sees no plugin and a
            pack name is found among the installed plugins.

    Catalog files are loaded once per process as long as they do not change.

    Raises:
        DefinitionError: the catalog is neither a file nor a pack, or is not valid.
    """
    path = Path(reference) if base is None else base / reference
    if path.is_file():
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, id(plugins))
        found = _LOADED.get(key)
        if found is None or found[1] is not plugins:
            found = _LOADED[key] = (Catalog.load(path, plugins=plugins), plugins)
        return found[0]
    registry = installed_plugins() if plugins is None else plugins
    if reference in registry.packs:
        return registry.load_pack(reference)
    packs = ", ".join(registry.packs)
    raise DefinitionError(
        [
            Problem(
                f"catalog {reference!r} is neither a file (looked for {path}) nor a pack ({packs})"
                f"{suggest(reference, registry.packs)}"
            )
        ]
    )


def shared_evaluator(catalog: Catalog) -> Evaluator:
    """One evaluator per catalog, shared by every case file, fixture and coverage of it."""
    found = _EVALUATORS.get(id(catalog))
    if found is not None and found[0] is catalog:
        return found[1]
    evaluator = Evaluator(catalog)
    _EVALUATORS[id(catalog)] = (catalog, evaluator)
    return evaluator


def parse_time(text: Any) -> datetime.datetime:
    """An ISO 8601 datetime written as text; naive means UTC. Raises ``ValueError``."""
    if not isinstance(text, str):
        raise ValueError(
            f'must be an ISO 8601 datetime in quotes, such as "2026-06-01T00:00:00Z", not {text!r}'
        )
    return parse_now(text)


class _Reader:
    """Reads the cases of one file, collecting every problem."""

    def __init__(self, path: Path, catalog: Catalog) -> None:
        self.file = str(path)
        self.catalog = catalog
        self.problems: list[Problem] = []

    def problem(self, message: str, case: str | None = None) -> None:
        section = f"case {case!r}" if case is not None else None
        self.problems.append(Problem(message, file=self.file, section=section))

    def keys(self, value: Any, role: str, case: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(f"{role!r} must be a list of tag keys", case)
            return ()
        known = [tag.key for tag in self.catalog]
        for key in value:
            if key not in self.catalog:
                self.problem(f"{role}: no tag {key!r} in the catalog{suggest(key, known)}", case)
            elif role == "has" and not self.catalog[key].is_active:
                self.problem(f"has: tag {key!r} is {self.catalog[key].status} and never assigned", case)
        return tuple(value)

    def snapshot(self, value: Any, case: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.problem("'snapshot' must be a mapping of field names to values", case)
            return {}
        schema = self.catalog.schema
        for name in value:
            if name not in schema.fields:
                self.problem(f"snapshot: unknown field {name!r}{suggest(str(name), schema.fields)}", case)
        _, bad = schema.read(value)
        for name, message in bad.items():
            self.problem(f"snapshot: field {name!r}: {message}", case)
        return value

    def case(self, entry: Any, number: int, now: datetime.datetime | None, seen: set[str]) -> Case | None:
        if not isinstance(entry, Mapping):
            self.problem(f"case #{number} must be a mapping with 'name', 'snapshot', 'has' and 'lacks'")
            return None
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            self.problem(f"case #{number} needs a 'name' (text)")
            name = f"#{number}"
        elif name in seen:
            self.problem("another case has the same name; names must be unique in a file", name)
        seen.add(name)
        for key in entry:
            if key not in _CASE_KEYS:
                self.problem(f"unknown entry {key!r}{suggest(str(key), _CASE_KEYS)}", name)
        if "snapshot" not in entry:
            self.problem("the case has no 'snapshot'", name)
        snapshot = self.snapshot(entry.get("snapshot", {}), name)
        has = self.keys(entry.get("has"), "has", name)
        lacks = self.keys(entry.get("lacks"), "lacks", name)
        unknown = self.keys(entry.get("unknown"), "unknown", name)
        manual = self.keys(entry.get("tags"), "tags", name)
        if not any(key in entry for key in ("has", "lacks", "unknown")):
            self.problem("the case checks nothing; give it 'has', 'lacks' or 'unknown'", name)
        expected = {"has": has, "lacks": lacks, "unknown": unknown}
        for first, second in (("has", "lacks"), ("has", "unknown"), ("lacks", "unknown")):
            for key in sorted(set(expected[first]) & set(expected[second])):
                self.problem(f"tag {key!r} is in both {first!r} and {second!r}", name)
        moment = now
        if "now" in entry:
            try:
                moment = parse_time(entry["now"])
            except ValueError as error:
                self.problem(f"'now' {error}", name)
        elif now is None:
            self.problem(
                "no 'now': give one for the file or for the case, so that results do not change", name
            )
        description = entry.get("description", "")
        if not isinstance(description, str):
            self.problem("'description' must be text", name)
            description = ""
        if moment is None:
            return None
        return Case(name, snapshot, has, lacks, moment, manual, description, unknown)


def load_case_file(path: str | Path, *, plugins: PluginRegistry | None = None) -> CaseFile:
    """Load a case file and check every case against its catalog.

    ``plugins`` are those the catalog is loaded with (see :func:`resolve_catalog`); ``tagrules test``
    and the pytest plugin pass ``installed_plugins()``.

    Raises:
        DefinitionError: the file, its catalog or its cases are not valid; every problem names the
            file and the case.
    """
    target = Path(path)
    file = str(target)
    data = load_document(target)
    if not isinstance(data, Mapping):
        raise DefinitionError(
            [Problem("a case file must be a mapping with 'catalog', 'now' and 'cases'", file=file)]
        )
    problems: list[Problem] = []
    for key in data:
        if key not in _FILE_KEYS:
            problems.append(Problem(f"unknown entry {key!r}{suggest(str(key), _FILE_KEYS)}", file=file))
    reference = data.get("catalog")
    if not isinstance(reference, str) or not reference.strip():
        problems.append(Problem("'catalog' must name a catalog file or a pack, such as retail", file=file))
        raise DefinitionError(problems)
    try:
        catalog = resolve_catalog(reference, target.parent, plugins=plugins)
    except DefinitionError as error:
        raise DefinitionError(
            [*problems, *(_in_case_file(problem, file) for problem in error.problems)]
        ) from None
    now: datetime.datetime | None = None
    if "now" in data:
        try:
            now = parse_time(data["now"])
        except ValueError as error:
            problems.append(Problem(f"'now' {error}", file=file))
    entries = data.get("cases")
    if not isinstance(entries, list):
        problems.append(Problem("'cases' must be a list of cases", file=file))
        entries = []
    reader = _Reader(target, catalog)
    seen: set[str] = set()
    cases = [reader.case(entry, number, now, seen) for number, entry in enumerate(entries, start=1)]
    problems.extend(reader.problems)
    if problems:
        raise DefinitionError(problems)
    loaded = tuple(case for case in cases if case is not None)
    return CaseFile(target, catalog, loaded, shared_evaluator(catalog))


def _in_case_file(problem: Problem, file: str) -> Problem:
    if problem.file is not None and problem.file != file:
        return problem
    return Problem(problem.message, file=file, tag=problem.tag, section=problem.section)


def run_case(case_file: CaseFile, case: Case, *, coverage: RuleCoverage | None = None) -> CaseResult:
    """Evaluate one case of ``case_file``; ``coverage`` records the clauses the snapshot exercised."""
    evaluator = FrozenEvaluator(case_file.evaluator, case.now)
    if coverage is not None:
        coverage.record(case.snapshot, now=case.now, tags=case.tags)
    mismatches = check_tags(
        evaluator, case.snapshot, case.has, case.lacks, unknown=case.unknown, tags=case.tags
    )
    return CaseResult(str(case_file.path), case, tuple(mismatches))


def run_cases(case_file: CaseFile, *, coverage: RuleCoverage | None = None) -> Iterator[CaseResult]:
    """Evaluate every case of ``case_file``, in file order."""
    for case in case_file.cases:
        yield run_case(case_file, case, coverage=coverage)
