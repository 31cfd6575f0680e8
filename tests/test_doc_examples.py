"""Every fenced example of README.md and docs/ runs: Python and shell examples are executed, data checked.

Each page is one test: its blocks run in order in a fresh temporary folder (with the repository's
``examples/`` folder linked in, as in a clone), so a block may use what an earlier block of the
page defined or wrote. Python blocks share one namespace per page; shell blocks (``console``,
``shell``, ``bash``, ``sh``, or any block whose first line starts with ``$ ``) run each ``$ ``
command with bash, the virtualenv's ``tagrules`` first on ``PATH``, and must exit 0; the lines
that follow a command are its output and are not run. ``yaml``, ``json``, ``toml`` and ``ini``
blocks must parse.

A block that is not run says so in an HTML comment on the line before its fence (blank lines
between are allowed), and says why; nothing is skipped silently:

* ``<!-- example: output -->`` — the block shows output (a report, an error message, a table);
* ``<!-- example: partial REASON -->`` — a fragment or a command that cannot run here (it needs
  PostgreSQL, installs packages, runs for minutes ...): the reason is required;
* ``<!-- example: synopsis -->`` — lines ``tagrules COMMAND [OPTIONS]``: the options a command's
  lines show together are exactly those its parser takes (so are those of the
  ``## `tagrules COMMAND ...``` headings of docs/cli.md); a line ``tagrules [OPTIONS] COMMAND``
  shows the options of the ``tagrules`` command itself (those before the command).

Blocks that run differently:

* ``<!-- example: file NAME -->`` — the block is written to ``NAME`` in the page's folder, for the
  blocks after it (a catalog, a case file, a ``pytest.ini``);
* ``<!-- example: pytest -->`` — a Python block that is a pytest test module: it runs under pytest
  in the page's folder, and every test must pass;
* ``<!-- example: exit N -->`` — a shell block whose commands exit with status ``N``.

Top-level functions named ``test_*`` that a plain Python block defines without parameters (a
hypothesis ``@given`` test) are called after the block runs. A failure names the page and the line
of the block (``docs/testing.md:153``) and, for Python, the line in the page where it failed.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import functools
import importlib
import inspect
import io
import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# the standard library's from Python 3.11; pytest installs tomli before it
tomllib = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<language>[\w+-]*)[^\n]*$")
_MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<kind>[\w-]+)\s*(?P<argument>.*?)\s*-->\s*$")
_MARKERS = ("output", "partial", "synopsis", "file", "pytest", "exit")
_SHELLS = ("console", "shell", "bash", "sh")
_OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")
_TIMEOUT = 300


class ExampleFailed(AssertionError):
    """An example of the documentation that does not run as written."""


@dataclass(frozen=True)
class Block:
    """A fenced block of a page: where it is, its language, its text and the marker before it."""

    page: Path
    line: int  # the line of the opening fence, from 1
    language: str
    text: str
    marker: str | None = None
    argument: str = ""

    @property
    def where(self) -> str:
        return f"{shown(self.page)}:{self.line}"


def shown(page: Path) -> str:
    """The page as failures name it: relative to the repository (``docs/testing.md``) when inside it."""
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def fenced_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, each with the ``<!-- example: ... -->`` marker before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    marker: tuple[str, str, int] | None = None
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        comment = _MARKER.match(line)
        if comment:
            marker = (comment["kind"], comment["argument"], number)
            continue
        fence = _FENCE.match(line)
        if not fence:
            if line.strip():
                marker = None
            continue
        start, indent, closing = number, fence["indent"], fence["fence"]
        body: list[str] = []
        while number < len(lines) and not lines[number].strip().startswith(closing):
            text = lines[number]
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
            number += 1
        if number >= len(lines):
            raise ExampleFailed(f"{shown(page)}:{start}: the block is never closed")
        number += 1
        kind, argument = (marker[0], marker[1]) if marker else (None, "")
        found.append(Block(page, start, fence["language"].lower(), "\n".join(body) + "\n", kind, argument))
        marker = None
    return found


class Page:
    """The state the blocks of one page share: a folder, a Python namespace, the commands' environment."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.namespace: dict[str, Any] = {"__name__": "__doc_example__"}
        self.environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        (folder / "examples").symlink_to(ROOT / "examples", target_is_directory=True)

    def run(self, block: Block) -> None:
        if block.marker is not None and block.marker not in _MARKERS:
            raise ExampleFailed(f"unknown marker 'example: {block.marker}' (one of {', '.join(_MARKERS)})")
        if block.marker in ("output", "partial"):
            if block.marker == "partial" and not block.argument:
                raise ExampleFailed("'example: partial' needs a reason: <!-- example: partial REASON -->")
            return
        if block.marker == "synopsis":
            self.synopsis(block)
        elif block.marker == "file":
            self.write(block)
        elif block.marker == "pytest":
            self.pytest(block)
        elif block.language == "python":
            self.python(block)
        elif block.language in _SHELLS or block.text.startswith("$ "):
            self.shell(block)
        elif block.language in ("yaml", "json", "toml", "ini"):
            self.parse(block)
        else:
            raise ExampleFailed(
                f"a {block.language or 'plain'} block that is neither run nor marked: label it python or "
                "console, or mark it <!-- example: output -->, <!-- example: partial REASON --> ..."
            )

    # -- the kinds of blocks -------------------------------------------------------------------------

    def write(self, block: Block) -> None:
        if not block.argument:
            raise ExampleFailed("'example: file' needs a file name: <!-- example: file catalog.yaml -->")
        target = self.folder / block.argument
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")

    def python(self, block: Block) -> None:
        before = set(self.namespace)
        # padded so that line numbers in tracebacks are the page's own
        code = compile("\n" * block.line + block.text, shown(block.page), "exec")
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                exec(code, self.namespace)
                for name in sorted(set(self.namespace) - before):
                    self.call_test(name)
        except ExampleFailed:
            raise
        except BaseException as error:
            raise ExampleFailed(_python_failure(error, block, output.getvalue())) from None

    def call_test(self, name: str) -> None:
        function = self.namespace[name]
        if not name.startswith("test_") or not callable(function):
            return
        required = [
            parameter
            for parameter in inspect.signature(function).parameters.values()
            if parameter.default is parameter.empty
            and parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        ]
        if required:
            raise ExampleFailed(
                f"{name}() takes fixtures ({', '.join(parameter.name for parameter in required)}): "
                "mark the block <!-- example: pytest --> to run it under pytest"
            )
        function()

    def shell(self, block: Block) -> None:
        expected = _expected_status(block)
        for command in _commands(block.text):
            result = self.execute(["bash", "-c", command])
            if result.returncode != expected:
                raise ExampleFailed(
                    f"$ {command}\nexited {result.returncode}, not {expected}\n"
                    f"stdout:\n{_tail(result.stdout)}\nstderr:\n{_tail(result.stderr)}"
                )

    def pytest(self, block: Block) -> None:
        module = self.folder / f"test_example_line_{block.line}.py"
        module.write_text(block.text, encoding="utf-8")
        result = self.execute([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module.name])
        if result.returncode != 0:
            raise ExampleFailed(f"pytest failed (exit {result.returncode}):\n{_tail(result.stdout, 60)}")

    def execute(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                command,
                cwd=self.folder,
                env=self.environment,
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ExampleFailed(f"{shlex.join(command)}\ndid not finish in {_TIMEOUT} s") from None

    def parse(self, block: Block) -> None:
        try:
            if block.language == "yaml":
                yaml.safe_load(block.text)
            elif block.language == "toml":
                tomllib.loads(block.text)
            elif block.language == "ini":
                configparser.ConfigParser(interpolation=None).read_string(block.text)
            else:
                try:
                    json.loads(block.text)
                except json.JSONDecodeError:
                    for line in block.text.splitlines():  # JSON Lines
                        if line.strip():
                            json.loads(line)
        except Exception as error:
            raise ExampleFailed(f"not valid {block.language}: {error}") from None

    def synopsis(self, block: Block) -> None:
        usages: dict[str, list[str]] = {}
        for line in block.text.splitlines():
            usage = line.split("  #", 1)[0].strip()
            if not usage:
                continue
            words = usage.split()
            if words[0] != "tagrules" or len(words) < 2:
                raise ExampleFailed(f"a synopsis line is 'tagrules COMMAND ...', not {line!r}")
            usages.setdefault(_command_words(words[1:]), []).append(usage)
        for command, lines in usages.items():
            check_synopsis(command, " ".join(lines))


@functools.cache
def command_options(command: str) -> frozenset[str]:
    """The ``--options`` of ``tagrules COMMAND`` (``db upgrade``: a subcommand's), from its own parser."""
    from tagrules.cli import build_parser

    parser: argparse.ArgumentParser = build_parser()
    for word in command.split():
        commands = next(
            (action for action in parser._actions if isinstance(action, argparse._SubParsersAction)), None
        )
        if commands is None or word not in commands.choices:
            raise ExampleFailed(f"'tagrules {command}': {word!r} is not a command")
        parser = commands.choices[word]
    options = {option for action in parser._actions for option in action.option_strings}
    return frozenset(option for option in options if option.startswith("--")) - {"--help"}


def _command_words(words: list[str]) -> str:
    """The command of a synopsis's words after ``tagrules``: one word, or two for ``db upgrade``;
    none (the ``tagrules`` command's own options) when they start with an option."""
    if words[0].startswith(("-", "[")):
        return ""
    if len(words) > 1 and words[0] == "db":
        return " ".join(words[:2])
    return words[0]


def check_synopsis(command: str, usage: str) -> None:
    """The options ``usage`` shows for ``tagrules COMMAND`` are exactly those of its parser."""
    shown = set(_OPTION.findall(usage))
    offered = command_options(command)
    problems = []
    if shown - offered:
        problems.append(f"not options of the command: {', '.join(sorted(shown - offered))}")
    if offered - shown:
        problems.append(f"options missing from the synopsis: {', '.join(sorted(offered - shown))}")
    if problems:
        raise ExampleFailed(f"synopsis of 'tagrules {command}': {'; '.join(problems)}")


def _expected_status(block: Block) -> int:
    if block.marker != "exit":
        return 0
    try:
        return int(block.argument)
    except ValueError:
        raise ExampleFailed(f"'example: exit' needs a status, not {block.argument!r}") from None


def _commands(text: str) -> Iterator[str]:
    """The ``$ `` commands of a shell block, continuation lines (ending in ``\\``) joined."""
    lines = iter(text.splitlines())
    for line in lines:
        if not line.startswith("$ "):
            continue
        command = line[2:]
        while command.endswith("\\"):
            command = command[:-1] + next(lines, "")
        yield command


def _python_failure(error: BaseException, block: Block, output: str) -> str:
    page = shown(block.page)
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == page]
    at = f" (at {page}:{frames[-1].lineno})" if frames else ""
    message = "".join(traceback.format_exception_only(type(error), error)).strip()
    printed = f"\noutput:\n{_tail(output)}" if output.strip() else ""
    return f"{message}{at}{printed}"


def _tail(text: str, lines: int = 20) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join("    " + line for line in kept)


def run_page(page: Path, folder: Path) -> None:
    """Run every block of ``page`` in order in ``folder``; the first failure names the page and line."""
    state = Page(folder)
    previous = Path.cwd()
    os.chdir(folder)
    try:
        for block in fenced_blocks(page):
            try:
                state.run(block)
            except ExampleFailed as failure:
                shown = "\n".join("    | " + line for line in block.text.splitlines()[:12])
                raise ExampleFailed(
                    f"{block.where}: {block.language or 'plain'} block: {failure}\n  the block:\n{shown}"
                ) from None
    finally:
        os.chdir(previous)


@pytest.mark.parametrize("page", PAGES, ids=[shown(page) for page in PAGES])
def test_examples_run(page: Path, tmp_path: Path) -> None:
    """Every fenced block of the page runs as written, or is marked as output or partial with a reason."""
    __tracebackhide__ = True
    try:
        run_page(page, tmp_path)
    except ExampleFailed as failure:
        pytest.fail(str(failure), pytrace=False)


_HEADING = re.compile(r"^#+ `(?P<usage>tagrules [a-z][\w-]*(?: [a-z][\w-]*)?[^`]*)`", re.MULTILINE)


def test_cli_headings_are_synopses() -> None:
    """Each ``## `tagrules COMMAND ...``` heading of docs/cli.md shows exactly the command's options."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    headings: dict[str, list[tuple[int, str]]] = {}
    for match in _HEADING.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        headings.setdefault(_command_words(shlex.split(match["usage"])[1:]), []).append(
            (line, match["usage"])
        )
    failures = []
    for command, found in headings.items():
        try:
            check_synopsis(command, " ".join(usage for _, usage in found))
        except ExampleFailed as failure:
            lines = ", ".join(str(line) for line, _ in found)
            failures.append(f"docs/cli.md:{lines}: {failure}")
    assert not failures, "\n".join(failures)


def test_api_names_are_importable_as_the_page_says() -> None:
    """docs/api.md: each ``tagrules.NAME`` is in ``tagrules.__all__``; others import from their module."""
    import tagrules

    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert "The names written `tagrules.NAME` below are importable from `tagrules` itself" in text
    failures = []
    for match in re.finditer(r"^::: (?P<name>[\w.]+)", text, re.MULTILINE):
        module, _, name = match["name"].rpartition(".")
        if module == "tagrules" and name not in tagrules.__all__:
            failures.append(f"{match['name']} is not in tagrules.__all__")
        elif module != "tagrules" and not hasattr(importlib.import_module(module), name):
            try:
                importlib.import_module(match["name"])  # a module, such as tagrules.packs.retail
            except ImportError:
                failures.append(f"{match['name']}: {module} has no {name!r}")
    assert not failures, "\n".join(failures)


class TestCollector:
    """The collector itself: what it finds, runs and refuses."""

    def run(self, tmp_path: Path, text: str) -> None:
        page = tmp_path / "page.md"
        page.write_text(text, encoding="utf-8")
        folder = tmp_path / "work"
        folder.mkdir()
        run_page(page, folder)

    def test_failure_names_page_and_line(self, tmp_path: Path) -> None:
        """A failing Python block is reported with the page, the block's line and the failing line."""
        text = "# Page\n\n```python\nx = 1\n```\n\ntext\n\n```python\ny = x\nz = 1 / 0\n```\n"
        with pytest.raises(ExampleFailed) as caught:
            self.run(tmp_path, text)
        message = str(caught.value)
        assert message.startswith(f"{tmp_path / 'page.md'}:9: python block: ZeroDivisionError")
        assert f"(at {tmp_path / 'page.md'}:11)" in message

    def test_unmarked_plain_block_is_refused(self, tmp_path: Path) -> None:
        """A block neither run nor marked fails, saying how to mark it."""
        with pytest.raises(ExampleFailed, match=r":3: plain block: a plain block that is neither run nor"):
            self.run(tmp_path, "# Page\n\n```\nsome output\n```\n")

    def test_marked_blocks_and_files(self, tmp_path: Path) -> None:
        """Markers: output and partial blocks do not run, files are written for later shell blocks."""
        text = (
            "<!-- example: output -->\n```\nnot run\n```\n\n"
            "<!-- example: partial needs PostgreSQL -->\n```console\n$ false\n```\n\n"
            "<!-- example: file catalog.yaml -->\n```yaml\nschema: {n: int}\ntags:\n"
            "  - {key: big, rule: 'n > 1'}\n```\n\n"
            "```console\n$ grep -c key catalog.yaml\n1\n```\n\n"
            "<!-- example: exit 1 -->\n```console\n$ test -f nowhere.yaml\n```\n"
        )
        self.run(tmp_path, text)

    def test_a_failing_command_shows_its_output(self, tmp_path: Path) -> None:
        """A shell command that fails is reported with its status and what it printed."""
        with pytest.raises(
            ExampleFailed, match=r"(?s):1: console block: \$ cat no.yaml\nexited 1, not 0.*No such"
        ):
            self.run(tmp_path, "```console\n$ cat no.yaml\n```\n")

    def test_partial_needs_a_reason(self, tmp_path: Path) -> None:
        """A partial block must say why it does not run."""
        with pytest.raises(ExampleFailed, match="needs a reason"):
            self.run(tmp_path, "<!-- example: partial -->\n```python\nx\n```\n")

    def test_parameterless_tests_are_called(self, tmp_path: Path) -> None:
        """A test function a block defines is called: a failing assertion in it fails the block."""
        with pytest.raises(ExampleFailed, match=r":1: python block: AssertionError"):
            self.run(tmp_path, "```python\ndef test_it():\n    assert 1 == 2\n```\n")
