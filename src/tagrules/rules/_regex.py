"""Refusing regular expressions that can backtrack catastrophically.

Python's ``re`` backtracks: ``(a+)+$`` against forty ``a`` and an ``x`` takes longer than the age of
the universe. tagrules refuses, at load, the three shapes behind exponential backtracking:

* a variable-length repetition inside another repetition: ``(a+)+``, ``(\\w*\\s?)*``;
* a repeated alternation whose branches can start with the same character: ``(a|ab)*``, ``(\\w|\\d)+``;
* backreferences: ``(a*)\\1``.

With IGNORECASE, every letter stands for all the characters Python's ``re`` folds together
(``k``, ``K`` and the Kelvin sign ``\u212a``), so ``(?i)(a|AA)+`` counts as a repeated alternation
whose branches start alike. Patterns that keep Python's engine (see
:mod:`tagrules.rules._linear_regex`; the others run in linear time on RE2) are also refused for
unbounded repetitions in a row that can match the same characters, ``\\w+\\s*\\w+`` or ``.*.*x``,
whose backtracking is polynomial in the text (:func:`sequential_risk`).

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
try:  # the characters Python's re folds together beyond lower() and upper()
    _EXTRA_CASES: dict[int, tuple[int, ...]] = importlib.import_module("re._casefix")._EXTRA_CASES
except ImportError:  # pragma: no cover - Python 3.10
    _EXTRA_CASES = importlib.import_module("sre_compile")._ignorecase_fixes

__all__ = ["regex_risk", "sequential_risk"]

_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT}


def _parse(pattern: str) -> Items | None:
    try:
        parsed = _sre_parse.parse(pattern, 0)
    except Exception:  # the caller compiles the pattern and reports syntax errors itself
        return None
    return _folded(list(parsed), bool(parsed.state.flags & _sre.SRE_FLAG_IGNORECASE))


def regex_risk(pattern: str) -> str | None:
    """Why ``pattern`` may backtrack catastrophically, or ``None`` when it is safe to run."""
    items = _parse(pattern)
    return None if items is None else _scan(items)


def sequential_risk(pattern: str) -> str | None:
    """Why ``pattern`` may backtrack polynomially on Python's engine: unbounded repetitions in a row
    that can match the same characters; ``None`` when it has none."""
    items = _parse(pattern)
    if items is not None and _has_overlapping_run(items):
        return (
            "unbounded repetitions in a row that can match the same characters can backtrack for a very "
            "long time on long text; separate them with a character neither can match, or merge them"
        )
    return None


def _case_variants(code: int) -> set[int]:
    """The characters Python's re matches for ``code`` when case is ignored."""
    variants, pending = {code}, [code]
    while pending:
        char = chr(pending.pop())
        images = {char.lower(), char.upper()}
        found = {ord(image) for image in images if len(image) == 1}
        found.update(_EXTRA_CASES.get(ord(char), ()))
        for variant in found - variants:
            variants.add(variant)
            pending.append(variant)
    return variants


def _folded(items: Items, ignorecase: bool) -> Items:
    """``items`` with each letter under IGNORECASE written as the class of its case variants."""
    folded: Items = []
    for op, av in items:
        if op == _sre.LITERAL and ignorecase:
            variants = _case_variants(av)
            folded.append(
                (op, av) if len(variants) == 1 else (_sre.IN, [(_sre.LITERAL, v) for v in variants])
            )
        elif op == _sre.IN and ignorecase:
            members = [
                (kind, variant)
                for kind, value in av
                for variant in (_case_variants(value) if kind == _sre.LITERAL else [value])
            ]
            folded.append((op, members))
        elif op == _sre.SUBPATTERN:
            group, added, removed, body = av
            inner = (ignorecase or bool(added & _sre.SRE_FLAG_IGNORECASE)) and not (
                removed & _sre.SRE_FLAG_IGNORECASE
            )
            folded.append((op, (group, added, removed, _folded(list(body), inner))))
        elif op in _REPEATS:
            folded.append((op, (av[0], av[1], _folded(list(av[2]), ignorecase))))
        elif op == _sre.BRANCH:
            folded.append((op, (av[0], [_folded(list(branch), ignorecase) for branch in av[1]])))
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            folded.append((op, (av[0], _folded(list(av[1]), ignorecase))))
        else:
            folded.append((op, av))
    return folded


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


def _has_overlapping_run(items: Items) -> bool:
    """Whether a sequence in ``items`` has two unbounded repetitions that can match the same
    characters with nothing between them that the earlier one cannot match."""
    open_repeats: list[Chars | None] = []
    for op, av in items:
        while op == _sre.SUBPATTERN and len(av[-1]) == 1:  # (\\d+) is the repetition inside
            op, av = av[-1][0]
        if op in _REPEATS and av[1] == _sre.MAXREPEAT:
            chars = _chars(list(av[2]))
            if any(other is None or chars is None or _overlap(chars, other) for other in open_repeats):
                return True
            open_repeats.append(chars)
        elif op in (_sre.LITERAL, _sre.IN):
            atom = (frozenset({av}), frozenset()) if op == _sre.LITERAL else _class_chars(av)
            open_repeats = [other for other in open_repeats if other is None or not _disjoint(atom, other)]
        if any(_has_overlapping_run(nested) for nested in _nested(op, av)):
            return True
        if op in _REPEATS and _has_overlapping_run(list(av[2])):
            return True
    return False
