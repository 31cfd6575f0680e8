"""What compiled rules call at run time: rule-engine's semantics, operation by operation.

Each function here does what one rule-engine node does in ``evaluate`` once its operands are
evaluated — the same checks, in the same order, raising the same error classes — so that compiled
rules give exactly the interpreter's values and errors. Compiled code evaluates operands left to
right as arguments of these calls; a check that rule-engine makes on the left operand before it
evaluates the right one is a call wrapped around the left argument.

Values here are in rule-engine's representation (numbers as ``Decimal``, lists as tuples, mappings
as ``OrderedDict``); :func:`coerce` turns a snapshot value into it.
"""

from __future__ import annotations

import datetime
import decimal
import operator
import threading
from collections.abc import Callable, Mapping, Sized
from typing import Any, Final, NoReturn, final

from rule_engine import errors
from rule_engine.ast import (
    _assert_is_bytes,
    _assert_is_integer_number,
    _assert_is_natural_number,
    _assert_is_numeric,
    _assert_is_string,
)
from rule_engine.builtins import Builtins
from rule_engine.types import DataType, coerce_value, is_numeric

from tagrules.rules._language import (
    DECIMAL_CONTEXT,
    MAX_STEPS,
    UTC,
    BudgetExceeded,
    FieldInvalid,
    FieldMissing,
    evaluation_state,
)

__all__ = [
    "ABSENT",
    "add",
    "arithmetic",
    "bitwise",
    "bitwise_left",
    "check_callable",
    "check_numeric",
    "coerce",
    "comprehension_iterable",
    "contains",
    "decimal_of_float",
    "decimal_of_int",
    "equal",
    "fail_field",
    "get_attribute",
    "get_item",
    "get_object_attribute",
    "get_slice",
    "mapping_literal",
    "native_item",
    "negate",
    "new_value",
    "nonnull_container",
    "null_attribute",
    "order",
    "regex",
    "rule_context",
    "subtract",
    "tick",
    "ticks",
    "unequal",
]


@final
class _Absent:
    """The value of a field the snapshot lacks or holds badly (never a real value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


def fail_field(name: str, problems: Mapping[str, str]) -> NoReturn:
    """Raise what the interpreter raises for a field that is missing or bad."""
    problem = problems.get(name)
    if problem is not None:
        raise FieldInvalid(name, problem)
    raise FieldMissing(name)


def tick() -> bool:
    """Count one comprehension step against the rule's budget (always true, for use in conditions)."""
    state = evaluation_state
    state.steps += 1
    if state.steps > MAX_STEPS:
        raise BudgetExceeded()
    return True


def ticks(members: Sized) -> bool:
    """Count the steps of a whole comprehension at once, if they fit the budget (then true); else
    count nothing (false: the comprehension counts each step with :func:`tick`)."""
    state = evaluation_state
    steps = state.steps + len(members)
    if steps > MAX_STEPS:
        return False
    state.steps = steps
    return True


_rule_contexts = threading.local()


def rule_context() -> decimal.Context:
    """This thread's copy of the decimal context rules run in."""
    context: decimal.Context | None = getattr(_rule_contexts, "context", None)
    if context is None:
        context = _rule_contexts.context = DECIMAL_CONTEXT.copy()
    return context


# -- values ---------------------------------------------------------------------------------------


def decimal_of_int(value: int) -> decimal.Decimal:
    """An int as rule-engine holds it."""
    return decimal.Decimal(value)


def decimal_of_float(value: float) -> decimal.Decimal:
    """A float as rule-engine holds it: the decimal of its shortest repr."""
    return decimal.Decimal(repr(value))


def coerce(value: Any) -> Any:
    """A snapshot value in rule-engine's representation."""
    return coerce_value(value, verify_type=False)


def new_value(value: Any) -> Any:
    """rule-engine's ``ExpressionBase._new_value`` without type verification: coerce, naive means UTC."""
    value = coerce_value(value, verify_type=False)
    if isinstance(value, datetime.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _new_verified(value: Any) -> Any:
    value = coerce_value(value)
    if isinstance(value, datetime.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


# -- arithmetic -----------------------------------------------------------------------------------


def check_numeric(value: Any) -> Any:
    """``_assert_is_numeric`` on one operand."""
    _assert_is_numeric(value)
    return value


def arithmetic(function: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """``ArithmeticExpression``: ``* / // % **`` on checked numbers, errors translated."""
    try:
        return function(left, right)
    except ZeroDivisionError:
        raise errors.ArithmeticError("arithmetic error: division by zero") from None
    except ArithmeticError:
        raise errors.ArithmeticError("arithmetic error") from None


def add(left: Any, right: Any) -> Any:
    """``AddExpression._op_add`` (with rule-engine's own type assertions, quirks included: its text
    and bytes assertions look at the left operand only, so ``'a' + 1`` fails in Python's ``+``)."""
    if isinstance(left, datetime.datetime):
        if not isinstance(right, datetime.timedelta):
            raise errors.EvaluationError("data type mismatch (not a timedelta value)")
    elif isinstance(left, datetime.timedelta):
        if not isinstance(right, (datetime.timedelta, datetime.datetime)):
            raise errors.EvaluationError("data type mismatch (not a datetime or timedelta value)")
    elif isinstance(left, bytes) or isinstance(right, bytes):
        _assert_is_bytes(left, right)
    elif isinstance(left, str) or isinstance(right, str):
        _assert_is_string(left, right)
    else:
        _assert_is_numeric(left, right)
    return operator.add(left, right)


def subtract(left: Any, right: Any) -> Any:
    """``SubtractExpression._op_sub``."""
    if isinstance(left, datetime.datetime):
        if not isinstance(right, (datetime.datetime, datetime.timedelta)):
            raise errors.EvaluationError("data type mismatch (not a datetime or timedelta value)")
    elif isinstance(left, datetime.timedelta):
        if not isinstance(right, datetime.timedelta):
            raise errors.EvaluationError("data type mismatch (not a timedelta value)")
    else:
        _assert_is_numeric(left, right)
    return operator.sub(left, right)


def negate(value: Any) -> Any:
    """``UnaryExpression`` minus."""
    if not is_numeric(value) and not isinstance(value, datetime.timedelta):
        raise errors.EvaluationError("data type mismatch (not a numeric or timedelta value)")
    return operator.neg(value)


def bitwise_left(value: Any) -> Any:
    """``BitwiseExpression._op_bitwise``: the checks on the left operand, before the right is evaluated."""
    left_type = DataType.from_value(value)
    if left_type == DataType.FLOAT:
        _assert_is_natural_number(value)
        return value
    if DataType.is_type(left_type, DataType.SET):
        return value
    raise errors.EvaluationError("data type mismatch")


def bitwise(function: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """``BitwiseExpression``: the operation, once the left operand passed :func:`bitwise_left`."""
    if isinstance(left, (set, frozenset)):
        if not DataType.is_compatible(DataType.from_value(right), DataType.SET):
            raise errors.EvaluationError("data type mismatch")
        return function(left, right)
    _assert_is_natural_number(right)
    return coerce_value(function(int(left), int(right)))


# -- comparisons ----------------------------------------------------------------------------------


def equal(left: Any, right: Any) -> bool:
    """``ComparisonExpression._op_eq``."""
    if type(left) is not type(right):
        return False
    return bool(operator.eq(left, right))


def unequal(left: Any, right: Any) -> bool:
    """``ComparisonExpression._op_ne``."""
    if type(left) is not type(right):
        return True
    return bool(operator.ne(left, right))


def _order_arrays(function: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    for sub_left, sub_right in zip(left, right, strict=False):
        if _order_values(operator.ne, sub_left, sub_right):
            return _order_values(function, sub_left, sub_right)
    if len(left) != len(right):
        return _order_values(function, len(left), len(right))
    return function in (operator.ge, operator.le)


def _order_values(function: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    if left is None and right is None:
        return function in (operator.ge, operator.le)
    if isinstance(left, tuple) and isinstance(right, tuple):
        return _order_arrays(function, left, right)
    if type(left) is not type(right):
        raise errors.EvaluationError("data type mismatch")
    return function(left, right)


def order(function: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """``ArithmeticComparisonExpression``: ``< <= > >=`` with rule-engine's null and array rules."""
    return _order_values(function, left, right)


def regex(search: bool, negated: bool, left: Any, pattern: Any) -> bool:
    """``FuzzyComparisonExpression`` with a literal pattern: ``=~ =~~ !~ !~~``."""
    if not isinstance(left, str) and left is not None:
        raise errors.EvaluationError("data type mismatch")
    if left is None:
        return negated
    found = pattern.search(left) if search else pattern.match(left)
    return (found is None) if negated else (found is not None)


# -- containers -----------------------------------------------------------------------------------


def contains(container: Any, member: Any) -> bool:
    """``ContainsExpression.evaluate`` once both operands are evaluated (container first)."""
    container_type = DataType.from_value(container)
    if container_type in (DataType.BYTES, DataType.STRING) and DataType.from_value(member) != container_type:
        raise errors.EvaluationError("data type mismatch")
    return bool(member in container)


def nonnull_container(container: Any) -> Any:
    """``GetItemExpression``: a null container is an error before the item is evaluated."""
    if container is None:
        raise errors.EvaluationError("data type mismatch (container is null)")
    return container


def get_item(container: Any, item: Any, safe: bool) -> Any:
    """``GetItemExpression.evaluate`` once the container is known not null and the item is evaluated."""
    if isinstance(container, (bytes, str, tuple)):
        _assert_is_integer_number(item)
        item = int(item)
    try:
        value = operator.getitem(container, item)
    except (IndexError, KeyError):
        if safe:
            return None
        raise errors.LookupError(container, item) from None
    return new_value(value)


def native_item(container: Any, key: Any, safe: bool) -> Any:
    """``GetItemExpression`` on a typed dict, a list or text read natively (the key of the dict's
    key type, an index that is a literal integer): the native member, or for a missing one null
    (``&[``) or rule-engine's error."""
    try:
        return container[key]
    except (IndexError, KeyError):
        if safe:
            return None
        raise errors.LookupError(coerce(container), key) from None


def slice_container(container: Any) -> Any:
    """``GetSliceExpression``: a null container is an error before start and stop are evaluated."""
    if container is None:
        raise errors.EvaluationError("data type mismatch")
    return container


def slice_bound(value: Any) -> int | None:
    """A slice start or stop: null, or an integer number."""
    if value is None:
        return None
    _assert_is_integer_number(value)
    return int(value)


def get_slice(container: Any, start: int | None, stop: int | None) -> Any:
    """``GetSliceExpression.evaluate`` once its parts are evaluated and checked."""
    return coerce_value(operator.getitem(container, slice(start, stop)), verify_type=False)


def null_attribute() -> NoReturn:
    """``GetAttributeExpression`` on a null value of a nullable type, without ``&.``."""
    raise errors.EvaluationError(
        "attribute access on a null value (use ?. to safely navigate a NULLABLE expression)"
    )


def get_object_attribute(node: Any, value: Any) -> Any:
    """``GetAttributeExpression`` on an OBJECT-typed value, through the object type's accessor."""
    object_type = node._object_type
    try:
        found = object_type.accessor(value, node.name)
    except (AttributeError, KeyError):
        from rule_engine.suggestions import suggest_symbol

        raise errors.ObjectAttributeError(
            node.name, object_type, suggestion=suggest_symbol(node.name, object_type.attributes.keys())
        ) from None
    return new_value(found)


def get_attribute(context: Any, value: Any, name: str) -> Any:
    """``GetAttributeExpression`` on a value that is not an OBJECT: rule-engine's attribute resolver."""
    try:
        found = context.resolve_attribute(None, value, name)
    except errors.AttributeResolutionError as error:
        if isinstance(value, Mapping) and not isinstance(value, Builtins):
            raise
        raise error from None
    return new_value(found)


def mapping_literal(pairs: list[tuple[Any, Callable[[], Any]]]) -> Any:
    """``MappingExpression.evaluate``: keys first (checked), then each kept key's value."""
    import collections

    mapping: collections.OrderedDict[Any, Any] = collections.OrderedDict()
    for key, value in pairs:
        key_type = DataType.from_value(key)
        if key_type.is_compound and not DataType.is_type(key_type, DataType.ARRAY):
            raise errors.EngineError(f"the {key_type.name} data type may not be used for mapping keys")
        mapping[key] = value
    for key, value in mapping.items():
        mapping[key] = value()
    return mapping


def comprehension_iterable(value: Any) -> Any:
    """``ComprehensionExpression``: what it iterates must be iterable."""
    if not DataType.from_value(value).is_iterable:
        raise errors.EvaluationError("data type mismatch (comprehension requires an iterable)")
    return value


# -- function calls -------------------------------------------------------------------------------


def check_callable(function: Any) -> Any:
    """``FunctionCallExpression``: the function must be callable before the arguments are evaluated."""
    if not callable(function):
        raise errors.EvaluationError("data type mismatch (not a callable value)")
    return function


def call(node: Any, function: Any, arguments: tuple[Any, ...]) -> Any:
    """``FunctionCallExpression.evaluate`` once the function and its arguments are evaluated."""
    function_name: str | None = "<unknown>"
    if node.function.result_type != DataType.UNDEFINED:
        function_type = node.function.result_type
        function_name = function_type.value_name
        node._validate_function(function_type, arguments)
    elif hasattr(function, "__name__"):
        function_name = function.__name__ + "?"
    try:
        result = function(*arguments)
    except errors.FunctionCallError as error:
        error.function_name = function_name
        raise
    except Exception as error:
        raise errors.FunctionCallError(
            "function call failed", error=error, function_name=function_name
        ) from None
    result = _new_verified(result)
    if not DataType.is_compatible(DataType.from_value(result), node.result_type):
        raise errors.FunctionCallError(
            "function call failed (data type mismatch on returned value)", function_name=function_name
        )
    return result


def steps_reset() -> None:
    """Start a rule's step budget afresh."""
    evaluation_state.steps = 0


_last_today: tuple[datetime.datetime | None, datetime.datetime | None] = (None, None)


def today_of(now: datetime.datetime) -> datetime.datetime:
    """``$today``: midnight of ``now``'s day in ``now``'s timezone (kept for the last ``now`` seen)."""
    global _last_today
    seen, today = _last_today
    if seen is now and today is not None:
        return today
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    _last_today = (now, today)
    return today
