"""``tagrules test``: run case files outside pytest."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tagrules.cli._common import CommandError, plugins, plural
from tagrules.errors import DefinitionError
from tagrules.testing import CaseFile, RuleCoverage, load_case_file, run_cases
from tagrules.testing._cases import shared_evaluator

__all__ = ["register"]

_PATTERN = "*.cases.yaml"


def register(commands: Any) -> None:
    """Add ``tagrules test`` to the ``tagrules`` parser."""
    test = commands.add_parser("test", help="run the cases of case files (*.cases.yaml)")
    test.add_argument(
        "files", metavar="FILE", nargs="+", help="case files, or directories searched for *.cases.yaml"
    )
    test.add_argument(
        "--coverage", action="store_true", help="list the rule clauses no case saw both true and false"
    )
    test.add_argument("--verbose", "-v", action="store_true", help="also list the cases that pass")
    test.set_defaults(run=run_test)


def _case_files(names: list[str]) -> list[Path]:
    found: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            matches = sorted(path.rglob(_PATTERN))
            if not matches:
                raise CommandError(f"{name}: no {_PATTERN} files in the directory")
            found.extend(matches)
        else:
            found.append(path)
    return found


def run_test(arguments: argparse.Namespace) -> int:
    """``tagrules test FILE...``: 0 when every case passes, 1 when a case fails or a file is not valid."""
    passed = failed = invalid = 0
    coverages: dict[int, RuleCoverage] = {}
    for path in _case_files(arguments.files):
        try:
            case_file: CaseFile = load_case_file(path, plugins=plugins())
        except DefinitionError as error:
            invalid += 1
            for problem in error.problems:
                print(problem)
            continue
        coverage = None
        if arguments.coverage:
            catalog = case_file.catalog
            coverage = coverages.get(id(catalog))
            if coverage is None:
                coverage = coverages[id(catalog)] = RuleCoverage(catalog, shared_evaluator(catalog))
        for result in run_cases(case_file, coverage=coverage):
            if result.passed:
                passed += 1
                if arguments.verbose:
                    print(result)
            else:
                failed += 1
                print(result)
    total = passed + failed
    summary = f"{plural(total, 'case')}: {passed} passed, {failed} failed"
    if invalid:
        summary += f"; {plural(invalid, 'file')} not valid"
    for coverage in coverages.values():
        label = coverage.catalog.name or coverage.catalog.source or "catalog"
        first, *rest = coverage.report().splitlines()
        print(f"{label}: {first}")
        for line in rest:
            print("  " + line)
    print(summary)
    return 1 if failed or invalid else 0
