"""Refusing regular expressions that can backtrack catastrophically.

Python's ``re`` backtracks: ``(a+)+$`` against forty ``a`` and an ``x`` takes longer than the age of
the universe. tagrules refuses, at load, the three shapes behind exponential backtracking:

* a variable-length repetition inside another repetition: ``(a+)+``, ``(\\w*\\s?)*``;
* a repeated alternation whose branches can start with the same character: ``(a|ab)*``, ``(\\w|\\d)+``;
* backreferences: ``(a*)\\1``.

The check is conservative: some harmless patterns are refused too, and the message says how to
rewrite them (a fixed-length inner part, distinct branches, an atomic group ``(?>...)`` or a
possessive quantifier ``a++`` where the Python version has them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

try:  # Python 3.11+ keeps the regex parser private inside the re package
    _sre: Any = importlib.import_module("re._constants")
    _sre_parse: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - Python 3.10
    _sre = importlib.import_module("sre_constants")
    _sre_parse = importlib.import_module("sre_parse")

__all__ = ["regex_risk"]

_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT}


def regex_risk(pattern: str) -> str | None:
    """Why ``pattern`` may backtrack catastrophically, or ``None`` when it is safe to run."""
    try:
        parsed = _sre_parse.parse(pattern, 0)
    except Exception:  # the caller compiles the pattern and reports syntax errors itself
        return None
    return _scan(list(parsed))


Items = list[tuple[Any, Any]]
#: A set of characters: literal code points and ``re`` categories (``CATEGORY_WORD`` ...).
Chars = tuple[frozenset[int], frozenset[Any]]
_NOTHING: Chars = (frozenset(), frozenset())
_CATEGORY_TESTS: dict[Any, Callable[[str], bool]] = {
    _sre.CATEGORY_DIGIT: str.isdigit,
    _sre.CATEGORY_SPACE: str.isspace,
    _sre.CATEGORY_WORD: lambda char: char.isalnum() or char == "_",
}


def _scan(items: Items) -> str | None:
    for op, av in items:
        if op in (_sre.GROUPREF, _sre.GROUPREF_EXISTS):
            return "backreferences are not supported (they can backtrack without bound)"
        if op in _REPEATS:
            body = list(av[2])
            if av[1] > 1:
                if _has_variable_repeat(body) and not _delimited(body):
                    return (
                        "a variable-length repetition inside another repetition can backtrack without bound; "
                        "start or end the repeated part with a character the inner part cannot match, "
                        "or use an atomic group (?>...)"
                    )
                if _has_ambiguous_branch(body):
                    return (
                        "a repeated alternation whose branches can start with the same character can "
                        "backtrack without bound; make the branches start differently"
                    )
            reason = _scan(body)
        else:
            reason = None
            for nested in _nested(op, av):
                reason = reason or _scan(nested)
        if reason:
            return reason
    return None


def _nested(op: Any, av: Any) -> list[Items]:
    if op == _sre.SUBPATTERN:
        return [list(av[-1])]
    if op == _sre.BRANCH:
        return [list(branch) for branch in av[1]]
    if op in (_sre.ASSERT, _sre.ASSERT_NOT):
        return [list(av[1])]
    return []


def _has_variable_repeat(items: Items) -> bool:
    for op, av in items:
        if op in _REPEATS and (av[0] != av[1] or _has_variable_repeat(list(av[2]))):
            return True
        if any(_has_variable_repeat(nested) for nested in _nested(op, av)):
            return True
    return False


def _union(sets: list[Chars | None]) -> Chars | None:
    literals: set[int] = set()
    categories: set[Any] = set()
    for chars in sets:
        if chars is None:
            return None
        literals |= chars[0]
        categories |= chars[1]
    return frozenset(literals), frozenset(categories)


def _class_chars(av: Any) -> Chars | None:
    """The characters of a ``[...]`` class; ``None`` (any character) for negations and wide ranges."""
    literals: set[int] = set()
    categories: set[Any] = set()
    for kind, value in av:
        if kind == _sre.LITERAL:
            literals.add(value)
        elif kind == _sre.RANGE and value[1] - value[0] < 256:
            literals.update(range(value[0], value[1] + 1))
        elif kind == _sre.CATEGORY and value in _CATEGORY_TESTS:
            categories.add(value)
        else:
            return None
    return frozenset(literals), frozenset(categories)


def _chars(items: Items) -> Chars | None:
    """Every character ``items`` can match anywhere; ``None`` when that may be any character."""
    found: list[Chars | None] = []
    for op, av in items:
        if op == _sre.AT:
            continue
        if op == _sre.LITERAL:
            found.append((frozenset({av}), frozenset()))
        elif op == _sre.IN:
            found.append(_class_chars(av))
        elif op in _REPEATS:
            found.append(_chars(list(av[2])))
        elif op in (_sre.SUBPATTERN, _sre.BRANCH):
            found.extend(_chars(nested) for nested in _nested(op, av))
        else:
            return None
    return _union(found)


def _variable_repeat_chars(items: Items) -> Chars | None:
    """The characters the variable-length repetitions inside ``items`` can match."""
    found: list[Chars | None] = []
    for op, av in items:
        if op in _REPEATS:
            found.append(_chars(list(av[2])) if av[0] != av[1] else _variable_repeat_chars(list(av[2])))
        else:
            found.extend(_variable_repeat_chars(nested) for nested in _nested(op, av))
    return _union(found) if found else _NOTHING


def _mandatory_atoms(items: Items) -> list[Chars | None]:
    """The single characters a sequence must match, in order; ``None`` marks a part that is not one."""
    atoms: list[Chars | None] = []
    for op, av in items:
        if op == _sre.LITERAL:
            atoms.append((frozenset({av}), frozenset()))
        elif op == _sre.IN:
            atoms.append(_class_chars(av))
        elif op == _sre.AT:
            continue
        elif op == _sre.SUBPATTERN:
            atoms.extend(_mandatory_atoms(list(av[-1])))
        elif op in _REPEATS and av[0] == av[1] == 1:
            atoms.extend(_mandatory_atoms(list(av[2])))
        else:
            atoms.append(None)
    return atoms


def _disjoint(atom: Chars | None, inner: Chars) -> bool:
    if atom is None or atom[1] or not atom[0]:
        return False
    for code in atom[0]:
        if code in inner[0]:
            return False
        if any(_CATEGORY_TESTS[category](chr(code)) for category in inner[1]):
            return False
    return True


def _delimited(body: Items) -> bool:
    """Whether each pass of a repeated ``body`` starts or ends with a character its inner
    repetitions cannot match (so the passes cannot be split in several ways)."""
    inner = _variable_repeat_chars(body)
    if inner is None:
        return False
    atoms = _mandatory_atoms(body)
    return bool(atoms) and (_disjoint(atoms[0], inner) or _disjoint(atoms[-1], inner))


def _has_ambiguous_branch(items: Items) -> bool:
    for op, av in items:
        if op == _sre.BRANCH:
            seen: list[Chars] = []
            for branch in av[1]:
                first = _first_chars(list(branch))
                if first is None:
                    return True
                if any(_overlap(first, other) for other in seen):
                    return True
                seen.append(first)
        if any(_has_ambiguous_branch(nested) for nested in _nested(op, av)):
            return True
    return False


def _overlap(first: Chars, second: Chars) -> bool:
    if first[1] or second[1]:
        return not (_disjoint(first, second) or _disjoint(second, first))
    return bool(first[0] & second[0])


def _first_chars(items: Items) -> Chars | None:
    """The characters a sequence can start with; ``None`` when unknown or when it can match nothing."""
    for op, av in items:
        if op == _sre.LITERAL:
            return frozenset({av}), frozenset()
        if op == _sre.IN:
            return _class_chars(av)
        if op == _sre.SUBPATTERN:
            return _first_chars(list(av[-1]))
        if op == _sre.AT:
            continue
        if op in _REPEATS:
            return None if av[0] == 0 else _first_chars(list(av[2]))
        return None
    return None
