"""The tagrules pytest plugin: fixtures, ``assert_tags`` and ``*.cases.yaml`` collection.

Registered under the ``pytest11`` entry point, it is loaded by every pytest run where tagrules is
installed, so it imports nothing of tagrules until a hook or fixture needs it.

Configuration (``pytest.ini``, ``pyproject.toml`` or ``setup.cfg``):

* ``tagrules_case_files`` — the file name patterns collected as case files (``*.cases.yaml``);
* ``tagrules_catalog`` — the catalog of the ``tagrules_catalog`` fixture: a file, relative to the
  ini file's directory, or a pack name such as ``retail``;
* ``tagrules_now`` — the frozen time of ``tagrules_evaluator`` (ISO 8601; default: when the test
  session started).

Catalogs, those of case files included, are loaded with every installed plugin's functions and
derived fields, as the ``tagrules`` command loads them; a ``tagrules_plugins`` fixture of a
conftest chooses others for the fixtures.

``--tagrules-coverage`` reports the clauses of rules that no case or ``assert_tags`` call saw both
true and false. ``@pytest.mark.tagrules(catalog=..., now=...)`` overrides the catalog and the time
for one test, class or module.
"""

from __future__ import annotations

import datetime
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tagrules.catalog import Catalog
    from tagrules.errors import DefinitionError
    from tagrules.plugins import PluginRegistry
    from tagrules.stores import MemoryStore
    from tagrules.testing import CaseFile, CaseResult, FrozenEvaluator, FrozenTagger, RuleCoverage
    from tagrules.testing._cases import Case

__all__: list[str] = []

_COVERAGE = pytest.StashKey[dict[int, "RuleCoverage"]]()
_STARTED = pytest.StashKey[datetime.datetime]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tagrules", "tagrules: rule tests")
    group.addoption(
        "--tagrules-coverage",
        action="store_true",
        default=False,
        help="report the clauses of tag rules that no case saw both true and false",
    )
    parser.addini(
        "tagrules_case_files",
        type="args",
        default=["*.cases.yaml"],
        help="file name patterns of tagrules case files (default: *.cases.yaml)",
    )
    parser.addini(
        "tagrules_catalog",
        default="",
        help="catalog of the tagrules_catalog fixture: a file (relative to the ini file) or a pack name",
    )
    parser.addini(
        "tagrules_now",
        default="",
        help="the frozen time of tagrules_evaluator, ISO 8601 (default: when the session started)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tagrules(catalog=None, now=None): the catalog and frozen time of the tagrules fixtures"
    )
    config.stash[_COVERAGE] = {}
    config.stash[_STARTED] = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _coverage(config: pytest.Config, catalog: Catalog) -> RuleCoverage | None:
    if not config.getoption("tagrules_coverage"):
        return None
    from tagrules.testing import RuleCoverage
    from tagrules.testing._cases import shared_evaluator

    found = config.stash[_COVERAGE]
    coverage = found.get(id(catalog))
    if coverage is None or coverage.catalog is not catalog:
        coverage = found[id(catalog)] = RuleCoverage(catalog, shared_evaluator(catalog))
    return coverage


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    coverages = config.stash.get(_COVERAGE, {})
    if not coverages:
        return
    terminalreporter.section("tagrules rule coverage")
    for coverage in coverages.values():
        catalog = coverage.catalog
        label = catalog.name or catalog.source or "catalog"
        terminalreporter.write_line(f"{label} ({coverage.snapshots} snapshots)")
        for line in coverage.report().splitlines():
            terminalreporter.write_line("  " + line)


# -- case files --------------------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    patterns: list[str] = parent.config.getini("tagrules_case_files")
    names = (file_path.name, str(file_path))
    if any(fnmatch.fnmatch(name, pattern) for pattern in patterns for name in names):
        collector: pytest.Collector = CaseFileCollector.from_parent(parent, path=file_path)
        return collector
    return None


class CaseFailed(AssertionError):
    """A case whose snapshot does not get the tags it should."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(str(result))
        self.result = result


class CaseFileCollector(pytest.File):
    """A ``*.cases.yaml`` file; each of its cases is a test item.

    A file that is not valid is one failing item, so the other files' cases still run.
    """

    def collect(self) -> Iterator[pytest.Item]:
        from tagrules.errors import DefinitionError
        from tagrules.plugins import installed_plugins
        from tagrules.testing import load_case_file

        try:
            case_file = load_case_file(self.path, plugins=installed_plugins())
        except DefinitionError as error:
            yield InvalidCaseFileItem.from_parent(self, name="invalid case file", error=error)
            return
        for case in case_file.cases:
            yield CaseItem.from_parent(self, name=case.name, case_file=case_file, case=case)


class InvalidCaseFile(AssertionError):
    """A case file whose problems keep its cases from running."""


class InvalidCaseFileItem(pytest.Item):
    """The item standing for a case file that is not valid: it fails with every problem of the file."""

    def __init__(self, *, error: DefinitionError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        lines = ["invalid case file:", *(str(problem) for problem in self.error.problems)]
        raise InvalidCaseFile("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, InvalidCaseFile):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, "invalid case file"


class CaseItem(pytest.Item):
    """One case of a case file."""

    def __init__(self, *, case_file: CaseFile, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case_file = case_file
        self.case = case

    def runtest(self) -> None:
        from tagrules.testing import run_case

        coverage = _coverage(self.config, self.case_file.catalog)
        result = run_case(self.case_file, self.case, coverage=coverage)
        if not result.passed:
            raise CaseFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CaseFailed):
            return str(excinfo.value.result)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"case {self.case.name!r}"


# -- fixtures ------------------------------------------------------------------------------------------


def _marker_value(request: pytest.FixtureRequest, name: str) -> Any:
    marker = request.node.get_closest_marker("tagrules")
    return None if marker is None else marker.kwargs.get(name)


@pytest.fixture
def tagrules_plugins() -> PluginRegistry:
    """The plugins ``tagrules_catalog`` loads catalog files and packs with: every installed one.

    Override it in a conftest to test a catalog with other plugins (``PluginRegistry([plugin])``).
    """
    from tagrules.plugins import installed_plugins

    return installed_plugins()


@pytest.fixture
def tagrules_catalog(request: pytest.FixtureRequest, tagrules_plugins: PluginRegistry) -> Catalog:
    """The catalog under test: ``@pytest.mark.tagrules(catalog=...)`` or the ``tagrules_catalog`` ini option.

    A catalog file (relative to the test file for the marker, to the ini file for the option) or a
    pack name such as ``retail``, loaded with ``tagrules_plugins``; the marker also takes a
    :class:`~tagrules.Catalog`.
    """
    from tagrules.catalog import Catalog
    from tagrules.testing import resolve_catalog

    chosen = _marker_value(request, "catalog")
    if isinstance(chosen, Catalog):
        return chosen
    if chosen is not None:
        return resolve_catalog(str(chosen), request.path.parent, plugins=tagrules_plugins)
    configured: str = request.config.getini("tagrules_catalog")
    if not configured:
        pytest.fail(
            "no catalog for tagrules_catalog: set the 'tagrules_catalog' ini option or mark the test "
            "with @pytest.mark.tagrules(catalog='catalog.yaml')",
            pytrace=False,
        )
    base = request.config.inipath.parent if request.config.inipath else request.config.rootpath
    return resolve_catalog(configured, base, plugins=tagrules_plugins)


@pytest.fixture
def tagrules_now(request: pytest.FixtureRequest) -> datetime.datetime:
    """The frozen evaluation time: the marker's ``now``, the ``tagrules_now`` option, or the session start."""
    from tagrules.testing._cases import parse_time

    chosen = _marker_value(request, "now")
    if isinstance(chosen, datetime.datetime):
        return chosen if chosen.tzinfo else chosen.replace(tzinfo=datetime.timezone.utc)
    text = chosen if chosen is not None else request.config.getini("tagrules_now")
    if not text:
        return request.config.stash[_STARTED]
    try:
        return parse_time(text)
    except ValueError as error:
        pytest.fail(f"tagrules_now: {error}", pytrace=False)


@pytest.fixture
def tagrules_evaluator(tagrules_catalog: Catalog, tagrules_now: datetime.datetime) -> FrozenEvaluator:
    """An evaluator of ``tagrules_catalog`` whose ``now`` is frozen at ``tagrules_now``."""
    from tagrules.testing import FrozenEvaluator
    from tagrules.testing._cases import shared_evaluator

    return FrozenEvaluator(shared_evaluator(tagrules_catalog), tagrules_now)


@pytest.fixture
def tagrules_store() -> Iterator[MemoryStore]:
    """An empty in-memory tag store, closed after the test."""
    from tagrules.stores import MemoryStore

    store = MemoryStore()
    yield store
    store.close()


@pytest.fixture
def tagrules_tagger(
    tagrules_catalog: Catalog, tagrules_store: MemoryStore, tagrules_now: datetime.datetime
) -> FrozenTagger:
    """A tagger of ``tagrules_catalog`` over ``tagrules_store`` whose calls happen at ``tagrules_now``.

    A :class:`~tagrules.testing.FrozenTagger`: ``apply``, ``apply_many``, overrides and ``retire``
    default to the frozen time, as ``tagrules_evaluator`` does.
    """
    from tagrules.testing import FrozenTagger
    from tagrules.testing._cases import shared_evaluator

    evaluator = shared_evaluator(tagrules_catalog)
    return FrozenTagger(tagrules_catalog, tagrules_store, now=tagrules_now, evaluator=evaluator)


@pytest.fixture
def assert_tags(request: pytest.FixtureRequest, tagrules_evaluator: FrozenEvaluator) -> Callable[..., None]:
    """``assert_tags(snapshot, has=..., lacks=..., unknown=...)`` against ``tagrules_evaluator``.

    A failure shows the explanation tree of every wrong tag; ``now`` may be ISO 8601 text.
    """
    from tagrules.testing import assert_tags as check
    from tagrules.testing._assertions import as_time

    coverage = _coverage(request.config, tagrules_evaluator.catalog)

    def assert_snapshot_tags(
        snapshot: Any,
        has: Iterable[str] | str = (),
        lacks: Iterable[str] | str = (),
        *,
        unknown: Iterable[str] | str = (),
        now: datetime.datetime | str | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        __tracebackhide__ = True
        moment = as_time(now)
        if coverage is not None:
            coverage.record(snapshot, now=moment or tagrules_evaluator.now, tags=tags)
        check(snapshot, has, lacks, evaluator=tagrules_evaluator, unknown=unknown, now=moment, tags=tags)

    return assert_snapshot_tags
