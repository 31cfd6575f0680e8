"""Catalog and case files mean what they say: no key written twice, no value Python cannot read."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from tagrules import Catalog, DefinitionError, Evaluator
from tagrules.cli import main
from tagrules.testing import load_case_file

YAML_CATALOG = """\
schema:
  spend: float
tags:
  - {key: big, rule: "spend >= 100"}
  - {key: small, rule: "spend < 100"}
"""
HUGE = "9" * 5000


def problem_of(call: object) -> str:
    assert callable(call)
    with pytest.raises(DefinitionError) as caught:
        call()
    assert len(caught.value.problems) == 1
    return str(caught.value.problems[0])


class TestRepeatedKeys:
    """A key written twice in one mapping is refused with both positions, at every level."""

    def test_second_tags_list_in_yaml(self) -> None:
        """A second `tags:` left over from a merge is refused rather than replacing the first."""
        text = YAML_CATALOG + "tags:\n  - {key: other, rule: 'spend > 1'}\n"
        message = problem_of(lambda: Catalog.loads(text, source="catalog.yaml"))
        assert message == (
            "catalog.yaml: key 'tags' is written twice in one mapping "
            "(line 3, column 1 and line 6, column 1); keep one"
        )

    def test_nested_yaml_mapping(self) -> None:
        """A key repeated inside a tag's mapping is refused too."""
        text = "schema:\n  spend: float\ntags:\n  - key: big\n    rule: spend > 1\n    key: small\n"
        message = problem_of(lambda: Catalog.loads(text, source="c.yaml"))
        assert "key 'key' is written twice in one mapping (line 4, column 5 and line 6, column 5)" in message

    def test_quoted_and_plain_keys_are_the_same_key(self) -> None:
        """`spend` and `'spend'` are one key."""
        text = "schema:\n  spend: float\n  'spend': int\ntags: []\n"
        assert "key 'spend' is written twice" in problem_of(lambda: Catalog.loads(text, source="c.yaml"))

    def test_yaml_merge_keys_still_override(self) -> None:
        """A key given beside a `<<` merge overrides the merged one, as YAML means it to."""
        text = (
            "schema:\n  spend: float\n"
            "tags:\n  - &base {key: big, rule: spend > 1}\n  - <<: *base\n    key: other\n"
        )
        assert [tag.key for tag in Catalog.loads(text)] == ["big", "other"]

    def test_json_catalog_at_any_depth(self, tmp_path: Path) -> None:
        """JSON objects are checked at every level, with the line and column of both keys."""
        path = tmp_path / "catalog.json"
        path.write_text(
            '{"schema": {"spend": "float"},\n'
            ' "tags": [{"key": "big", "rule": "spend > 1",\n'
            '           "metadata": {"owner": "a", "owner": "b"}}]}\n',
            encoding="utf-8",
        )
        message = problem_of(lambda: Catalog.load(path))
        assert message == (
            f"{path}: key 'owner' is written twice in one object "
            "(line 3, column 25 and line 3, column 39); keep one"
        )

    def test_json_without_repeats_loads(self) -> None:
        """A JSON catalog whose keys differ loads as before."""
        text = json.dumps({"schema": {"spend": "float"}, "tags": [{"key": "big", "rule": "spend > 1"}]})
        assert len(Catalog.loads(text, format="json")) == 1

    def test_case_file(self, tmp_path: Path) -> None:
        """Case files are refused the same way."""
        (tmp_path / "catalog.yaml").write_text(YAML_CATALOG, encoding="utf-8")
        path = tmp_path / "tags.cases.yaml"
        path.write_text(
            "catalog: catalog.yaml\nnow: '2026-06-01T00:00:00Z'\ncases:\n"
            "  - name: a\n    snapshot: {spend: 1}\n    has: [small]\n    has: [big]\n",
            encoding="utf-8",
        )
        message = problem_of(lambda: load_case_file(path))
        assert "key 'has' is written twice in one mapping (line 6, column 5 and line 7, column 5)" in message

    def test_validate_fails_and_names_both_lines(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`tagrules validate` exits 1 instead of reporting the last list as the catalog."""
        path = tmp_path / "catalog.yaml"
        path.write_text(YAML_CATALOG + "tags:\n  - {key: other, rule: 'spend > 1'}\n", encoding="utf-8")
        assert main(["validate", str(path)]) == 1
        output = capsys.readouterr()
        assert (
            "key 'tags' is written twice in one mapping (line 3, column 1 and line 6, column 1)" in output.out
        )
        assert ": valid:" not in output.out


class TestHugeIntegers:
    """An integer Python will not convert from text is a positioned problem, not a ValueError."""

    def test_yaml_catalog(self) -> None:
        """A YAML catalog with a 5,000-digit integer names its line and column."""
        text = (
            f"schema:\n  spend: float\ntags:\n  - key: a\n    rule: spend > 1\n    metadata: {{n: {HUGE}}}\n"
        )
        message = problem_of(lambda: Catalog.loads(text, source="c.yaml"))
        assert (
            message
            == "c.yaml: line 6, column 19: an integer of more than 4,300 digits; write it as text or a float"
        )

    def test_json_catalog(self) -> None:
        """A JSON catalog with one names its line and column, not a digit hidden in a string."""
        text = f'{{"schema": {{"spend": "float"}},\n "note": "{HUGE}",\n "tags": [{HUGE}]}}'
        message = problem_of(lambda: Catalog.loads(text, format="json", source="c.json"))
        assert message == (
            "c.json: not valid JSON: line 3, column 11: an integer of more than 4,300 digits; "
            "write it as text or a float"
        )

    def test_case_file(self, tmp_path: Path) -> None:
        """A case file snapshot with one is refused with its position."""
        (tmp_path / "catalog.yaml").write_text(YAML_CATALOG, encoding="utf-8")
        path = tmp_path / "tags.cases.yaml"
        path.write_text(
            f"catalog: catalog.yaml\nnow: '2026-06-01T00:00:00Z'\ncases:\n"
            f"  - name: a\n    snapshot: {{spend: {HUGE}}}\n    has: [big]\n",
            encoding="utf-8",
        )
        assert "line 5, column 23: an integer of more than 4,300 digits" in problem_of(
            lambda: load_case_file(path)
        )


class TestRegexEscapes:
    """A regex written the natural way in YAML means what its author meant, with no warning."""

    CATALOG = (
        "schema:\n  email: str\ntags:\n"
        "  - key: plain\n    rule: email =~ '.*@example\\.com'\n"
        "  - key: quoted\n    rule: \"email =~ '.*@example\\\\.com'\"\n"
        "  - key: raw\n    rule: email =~ r'.*@example\\.com'\n"
        "  - key: classes\n    rule: email =~ '^\\w+\\.\\w+@'\n"
    )

    def test_loads_without_warning_and_matches_a_dot(self) -> None:
        """`\\.` in a rule's string stays a regex escape: it matches a dot and nothing else."""
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            catalog = Catalog.loads(self.CATALOG)
            evaluator = Evaluator(catalog)
            dot = evaluator.evaluate({"email": "jo.ann@example.com"})
            other = evaluator.evaluate({"email": "jo_ann@exampleXcom"})
        assert dot.tags == {"plain", "quoted", "raw", "classes"}
        assert other.tags == set()

    def test_string_escapes_keep_their_meaning(self) -> None:
        """Real escapes (`\\n`, `\\'`, `\\u00e9`, a doubled backslash) are decoded as before."""
        catalog = Catalog(
            [
                {"key": "newline", "rule": "name == 'a\\nb'"},
                {"key": "accent", "rule": "name == '\\u00e9'"},
                {"key": "backslash", "rule": "name == 'a\\\\b'"},
            ],
            {"name": "str"},
        )
        evaluator = Evaluator(catalog)
        assert evaluator.evaluate({"name": "a\nb"}).tags == {"newline"}
        assert evaluator.evaluate({"name": "é"}).tags == {"accent"}
        assert evaluator.evaluate({"name": "a\\b"}).tags == {"backslash"}


class TestEncoding:
    """A catalog that is not UTF-8 is refused with the line of the first bad byte."""

    def test_bad_byte_in_the_middle(self, tmp_path: Path) -> None:
        """The position is a line and a byte in it, not an offset into the whole file."""
        path = tmp_path / "catalog.yaml"
        path.write_bytes(YAML_CATALOG.encode() + b"  - {key: caf\xe9, rule: 'spend > 1'}\n")
        message = problem_of(lambda: Catalog.load(path))
        assert message == f"{path}: not UTF-8 text (line 6, byte 14 of the line)"
