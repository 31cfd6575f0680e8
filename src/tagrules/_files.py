"""Reading YAML and JSON documents safely: size limits, no Python object tags, no alias bombs,
no key written twice in one mapping."""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tagrules.errors import DefinitionError, Problem

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_INTEGER_DIGITS",
    "MAX_NESTING",
    "dump_yaml",
    "huge_integer_problem",
    "load_document",
    "parse_document",
]

#: The largest catalog or case file tagrules reads.
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
#: How deeply lists and mappings may nest inside a document.
MAX_NESTING = 64
#: How many values a document may hold once its YAML aliases are expanded.
_MAX_EXPANDED_NODES = 2_000_000
#: The most digits an integer may have: Python's limit on converting text to int (4,300 by default).
MAX_INTEGER_DIGITS: int = getattr(sys, "get_int_max_str_digits", lambda: 4300)() or 4300
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|\d+')


def _line_column(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"line {line}, column {index - text.rfind(chr(10), 0, index)}"


def huge_integer_problem(text: str) -> str | None:
    """Where JSON text holds an integer longer than ``MAX_INTEGER_DIGITS`` (which ``json`` cannot read)."""
    for token in _JSON_TOKENS.finditer(text):
        if len(token.group()) > MAX_INTEGER_DIGITS and token.group()[0] != '"':
            return (
                f"{_line_column(text, token.start())}: an integer of more than {MAX_INTEGER_DIGITS:,} "
                "digits; write it as text or a float"
            )
    return None


_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's C parser when installed


class _Loader(_SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader; it builds plain data only and refuses every Python object tag.

    Unquoted dates stay text (``2026-06-01`` is the string, not a ``date``): the schema reads
    ISO 8601 text where a field wants a date, and free metadata stays plain JSON data.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}


def _fail(file: str, message: str) -> DefinitionError:
    return DefinitionError([Problem(message, file=file)])


def _position(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _check_unique_keys(node: yaml.MappingNode, file: str) -> None:
    """Refuse a key written twice in one mapping: YAML says keys are unique, PyYAML keeps the last."""
    seen: dict[tuple[str, str], yaml.Node] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            raise _fail(
                file,
                f"key {key.value!r} is written twice in one mapping ({_position(first.start_mark)} "
                f"and {_position(key.start_mark)}); keep one",
            )


def _check_node_graph(root: yaml.Node, file: str) -> None:
    """Refuse recursive aliases, alias bombs, deep nesting and repeated keys before anything is built."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
            if not children_done:
                _check_unique_keys(node, file)
        elif (
            node.tag == "tag:yaml.org,2002:int"
            and sum(character.isdigit() for character in node.value) > MAX_INTEGER_DIGITS
        ):
            raise _fail(
                file,
                f"{_position(node.start_mark)}: an integer of more than {MAX_INTEGER_DIGITS:,} digits; "
                "write it as text or a float",
            )
        if children_done:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
            if sizes[key] > _MAX_EXPANDED_NODES:
                raise _fail(
                    file, f"the document expands to more than {_MAX_EXPANDED_NODES:,} values (YAML aliases)"
                )
            if depths[key] > MAX_NESTING:
                raise _fail(file, f"the document nests more than {MAX_NESTING} levels deep")
            continue
        if key in sizes:
            continue
        if key in active:
            raise _fail(file, "the document refers to itself (a recursive YAML alias)")
        active.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _yaml_message(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if isinstance(error, yaml.constructor.ConstructorError) and "constructor for the tag" in str(problem):
        problem = f"{problem}; only plain YAML data is accepted (no Python or custom tags)"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _tab_hint(text: str, error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return ""
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    if "\t" in line[: mark.column + 1]:
        return " (a tab: YAML indents with spaces only; replace the tab with spaces)"
    return ""


def _parse_yaml(text: str, file: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node_graph(node, file)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        if "maximum nesting depth" in str(getattr(error, "problem", "") or ""):
            # libyaml and PyYAML >= 6.0.3 refuse deep nesting themselves, before our own check
            raise _fail(file, f"the document nests more than {MAX_NESTING} levels deep") from None
        raise _fail(file, "not valid YAML: " + _yaml_message(error) + _tab_hint(text, error)) from error
    except RecursionError:
        raise _fail(file, f"the document nests more than {MAX_NESTING} levels deep") from None
    finally:
        loader.dispose()


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_NESTING:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


class _RepeatedKey(Exception):
    def __init__(self, key: str, first: int, second: int) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, index: int) -> int:
    return _JSON_WHITESPACE.match(text, index).end()  # type: ignore[union-attr]  # "*" always matches


_scanstring: Any = getattr(json.decoder, "scanstring")  # noqa: B009  (not in the type stubs)


def _object_with_positions(
    s_and_end: tuple[str, int], strict: bool, scan_once: Any, *_: Any, **__: Any
) -> tuple[dict[str, Any], int]:
    """``json``'s object parser, remembering where each key starts (run only on text already parsed)."""
    text, end = s_and_end
    end = _skip_space(text, end)
    pairs: dict[str, Any] = {}
    starts: dict[str, int] = {}
    if text[end : end + 1] == "}":
        return pairs, end + 1
    while True:
        start = end
        key, end = _scanstring(text, end + 1, strict)
        if key in starts:
            raise _RepeatedKey(key, starts[key], start)
        starts[key] = start
        end = _skip_space(text, _skip_space(text, end) + 1)  # past the ':'
        pairs[key], end = scan_once(text, end)
        end = _skip_space(text, end)
        if text[end] == "}":
            return pairs, end + 1
        end = _skip_space(text, end + 1)  # past the ','


def _repeated_key(text: str, file: str) -> DefinitionError:
    decoder = json.JSONDecoder()
    decoder.parse_object = _object_with_positions  # type: ignore[attr-defined]
    scan = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        scan(text, _skip_space(text, 0))
    except _RepeatedKey as repeated:
        return _fail(
            file,
            f"key {repeated.key!r} is written twice in one object ({_line_column(text, repeated.first)} "
            f"and {_line_column(text, repeated.second)}); keep one",
        )
    raise AssertionError("a repeated key was seen but not found again")  # pragma: no cover


def _parse_json(text: str, file: str) -> Any:
    repeated = False

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        built = dict(pairs)
        repeated = repeated or len(built) != len(pairs)
        return built

    try:
        data = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as error:
        raise _fail(
            file, f"not valid JSON: line {error.lineno}, column {error.colno}: {error.msg}"
        ) from error
    except RecursionError:
        raise _fail(file, f"the document nests more than {MAX_NESTING} levels deep") from None
    except ValueError:
        # json.JSONDecodeError is caught above: this is int()'s refusal of a huge integer
        raise _fail(
            file, "not valid JSON: " + (huge_integer_problem(text) or "a value out of range")
        ) from None
    if _depth(data) > MAX_NESTING:
        raise _fail(file, f"the document nests more than {MAX_NESTING} levels deep")
    if repeated:
        # found on the fast path; parsed again, slowly, only to say where the two keys are
        raise _repeated_key(text, file)
    return data


def parse_document(text: str, *, file: str, format: str | None = None) -> Any:
    """Parse YAML or JSON text into plain data; ``format`` is ``"yaml"``, ``"json"`` or guessed from ``file``.

    Raises:
        DefinitionError: the text is too large, malformed, or uses anything but plain data.
    """
    if len(text) > MAX_DOCUMENT_BYTES:
        raise _fail(file, f"the document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB")
    if "\x00" in text:
        raise _fail(file, "the document contains a NUL character; is it a text file?")
    chosen = format or ("json" if file.lower().endswith(".json") else "yaml")
    if chosen == "json":
        return _parse_json(text, file)
    if chosen == "yaml":
        return _parse_yaml(text, file)
    raise ValueError(f"unknown document format {format!r}; use 'yaml' or 'json'")


def load_document(path: str | Path) -> Any:
    """Read and parse a YAML or JSON file (chosen by its extension; YAML otherwise).

    Raises:
        DefinitionError: the file cannot be read, or its content is not valid plain data.
    """
    file = str(path)
    target = Path(path)
    try:
        size = target.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise _fail(file, f"the file is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB")
        raw = target.read_bytes()
    except FileNotFoundError:
        raise _fail(file, "no such file") from None
    except IsADirectoryError:
        raise _fail(file, "is a directory, not a file") from None
    except OSError as error:
        raise _fail(file, f"cannot read the file: {error.strerror or error}") from error
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - raw.rfind(b"\n", 0, error.start)
        raise _fail(file, f"not UTF-8 text (line {line}, byte {column} of the line)") from error
    return parse_document(text, file=file)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, double-quoting text that holds characters YAML reads as line breaks."""


_LINE_BREAKS = ("\x85", "\u2028", "\u2029", "\r")


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = '"' if any(mark in text for mark in _LINE_BREAKS) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_text)


def dump_yaml(data: Any) -> str:
    """Plain data as block-style YAML, keys in their given order, Unicode kept readable."""
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )
