"""Running the tagrules command in the test's process, through its entry point."""

from __future__ import annotations

import contextlib
import io

import pytest

from tagrules.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    """``tagrules ARGUMENTS``: the exit status, standard output and standard error."""
    status = main(list(arguments))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def prepare(*arguments: str) -> None:
    """``tagrules ARGUMENTS`` in this process, for a test's setup (a store filled by ``run``, a schema
    made by ``db upgrade``), the commands under test being run as processes of their own; fails with
    the command's standard error unless it succeeds."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(arguments))
    assert status == 0, err.getvalue()
