"""Python regular expressions rewritten for SQL engines, where the rewrite matches the same strings.

Whether a pattern is *found* in a string does not depend on the engine's matching strategy (leftmost
first or leftmost longest), only on the language the pattern denotes; so a pattern written with
constructs that denote the same sets of strings in Python and in the target is pushed down. Those
are: literal characters, ``.`` (written ``[^\\n]``: Python's dot does not match a newline), classes
of literals and ranges, groups, alternation, repetition, ``^`` and ``$`` (Python's ``$`` also matches
before a final newline; PostgreSQL's does not, so it is spelled out). Anything else — flags such as
``(?i)`` (case folding differs), ``\\d``/``\\w`` (Unicode classes differ), lookaround,
backreferences — gives ``None`` and the rule stays in Python.
"""

from __future__ import annotations

from typing import Any

try:  # Python 3.11+
    import re._constants as _constants  # type: ignore[import-not-found,unused-ignore]
    import re._parser as _parser  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _constants  # type: ignore[no-redef,unused-ignore]
    import sre_parse as _parser  # type: ignore[no-redef,unused-ignore]

__all__ = ["translate_regex"]

_MAX_REPEAT = 255
_SAFE_PUNCTUATION = set(" !\"#%&',-/:;<=>@_`~")
_ALLOWED_FLAGS = _constants.SRE_FLAG_UNICODE


class _Untranslatable(Exception):
    pass


def translate_regex(pattern: str, flavour: str, *, anchored: bool) -> str | None:
    """``pattern`` for ``flavour`` (``postgresql``, ``pcre`` or ``re2``), or ``None`` where it may differ.

    ``anchored`` asks for a match at the start (rule-engine's ``=~``, Python's ``re.match``).
    """
    if flavour not in ("postgresql", "pcre", "re2"):
        return None
    try:
        parsed = _parser.parse(pattern)
        if parsed.state.flags & ~_ALLOWED_FLAGS:
            return None
        body = _sequence(list(parsed), flavour)
    except (_Untranslatable, Exception):
        return None
    return f"^(?:{body})" if anchored else body


def _character(code: int, in_class: bool = False) -> str:
    char = chr(code)
    if char.isalnum() and char.isascii():
        return char
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    if not char.isascii():
        if not char.isprintable() or char.isspace():
            raise _Untranslatable
        return char
    if char in _SAFE_PUNCTUATION and not (in_class and char == "-"):
        return char
    if char.isprintable():
        return "\\" + char
    raise _Untranslatable


def _sequence(items: list[Any], flavour: str) -> str:
    return "".join(_item(op, av, flavour) for op, av in items)


def _item(op: Any, av: Any, flavour: str) -> str:
    name = str(op)
    if name == "LITERAL":
        return _character(av)
    if name == "ANY":
        return "[^\\n]"
    if name == "IN":
        return _class(av)
    if name in ("MAX_REPEAT", "MIN_REPEAT"):
        low, high, inner = av
        if low > _MAX_REPEAT or (high != _constants.MAXREPEAT and high > _MAX_REPEAT):
            raise _Untranslatable
        body = f"(?:{_sequence(list(inner), flavour)})"
        if (low, high) == (0, _constants.MAXREPEAT):
            return body + "*"
        if (low, high) == (1, _constants.MAXREPEAT):
            return body + "+"
        if (low, high) == (0, 1):
            return body + "?"
        if high == _constants.MAXREPEAT:
            return f"{body}{{{low},}}"
        return f"{body}{{{low},{high}}}"
    if name == "SUBPATTERN":
        _group, add_flags, del_flags, inner = av
        if add_flags or del_flags:
            raise _Untranslatable
        return f"(?:{_sequence(list(inner), flavour)})"
    if name == "BRANCH":
        _, branches = av
        return "(?:" + "|".join(_sequence(list(branch), flavour) for branch in branches) + ")"
    if name == "AT":
        at = str(av)
        if at in ("AT_BEGINNING", "AT_BEGINNING_STRING"):
            return "^"
        if at == "AT_END" and flavour != "re2":
            # RE2 has no lookahead for Python's "end, or before a final newline"
            return "(?=\\n?$)" if flavour == "postgresql" else "$"
        if at == "AT_END_STRING":
            return "$" if flavour == "postgresql" else "\\z"
    raise _Untranslatable


def _class(items: list[Any]) -> str:
    parts: list[str] = []
    negated = False
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negated = True
        elif name == "LITERAL":
            parts.append(_character(av, in_class=True))
        elif name == "RANGE":
            low, high = av
            parts.append(f"{_character(low, True)}-{_character(high, True)}")
        else:
            raise _Untranslatable
    if not parts:
        raise _Untranslatable
    return "[" + ("^" if negated else "") + "".join(parts) + "]"
