"""Running the tagrules command in the test's process, through its entry point."""

from __future__ import annotations

import pytest

from tagrules.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    """``tagrules ARGUMENTS``: the exit status, standard output and standard error."""
    status = main(list(arguments))
    captured = capsys.readouterr()
    return status, captured.out, captured.err
