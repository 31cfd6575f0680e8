"""The rule author's testing kit: assertions, case files, hypothesis strategies and rule coverage.

* :func:`assert_tags` checks the tags a snapshot gets and explains every wrong one;
  :class:`FrozenEvaluator` evaluates at a fixed ``now``, :class:`FrozenTagger` applies at one.
* :func:`load_case_file` and :func:`run_cases` read and run ``*.cases.yaml`` files (the pytest
  plugin collects them; ``tagrules test`` runs them from the command line).
* :func:`snapshots` and :func:`boundary_snapshots` are hypothesis strategies (hypothesis is needed
  only when they are called).
* :class:`RuleCoverage` tells which clauses of which rules no snapshot saw both true and false.

The pytest plugin, registered when tagrules is installed, adds the fixtures ``tagrules_catalog``,
``tagrules_now``, ``tagrules_evaluator``, ``tagrules_store``, ``tagrules_tagger`` and
``assert_tags`` (see ``docs/testing.md``).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from tagrules.catalog import Catalog
from tagrules.schema import Schema
from tagrules.testing._assertions import (
    FrozenEvaluator,
    FrozenTagger,
    TagAssertionError,
    TagMismatch,
    assert_tags,
    check_tags,
)
from tagrules.testing._boundaries import boundary_values as _boundary_values
from tagrules.testing._cases import (
    Case,
    CaseFile,
    CaseResult,
    load_case_file,
    resolve_catalog,
    run_case,
    run_cases,
)
from tagrules.testing._coverage import ClauseCoverage, RuleCoverage

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "Case",
    "CaseFile",
    "CaseResult",
    "ClauseCoverage",
    "FrozenEvaluator",
    "FrozenTagger",
    "RuleCoverage",
    "TagAssertionError",
    "TagMismatch",
    "assert_tags",
    "boundary_snapshots",
    "boundary_values",
    "check_tags",
    "load_case_file",
    "resolve_catalog",
    "run_case",
    "run_cases",
    "snapshots",
]


def snapshots(source: Catalog | Schema) -> SearchStrategy[dict[str, Any]]:
    """A hypothesis strategy of snapshots that fit the schema of ``source`` (a catalog or a schema).

    Every field is present with a value of its type (nullable fields are sometimes ``None``); given
    a catalog, values on and around the thresholds of its rules come up often.

    Examples:
        >>> from hypothesis import given
        >>> catalog = Catalog(tags=[{"key": "adult", "rule": "age >= 18"}], schema={"age": "int"})
        >>> @given(snapshots(catalog))
        ... def test_adults(snapshot):
        ...     assert isinstance(snapshot["age"], int)
        >>> test_adults()
    """
    from tagrules.testing._strategies import snapshots as build

    return build(source)


def boundary_snapshots(
    catalog: Catalog, key: str, *, now: datetime.datetime | None = None
) -> SearchStrategy[dict[str, Any]]:
    """A hypothesis strategy of valid snapshots on and just around the thresholds deciding tag ``key``.

    The thresholds are those of the tag's rule, of the tags it tests and of the higher tiers of
    their exclusive groups (see :func:`boundary_values`); comparisons with ``$now`` count when
    ``now`` is given.

    Raises:
        KeyError: the catalog has no tag ``key``.
    """
    from tagrules.testing._strategies import boundary_snapshots as build

    return build(catalog, key, now=now)


def boundary_values(
    catalog: Catalog, key: str, *, now: datetime.datetime | None = None
) -> dict[tuple[str, ...], list[Any]]:
    """The values on and just around every threshold deciding tag ``key``, per field path.

    Examples:
        >>> catalog = Catalog(tags=[{"key": "adult", "rule": "age >= 18"}], schema={"age": "int"})
        >>> boundary_values(catalog, "adult")
        {('age',): [18, 17, 19]}
    """
    return _boundary_values(catalog, key, now=now)
