"""The README's quick start runs and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the quick start has a python block"
    return match.group(1)


class TestReadme:
    def test_quick_start_runs(self) -> None:
        """The quick start executes and each commented print shows the commented value."""
        code = quick_start()
        assert len(code.splitlines()) <= 22
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(compile(code, str(README), "exec"), {})
        printed = output.getvalue().splitlines()
        commented = [line for line in code.splitlines() if line.startswith("print(") and "# " in line]
        expected = [line.split("# ", 1)[1] for line in commented]
        assert printed[: len(expected)] == expected
        assert printed[len(expected)].startswith("vip: not assigned")
