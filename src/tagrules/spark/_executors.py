"""What runs on Spark's executors: the compiled Python evaluator over Arrow batches (``mapInArrow``).

A :class:`~tagrules.Catalog` holds compiled rules, which do not pickle; what is shipped is its
recipe (the tag definitions, the schema as a catalog file writes it, the custom functions and
derived fields), built once per Python worker process.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

from tagrules.catalog import Catalog
from tagrules.definitions import TagDefinition
from tagrules.evaluation import Evaluator
from tagrules.extensions import DerivedField, RuleFunction

__all__ = ["CatalogRecipe", "evaluate_batches", "result_batches"]

_COLLECTIONS = frozenset({"list", "set", "dict", "object"})


@final
@dataclass(frozen=True)
class CatalogRecipe:
    """A catalog as picklable parts; ``token`` names it in each worker's cache."""

    token: str
    tags: tuple[TagDefinition, ...]
    schema: Any
    name: str | None
    functions: tuple[RuleFunction, ...]
    derived: tuple[DerivedField, ...]

    @classmethod
    def of(cls, catalog: Catalog, token: str) -> CatalogRecipe:
        schema = catalog.snapshot_schema
        return cls(
            token,
            tuple(catalog.tags),
            schema.model if schema.model is not None else schema.to_data(),
            catalog.name,
            tuple(catalog.functions.values()),
            tuple(catalog.derived_fields.values()),
        )

    def build(self) -> Catalog:
        built = _BUILT.get(self.token)
        if built is None:
            built = Catalog(
                self.tags, self.schema, name=self.name, functions=self.functions, derived=self.derived
            )
            _BUILT.clear()
            _BUILT[self.token] = built
        return built


#: the catalog built last in this process (workers are reused from task to task)
_BUILT: dict[str, Catalog] = {}


def _reader(kind: str) -> Callable[[Any], Any] | None:
    if kind not in _COLLECTIONS:
        return None

    def read(value: Any) -> Any:
        if isinstance(value, (str, bytes)):
            try:
                return json.loads(value)
            except ValueError:
                return value
        if kind == "dict" and isinstance(value, list):
            # a Spark map arrives as its (key, value) pairs
            return dict(value)
        return value

    return read


def _snapshots(batch: Any, fields: Mapping[str, str], catalog: Catalog) -> Iterator[dict[str, Any]]:
    """The rows of an Arrow batch as snapshots: field name -> value (JSON text and maps read)."""
    names = list(fields)
    columns = [batch.column(fields[name]).to_pylist() for name in names]
    readers = [
        _reader(catalog.schema.fields[name].kind) if name in catalog.schema.fields else None for name in names
    ]
    for values in zip(*columns, strict=True):
        yield {
            name: value if reader is None or value is None else reader(value)
            for name, value, reader in zip(names, values, readers, strict=True)
        }


def evaluate_batches(
    recipe: CatalogRecipe,
    fields: Mapping[str, str],
    outputs: Mapping[str, str],
    now: datetime.datetime,
    keep: Sequence[str] | None = None,
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """A ``mapInArrow`` function: each batch with one more column per key of ``outputs`` (tag key ->
    column), the tag's state on the row (1 assigned, 0 not, NULL unknown). ``fields``: field name ->
    the column holding it; ``keep``: the columns passed on (default: all)."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow

        catalog = recipe.build()
        evaluator = Evaluator(catalog)
        for batch in batches:
            states: dict[str, list[int | None]] = {key: [] for key in outputs}
            for snapshot in _snapshots(batch, fields, catalog):
                evaluation = evaluator.evaluate(snapshot, now=now)
                for key, column in states.items():
                    if key in evaluation.errors:
                        column.append(None)
                    else:
                        column.append(1 if key in evaluation.tags else 0)
            kept = list(batch.schema.names) if keep is None else list(keep)
            arrays = [batch.column(name) for name in kept]
            arrays += [pyarrow.array(states[key], type=pyarrow.int32()) for key in outputs]
            yield pyarrow.RecordBatch.from_arrays(arrays, names=[*kept, *outputs.values()])

    return run


def result_batches(
    recipe: CatalogRecipe,
    fields: Mapping[str, str],
    id_column: str,
    order_column: str,
    now: datetime.datetime,
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """A ``mapInArrow`` function giving ``tagrules evaluate``'s results: per row its position, id,
    sorted tags, errors as JSON text, and what the schema refuses in it (NULL where nothing)."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow

        catalog = recipe.build()
        evaluator = Evaluator(catalog)
        schema = catalog.schema
        for batch in batches:
            positions = batch.column(order_column).to_pylist()
            identifiers = batch.column(id_column).to_pylist()
            tags: list[list[str]] = []
            errors: list[str] = []
            problems: list[str | None] = []
            for snapshot, identifier in zip(_snapshots(batch, fields, catalog), identifiers, strict=True):
                _, bad = schema.read(snapshot)
                if not isinstance(identifier, (str, int)) or isinstance(identifier, bool):
                    problems.append(f"the {id_column!r} column must hold a string or an integer")
                elif bad:
                    problems.append("; ".join(f"field {name!r}: {message}" for name, message in bad.items()))
                else:
                    problems.append(None)
                    evaluation = evaluator.evaluate(snapshot, now=now)
                    tags.append(sorted(evaluation.tags))
                    errors.append(json.dumps(dict(sorted(evaluation.errors.items())), ensure_ascii=False))
                    continue
                tags.append([])
                errors.append("{}")
            yield pyarrow.RecordBatch.from_arrays(
                [
                    pyarrow.array(positions, type=pyarrow.int64()),
                    pyarrow.array([None if value is None else str(value) for value in identifiers]),
                    pyarrow.array(
                        [json.dumps(value) if value is not None else None for value in identifiers]
                    ),
                    pyarrow.array(tags, type=pyarrow.list_(pyarrow.string())),
                    pyarrow.array(errors, type=pyarrow.string()),
                    pyarrow.array(problems, type=pyarrow.string()),
                ],
                names=["position", "id", "id_json", "tags", "errors", "problem"],
            )

    return run
