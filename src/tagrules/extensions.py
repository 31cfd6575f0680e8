"""What code adds to the rule language: typed custom functions and derived snapshot fields.

A :class:`RuleFunction` is callable in rules as ``$name(...)``. Its argument and return types are
declared with the type names of catalog schemas, so validation at load catches a misused function
(a wrong argument type, too many arguments, a result compared with the wrong kind of value) exactly
as it catches a misused field::

    days_since = RuleFunction(
        "days_since",
        lambda now, moment: None if moment is None else (now - moment).days,
        arguments=["datetime | None"],
        returns="int | None",
        uses_now=True,
    )
    catalog = Catalog.load("catalog.yaml", functions=[days_since])
    # rule: "($days_since(last_order_at) ?? 9999) > 180"

A :class:`DerivedField` is a snapshot field computed from the other fields (and ``now``) before the
rules run, so rules read ``days_since_last_order`` as if the snapshot carried it.

Both reach a catalog only through what it is built or loaded with: ``functions=`` and ``derived=``
lists, or ``plugins=``, anything with ``functions`` and ``derived_fields`` (:class:`Extensions`:
a :class:`~tagrules.plugins.PluginRegistry` such as ``installed_plugins()``, or one
:class:`~tagrules.plugins.Plugin`). The front ends, the ``tagrules`` command and the pytest plugin,
load with the registry of every installed plugin.
"""

from __future__ import annotations

import datetime
import functools
import keyword
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, final

from rule_engine.builtins import Builtins
from rule_engine.types import DataType, _DataTypeDef

from tagrules.errors import DefinitionError, Problem
from tagrules.rules._language import evaluation_state
from tagrules.schema import FieldType, SchemaError, parse_type

__all__ = ["DerivedField", "Extensions", "RuleFunction"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

#: Builtins rule-engine and tagrules define; a custom function may not take their names.
RESERVED_FUNCTION_NAMES = frozenset(Builtins.from_defaults().keys()) | {"re_groups", "tags"}

#: Argument types beyond schema type names: any value, and lists or sets of anything.
_LOOSE_TYPES: Mapping[str, _DataTypeDef] = {
    "any": DataType.UNDEFINED,
    "list": DataType.ARRAY(DataType.UNDEFINED),
    "set": DataType.SET(DataType.UNDEFINED),
}


def _rule_type(text: Any, role: str) -> _DataTypeDef:
    if isinstance(text, str) and text.strip() in _LOOSE_TYPES:
        return _LOOSE_TYPES[text.strip()]
    try:
        return parse_type(text).rule_type()
    except SchemaError as error:
        raise ValueError(f"{role}: {error}") from None


@final
@dataclass(frozen=True, eq=False)
class RuleFunction:
    """A function rules call as ``$name(...)``, with declared argument and return types.

    Args:
        name: the name after ``$`` (lowercase letters, digits and ``_``).
        implementation: the Python callable. It receives rule values: numbers as
            :class:`decimal.Decimal`, lists as tuples, nested objects as
            :class:`~tagrules.schema.Record`, datetimes in UTC. Its result is converted back the same
            way (a ``float`` or ``int`` becomes a ``Decimal``) and checked against ``returns``. An
            exception it raises fails the calling tag on that snapshot only (the error policy).
        arguments: the type of each argument, written as in schemas (``"datetime | None"``,
            ``"list[str]"``, ``"float"``), or ``"any"``, ``"list"``, ``"set"`` for loose types.
        returns: the type of the result, written the same way.
        required: how many leading arguments are required (default: all of them).
        uses_now: pass the evaluation's ``now`` (an aware UTC datetime) as the first argument,
            before the rule's arguments, so results follow the ``now`` an evaluation is given.
        sql: for push-down, a callable building the SQL form of a call from the SQLAlchemy
            expressions of the arguments (preceded by ``now`` as a bound parameter when
            ``uses_now``); without it, tags calling the function are evaluated in Python.
        description: one line for ``tagrules plugins`` and the documentation.

    Raises:
        ValueError: the name or a declared type is not valid (the message says which).
    """

    name: str
    implementation: Callable[..., Any]
    arguments: Sequence[str] = ()
    returns: str = "any"
    required: int | None = None
    uses_now: bool = False
    sql: Callable[..., Any] | None = None
    description: str = ""
    data_type: _DataTypeDef = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or keyword.iskeyword(self.name):
            raise ValueError(
                f"function name {self.name!r} must be lowercase letters, digits and '_' (as in $days_since)"
            )
        if self.name in RESERVED_FUNCTION_NAMES:
            raise ValueError(f"function name {self.name!r} is a builtin of the rule language; rename it")
        if not callable(self.implementation):
            raise ValueError(f"function {self.name!r}: the implementation is not callable")
        if isinstance(self.arguments, str) or not isinstance(self.arguments, Sequence):
            raise ValueError(f"function {self.name!r}: 'arguments' must be a list of type names")
        object.__setattr__(self, "arguments", tuple(self.arguments))
        argument_types = tuple(
            _rule_type(text, f"function {self.name!r}, argument #{position}")
            for position, text in enumerate(self.arguments, start=1)
        )
        return_type = _rule_type(self.returns, f"function {self.name!r}, return type")
        required = len(argument_types) if self.required is None else self.required
        if not isinstance(required, int) or not 0 <= required <= len(argument_types):
            raise ValueError(
                f"function {self.name!r}: 'required' must be between 0 and {len(argument_types)}"
            )
        object.__setattr__(
            self,
            "data_type",
            DataType.FUNCTION(
                self.name,
                return_type=return_type,
                argument_types=argument_types,
                minimum_arguments=required,
            ),
        )

    @property
    def signature(self) -> str:
        """The call as rule authors write it, with types: ``$days_since(datetime | None) -> int | None``."""
        required = len(self.arguments) if self.required is None else self.required
        shown = [text if index < required else f"[{text}]" for index, text in enumerate(self.arguments)]
        return f"${self.name}({', '.join(shown)}) -> {self.returns}"

    def builtin(self) -> tuple[Callable[..., Any], _DataTypeDef]:
        """The value and rule-engine type the rule language registers for ``$name``."""
        if not self.uses_now:
            return self.implementation, self.data_type
        return functools.partial(_with_now, self.implementation), self.data_type


def _with_now(implementation: Callable[..., Any], *arguments: Any) -> Any:
    now = evaluation_state.now
    return implementation(
        now if now is not None else datetime.datetime.now(datetime.timezone.utc), *arguments
    )


@final
@dataclass(frozen=True, eq=False)
class DerivedField:
    """A snapshot field computed from the others before rules run.

    Args:
        name: the field name rules use.
        type: its type, written as in schemas (``"int | None"``).
        compute: called with the snapshot (a read-only mapping of the fields of ``reads`` as the
            schema reads them: datetimes aware in UTC, even from JSON text or naive datetimes) and
            the evaluation's ``now``; returns the value. If it raises, or a field it reads is bad
            on the snapshot, the field counts as bad on that snapshot, and only the tags reading it
            fail.
        reads: the snapshot fields ``compute`` needs (without it, it gets every field); a catalog
            whose schema lacks one of them does not get this field. In the database, tags reading
            the field are evaluated in Python from the columns of these fields.
        description: one line for ``tagrules plugins`` and the documentation.

    Raises:
        ValueError: the name or the type is not valid.
    """

    name: str
    type: str
    compute: Callable[[Mapping[str, Any], datetime.datetime], Any]
    reads: Sequence[str] = ()
    description: str = ""
    field_type: FieldType = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.name):
            raise ValueError(f"derived field name {self.name!r} must be letters, digits and '_'")
        if not callable(self.compute):
            raise ValueError(f"derived field {self.name!r}: 'compute' is not callable")
        try:
            object.__setattr__(self, "field_type", parse_type(self.type))
        except SchemaError as error:
            raise ValueError(f"derived field {self.name!r}: {error}") from None
        object.__setattr__(self, "reads", tuple(self.reads))


class Extensions(Protocol):
    """What a catalog's ``plugins=`` argument provides: functions and derived fields.

    :class:`~tagrules.plugins.PluginRegistry` (``installed_plugins()``) and
    :class:`~tagrules.plugins.Plugin` are such sources.
    """

    @property
    def functions(self) -> Sequence[RuleFunction]:
        """The rule functions."""
        ...

    @property
    def derived_fields(self) -> Sequence[DerivedField]:
        """The derived fields."""
        ...


def extension_lists(
    plugins: Extensions | None, functions: Iterable[RuleFunction], derived: Iterable[DerivedField]
) -> tuple[list[RuleFunction], list[DerivedField]]:
    """The functions and derived fields of ``plugins`` followed by those given directly."""
    if plugins is None:
        return list(functions), list(derived)
    return [*plugins.functions, *functions], [*plugins.derived_fields, *derived]


def check_functions(functions: Sequence[RuleFunction], source: str | None) -> dict[str, RuleFunction]:
    """Functions by name; raises :class:`DefinitionError` when two share a name."""
    by_name: dict[str, RuleFunction] = {}
    problems = []
    for function in functions:
        if not isinstance(function, RuleFunction):
            problems.append(Problem(f"{function!r} is not a RuleFunction", file=source, section="functions"))
        elif function.name in by_name:
            problems.append(
                Problem(f"two functions are named ${function.name}", file=source, section="functions")
            )
        else:
            by_name[function.name] = function
    if problems:
        raise DefinitionError(problems)
    return by_name
