"""`tagrules run` stopped part-way: the changes of every committed chunk are in its --changes file,
and a re-run completes the work, so that both files together hold exactly a clean run's changes."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli_store import tagrules

NOW = "2026-06-01T00:00:00Z"
COUNT = 8000  # eight chunks of 1,000


def run_until_a_chunk_is_committed(arguments: list[str], changes_file: Path) -> subprocess.Popen[str]:
    """`tagrules ARGUMENTS --changes CHANGES_FILE` started; returned once the file holds the changes of
    its first committed chunk."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tagrules.cli", *arguments, "--changes", str(changes_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (changes_file.exists() and changes_file.stat().st_size) and process.poll() is None:
        assert time.monotonic() < deadline, "no chunk was committed"
        time.sleep(0.02)
    return process


def changes(*paths: Path) -> collections.Counter[tuple[str, str, str]]:
    lines = [json.loads(line) for path in paths for line in path.read_text(encoding="utf-8").splitlines()]
    return collections.Counter((line["id"], line["tag"], line["change"]) for line in lines)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("input") / "customers.jsonl"
    made = tagrules("sample", "--count", str(COUNT), "--seed", "5", "--output", str(path))
    assert made.returncode == 0, made.stderr
    return path


class TestStoppedRun:
    @pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_stopped_run_and_rerun_give_a_clean_runs_changes(
        self, snapshots: Path, tmp_path: Path, stop: signal.Signals
    ) -> None:
        """A run stopped by a signal once its first chunk is committed exits 128 + the signal number
        with one line saying so; its --changes file plus the re-run's equal a clean run's file."""
        store = f"sqlite:///{tmp_path / 'stopped.db'}"
        first, second, clean = (tmp_path / f"{name}.jsonl" for name in ("first", "second", "clean"))
        command = ["run", "retail", str(snapshots), "--now", NOW]
        process = run_until_a_chunk_is_committed([*command, "--store", store], first)
        process.send_signal(stop)
        out, err = process.communicate(timeout=300)
        assert process.returncode == 128 + stop, err
        assert out == ""
        message = err.splitlines()[-1]
        assert message.startswith(f"tagrules: run stopped by {stop.name} after ")
        assert "run the same command again to resume" in message
        assert "Traceback" not in err
        stopped = changes(first)
        assert stopped
        rerun = tagrules(*command, "--store", store, "--changes", str(second))
        assert rerun.returncode == 0, rerun.stderr
        reference = tagrules(
            *command, "--store", f"sqlite:///{tmp_path / 'clean.db'}", "--changes", str(clean)
        )
        assert reference.returncode == 0, reference.stderr
        assert sum(changes(clean).values()) > sum(stopped.values())
        assert changes(first, second) == changes(clean)
