"""Rule regexes run in linear time: on RE2, wherever RE2 can mean exactly what Python's ``re`` means.

Python's ``re`` backtracks, so some patterns take time exponential or polynomial in the text
(``\\w+@x`` searched in 100,000 letters takes minutes). tagrules translates each pattern from
Python's own parse of it into RE2's syntax, whose matching time is linear in the text, and writes
every single-character part out as the exact code points Python's ``re`` would match there:
``\\d``, ``\\w`` and ``\\s`` from Python's Unicode tables, case-insensitive letters and classes as
the characters Python's ``re`` matches for them (each one checked with ``re`` itself), ``.``
without and with DOTALL, and ``$`` at the end of the pattern as the end of the text or a final
newline. Only whether the pattern matches is taken from RE2; groups, when rule-engine asks for them
(``$re_groups``), come from Python's ``re`` on the matched text, of at most
:data:`MAX_BACKTRACKING_TEXT` characters.

Patterns RE2 has no equal for keep Python's engine and rely on the load-time check of
:mod:`tagrules.rules._regex`: lookaround, backreferences, ``\\b``/``\\B``, atomic groups and
possessive repeats, the ASCII flag, a ``$`` followed by more pattern, and counted repeats above
1,000; they run on texts of at most :data:`MAX_BACKTRACKING_TEXT` characters, a longer text is
that rule's error. A text holding lone surrogates (which RE2 cannot read) is matched with a
stand-in character when that changes nothing, and with Python's ``re`` otherwise.
"""

from __future__ import annotations

import array
import functools
import importlib
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, final

from rule_engine import errors as re_errors

from tagrules.rules._regex import _sre, _sre_parse

__all__ = ["MAX_BACKTRACKING_TEXT", "LinearPattern", "linear_pattern", "runs_in_linear_time"]

#: The longest text a pattern that keeps Python's backtracking engine runs on; a longer one makes
#: the rule fail on that snapshot (the load-time check leaves such patterns at most about
#: quadratic, a second at this length).
MAX_BACKTRACKING_TEXT = 10_000

# the low-level binding: the package's Python wrapper costs ten times more per match, for spans
# and groups tagrules does not read from it
_re2: Any = importlib.import_module("re2._re2")
_unicode_iscased: Any = importlib.import_module("_sre").unicode_iscased
try:  # Python 3.11+ keeps the regex compiler private inside the re package
    _sre_compile: Any = importlib.import_module("re._compiler")
except ImportError:  # pragma: no cover - Python 3.10
    _sre_compile = importlib.import_module("sre_compile")
_State: Any = _sre_parse.State

_LAST = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)
#: stands for a lone surrogate in the text RE2 reads: no class and no category of Python's ``re``
#: treats the two differently unless the pattern names one of them (checked per pattern)
_STAND_IN = 0x10FFFF
_SURROGATE = re.compile("[\ud800-\udfff]")
#: RE2's largest counted repeat
_MAX_COUNT = 1000
_RE2_OPTIONS = _re2.RE2.Options()
_RE2_OPTIONS.max_mem = 64 << 20
_RE2_OPTIONS.never_capture = True
_RE2_OPTIONS.log_errors = False
_ANCHOR = {"match": _re2.RE2.Anchor.ANCHOR_START, "search": _re2.RE2.Anchor.UNANCHORED}
_NO_MATCH = (-1, -1)

_ANCHORS = {
    _sre.AT_BEGINNING: "^",
    _sre.AT_BEGINNING_STRING: r"\A",
    _sre.AT_END_STRING: r"\z",
}
#: under MULTILINE, Python's compiler turns ``^`` and ``$`` into line anchors
_LINE_ANCHORS = {_sre.AT_BEGINNING: "(?m:^)", _sre.AT_END: "(?m:$)"}
_REPEATS = {_sre.MAX_REPEAT: "", _sre.MIN_REPEAT: "?"}
#: the flags that change which characters a class matches
_CLASS_FLAGS = _sre.SRE_FLAG_IGNORECASE | _sre.SRE_FLAG_ASCII | _sre.SRE_FLAG_UNICODE
_UNSUPPORTED_FLAGS = _sre.SRE_FLAG_LOCALE | getattr(_sre, "SRE_FLAG_DEBUG", 0)


class _Untranslatable(Exception):
    """The pattern uses something RE2 has no exact equal for."""


Ranges = tuple[tuple[int, int], ...]


def _merged(ranges: Iterable[tuple[int, int]]) -> Ranges:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return tuple(merged)


def _complement(ranges: Ranges) -> Ranges:
    gaps, start = [], 0
    for low, high in ranges:
        if low > start:
            gaps.append((start, low - 1))
        start = high + 1
    if start <= _LAST:
        gaps.append((start, _LAST))
    return tuple(gaps)


def _contains(ranges: Ranges, code: int) -> bool:
    return any(low <= code <= high for low, high in ranges)


def _python_ranges(op: Any, av: Any, flags: int, text: str, codes: Sequence[int]) -> Ranges:
    """The code points of ``text`` (``codes[i]`` is the code of ``text[i]``) that Python's ``re``
    matches with the single-character item ``(op, av)``: found by running the item, repeated, over
    ``text`` with Python's ``re`` itself."""
    state = _State()
    state.flags = flags
    item = _sre_parse.SubPattern(state, [(op, av)])
    repeated = _sre_parse.SubPattern(state, [(_sre.MAX_REPEAT, (1, _sre.MAXREPEAT, item))])
    compiled = _sre_compile.compile(repeated, flags)
    return (
        _merged(
            (codes[index], codes[index])
            for found in compiled.finditer(text)
            for index in range(found.start(), found.end())
        )
        if len(codes) != _LAST + 1
        else tuple((found.start(), found.end() - 1) for found in compiled.finditer(text))
    )


@functools.cache
def _every_character() -> tuple[str, range]:
    codes = array.array("I", range(_LAST + 1))  # decoded at once: ten times faster than joining chr()
    return codes.tobytes().decode(
        "utf-32-le" if sys.byteorder == "little" else "utf-32-be", "surrogatepass"
    ), range(_LAST + 1)


@functools.cache
def _case_candidates() -> tuple[str, tuple[int, ...]]:
    """Every code point that may match another when case is ignored: the cased ones and their images."""
    cased = list(map(chr, filter(_unicode_iscased, range(_LAST + 1))))
    images = {image for char in cased for image in (char.lower(), char.upper()) if len(image) == 1}
    codes = tuple(sorted({*map(ord, cased), *map(ord, images)}))
    return "".join(map(chr, codes)), codes


@functools.cache
def _category(category: Any, flags: int) -> Ranges:
    text, codes = _every_character()
    return _python_ranges(_sre.IN, [(_sre.CATEGORY, category)], flags, text, codes)


def _plain_set(op: Any, av: Any, flags: int) -> Ranges:
    """The code points a single-character item matches when case matters."""
    if op is _sre.LITERAL:
        return ((av, av),)
    if op is _sre.NOT_LITERAL:
        return _complement(((av, av),))
    members: list[tuple[int, int]] = []
    negated = False
    for kind, value in av:
        if kind is _sre.NEGATE:
            negated = True
        elif kind is _sre.LITERAL:
            members.append((value, value))
        elif kind is _sre.RANGE:
            members.append((value[0], value[1]))
        elif kind is _sre.CATEGORY:
            members.extend(_category(value, flags & ~_sre.SRE_FLAG_IGNORECASE))
        else:
            raise _Untranslatable(f"class member {kind}")
    merged = _merged(members)
    return _complement(merged) if negated else merged


def _character_set(op: Any, av: Any, flags: int) -> Ranges:
    """The exact code points Python's ``re`` matches with one single-character item.

    Ignoring case changes the answer only for cased characters and their images: those are
    checked with Python's ``re`` itself, every other code point keeps its case-sensitive answer.
    """
    plain = _plain_set(op, av, flags)
    if not flags & _sre.SRE_FLAG_IGNORECASE:
        return plain
    text, codes = _case_candidates()
    matched = _python_ranges(op, av, flags, text, codes)
    candidates = _merged((code, code) for code in codes)
    outside = _complement(_merged([*_complement(plain), *candidates]))
    return _merged([*outside, *matched])


def _without_surrogates(ranges: Ranges) -> list[tuple[int, int]]:
    kept = []
    for low, high in ranges:
        if low < _SURROGATES.start:
            kept.append((low, min(high, _SURROGATES.start - 1)))
        if high >= _SURROGATES.stop:
            kept.append((max(low, _SURROGATES.stop), high))
    return kept


@functools.lru_cache(maxsize=1024)
def _class_text(op: Any, key: Any, flags: int) -> tuple[str, bool]:
    """RE2's class for one single-character item, and whether surrogates and the stand-in differ in it."""
    av = list(key) if op is _sre.IN else key
    codes = _character_set(op, av, flags)
    surrogates = sum(
        max(0, min(high, _SURROGATES.stop - 1) - max(low, _SURROGATES.start) + 1) for low, high in codes
    )
    differ = surrogates not in (0, len(_SURROGATES)) or (surrogates > 0) != _contains(codes, _STAND_IN)
    parts = [
        f"\\x{{{low:x}}}" if low == high else f"\\x{{{low:x}}}-\\x{{{high:x}}}"
        for low, high in _without_surrogates(codes)
    ]
    return (f"[{''.join(parts)}]" if parts else f"[^\\x{{0}}-\\x{{{_LAST:x}}}]"), differ


class _Translator:
    """Python's parse of a pattern -> RE2 syntax (raises :class:`_Untranslatable`)."""

    def __init__(self) -> None:
        self.surrogates_differ = False

    def characters(self, op: Any, av: Any, flags: int) -> str:
        key = tuple(av) if op is _sre.IN else av
        text, differ = _class_text(op, key, flags & _CLASS_FLAGS)
        self.surrogates_differ = self.surrogates_differ or differ
        return text

    def sequence(self, items: Iterable[tuple[Any, Any]], flags: int, last: bool) -> str:
        items = list(items)
        return "".join(
            self.item(op, av, flags, last and index == len(items) - 1) for index, (op, av) in enumerate(items)
        )

    def item(self, op: Any, av: Any, flags: int, last: bool) -> str:
        if op in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.IN):
            return self.characters(op, av, flags)
        if op is _sre.ANY:
            dot_all = flags & _sre.SRE_FLAG_DOTALL
            return self.characters(
                _sre.IN, [(_sre.NEGATE, None)] if dot_all else [(_sre.NEGATE, None), (_sre.LITERAL, 10)], 0
            )
        if op is _sre.BRANCH:
            return "(?:" + "|".join(self.sequence(branch, flags, last) for branch in av[1]) + ")"
        if op is _sre.SUBPATTERN:
            group, added, removed, body = av
            if (added | removed) & ~(
                _CLASS_FLAGS | _sre.SRE_FLAG_DOTALL | _sre.SRE_FLAG_MULTILINE | _sre.SRE_FLAG_VERBOSE
            ):
                raise _Untranslatable("scoped flags")
            inner = self.sequence(body, (flags | added) & ~removed, last)
            return f"({inner})" if group is not None else f"(?:{inner})"
        if op in _REPEATS:
            low, high, body = av
            if low > _MAX_COUNT or (high != _sre.MAXREPEAT and high > _MAX_COUNT):
                raise _Untranslatable("a counted repeat above 1,000")
            inner = self.sequence(body, flags, last and high <= 1)
            bound = f"{{{low},}}" if high == _sre.MAXREPEAT else f"{{{low},{high}}}"
            return f"(?:{inner}){bound}{_REPEATS[op]}"
        if op is _sre.AT and flags & _sre.SRE_FLAG_MULTILINE and av in _LINE_ANCHORS:
            return _LINE_ANCHORS[av]
        if op is _sre.AT and av in _ANCHORS:
            return _ANCHORS[av]
        if op is _sre.AT and av is _sre.AT_END and last:
            return r"(?:\n?\z)"
        raise _Untranslatable(str(op))


@final
class LinearPattern:
    """A compiled rule regex: ``match`` and ``search`` as Python's ``re.Pattern`` has them.

    Whether the pattern matches comes from RE2 when the pattern translates exactly; a match found
    there is a :class:`_Found` whose ``groups()`` Python's ``re`` computes on demand.
    """

    __slots__ = ("_linear", "_python", "_surrogates_differ", "flags", "pattern")

    def __init__(self, python: re.Pattern[str], linear: Any, surrogates_differ: bool) -> None:
        self._python = python
        self._linear = linear
        self._surrogates_differ = surrogates_differ
        self.pattern = python.pattern
        self.flags = python.flags

    @property
    def linear(self) -> bool:
        """Whether the pattern runs on RE2 (in time linear in the text)."""
        return self._linear is not None

    def match(self, text: str) -> Any:
        return self._run(text, "match")

    def search(self, text: str) -> Any:
        return self._run(text, "search")

    def _backtracking(self, text: str, how: str) -> Any:
        if len(text) > MAX_BACKTRACKING_TEXT:
            raise re_errors.EvaluationError(
                f"the text is {len(text):,} characters long; regular expression {self.pattern!r} runs on "
                f"Python's backtracking engine, which tagrules limits to {MAX_BACKTRACKING_TEXT:,} characters"
            )
        return getattr(self._python, how)(text)

    def _run(self, text: str, how: str) -> Any:
        if self._linear is None:
            return self._backtracking(text, how)
        try:
            encoded = text.encode()
        except UnicodeEncodeError:
            if self._surrogates_differ:
                return self._backtracking(text, how)
            encoded = _SURROGATE.sub(chr(_STAND_IN), text).encode()
        spans = self._linear.Match(_ANCHOR[how], encoded, 0, len(encoded))
        return None if spans[0] == _NO_MATCH else _Found(self._python, text, how)

    def __repr__(self) -> str:
        engine = "RE2" if self._linear is not None else "re"
        return f"LinearPattern({self.pattern!r}, engine={engine})"


@final
class _Found:
    """A match RE2 found; its groups are Python's."""

    __slots__ = ("_how", "_python", "_text")

    def __init__(self, python: re.Pattern[str], text: str, how: str) -> None:
        self._python, self._text, self._how = python, text, how

    def groups(self) -> tuple[Any, ...]:
        if not self._python.groups:
            return ()
        if len(self._text) > MAX_BACKTRACKING_TEXT:
            raise re_errors.EvaluationError(
                f"the text is {len(self._text):,} characters long; the groups of regular expression "
                f"{self._python.pattern!r} are read with Python's backtracking engine, which tagrules "
                f"limits to {MAX_BACKTRACKING_TEXT:,} characters"
            )
        found = getattr(self._python, self._how)(self._text)
        return () if found is None else tuple(found.groups())


def _translate(python: re.Pattern[str]) -> tuple[Any, bool]:
    """The RE2 pattern equal to ``python``, and whether surrogates and the stand-in differ in it."""
    parsed = _sre_parse.parse(python.pattern, python.flags)
    flags = parsed.state.flags
    if flags & _UNSUPPORTED_FLAGS:
        raise _Untranslatable("flags")
    translator = _Translator()
    text = translator.sequence(parsed, flags, True)
    linear = _re2.RE2(text.encode(), _RE2_OPTIONS)
    if not linear.ok():
        raise _Untranslatable(linear.error())
    return linear, translator.surrogates_differ


def linear_pattern(python: re.Pattern[str]) -> LinearPattern:
    """``python`` wrapped to run on RE2 where RE2 means the same, on Python's ``re`` elsewhere."""
    try:
        linear, surrogates_differ = _translate(python)
    except _Untranslatable:
        return LinearPattern(python, None, True)
    return LinearPattern(python, linear, surrogates_differ)


def runs_in_linear_time(pattern: str) -> bool:
    """Whether ``pattern`` (a valid Python regex) runs on RE2, in time linear in the text."""
    try:
        _translate(re.compile(pattern))
    except _Untranslatable:
        return False
    return True
