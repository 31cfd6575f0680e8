"""``tagrules validate``, ``evaluate``, ``explain`` and ``sample``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tagrules.analysis import Finding, check_catalog, check_sample
from tagrules.catalog import Catalog
from tagrules.cli._columnar import (
    Writer,
    evaluate_file,
    is_columnar,
    result_writer,
    write_evaluation,
    write_parquet_rows,
)
from tagrules.cli._common import (
    CommandError,
    load_catalog,
    open_output,
    parse_now,
    plural,
    print_problems,
    read_jsonl,
    read_snapshots,
    snapshot_id,
)
from tagrules.errors import DefinitionError, Problem, SourceError, TimeUnknown
from tagrules.evaluation import Evaluator, resolve_now
from tagrules.schema import suggest

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the catalog commands to the ``tagrules`` parser."""
    validate = commands.add_parser("validate", help="check a catalog and report every problem")
    validate.add_argument("catalog", metavar="CATALOG", help="a catalog file, or a pack name such as retail")
    validate.add_argument("--verbose", "-v", action="store_true", help="also list the tags and how they run")
    validate.add_argument(
        "--sample",
        metavar="SNAPSHOTS.jsonl",
        help="also warn about tags no snapshot of this JSON Lines file is given",
    )
    validate.add_argument("--now", type=parse_now, help="the time the sample is evaluated at (default: now)")
    validate.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    validate.add_argument("--json", action="store_true", help="print the result as one JSON object")
    validate.set_defaults(run=run_validate)

    evaluate = commands.add_parser("evaluate", help="print the tags of each snapshot of a JSON Lines file")
    evaluate.add_argument("catalog", metavar="CATALOG", help="a catalog file, or a pack name such as retail")
    evaluate.add_argument(
        "snapshots",
        metavar="SNAPSHOTS",
        help="a JSON Lines file, one object per line ('-': stdin); or a Parquet file, directory or glob, "
        "or a CSV file",
    )
    evaluate.add_argument("--now", type=parse_now, help="the time rules see as $now (ISO 8601; default: now)")
    evaluate.add_argument(
        "--id-field", default="id", help="the field holding each snapshot's id (default: id)"
    )
    evaluate.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write the results to FILE instead of stdout (FILE.parquet: a Parquet file)",
    )
    evaluate.add_argument(
        "--valid-until",
        action="store_true",
        help='add "valid_until": the instant time alone changes the tags (ISO 8601), or null',
    )
    evaluate.add_argument(
        "--engine",
        choices=["duckdb", "spark"],
        default="duckdb",
        help="for Parquet and CSV: duckdb reads the rows, evaluated in this process (default); spark "
        "evaluates them on Spark's executors (--spark-master)",
    )
    evaluate.add_argument(
        "--spark-master",
        metavar="URL",
        default="local[*]",
        help="with --engine spark: the Spark master (default: local[*])",
    )
    evaluate.add_argument(
        "--ordered",
        action="store_true",
        help="with --engine spark: the results in the file's order (Spark's are in no order otherwise)",
    )
    evaluate.set_defaults(run=run_evaluate)

    explain = commands.add_parser("explain", help="show why one snapshot has or lacks one tag")
    explain.add_argument("catalog", metavar="CATALOG", help="a catalog file, or a pack name such as retail")
    explain.add_argument("snapshots", metavar="SNAPSHOTS.jsonl", help="one JSON object per line ('-': stdin)")
    explain.add_argument("--id", required=True, help="the id of the snapshot to explain")
    explain.add_argument("--tag", help="the key of the tag to explain (default: every tag)")
    explain.add_argument("--now", type=parse_now, help="the time rules see as $now (ISO 8601; default: now)")
    explain.add_argument(
        "--id-field", default="id", help="the field holding each snapshot's id (default: id)"
    )
    explain.add_argument(
        "--flip", action="store_true", help="show the single-field changes that would flip the tag"
    )
    explain.add_argument("--json", action="store_true", help="with --flip: print one JSON object")
    explain.set_defaults(run=run_explain)

    sample = commands.add_parser("sample", help="write generated sample customers as JSON Lines")
    sample.add_argument(
        "--pack", default="retail", choices=["retail"], help="the pack whose customers to make"
    )
    sample.add_argument("--count", type=int, default=20, help="how many customers (default: 20)")
    sample.add_argument("--seed", type=int, default=0, help="the random seed (default: 0)")
    sample.add_argument(
        "--now", type=parse_now, help="when the histories end (default: 2026-06-01T00:00:00Z)"
    )
    sample.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE instead of stdout (FILE.parquet: Parquet)"
    )
    sample.set_defaults(run=run_sample)


def _catalog(reference: str) -> Catalog | None:
    try:
        return load_catalog(reference)
    except DefinitionError as error:
        print_problems(error, sys.stderr)
        return None


def run_validate(arguments: argparse.Namespace) -> int:
    """``tagrules validate CATALOG``: 0 with a summary and warnings if valid, 1 with every problem otherwise.

    Warnings of the static checks do not fail validation unless ``--strict`` is given.
    """
    try:
        catalog = load_catalog(arguments.catalog)
    except DefinitionError as error:
        if arguments.json:
            print(
                json.dumps(
                    {
                        "catalog": arguments.catalog,
                        "valid": False,
                        "problems": [_problem_data(problem) for problem in error.problems],
                    },
                    ensure_ascii=False,
                )
            )
            return 1
        print_problems(error, sys.stdout)
        print(f"{arguments.catalog}: {plural(len(error.problems), 'problem')}", file=sys.stderr)
        return 1
    statuses = {
        status: sum(1 for tag in catalog if tag.status == status) for status in ("active", "draft", "retired")
    }
    groups = len(catalog.groups)
    if arguments.json:
        return _validate_json(arguments, catalog, statuses)
    print(
        f"{arguments.catalog}: valid: {plural(len(catalog), 'tag')} "
        f"({statuses['active']} active, {statuses['draft']} draft, {statuses['retired']} retired), "
        f"{plural(groups, 'exclusive group')}"
    )
    if arguments.verbose:
        print("evaluation order (exclusive groups together):")
        for unit in catalog.evaluation_order:
            label = f"group {unit.group}: " if unit.group else ""
            print(f"  {label}{', '.join(unit.keys)}")
        interpreted = Evaluator(catalog).interpreted
        compiled = len(catalog.active) - len(interpreted)
        print(f"compiled to Python: {plural(compiled, 'rule')}")
        if interpreted:
            print("run by rule-engine's interpreter:")
            for key, reason in interpreted.items():
                print(f"  {key}: {reason}")
    return _report_findings(arguments, catalog)


def _problem_data(problem: Problem) -> dict[str, Any]:
    return {
        "message": problem.message,
        "file": problem.file,
        "tag": problem.tag,
        "line": problem.line,
        "column": problem.column,
        "section": problem.section,
        "text": str(problem),
    }


def _validate_json(arguments: argparse.Namespace, catalog: Catalog, statuses: dict[str, int]) -> int:
    """``validate --json``: one object with the counts, the warnings and the sample's bad lines."""
    findings, bad_lines = _findings(arguments, catalog)
    data = {
        "catalog": arguments.catalog,
        "valid": True,
        "problems": [],
        "tags": len(catalog),
        **statuses,
        "groups": len(catalog.groups),
        "warnings": [
            {
                "code": f.code,
                "message": f.message,
                "file": f.file,
                "tag": f.tag,
                "group": f.group,
                "text": str(f),
            }
            for f in findings
        ],
        "bad_lines": bad_lines,
    }
    print(json.dumps(data, ensure_ascii=False))
    return 1 if bad_lines or (findings and arguments.strict) else 0


def _read_sample(path: str) -> tuple[list[dict[str, Any]], int]:
    snapshots: list[dict[str, Any]] = []
    bad_lines = 0
    for number, value, problem in read_jsonl(path):
        if problem is None and not isinstance(value, dict):
            problem = "a snapshot must be a JSON object"
        if problem is not None:
            bad_lines += 1
            print(f"{path}:{number}: {problem}; line skipped", file=sys.stderr)
            continue
        assert isinstance(value, dict)
        snapshots.append(value)
    return snapshots, bad_lines


def _findings(arguments: argparse.Namespace, catalog: Catalog) -> tuple[list[Finding], int]:
    """The warnings of the static checks and of the sample, and the sample's bad lines."""
    findings = check_catalog(catalog)
    bad_lines = 0
    if arguments.sample is not None:
        snapshots, bad_lines = _read_sample(arguments.sample)
        findings.extend(check_sample(catalog, snapshots, now=arguments.now, file=arguments.sample))
    return findings, bad_lines


def _report_findings(arguments: argparse.Namespace, catalog: Catalog) -> int:
    """The warnings of the static checks (and of the sample); exit 1 for them only with --strict."""
    findings, bad_lines = _findings(arguments, catalog)
    for finding in findings:
        print(finding)
    if findings:
        count = len(findings)
        print(f"{arguments.catalog}: {plural(count, 'warning')}", file=sys.stderr)
    if bad_lines:
        print(f"{arguments.sample}: {plural(bad_lines, 'bad line')} skipped", file=sys.stderr)
    return 1 if bad_lines or (findings and arguments.strict) else 0


def run_evaluate(arguments: argparse.Namespace) -> int:
    """``tagrules evaluate``: one result per good snapshot, in input order, bad ones reported on stderr.

    JSON Lines are read and checked line by line in Python; Parquet and CSV are read by DuckDB.
    Results go out as JSON Lines, or as Parquet where ``--output`` ends in ``.parquet``."""
    catalog = _catalog(arguments.catalog)
    if catalog is None:
        return 1
    now = resolve_now(arguments.now)
    if arguments.valid_until and (arguments.output or "").lower().endswith(".parquet"):
        raise CommandError("evaluate: --valid-until writes JSON Lines; give an --output that is not .parquet")
    try:
        with result_writer(arguments.output) as write:
            if arguments.engine == "spark":
                skipped = _evaluate_on_spark(catalog, arguments, now, write)
                noun = "row"
            elif is_columnar(arguments.snapshots):
                skipped = evaluate_file(
                    catalog,
                    arguments.snapshots,
                    arguments.id_field,
                    now,
                    write,
                    valid_until=arguments.valid_until,
                )
                noun = "row"
            else:
                skipped = _evaluate_lines(catalog, arguments, now, write)
                noun = "line"
    except TimeUnknown as error:
        raise CommandError(f"--valid-until: {error}") from None
    if skipped:
        print(f"{arguments.snapshots}: {plural(skipped, f'bad {noun}')} skipped", file=sys.stderr)
    return 1 if skipped else 0


def _evaluate_on_spark(catalog: Catalog, arguments: argparse.Namespace, now: Any, write: Writer) -> int:
    """``evaluate --engine spark``: a Parquet or CSV file evaluated on Spark's executors."""
    from tagrules.spark._files import evaluate_file as evaluate_on_spark

    if arguments.valid_until:
        raise CommandError("evaluate: --valid-until is not computed with --engine spark")
    if not is_columnar(arguments.snapshots):
        raise CommandError("evaluate: --engine spark reads Parquet or CSV snapshots")
    try:
        return evaluate_on_spark(
            catalog,
            arguments.snapshots,
            arguments.id_field,
            now,
            write,
            master=arguments.spark_master,
            ordered=arguments.ordered,
        )
    except SourceError as error:
        raise CommandError(str(error)) from None


def _evaluate_lines(catalog: Catalog, arguments: argparse.Namespace, now: Any, write: Writer) -> int:
    """Evaluate a JSON Lines file through the reader ``run`` shares; returns the lines skipped."""
    evaluator = Evaluator(catalog)
    failures: list[str] = []
    snapshots = read_snapshots(
        arguments.snapshots, catalog.schema, id_field=arguments.id_field, failures=failures
    )
    for _, identifier, value in snapshots:
        evaluation = evaluator.evaluate(value, now=now, valid_until=arguments.valid_until)
        write_evaluation(write, identifier, evaluation, valid_until=arguments.valid_until)
    return len(failures)


def run_explain(arguments: argparse.Namespace) -> int:
    """``tagrules explain``: the explanation tree of one tag (or of every tag) on one snapshot."""
    catalog = _catalog(arguments.catalog)
    if catalog is None:
        return 1
    if arguments.tag is not None and arguments.tag not in catalog:
        keys = [tag.key for tag in catalog]
        raise CommandError(f"no tag {arguments.tag!r} in {arguments.catalog}{suggest(arguments.tag, keys)}")
    for number, value, problem in read_jsonl(arguments.snapshots):
        if problem is not None or not isinstance(value, dict):
            continue
        identifier, _ = snapshot_id(value, arguments.id_field)
        if identifier is None or str(identifier) != arguments.id:
            continue
        _, bad = catalog.schema.read(value)
        for name, message in bad.items():
            print(f"{arguments.snapshots}:{number}: field {name!r}: {message}", file=sys.stderr)
        evaluator = Evaluator(catalog)
        now = resolve_now(arguments.now)
        if arguments.flip:
            if arguments.tag is None:
                raise CommandError("explain: --flip needs --tag KEY, the tag to flip")
            print_flips(evaluator, value, arguments.tag, now, arguments.json)
            return 0
        keys = [arguments.tag] if arguments.tag is not None else [tag.key for tag in catalog]
        print("\n\n".join(str(evaluator.explain(value, key, now=now)) for key in keys))
        return 0
    raise CommandError(f"no snapshot with {arguments.id_field} {arguments.id!r} in {arguments.snapshots}")


def print_flips(evaluator: Evaluator, snapshot: dict[str, Any], key: str, now: Any, as_json: bool) -> None:
    """``explain --flip``: the changes that flip ``key``, as JSON or one per line."""
    assigned = key in evaluator.evaluate(snapshot, now).tags
    found = evaluator.flips(snapshot, key, now=now)
    if as_json:
        data = {"tag": key, "assigned": assigned, "flips": [flip.to_data() for flip in found]}
        print(json.dumps(data, ensure_ascii=False))
        return
    state = "assigned" if assigned else "not assigned"
    if not found:
        print(f"{key}: {state}; no change to a single field flips it")
        return
    print(f"{key}: {state}; each of these changes alone would {'remove' if assigned else 'assign'} it:")
    for flip in found:
        difference = "" if flip.difference is None else f" ({_signed(flip.difference)})"
        print(f"  {flip.field}: {json.dumps(flip.before)} -> {json.dumps(flip.after)}{difference}")


def _signed(difference: Any) -> str:
    text = str(difference)
    return text if text.startswith("-") else f"+{text}"


def run_sample(arguments: argparse.Namespace) -> int:
    """``tagrules sample``: generated customers of a pack, one JSON object per line."""
    from tagrules.packs.retail import REFERENCE_NOW, customer_to_json, generate_customers

    if arguments.count < 0:
        raise CommandError("--count must not be negative")
    now = arguments.now or REFERENCE_NOW
    if arguments.output and arguments.output.lower().endswith(".parquet"):
        from tagrules.packs.retail import load_catalog as load_retail

        customers = generate_customers(arguments.count, seed=arguments.seed, now=now)
        write_parquet_rows(arguments.output, load_retail().schema, customers)
        return 0
    with open_output(arguments.output) as output:
        for customer in generate_customers(arguments.count, seed=arguments.seed, now=now):
            output.write(customer_to_json(customer) + "\n")
    return 0
