"""Rule regexes on RE2 mean what they mean on Python's ``re``; catastrophic ones are refused or bounded."""

from __future__ import annotations

import datetime
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagrules import Catalog, DefinitionError, Evaluator
from tagrules.rules._linear_regex import linear_pattern, runs_in_linear_time

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
#: characters whose case, class or line role Python's re treats specially
ALPHABET = ["a", "A", "b", "k", "K", "\u212a", "s", "S", "\u017f", "i", "I", "\u0130", "\u0131", "\u00df"]
ALPHABET += ["\u1e9e", "\n", "1", "\u0661", " ", "\u00a0", "_", "-", "@", ".", "\ud800", "\U0001f600"]

ATOMS = [re.escape(char) for char in ALPHABET] + [".", r"\d", r"\D", r"\w", r"\W", r"\s", r"\S"]
ATOMS += ["[a-z]", "[^a]", "[A-Z0-9_]", r"[\w@]", r"[^\s@]", "[k-s]", r"[\u0100-\u0200]", r"[^\ud800-\udfff]"]
QUANTIFIERS = ["", "", "*", "+", "?", "*?", "+?", "{1,3}", "{2}", "{0,2}?"]
FLAGS = ["", "", "(?i)", "(?s)", "(?m)", "(?a)", "(?is)", "(?ai)"]


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["atom", "atom", "atom", "group", "anchor"] if depth < 2 else ["atom"]))
        if kind == "atom":
            parts.append(draw(st.sampled_from(ATOMS)) + draw(st.sampled_from(QUANTIFIERS)))
        elif kind == "anchor":
            parts.append(draw(st.sampled_from(["^", "$", r"\A", r"\Z"])))
        else:
            branches = draw(st.lists(patterns(depth + 1), min_size=1, max_size=3))
            opening = draw(st.sampled_from(["(", "(?:", "(?i:", "(?-i:", "(?s:", "(?m:"]))
            parts.append(opening + "|".join(branches) + ")" + draw(st.sampled_from(QUANTIFIERS)))
    return "".join(parts)


texts = st.lists(st.sampled_from(ALPHABET), max_size=8).map("".join)


class TestSameMeaningAsPython:
    @settings(max_examples=600, deadline=None)
    @given(flags=st.sampled_from(FLAGS), body=patterns(), subjects=st.lists(texts, min_size=1, max_size=6))
    def test_match_and_search_agree(self, flags: str, body: str, subjects: list[str]) -> None:
        """On random patterns and texts, RE2's answer to match and search is Python's."""
        try:
            python = re.compile(flags + body)
        except re.error:
            return
        linear = linear_pattern(python)
        for text in subjects:
            assert (linear.match(text) is None) == (python.match(text) is None), (python.pattern, text)
            assert (linear.search(text) is None) == (python.search(text) is None), (python.pattern, text)

    @pytest.mark.parametrize(
        ("pattern", "text"),
        [
            ("(?i)k", "\u212a"),
            ("(?i)s", "\u017f"),
            ("(?i)i", "\u0130"),
            ("(?i)\u00df", "\u1e9e"),
            (r"\d", "\u0661"),
            (r"\w", "\u00e9"),
            (r"\s", "\u00a0"),
            ("a$", "a\n"),
            ("a$", "a\n\n"),
            ("a.", "a\n"),
            ("(?s)a.", "a\n"),
            ("[^b]", "\ud800"),
            (".", "\ud800"),
            (r"\w", "\ud800"),
            ("(?a)\\w", "\u00e9"),
            ("(?m)^b", "a\nb"),
        ],
    )
    def test_edge_cases(self, pattern: str, text: str) -> None:
        """Case folding, Unicode classes, ``$`` before a final newline, dots and lone surrogates."""
        python = re.compile(pattern)
        linear = linear_pattern(python)
        assert runs_in_linear_time(pattern)
        assert (linear.search(text) is None) == (python.search(text) is None)

    def test_groups_are_pythons(self) -> None:
        """$re_groups sees the groups Python's re gives."""
        catalog = Catalog(
            [{"key": "t", "rule": "city =~ '(a)(b+)c$' and $re_groups[1] == 'bb'"}], {"city": "str"}
        )
        assert Evaluator(catalog).evaluate({"city": "abbc\n"}, now=NOW).tags == {"t"}

    def test_groups_of_long_text_are_bounded(self) -> None:
        """Groups are read by Python's re only on bounded text: on a longer one, that tag's error;
        the interpreter, which reads groups after every match, needs none for a pattern without groups."""
        text = "a" * 20_000 + "!" + "b@x"
        with_groups = Evaluator(catalog_of("city =~~ '(\\\\w+)@x'"), compiled=False).evaluate(
            {"city": text}, now=NOW
        )
        assert "limits to 10,000 characters" in with_groups.errors["r"]
        without = Evaluator(catalog_of("city =~~ '\\\\w+@x'"), compiled=False).evaluate(
            {"city": text}, now=NOW
        )
        assert without.tags == {"r"}
        assert Evaluator(catalog_of("city =~~ '(\\\\w+)@x'")).evaluate({"city": text}, now=NOW).tags == {"r"}

    @pytest.mark.parametrize("pattern", [r"(?=a)a", r"(a)\1", r"\bx", "a$b", "x{1001}", "(?>a+)b", "a++"])
    def test_what_python_alone_can_run(self, pattern: str) -> None:
        """Lookaround, backreferences, word boundaries, ``$`` before more pattern, big counts,
        atomic groups and possessive repeats keep Python's engine."""
        assert not runs_in_linear_time(pattern)


SEQUENTIAL = [
    (".*.*.*.*x$", "a" * 1_000),
    ("a*a*a*a*a*a*b", "a" * 1_000),
    (r"\\s*\\s*\\s*\\s*\\s*x", " " * 1_000),
    (r"^(\\d+)\\d+\\d+\\d+\\d+$", "1" * 1_000 + "!"),
    (r"\\w+@x", "a" * 100_000),
]


def catalog_of(rule: str) -> Catalog:
    return Catalog([{"key": "r", "rule": rule}], {"city": "str"})


class TestCatastrophicPatterns:
    @pytest.mark.parametrize("pattern", ["(?i)(a|AA)+$", "(?i)(\u212a|kk)+$", "(?i:(s|\u017fS)+)$"])
    def test_case_folding_is_reasoned_about(self, pattern: str) -> None:
        """Branches that start alike once case is folded are refused at load."""
        with pytest.raises(DefinitionError, match="branches can start with the same character"):
            catalog_of(f"city =~ '{pattern}'")

    @pytest.mark.parametrize(("pattern", "text"), SEQUENTIAL)
    @pytest.mark.parametrize("operator", ["=~", "=~~"])
    @pytest.mark.parametrize("compiled", [True, False])
    def test_sequential_repeats_end_at_once(
        self, pattern: str, text: str, operator: str, compiled: bool
    ) -> None:
        """Repetitions in a row run on RE2: the evaluation ends, with Python's answer (no match)."""
        evaluator = Evaluator(catalog_of(f"city {operator} '{pattern}'"), compiled=compiled)
        result = evaluator.evaluate({"city": text}, now=NOW)
        assert result.tags == set()
        assert not result.errors

    @pytest.mark.parametrize("pattern", [pattern for pattern, _ in SEQUENTIAL[:4]])
    def test_sequential_repeats_on_pythons_engine_are_refused(self, pattern: str) -> None:
        """The same repetitions in a pattern that must run on Python's re (a lookahead) are refused."""
        with pytest.raises(DefinitionError, match="repetitions in a row"):
            catalog_of(f"city =~~ '(?=[a1 ]){pattern}'")

    @pytest.mark.parametrize("compiled", [True, False])
    def test_pythons_engine_runs_on_bounded_text(self, compiled: bool) -> None:
        """A pattern that keeps Python's engine fails on a text longer than its bound, as that tag's error."""
        evaluator = Evaluator(catalog_of("city =~~ '\\\\bx\\\\w+@x'"), compiled=compiled)
        assert evaluator.evaluate({"city": "x" + "a" * 9_000 + "@x"}, now=NOW).tags == {"r"}
        result = evaluator.evaluate({"city": "xa" * 100_000}, now=NOW)
        assert result.tags == set()
        assert "limits to 10,000 characters" in result.errors["r"]
