"""The SQL dialects rules compile to: each a :class:`~tagrules.sql.compiler.RuleCompiler` whose hooks
say how the database compares strings by code point, reads datetimes as UTC, divides integers and
matches regular expressions; a dialect without its own class gets generic SQL (which pushes less).
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from tagrules.errors import NotPushable
from tagrules.rules._language import UTC
from tagrules.schema import FieldType
from tagrules.sql._duckdb import DuckDBRuleCompiler
from tagrules.sql._json import dict_values_count, sqlite_dict_values_count, sqlite_members
from tagrules.sql._spark import SparkRuleCompiler
from tagrules.sql.compiler import DictLookup, Expression, FieldColumn, RuleCompiler, _Sql

__all__ = [
    "DuckDBRuleCompiler",
    "MySQLRuleCompiler",
    "PostgreSQLRuleCompiler",
    "SQLiteRuleCompiler",
    "SQLiteText",
    "SparkRuleCompiler",
    "compiler_for",
    "read_sqlite_moment",
]


class _BinaryText(ColumnElement[Any]):
    """``CONVERT(x USING utf8mb4) COLLATE utf8mb4_nopad_bin``: MariaDB strings compared by code point,
    trailing spaces included, whatever the column's character set and collation."""

    inherit_cache = True
    type = sa.String()
    _traverse_internals = [("wrapped", InternalTraversal.dp_clauseelement)]

    def __init__(self, expression: Expression) -> None:
        self.wrapped = expression


@compiles(_BinaryText)
def _compile_binary_text(element: _BinaryText, compiler: Any, **kw: Any) -> str:
    inner = compiler.process(element.wrapped, **kw)
    return f"CONVERT({inner} USING utf8mb4) COLLATE utf8mb4_nopad_bin"


_INT_LIMIT = 2**63
#: Python refuses an integer this large in a float field (``float()`` of it may overflow).
_FLOAT_INT_LIMIT = 2**1023
with decimal.localcontext(decimal.Context(prec=2000)):
    #: the magnitudes from which a decimal rounds to an infinite double, and to zero
    _DOUBLE_OVERFLOW = decimal.Decimal(2**1024 - 2**970)
    _DOUBLE_UNDERFLOW = decimal.Decimal(1) / decimal.Decimal(2**1075)


def _numeric(value: int | decimal.Decimal) -> Expression:
    return sa.bindparam(None, decimal.Decimal(value), type_=sa.Numeric())


def _text(value: str) -> Expression:
    return sa.bindparam(None, value, type_=sa.Text())


def _json_number_checks(item: FieldType, text: Expression) -> tuple[Expression, Expression]:
    """Whether a JSON number, written as ``text``, is a value of ``item`` (int or float) as Python
    reads it, and that value in SQL (PostgreSQL).

    ``json.loads`` makes a float of a number written with a fraction or an exponent and an int of
    the others; the schema then takes an integral float in an int field, and an int below 2**1023
    in a float field.
    """
    written_as_float = text.op("~", is_comparison=True)(_text("[.eE]"))
    number = sa.cast(text, sa.Numeric())
    # float() of the text, correctly rounded, without PostgreSQL's out-of-range errors
    double = sa.case(
        (number >= _numeric(_DOUBLE_OVERFLOW), sa.cast(_text("Infinity"), sa.Float(53))),
        (number <= -_numeric(_DOUBLE_OVERFLOW), sa.cast(_text("-Infinity"), sa.Float(53))),
        (sa.func.abs(number) <= _numeric(_DOUBLE_UNDERFLOW), sa.cast(_text("0"), sa.Float(53))),
        else_=sa.cast(text, sa.Float(53)),
    )
    if item.kind == "float":
        valid = sa.or_(written_as_float, sa.func.abs(number) < _numeric(_FLOAT_INT_LIMIT))
        return valid, double
    limit = sa.bindparam(None, float(_INT_LIMIT), type_=sa.Float(53))
    valid = sa.case(
        (written_as_float, sa.and_(double == sa.func.floor(double), double > -limit, double < limit)),
        else_=sa.and_(number > -_numeric(_INT_LIMIT), number < _numeric(_INT_LIMIT)),
    )
    value = sa.case(
        (written_as_float, sa.cast(double, sa.BigInteger())), else_=sa.cast(number, sa.BigInteger())
    )
    return valid, value


#: Path filters selecting the members of a dict[str, T] in ``jsonb`` that the schema refuses. A
#: number stored with a fraction is compared as the exact decimal it is: Python reads it as a float,
#: which differs only for numbers of more than 15 significant digits.
_REFUSED = {
    "int": f'@.type() != "number" || @.floor() != @ || @ >= {_INT_LIMIT} || @ <= -{_INT_LIMIT}',
    "float": f'@.type() != "number" || @ >= {_FLOAT_INT_LIMIT} || @ <= -{_FLOAT_INT_LIMIT}',
    "str": '@.type() != "string"',
    "bool": '@.type() != "boolean"',
}
#: Path filters selecting every member that is not an ordinary value: refused, or a number that is
#: not an integer of 53 bits at most, or is tiny. Where none is, members are read directly, without
#: the exact reading of their text.
_SUSPICIOUS = {
    **_REFUSED,
    "int": f'@.type() != "number" || @.floor() != @ || @ >= {2**53} || @ <= -{2**53}',
    "float": f'@.type() != "number" || @ >= {2**53} || @ <= -{2**53} '
    "|| (@ != 0 && @ < 1e-300 && @ > -1e-300)",
}


class PostgreSQLRuleCompiler(RuleCompiler):
    """PostgreSQL: ``COLLATE "C"`` for code point order, exact ``NUMERIC`` sums, POSIX regex."""

    dialect = "postgresql"
    aggregate_filter = True
    TRANSFORMS = {**RuleCompiler.TRANSFORMS}

    def text(self, expression: Expression) -> Expression:
        return expression.collate("C")

    def float_problem(self, column: Expression) -> Expression | None:
        return column == sa.cast(sa.literal("NaN"), sa.Float(53))

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        if isinstance(sql_type, sa.DateTime) and sql_type.timezone:
            return sa.func.timezone("UTC", column)
        if not isinstance(sql_type, sa.DateTime):
            return sa.cast(column, sa.DateTime())
        return column

    def exact(self, expression: Expression) -> Expression:
        return sa.cast(expression, sa.Numeric())

    def divide(self, left: Expression, right: Expression) -> Expression:
        return sa.func.div(sa.cast(left, sa.Numeric()), right)

    def modulo(self, left: Expression, right: Expression) -> Expression:
        return sa.func.mod(sa.cast(left, sa.Numeric()), right)

    def regex_flavour(self) -> str:
        return "postgresql"

    def comprehension_length(self, node: Any) -> _Sql:
        self.only_comprehension(node)
        count, refused = dict_values_count(node, self.fields, self.folded_constant, self.dict_problem)
        return _Sql("int", count, refused)

    def collection_problem(self, column: FieldColumn) -> Expression | None:
        # NULL (rather than false) where every member of a dict is an ordinary value: lookups then
        # read members directly
        field_type, item = column.field_type, column.field_type.item
        if item is None or not isinstance(column.sql_type, sa.JSON):
            return None
        key = field_type.key
        if field_type.kind != "dict" or key is None or key.kind != "str" or item.kind not in _SUSPICIOUS:
            return None
        if not isinstance(column.sql_type, postgresql.JSONB):
            return self.dict_lookup(column.expression, column.sql_type, "", item).problem
        # jsonb: path queries, which run in parallel workers (a check reading each member as text
        # would be a correlated subquery, which keeps the whole query on one process)
        document = column.expression

        def members(condition: str) -> Expression:
            if item.nullable:
                condition = f'@.type() != "null" && ({condition})'
            return sa.func.jsonb_path_exists(
                document, sa.cast(_text(f"$.* ? ({condition})"), postgresql.JSONPATH())
            )

        not_an_object = sa.or_(document.is_(None), sa.func.jsonb_typeof(document) != _text("object"))
        return sa.case(
            (not_an_object, sa.true()),
            (sa.not_(members(_SUSPICIOUS[item.kind])), sa.null()),
            (members(_REFUSED[item.kind]), sa.true()),
            else_=sa.false(),
        )

    def dict_lookup(
        self,
        column: Expression,
        sql_type: Any,
        key: str | Expression,
        item: FieldType,
        plain: Expression | None = None,
    ) -> DictLookup:
        if not isinstance(sql_type, sa.JSON):
            raise NotPushable(f"a dict field in a {sql_type} column (a json or jsonb column is needed)")
        prefix = "jsonb" if isinstance(sql_type, postgresql.JSONB) else "json"
        typeof = getattr(sa.func, f"{prefix}_typeof")
        key_expression = _text(key) if isinstance(key, str) else key
        member = column.op("->")(key_expression)
        member_text = column.op("->>", return_type=sa.Text())(key_expression)
        member_type = typeof(member)
        each = getattr(sa.func, f"{prefix}_each")(column)
        if prefix == "jsonb":
            members = each.table_valued("key", "value").alias("members")
        else:
            # json keeps a key written twice, where Python (and ``->``) take the last: the last of each
            listed = each.table_valued("key", "value", with_ordinality="position").render_derived("listed")
            rank = sa.func.row_number().over(partition_by=listed.c.key, order_by=listed.c.position.desc())
            ranked = sa.select(listed.c.key, listed.c.value, rank.label("rank")).subquery("ranked")
            members = sa.select(ranked.c.key, ranked.c.value).where(ranked.c.rank == 1).subquery("members")
        each_type = typeof(members.c.value)
        each_text = sa.cast(members.c.value, sa.Text())

        def valid(kind_of: Expression, text: Expression) -> Expression:
            if item.kind == "str":
                fits = kind_of == _text("string")
            elif item.kind == "bool":
                fits = kind_of == _text("boolean")
            else:
                number_valid, _ = _json_number_checks(item, text)
                fits = sa.case((kind_of == _text("number"), number_valid), else_=sa.false())
            if item.nullable:
                return sa.or_(kind_of == _text("null"), fits)
            return fits

        bad_member = sa.select(sa.literal(1)).select_from(members).where(sa.not_(valid(each_type, each_text)))
        problem = sa.case((typeof(column) == _text("object"), sa.exists(bad_member)), else_=sa.true())
        if item.kind == "str":
            value: Expression = sa.case((member_type == _text("string"), member_text), else_=sa.null())
        elif item.kind == "bool":
            value = sa.case((member_type == _text("boolean"), member_text == _text("true")), else_=sa.null())
        else:
            number_valid, number = _json_number_checks(item, member_text)
            exact = sa.case((number_valid, number), else_=sa.null())
            if plain is not None:
                # every member an ordinary number (checked once per row): read directly
                if item.kind == "float":
                    direct: Expression = sa.cast(member_text, sa.Float(53))
                else:
                    direct = sa.cast(sa.cast(member_text, sa.Numeric()), sa.BigInteger())
                exact = sa.case((plain, direct), else_=exact)
            value = sa.case((member_type == _text("number"), exact), else_=sa.null())
        is_null = sa.case((column.is_(None), sa.true()), else_=typeof(column) == _text("null"))
        return DictLookup(is_null, problem, member.is_not(None), value)

    def regex(self, subject: Expression, pattern: str) -> Expression:
        return subject.collate("C").op("~", is_comparison=True)(
            sa.bindparam(None, pattern, type_=sa.String())
        )


class MySQLRuleCompiler(RuleCompiler):
    """MariaDB and MySQL: a binary no-pad collation for strings, ``DECIMAL(65)`` sums, PCRE regex."""

    dialect = "mysql"
    native_boolean = False
    TRANSFORMS = {**RuleCompiler.TRANSFORMS}

    def text(self, expression: Expression) -> Expression:
        return _BinaryText(expression)

    def float_parameter(self, value: float) -> Expression | bool | None:
        if math.isinf(value):
            return None
        # the driver writes repr(value), read back exactly; against a DOUBLE it compares as a double
        return sa.bindparam(None, value, type_=sa.Float(53))

    def datetime_parameter(self, value: datetime.datetime) -> Expression:
        # typed: PyMySQL writes a datetime as text, and a text operand makes COALESCE or CASE over a
        # DATETIME column text too, compared as text ('... 12:30:00.000000' > '... 12:30:00')
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return sa.cast(sa.bindparam(None, naive, type_=sa.DateTime()), mysql.DATETIME(fsp=6))

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        if isinstance(sql_type, sa.TIMESTAMP):
            raise NotPushable("a MariaDB TIMESTAMP column (its values depend on the session's time zone)")
        if not isinstance(sql_type, sa.DateTime):
            return sa.cast(column, sa.DateTime())
        return column

    def exact(self, expression: Expression) -> Expression:
        return sa.cast(expression, sa.Numeric(65, 0))

    def divide(self, left: Expression, right: Expression) -> Expression:
        return left.op("DIV")(right)

    def modulo(self, left: Expression, right: Expression) -> Expression:
        return sa.func.mod(left, right)

    def regex_flavour(self) -> str:
        return "pcre"

    def regex(self, subject: Expression, pattern: str) -> Expression:
        return self.text(subject).op("REGEXP", is_comparison=True)(
            sa.bindparam(None, pattern, type_=sa.String())
        )


#: what a SQLite DATETIME column is read as holding: text as SQLAlchemy's DateTime writes it, six
#: fraction digits included; a DATE column holds 'YYYY-MM-DD'
_SQLITE_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}")
_SQLITE_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class SQLiteText:
    """Text in a SQLite date or datetime column that is not a date or time in the column's form.

    Handed to the evaluator in place of the value, which refuses it as it refuses any value of the
    wrong type: the tags reading the field are unknown on that row, as the SQL query finds them."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


def read_sqlite_moment(value: Any, *, date: bool) -> Any:
    """A value of a SQLite DATE (``date=True``) or DATETIME column as the evaluator reads it.

    SQLite lets any column hold any type. Text in the column's form is the date or the naive UTC
    datetime it spells; other text becomes a :class:`SQLiteText`, and numbers and blobs stay as
    they are, so the evaluator refuses them (the SQL compiler refuses the same values)."""
    if not isinstance(value, str):
        return value
    shape = _SQLITE_DATE if date else _SQLITE_DATETIME
    if shape.fullmatch(value):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed.date() if date else parsed
    return SQLiteText(value)


#: dict keys looked up on SQLite, compared with the keys ``json_each`` decodes: any text but NUL and
#: lone surrogates (which no UTF-8 text holds)
_SQLITE_KEY = re.compile(r"[^\x00\ud800-\udfff]*")


class SQLiteRuleCompiler(RuleCompiler):
    """SQLite: binary collation; no exact wide integers and no regex, so those stay in Python."""

    dialect = "sqlite"
    native_boolean = False
    aggregate_filter = True
    TRANSFORMS = {**RuleCompiler.TRANSFORMS}

    def text(self, expression: Expression) -> Expression:
        return expression.collate("BINARY")

    def text_length(self, expression: Expression) -> Expression:
        return sa.func.length(expression)

    def divide(self, left: Expression, right: Expression) -> Expression:
        # integer operands: SQLite truncates toward zero, as Decimal does
        return left.op("/")(right)

    def modulo(self, left: Expression, right: Expression) -> Expression:
        return left.op("%")(right)

    def stored_value(self, column: Expression, kind: str) -> tuple[Expression, Expression | None]:
        # any SQLite column holds any type: a value Python's reader refuses is the row's error
        stored = sa.func.typeof(column)
        if kind == "str":
            return column, stored.not_in([_text("text"), _text("null")])
        if kind == "float":
            return column, stored.not_in([_text("real"), _text("integer"), _text("null")])
        # an int field: integers, and integral reals strictly inside the 64-bit range, read as ints
        real = stored == _text("real")
        integral = sa.and_(
            column == sa.cast(column, sa.Integer()),
            column > sa.bindparam(None, -float(_INT_LIMIT), type_=sa.Float(53)),
            column < sa.bindparam(None, float(_INT_LIMIT), type_=sa.Float(53)),
        )
        refused = sa.case(
            (stored.in_([_text("integer"), _text("null")]), sa.false()),
            (real, sa.not_(integral)),
            else_=sa.true(),
        )
        return sa.case((real, sa.cast(column, sa.Integer())), else_=column), refused

    def stored_moment_problem(self, column: Expression, sql_type: Any) -> Expression | None:
        # the forms read_sqlite_moment reads, checked in SQL: a real calendar day and time of day
        # (SQLite's own date functions carry an impossible one over), years 1 to 9999, text only
        if isinstance(sql_type, sa.DateTime):
            shape = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]"
            whole = sa.func.substr(column, 1, 19)
            form = column.op("GLOB")(_text(shape + "." + "[0-9]" * 6))
            real = sa.func.datetime(sa.func.julianday(whole)) == whole
        else:
            form = column.op("GLOB")(_text("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"))
            real = sa.func.date(sa.func.julianday(column)) == column
        readable = sa.and_(
            sa.func.typeof(column) == _text("text"),
            form,
            sa.func.substr(column, 1, 4) != _text("0000"),
            sa.func.coalesce(real, sa.false()),
        )
        return sa.case((column.is_(None), sa.false()), else_=sa.not_(readable))

    def datetime_column(self, column: Expression, sql_type: Any, field_type: FieldType) -> Expression:
        if not isinstance(sql_type, sa.DateTime):
            return sa.type_coerce(column.op("||")(sa.literal(" 00:00:00.000000")), sa.String())
        # one form only, so that text order is time order and the column is compared as it is
        return sa.type_coerce(column, sa.String())

    def datetime_parameter(self, value: datetime.datetime) -> Expression:
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return sa.bindparam(None, naive.strftime("%Y-%m-%d %H:%M:%S.%f"), type_=sa.String())

    def comprehension_length(self, node: Any) -> _Sql:
        self.only_comprehension(node)
        count, refused = sqlite_dict_values_count(node, self.fields, self.folded_constant, self.dict_problem)
        return _Sql("int", count, refused)

    def collection_problem(self, column: FieldColumn) -> Expression | None:
        # the check of a dict this dialect looks up in (JSON or text), made once per row
        field_type, item = column.field_type, column.field_type.item
        key = field_type.key
        if (
            field_type.kind != "dict"
            or item is None
            or key is None
            or key.kind != "str"
            or item.kind not in ("int", "str", "bool")
            or not isinstance(column.sql_type, (sa.JSON, sa.String))
        ):
            return None
        return self.dict_lookup(column.expression, column.sql_type, "", item).problem

    def dict_lookup(
        self,
        column: Expression,
        sql_type: Any,
        key: str | Expression,
        item: FieldType,
        plain: Expression | None = None,
    ) -> DictLookup:
        if not isinstance(sql_type, (sa.JSON, sa.String)):
            raise NotPushable(f"a dict field in a {sql_type} column (a JSON or text column is needed)")
        if item.kind == "float":
            raise NotPushable(
                "a float dict on sqlite (Python reads the Infinity that json.dumps writes; SQLite refuses it)"
            )
        if not isinstance(key, str):
            raise NotPushable("a dict looked up by a computed key on sqlite")
        if not _SQLITE_KEY.fullmatch(key):
            raise NotPushable(f"the dict key {key!r} on sqlite (NUL and lone surrogates are not looked up)")
        text = sa.type_coerce(column, sa.Text())
        readable = sa.func.json_valid(text) == 1
        members = sqlite_members(text)

        def valid(kind_of: Expression, value: Expression) -> Expression:
            if item.kind == "str":
                fits = kind_of == _text("text")
            elif item.kind == "bool":
                fits = kind_of.in_([_text("true"), _text("false")])
            else:
                limit = sa.bindparam(None, float(_INT_LIMIT), type_=sa.Float(53))
                fits = sa.case(
                    # an int as Python reads it: no fraction, 64 bits, and -2**63 refused
                    (
                        kind_of == _text("integer"),
                        sa.and_(
                            sa.func.typeof(value) == _text("integer"),
                            value != sa.bindparam(None, -_INT_LIMIT, type_=sa.BigInteger()),
                        ),
                    ),
                    # a float with an integral value in range
                    (
                        kind_of == _text("real"),
                        sa.and_(value > -limit, value < limit, value == sa.cast(value, sa.BigInteger())),
                    ),
                    else_=sa.false(),
                )
            if item.nullable:
                return sa.or_(kind_of == _text("null"), fits)
            return fits

        bad_member = (
            sa.select(sa.literal(1))
            .select_from(members)
            .where(sa.not_(valid(members.c.type, members.c.value)))
        )
        problem = sa.case(
            (sa.not_(readable), sa.true()),
            (sa.func.json_type(text) != _text("object"), sa.true()),
            else_=sa.exists(bad_member),
        )
        # the key's last member (a path would find its first, and not a key written with escapes)
        each = sa.func.json_each(text).table_valued("key", "type", "value", "id").alias("looked_up")

        def last(value: Expression) -> Expression:
            return (
                sa.select(value).where(each.c.key == _text(key)).order_by(each.c.id.desc()).limit(1)
            ).scalar_subquery()

        member_type, member = last(each.c.type), last(each.c.value)
        if item.kind == "str":
            read: Expression = sa.case((member_type == _text("text"), member), else_=sa.null())
        elif item.kind == "bool":
            read = sa.case(
                (member_type == _text("true"), sa.true()),
                (member_type == _text("false"), sa.false()),
                else_=sa.null(),
            )
        else:
            read = sa.case((valid(member_type, member), sa.cast(member, sa.BigInteger())), else_=sa.null())
        is_null = sa.case(
            (column.is_(None), sa.true()),
            (readable, sa.func.json_type(text) == _text("null")),
            else_=sa.false(),
        )
        present = sa.case((readable, member_type.is_not(None)), else_=sa.false())
        return DictLookup(is_null, problem, present, sa.case((readable, read), else_=sa.null()))


_COMPILERS: dict[str, type[RuleCompiler]] = {
    "postgresql": PostgreSQLRuleCompiler,
    "mysql": MySQLRuleCompiler,
    "mariadb": MySQLRuleCompiler,
    "sqlite": SQLiteRuleCompiler,
    "duckdb": DuckDBRuleCompiler,
    "spark": SparkRuleCompiler,
}


def compiler_for(dialect: str) -> type[RuleCompiler]:
    """The rule compiler of a SQLAlchemy dialect name (the generic one for other databases)."""
    return _COMPILERS.get(dialect, RuleCompiler)
