"""The errors tagrules raises on purpose.

Every error is a :class:`TagrulesError`; catch that to catch them all::

    TagrulesError
    ├── DefinitionError      a catalog, tag or schema is not valid; ``problems`` lists every problem
    ├── InvalidArgument      an empty or non-text customer id, a tag the catalog does not define
    ├── SnapshotError        a snapshot does not fit the schema; ``problems`` names each bad field
    ├── NotPushable          a rule has no exact SQL on a database; ``tag`` and ``construct`` say which
    ├── SourceError          a database table cannot be read as snapshots (no such table or column)
    ├── StaleSnapshot        an evaluation is older than the customer's last stored change; not written
    ├── TimeUnknown          when tags lapse by time cannot be derived from the rules (``valid_until``)
    └── StoreError           a tag store cannot be reached, is not set up, or refused a change
        └── ConcurrentUpdate a customer changed since it was read; the work is retried on fresh state

Errors of rule-engine, YAML, JSON, pydantic and the database drivers are translated where they enter
tagrules and kept as the ``__cause__`` of the error raised. A rule that fails on one snapshot is not an
exception: the evaluator records it in ``Evaluation.errors`` and goes on (see ``docs/errors.md``).

This module imports nothing from tagrules.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

__all__ = [
    "ConcurrentUpdate",
    "DefinitionError",
    "InvalidArgument",
    "NotPushable",
    "Problem",
    "SnapshotError",
    "SourceError",
    "StaleSnapshot",
    "StoreError",
    "TagrulesError",
    "TimeUnknown",
]


class TagrulesError(Exception):
    """The base class of every error tagrules raises on purpose."""


@final
@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a definition: what is wrong and exactly where.

    Attributes:
        message: what is wrong, written for the rule author, with the fix where one is known.
        file: the file the definition came from, or ``None`` for definitions built in code.
        tag: the key of the tag the problem belongs to, or ``None`` for catalog-level problems.
        line: the line inside the rule text (1-based), for rules that span several lines.
        column: the column inside the rule text (1-based), when the problem has a position.
        section: where a catalog-level problem is (``"schema"``, ``"catalog"``), when ``tag`` is ``None``.
    """

    message: str
    file: str | None = None
    tag: str | None = None
    line: int | None = None
    column: int | None = None
    section: str | None = None

    def __str__(self) -> str:
        where = self.file if self.file is not None else "<catalog>"
        if self.tag is not None:
            head = f"{where}: tag {self.tag!r}: "
        elif self.section is not None:
            head = f"{where}: {self.section}: "
        else:
            head = f"{where}: "
        position = ""
        if self.column is not None:
            if self.line is not None and self.line > 1:
                position = f" (line {self.line}, column {self.column})"
            else:
                position = f" (column {self.column})"
        return head + self.message + position


class DefinitionError(TagrulesError, ValueError):
    """A catalog, tag or schema is not valid.

    Every problem found is reported at once: ``problems`` holds them in the order of the file,
    and ``str(error)`` lists them one per line.
    """

    problems: tuple[Problem, ...]

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        if not self.problems:
            raise ValueError("DefinitionError needs at least one problem")
        count = len(self.problems)
        heading = "1 problem" if count == 1 else f"{count} problems"
        super().__init__(heading + ":\n" + "\n".join(str(problem) for problem in self.problems))


class InvalidArgument(TagrulesError, ValueError, TypeError):
    """An argument the API refuses: a customer id that is not text or is empty, a tag key the catalog
    does not define (``Tagger.include``/``exclude``, ``Evaluator.evaluate(tags=..., suppressed=...)``).

    It is both a :class:`ValueError` and a :class:`TypeError`; the message says what was given and,
    for an unknown tag, the nearest known one.
    """


class SnapshotError(TagrulesError, ValueError):
    """A snapshot does not fit the catalog's schema.

    ``problems`` maps each bad field to what is wrong with it, for example
    ``{"age": "expected int, got str 'forty'"}``.
    """

    problems: dict[str, str]

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"field {name!r}: {message}" for name, message in self.problems.items()))


class StoreError(TagrulesError):
    """A tag store cannot be reached, is not set up, or refused a change.

    The message says which store and what to do (``run `tagrules db upgrade URL```); the database
    driver's own error, when there is one, is the ``__cause__``.
    """


class ConcurrentUpdate(StoreError):
    """A customer's stored state changed between reading it and writing the change.

    Raised by :meth:`TagStore.commit` when another writer got there first; nothing of the batch was
    written. :class:`~tagrules.Tagger` reads the customers again and retries.
    """


class StaleSnapshot(TagrulesError):
    """A change is older than the customer's last change in the store, so it is not written.

    Time never runs backwards in a store: writing an evaluation made at ``at`` over a customer whose
    last stored change is at ``last`` (later) would close history periods before they began.
    :meth:`Tagger.apply` and the override methods raise it; :meth:`Tagger.apply_many` skips such
    customers and counts them in ``ApplyReport.stale``. A change at exactly the same instant as the
    last one is written (re-running an evaluation after a failure works).

    Attributes:
        customer_id: the customer.
        at: the time of the change that was refused.
        last: the time of the customer's last stored change.
    """

    def __init__(self, customer_id: str, at: datetime.datetime, last: datetime.datetime) -> None:
        self.customer_id = customer_id
        self.at = at
        self.last = last
        super().__init__(
            f"customer {customer_id!r}: a change at {at.isoformat()} is older than its last stored change "
            f"at {last.isoformat()}; nothing was written (evaluate at {last.isoformat()} or later)"
        )


class NotPushable(TagrulesError):
    """A rule uses a construct that a database cannot evaluate exactly as Python does.

    Raised when a catalog is compiled to SQL with ``mode="database"``; in ``auto`` mode such tags
    are evaluated in Python over the streamed rows instead.

    Attributes:
        construct: what cannot be pushed down, with the rule fragment.
        tag: the tag whose rule uses it (``None`` while the rule is compiled on its own).
        dialect: the database's SQLAlchemy dialect name, when known.
    """

    def __init__(self, construct: str, *, tag: str | None = None, dialect: str | None = None) -> None:
        self.construct = construct
        self.tag = tag
        self.dialect = dialect
        where = f"tag {tag!r}: " if tag is not None else ""
        database = f" on {dialect}" if dialect is not None else ""
        super().__init__(f"{where}{construct} cannot be evaluated in the database{database}")

    def for_tag(self, tag: str, dialect: str) -> NotPushable:
        """The same error, naming the tag and the dialect."""
        return NotPushable(self.construct, tag=tag, dialect=dialect)


class SourceError(TagrulesError, LookupError):
    """A database table cannot be read as snapshots: the table or a field's column is missing, or the
    database cannot be reached. ``str()`` says which and how to fix it."""


class TimeUnknown(TagrulesError):
    """When a snapshot's tags change by time alone cannot be derived from the rules: a rule reads
    ``$now`` or ``$today`` other than in a comparison moving at a fixed rate (``field >= $now - t'P30D'``),
    or through a function or a derived field computed at the evaluation time."""
