"""DuckDB as a dialect of the rule compiler (SQLAlchemy dialect name ``duckdb``, from ``duckdb-engine``).

DuckDB compares strings byte by byte in UTF-8, which is code point order; ``length`` counts code
points, as ``len`` does; integer ``//`` and ``%`` truncate toward zero, as ``Decimal`` does, and a
``HUGEINT`` holds any sum of two 64-bit integers; regular expressions are RE2's, searched with
``regexp_matches``, so only the patterns whose RE2 spelling finds the same strings are pushed.

Dicts are JSON text (``JSON`` or ``VARCHAR`` columns), read with ``json_each`` as Python's
``json.loads`` reads them. DuckDB's reader is more lenient in a few ways — trailing commas, and
``nan``, ``inf``, ``-NaN`` and other spellings of non-finite numbers — and Python fails on those
texts, so a text holding one outside its strings counts as refused (as in Python). The one text
DuckDB refuses and Python reads is an escaped lone surrogate (``"\\ud800"``): a dict holding one
is unknown on DuckDB.

A query reads each JSON dict once per row, before its rules: into a ``MAP(VARCHAR, T)``, which
every lookup and comprehension then reads (a ``MAP`` column is read as it is). Text of the usual
shape — a flat object of the item type, written as Python and DuckDB both read it, no key twice —
is read by ``json_transform``; other text by the exact member-by-member reading above, on the rows
that hold it only.
"""

from __future__ import annotations

import datetime
import operator as operators
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.functions import Function
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import UserDefinedType

from tagrules.errors import NotPushable
from tagrules.rules._language import MAX_STEPS
from tagrules.schema import FieldType
from tagrules.sql._json import _comprehension_column, _Members
from tagrules.sql.compiler import Decoding, DictLookup, Expression, FieldColumn, RuleCompiler, _Sql

__all__ = ["DuckDBMap", "DuckDBRuleCompiler", "map_value_type"]


class _HugeInt(UserDefinedType[int]):
    """DuckDB's 128-bit integer."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "HUGEINT"


_INT_LIMIT = 2**63
#: an enum's check is a chain of <> up to this many choices, NOT IN beyond
_CHAINED_CHOICES = 32
#: Python's float() of an int written in JSON overflows from this many digits on, or from the
#: digits of 2**1023 at this length (compared as text)
_FLOAT_INT_DIGITS = str(2**1023)
#: a JSON string: what the checks of the text outside strings skip
_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
#: outside strings, after the words Python reads: what Python's JSON reader refuses and DuckDB's
#: reads (a trailing comma; a letter of nan, inf, ...; a minus sign before NaN)
_LENIENT = r"[A-DF-Za-df-z]|-[^0-9]|-$"
_TRAILING_COMMA = r",\s*[\]}]"


#: DuckDB types json_each gives members written as integers (UBIGINT: from 0 up)
_JSON_INTEGERS = ("BIGINT", "UBIGINT")


def _text(value: str) -> Expression:
    return sa.bindparam(None, value, type_=sa.Text())


_HUGE_LIMIT = sa.cast(_text(str(_INT_LIMIT)), _HugeInt())


def _readable(text: Expression) -> Expression:
    """Where ``text`` is JSON that Python's reader reads, and DuckDB's reads the same way."""
    outside = sa.func.regexp_replace(text, _text(_JSON_STRING), _text('""'), _text("g"))
    words = sa.func.regexp_replace(outside, _text("-?Infinity|NaN|true|false|null"), _text(""), _text("g"))
    return sa.and_(
        sa.func.json_valid(text),
        sa.not_(sa.func.regexp_matches(outside, _text(_TRAILING_COMMA))),
        sa.not_(sa.func.regexp_matches(words, _text(_LENIENT))),
    )


def _double(value: Expression) -> Expression:
    return sa.cast(value, sa.Float(53))


def _member_valid(item: FieldType, kind_of: Expression, value: Expression) -> Expression:
    """Whether a member (its ``json_each`` type and JSON text) is a value of ``item`` as Python reads it."""
    if item.kind == "str":
        fits: Expression = kind_of == _text("VARCHAR")
    elif item.kind == "bool":
        fits = kind_of == _text("BOOLEAN")
    else:
        # DOUBLE: written with a fraction or an exponent, or an integer beyond 64 bits
        written_as_float = sa.func.regexp_matches(value, _text("[.eEaIn]"))
        limit = sa.bindparam(None, float(_INT_LIMIT), type_=sa.Float(53))
        if item.kind == "int":
            double = _double(value)
            fits = sa.case(
                (kind_of == _text("BIGINT"), value != _text(str(-_INT_LIMIT))),
                # compared as HUGEINT: a bound decimal may reach DuckDB as a double
                (
                    kind_of == _text("UBIGINT"),
                    sa.cast(value, _HugeInt()) < sa.cast(_text(str(_INT_LIMIT)), _HugeInt()),
                ),
                (
                    sa.and_(kind_of == _text("DOUBLE"), written_as_float),
                    sa.and_(
                        sa.not_(sa.func.isnan(double)),
                        double == sa.func.floor(double),
                        double > -limit,
                        double < limit,
                    ),
                ),
                else_=sa.false(),
            )
        else:
            digits = sa.func.ltrim(value, _text("-"))
            fits = sa.case(
                (kind_of.in_([_text("BIGINT"), _text("UBIGINT")]), sa.true()),
                (
                    sa.and_(kind_of == _text("DOUBLE"), written_as_float),
                    sa.not_(sa.func.isnan(_double(value))),
                ),
                (kind_of == _text("DOUBLE"), _below_float_limit(digits)),
                else_=sa.false(),
            )
    if item.nullable:
        return sa.or_(kind_of == _text("NULL"), fits)
    return fits


def _int_member(item: FieldType | None, kind_of: Expression, value: Expression) -> Expression:
    """A member of an int dict read as a 64-bit integer; NULL where it is not a valid one (no cast
    runs on a member the schema refuses: DuckDB would raise)."""
    assert item is not None
    return sa.case(
        (sa.not_(_member_valid(item, kind_of, value)), sa.null()),
        (kind_of.in_([_text(name) for name in _JSON_INTEGERS]), sa.cast(value, sa.BigInteger())),
        else_=sa.cast(_double(value), sa.BigInteger()),
    )


def _below_float_limit(digits: Expression) -> Expression:
    length = sa.func.length(digits)
    size = len(_FLOAT_INT_DIGITS)
    return sa.or_(length < size, sa.and_(length == size, digits < _text(_FLOAT_INT_DIGITS)))


class DuckDBMap(UserDefinedType[Any]):
    """A DuckDB ``MAP(VARCHAR, value_type)`` column: a dict held as DuckDB holds one."""

    cache_ok = True

    def __init__(self, value_type: str) -> None:
        self.value_type = value_type.strip().upper()

    def get_col_spec(self, **kw: Any) -> str:
        return f"MAP(VARCHAR, {self.value_type})"


#: MAP value types, by the item kind of the dict they may hold (an int dict refuses -2**63)
_MAP_VALUES: dict[str, frozenset[str]] = {
    "int": frozenset({"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"}),
    "float": frozenset(
        {"DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"}
    ),
    "str": frozenset({"VARCHAR"}),
    "bool": frozenset({"BOOLEAN"}),
}
#: the MAP a JSON dict of each item kind is read into
_DECODED_VALUE = {"int": "BIGINT", "float": "DOUBLE", "str": "VARCHAR", "bool": "BOOLEAN"}


def map_value_type(type_name: str) -> str | None:
    """The value type of a DuckDB ``MAP(VARCHAR, T)`` type name; ``None`` for any other type."""
    name = type_name.strip().upper()
    prefix = "MAP(VARCHAR, "
    if not (name.startswith(prefix) and name.endswith(")")):
        return None
    value = name[len(prefix) : -1].strip()
    return value if value.isalpha() else None


_WHITESPACE = r"[ \t\n\r]*"
#: a JSON string both readers decode alike: no control character, no escaped lone surrogate
_PLAIN_STRING = (
    r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u(?:[0-9a-cA-CeEfF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}))*"'
)
#: integers of 18 digits at most (inside 64 bits); floats add a fraction and an exponent
_PLAIN_INT = r"-?(?:0|[1-9][0-9]{0,17})"
_PLAIN_VALUES = {
    "int": _PLAIN_INT,
    "float": _PLAIN_INT + r"(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?",
    "str": _PLAIN_STRING,
    "bool": "true|false",
}


def _plain_object(item: FieldType) -> str:
    """The JSON texts of a flat object of ``item`` values that Python's reader and DuckDB's read alike
    (a key written twice excepted: ``json_transform`` gives NULL then)."""
    value = _PLAIN_VALUES[item.kind] + ("|null" if item.nullable else "")
    member = f"{_WHITESPACE}{_PLAIN_STRING}{_WHITESPACE}:{_WHITESPACE}(?:{value}){_WHITESPACE}"
    return rf"{_WHITESPACE}\{{(?:{member}(?:,{member})*|{_WHITESPACE})\}}{_WHITESPACE}"


def _map_problem(column: Expression, sql_type: DuckDBMap, item: FieldType) -> Expression:
    """Where the schema refuses a MAP column's value: a NULL member of a dict that holds none, NaN in
    a float dict, -2**63 in an int dict (false where the map is NULL)."""
    values = sa.func.map_values(column)
    problems: list[Expression] = []
    if not item.nullable:
        problems.append(sa.func.list_count(values) < sa.func.cardinality(column))
    if item.kind == "float" and sql_type.value_type in ("DOUBLE", "FLOAT"):
        problems.append(sa.func.list_contains(values, sa.cast(_text("nan"), sa.Float(53))))
    if item.kind == "int" and sql_type.value_type == "BIGINT":
        problems.append(sa.func.list_contains(values, sa.bindparam(None, -_INT_LIMIT, type_=sa.BigInteger())))
    if not problems:
        return sa.false()
    return sa.func.coalesce(sa.or_(*problems), sa.false())


def _read_member(item: FieldType, member: Expression) -> Expression:
    """A dict member (its JSON text) read as ``item``: NULL where it is not a valid one."""
    member_type = sa.func.json_type(member)
    if item.kind == "str":
        return sa.case(
            (member_type == _text("VARCHAR"), sa.func.json_extract_string(member, _text("$"))),
            else_=sa.null(),
        )
    if item.kind == "bool":
        return sa.case(
            (member_type == _text("BOOLEAN"), sa.cast(member, sa.Text()) == _text("true")),
            else_=sa.null(),
        )
    if item.kind == "int":
        return _int_member(item, member_type, member)
    return sa.case((_member_valid(item, member_type, member), _double(member)), else_=sa.null())


class _UtcTime(ColumnElement[Any]):
    """``timezone('UTC', column)``: a ``TIMESTAMPTZ`` column as a naive UTC timestamp. Compared with a
    bound time, the column itself is compared with that time as a ``TIMESTAMPTZ`` (see
    ``DuckDBRuleCompiler.plain_compare``): no conversion per row, and DuckDB's statistics apply."""

    inherit_cache = True
    type = sa.DateTime()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: Expression) -> None:
        self.column = column


@compiles(_UtcTime)
def _compile_utc_time(element: _UtcTime, compiler: Any, **kw: Any) -> str:
    return f"timezone('UTC', {compiler.process(element.column, **kw)})"


def _stored_instant(expression: Expression) -> Expression | None:
    """The ``TIMESTAMPTZ`` expression a naive UTC timestamp was made of (a column, or a ``coalesce``
    of columns, as ``??`` writes it); ``None`` where it was made otherwise."""
    if isinstance(expression, _UtcTime):
        return expression.column
    if isinstance(expression, Function) and expression.name == "coalesce":
        parts = list(expression.clauses)
        if parts and all(isinstance(part, _UtcTime) for part in parts):
            return sa.func.coalesce(*[part.column for part in parts])
    return None


_ORDERINGS = {
    "==": operators.eq,
    "!=": operators.ne,
    "<": operators.lt,
    "<=": operators.le,
    ">": operators.gt,
    ">=": operators.ge,
}


_LAMBDA_VARIABLE = "tagrules_member"


class _Lambda(ColumnElement[Any]):
    """``lambda tagrules_member: body``, a DuckDB list function's argument; the body reads the
    member (a pair of its key and JSON value) through ``_MEMBER_KEY`` and ``_MEMBER_VALUE``."""

    inherit_cache = True
    _traverse_internals = [("body", InternalTraversal.dp_clauseelement)]

    def __init__(self, body: Expression) -> None:
        self.body = body


@compiles(_Lambda)
def _compile_lambda(element: _Lambda, compiler: Any, **kw: Any) -> str:
    return f"lambda {_LAMBDA_VARIABLE}: {compiler.process(element.body, **kw)}"


class _Field(ColumnElement[Any]):
    """``expression[position]``: a field of an unnamed struct (``list_zip``'s pairs)."""

    inherit_cache = True
    type = sa.JSON()
    _traverse_internals = [
        ("wrapped", InternalTraversal.dp_clauseelement),
        ("position", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, expression: Expression, position: int) -> None:
        self.wrapped = expression
        self.position = position


@compiles(_Field)
def _compile_field(element: _Field, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.wrapped, **kw)})[{int(element.position)}]"


_MEMBER_KEY = sa.type_coerce(_Field(sa.literal_column(_LAMBDA_VARIABLE), 1), sa.Text())
_MEMBER_VALUE: Expression = _Field(sa.literal_column(_LAMBDA_VARIABLE), 2)


class _DictMembers:
    """The members of a dict's JSON text as DuckDB's list functions read them, without ``json_each``
    (a correlated table function, which DuckDB would run joined on the whole text: time and memory
    growing with the square of a dict's size)."""

    def __init__(self, text: Expression) -> None:
        self.readable = _readable(text)
        #: the text, where DuckDB's JSON functions may read it (they fail on any other)
        self.safe = sa.case((self.readable, text), else_=sa.null())
        self.is_object = sa.and_(self.readable, sa.func.json_type(self.safe) == _text("OBJECT"))
        document = sa.case((self.is_object, text), else_=sa.null())
        keys = sa.func.json_keys(document)
        #: (key, JSON value) pairs, in the text's order, keys written twice included
        self.pairs = sa.func.list_zip(keys, sa.func.json_extract(document, _text("$.*")))
        # of a key written twice, the last member (Python's dict keeps it); the filter, quadratic,
        # runs only on the rows where a key repeats
        later = sa.func.list_slice(keys, sa.literal_column(f"{_LAMBDA_INDEX} + 1"), sa.func.len(keys))
        last_only = sa.func.list_filter(
            self.pairs, _IndexedLambda(sa.not_(sa.func.list_contains(later, _MEMBER_KEY)))
        )
        self.effective = sa.case(
            (sa.func.len(keys) == sa.func.len(sa.func.list_distinct(keys)), self.pairs), else_=last_only
        )


_LAMBDA_INDEX = "tagrules_position"


class _IndexedLambda(_Lambda):
    """``lambda tagrules_member, tagrules_position: body`` (the position counts from 1)."""

    inherit_cache = True


@compiles(_IndexedLambda)
def _compile_indexed_lambda(element: _IndexedLambda, compiler: Any, **kw: Any) -> str:
    return f"lambda {_LAMBDA_VARIABLE}, {_LAMBDA_INDEX}: {compiler.process(element.body, **kw)}"


class DuckDBRuleCompiler(RuleCompiler):
    """DuckDB: binary string order, ``HUGEINT`` sums, RE2 regex searched with ``regexp_matches``."""

    dialect = "duckdb"
    aggregate_filter = True
    TRANSFORMS = {**RuleCompiler.TRANSFORMS}

    @classmethod
    def count_states(cls, state: Expression) -> tuple[Expression, Expression]:
        # count_if: cheaper than a sum and a count, which are cheaper than two filtered counts
        return cls.count_where(state == 1), cls.count_where(state.is_(None))

    @classmethod
    def count_where(cls, condition: Expression) -> Expression:
        # count_if is NULL where no row's condition is true or false (no rows, or all NULL)
        return sa.func.coalesce(sa.func.count_if(condition), 0)

    def outside(self, text: Expression, choices: Sequence[Expression]) -> Expression:
        # a chain of <>: in a CASE, 2 to 3 times cheaper than NOT IN over text, up to dozens of
        # choices (it stops at the first equal one, which for a valid value comes soon)
        if len(choices) > _CHAINED_CHOICES:
            return text.not_in(choices)
        return sa.and_(*(text != choice for choice in choices))

    def text_length(self, expression: Expression) -> Expression:
        return sa.func.length(expression)

    def float_problem(self, column: Expression) -> Expression | None:
        return sa.func.isnan(column)

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        if isinstance(sql_type, sa.DateTime) and sql_type.timezone:
            return _UtcTime(column)
        if not isinstance(sql_type, sa.DateTime):
            return sa.cast(column, sa.DateTime())
        return column

    def plain_compare(self, operator: str, left: _Sql, right: Expression) -> Expression:
        # a TIMESTAMPTZ column against a bound time (a window: `last_order_at < :cutoff`)
        if (
            left.kind == "datetime"
            and left.expr is not None
            and isinstance(right, BindParameter)
            and isinstance(right.value, datetime.datetime)
            and right.value.tzinfo is None
            and (stored := _stored_instant(left.expr)) is not None
        ):
            aware = sa.DateTime(timezone=True)
            instant = sa.cast(
                sa.bindparam(None, right.value.replace(tzinfo=datetime.timezone.utc), type_=aware), aware
            )
            return _ORDERINGS[operator](stored, instant)  # type: ignore[no-any-return]
        return super().plain_compare(operator, left, right)

    def exact(self, expression: Expression) -> Expression:
        return sa.cast(expression, _HugeInt())

    def exact_parameter(self, value: int) -> Expression:
        # a HUGEINT: DuckDB compares a HUGEINT with a bound decimal as doubles (2**60 + 4 == 2**60)
        return sa.cast(_text(str(value)), _HugeInt())

    def divide(self, left: Expression, right: Expression) -> Expression:
        return left.op("//")(right)

    def modulo(self, left: Expression, right: Expression) -> Expression:
        return left.op("%")(right)

    def regex_flavour(self) -> str:
        return "re2"

    def regex(self, subject: Expression, pattern: str) -> Expression:
        return sa.func.regexp_matches(
            subject, sa.bindparam(None, pattern, type_=sa.String()), type_=sa.Boolean()
        )

    def collection_problem(self, column: FieldColumn) -> Expression | None:
        item = _dict_item(column)
        if item is None:
            return None
        if isinstance(column.sql_type, DuckDBMap):
            return _map_problem(column.expression, column.sql_type, item)
        if not isinstance(column.sql_type, (sa.JSON, sa.String)):
            return None
        return self.dict_lookup(column.expression, column.sql_type, "", item).problem

    def decoded_collection(self, column: FieldColumn) -> Decoding | None:
        """A JSON dict read into a ``MAP(VARCHAR, T)``: by ``json_transform`` where the text has the
        plain shape, by the exact reading of its members elsewhere (an empty map where the schema
        refuses the value, NULL where it is null)."""
        item = _dict_item(column)
        if item is None or not isinstance(column.sql_type, (sa.JSON, sa.String)):
            return None
        map_type = DuckDBMap(_DECODED_VALUE[item.kind])
        text = sa.type_coerce(column.expression, sa.Text())
        shape = _text(f'"{map_type.get_col_spec()}"')
        plain = sa.func.regexp_full_match(text, _text(_plain_object(item)))
        first = sa.case((plain, sa.func.json_transform(text, shape)), else_=sa.null())
        sql_type = column.sql_type

        def finish(stored: Expression, read: Expression) -> tuple[Expression, Expression]:
            lookup = self.dict_lookup(stored, sql_type, "", item)
            members = _DictMembers(sa.type_coerce(stored, sa.Text()))
            keys = sa.func.list_transform(members.effective, _Lambda(_MEMBER_KEY))
            values = sa.func.list_transform(members.effective, _Lambda(_read_member(item, _MEMBER_VALUE)))
            exact = sa.cast(sa.func.map(keys, values), map_type)
            value = sa.case(
                (read.is_not(None), read),
                (lookup.is_null, sa.null()),
                (lookup.problem, sa.cast(sa.func.map(), map_type)),
                else_=exact,
            )
            problem = sa.case((read.is_not(None), sa.false()), else_=lookup.problem)
            return sa.type_coerce(value, map_type), problem

        return Decoding(first, finish, map_type)

    def comprehension_length(self, node: Any) -> _Sql:
        self.only_comprehension(node)
        column = _comprehension_column(node, self.fields)
        if isinstance(column.sql_type, DuckDBMap):
            return self.map_comprehension_length(node, column)
        if not isinstance(column.sql_type, (sa.JSON, sa.String)):
            raise NotPushable(f"a comprehension over a {column.sql_type} column (JSON or text is needed)")
        refused_value = self.dict_problem(column)
        assert refused_value is not None
        item = column.field_type.item
        assert item is not None
        members = _DictMembers(sa.type_coerce(column.expression, sa.Text()))
        value = _MEMBER_VALUE
        member = _int_member(item, sa.func.json_type(value), value)
        condition = node.condition
        kept: Expression = members.effective
        if condition is not None:
            test = _Members(node.variable, member).build(condition, self.folded_constant)
            kept = sa.func.list_filter(kept, _Lambda(test))
        count = sa.case((members.is_object, sa.func.len(kept)), else_=sa.null())
        refused = sa.or_(
            column.expression.is_(None),
            sa.func.coalesce(refused_value, sa.false()),
            sa.func.len(members.effective) > MAX_STEPS,
        )
        return _Sql("int", count, refused)

    def map_comprehension_length(self, node: Any, column: FieldColumn) -> _Sql:
        """``[v for v in D.values if C].length`` over a MAP: its values filtered, counted."""
        assert isinstance(column.sql_type, DuckDBMap)
        if column.sql_type.value_type not in _MAP_VALUES["int"]:
            raise NotPushable(f"a comprehension over a {column.sql_type.get_col_spec()} column")
        refused_value = self.dict_problem(column)
        assert refused_value is not None
        kept: Expression = sa.func.map_values(column.expression)
        if node.condition is not None:
            member = sa.literal_column(_LAMBDA_VARIABLE, sa.BigInteger())
            test = _Members(node.variable, member).build(node.condition, self.folded_constant)
            kept = sa.func.list_filter(kept, _Lambda(test))
        refused = sa.or_(
            column.expression.is_(None),
            sa.func.coalesce(refused_value, sa.false()),
            sa.func.cardinality(column.expression) > MAX_STEPS,
        )
        return _Sql("int", sa.func.len(kept), refused)

    def dict_lookup(
        self,
        column: Expression,
        sql_type: Any,
        key: str | Expression,
        item: FieldType,
        plain: Expression | None = None,
    ) -> DictLookup:
        if isinstance(sql_type, DuckDBMap):
            return self.map_lookup(column, sql_type, key, item)
        if not isinstance(sql_type, (sa.JSON, sa.String)):
            raise NotPushable(f"a dict field in a {sql_type} column (a JSON or text column is needed)")
        if not isinstance(key, str):
            raise NotPushable("a dict looked up by a computed key on duckdb")
        text = sa.type_coerce(column, sa.Text())
        members = _DictMembers(text)
        value = _MEMBER_VALUE
        every_valid = sa.func.list_bool_and(
            sa.func.list_transform(
                members.effective, _Lambda(_member_valid(item, sa.func.json_type(value), value))
            )
        )
        problem = sa.case(
            (sa.not_(members.readable), sa.true()),
            (sa.not_(members.is_object), sa.true()),
            else_=sa.not_(sa.func.coalesce(every_valid, sa.true())),
        )
        # the key's last member, as Python's dict keeps it
        matching = sa.func.list_filter(members.pairs, _Lambda(_text(key) == _MEMBER_KEY))
        found = sa.func.list_last(matching)
        read = _read_member(item, _Field(found, 2))
        is_null = sa.case(
            (column.is_(None), sa.true()),
            (members.readable, sa.func.json_type(members.safe) == _text("NULL")),
            else_=sa.false(),
        )
        present = sa.case((members.is_object, found.is_not(None)), else_=sa.false())
        return DictLookup(is_null, problem, present, sa.case((members.is_object, read), else_=sa.null()))

    def map_lookup(
        self, column: Expression, sql_type: DuckDBMap, key: str | Expression, item: FieldType
    ) -> DictLookup:
        """One key of a MAP: ``map_contains`` and ``map_extract_value``."""
        if sql_type.value_type not in _MAP_VALUES.get(item.kind, ()):
            raise NotPushable(f"a {item} dict in a {sql_type.get_col_spec()} column")
        if not isinstance(key, str):
            raise NotPushable("a dict looked up by a computed key on duckdb")
        bound = _text(key)
        value: Expression = sa.func.map_extract_value(column, bound)
        if item.kind == "float" and sql_type.value_type != "DOUBLE":
            value = _double(value)
        elif item.kind == "int" and sql_type.value_type != "BIGINT":
            value = sa.cast(value, sa.BigInteger())
        return DictLookup(
            column.is_(None),
            _map_problem(column, sql_type, item),
            sa.func.coalesce(sa.func.map_contains(column, bound), sa.false()),
            value,
        )


def _dict_item(column: FieldColumn) -> FieldType | None:
    """The item type of a ``dict[str, T]`` field a DuckDB column may hold (T a number, a string or a
    boolean); ``None`` for other fields."""
    field_type, item, key = column.field_type, column.field_type.item, column.field_type.key
    if (
        field_type.kind != "dict"
        or item is None
        or key is None
        or key.kind != "str"
        or item.kind not in ("int", "float", "str", "bool")
    ):
        return None
    return item
