"""What tagrules logs: silent by default; runs, retries, tags left to Python, plugins and listeners on
the ``tagrules.*`` loggers with their figures as fields; the command's ``-v`` and ``--log-format``."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from cli_helpers import run_cli
from sql_tables import fill, snapshot_table
from store_helpers import catalog, drop_store, unique_prefix
from tagrules import Catalog, ChangeEvent, MemoryStore, SQLStore, Tagger, count_tags, retag_from_table
from tagrules.plugins import ENTRY_POINT_GROUP, discover
from test_tagger import MID, RICH, Racing

T0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
TAGRULES = str(Path(sys.executable).parent / "tagrules")
SCHEMA = {"spend": "float", "items": "list[int]"}
TAGS: list[dict[str, Any]] = [
    {"key": "big", "rule": "spend >= 100"},
    {"key": "many", "rule": "[x for x in items if x > 1].length > 1"},
]
ROWS = [
    {"id": "a", "spend": 150.0, "items": [2, 3]},
    {"id": "b", "spend": 5.0, "items": [0]},
    {"id": "c", "spend": 500.0, "items": []},
]


def records(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logger]


def table_catalog() -> Catalog:
    return Catalog.from_data({"schema": SCHEMA, "tags": TAGS})


@pytest.fixture
def rows_table(sqlite_url: URL) -> str:
    engine = sa.create_engine(sqlite_url)
    table = snapshot_table("customers", table_catalog().schema, "sqlite")
    with engine.begin() as connection:
        fill(connection, table, table_catalog().schema, ROWS)
    engine.dispose()
    return str(table.name)


class TestSilentByDefault:
    def test_nothing_is_printed_without_logging_configured(self) -> None:
        """With no handler configured, a failing listener (logged at ERROR with its traceback) prints
        nothing: the ``tagrules`` logger's NullHandler keeps Python's last-resort handler away."""
        code = (
            "from tagrules import Catalog, MemoryStore, Tagger\n"
            "catalog = Catalog([{'key': 'a', 'rule': 'x > 1'}], {'x': 'int'})\n"
            "def broken(event): raise RuntimeError('down')\n"
            "report = Tagger(catalog, MemoryStore(), listeners=[broken]).apply_many([('c', {'x': 2})])\n"
            "assert report.listener_errors == 1\n"
            "import logging\n"
            "assert not logging.getLogger().handlers\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stderr == ""

    def test_import_configures_nothing(self) -> None:
        """``import tagrules`` neither imports ``logging`` nor adds a handler anywhere."""
        code = "import sys, tagrules\nprint('logging' in sys.modules)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "False"


class TestRuns:
    def test_a_run_logs_its_start_and_its_counts(self, caplog: pytest.LogCaptureFixture) -> None:
        """``apply_many`` logs ``run started`` and ``run finished`` on ``tagrules.runs``, under the id
        of the run record it keeps, with the report's counts as fields."""
        store = MemoryStore()
        with caplog.at_level(logging.INFO, logger="tagrules"):
            report = Tagger(catalog(), store).apply_many([("a", MID), ("b", RICH)], now=T0)
        started, finished = records(caplog, "tagrules.runs")
        run = store.runs()[-1]
        assert vars(started)["run_id"] == vars(finished)["run_id"] == run.id
        assert vars(started)["now"] == T0.isoformat()
        assert vars(started)["catalog_version"] == catalog().version
        assert "started" in started.getMessage()
        assert "finished" in finished.getMessage()
        figures = {name: getattr(finished, name) for name in ("customers", "added", "removed", "errors")}
        assert figures == {
            "customers": 2,
            "added": report.added,
            "removed": report.removed,
            "errors": report.errors,
        }
        assert report.added > 0
        assert vars(finished)["seconds"] >= 0

    def test_chunks_at_debug(self, caplog: pytest.LogCaptureFixture) -> None:
        """At DEBUG, each stored chunk is logged with the customers processed so far."""
        with caplog.at_level(logging.DEBUG, logger="tagrules"):
            Tagger(catalog(), MemoryStore()).apply_many([("a", MID), ("b", RICH), ("c", MID)], chunk_size=2)
        chunks = [r for r in records(caplog, "tagrules.runs") if r.levelno == logging.DEBUG]
        assert [(vars(r)["chunk"], vars(r)["processed"]) for r in chunks] == [(2, 2), (1, 3)]

    def test_a_retried_chunk_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """A chunk read again after a concurrent update is logged with its attempt number."""
        store = Racing(failures=2)
        with caplog.at_level(logging.INFO, logger="tagrules.runs"):
            report = Tagger(catalog(), store).apply_many([("a", MID), ("b", RICH)], now=T0)  # type: ignore[arg-type]
        retried = [r for r in records(caplog, "tagrules.runs") if "read again" in r.getMessage()]
        assert [(vars(r)["attempt"], vars(r)["customers"]) for r in retried] == [(1, 2), (2, 2)]
        assert report.retries == 2

    def test_nothing_below_the_level_is_built(self, caplog: pytest.LogCaptureFixture) -> None:
        """At WARNING (the default of an application's root logger), a run logs nothing."""
        with caplog.at_level(logging.WARNING, logger="tagrules"):
            Tagger(catalog(), MemoryStore()).apply_many([("a", MID)], now=T0)
        assert records(caplog, "tagrules.runs") == []


class TestPushdown:
    def test_count_logs_each_tag_left_to_python_and_why(
        self, caplog: pytest.LogCaptureFixture, sqlite_url: URL, rows_table: str
    ) -> None:
        """A tag the database cannot evaluate is logged on ``tagrules.pushdown`` with its reason, as
        the report's ``in_python`` gives it; a pushed tag is not."""
        with caplog.at_level(logging.INFO, logger="tagrules.pushdown"):
            report = count_tags(table_catalog(), sqlite_url, rows_table, now=T0)
        logged = records(caplog, "tagrules.pushdown")
        assert [(vars(r)["tag"], vars(r)["reason"], vars(r)["source"]) for r in logged] == [
            ("many", report.in_python["many"], rows_table)
        ]
        assert "comprehension" in logged[0].getMessage()
        assert report.counts == {"big": 2, "many": 1}

    def test_retag_logs_tags_left_to_python(
        self, caplog: pytest.LogCaptureFixture, sqlite_url: URL, rows_table: str
    ) -> None:
        """A retag from a table logs its tags left to Python, and the run it records."""
        with caplog.at_level(logging.INFO, logger="tagrules"):
            report = retag_from_table(table_catalog(), sqlite_url, rows_table, MemoryStore(), now=T0)
        assert [vars(r)["tag"] for r in records(caplog, "tagrules.pushdown")] == ["many"]
        finished = records(caplog, "tagrules.runs")[-1]
        assert vars(finished)["customers"] == report.customers == 3

    def test_a_set_wise_retag_logs_its_run(self, caplog: pytest.LogCaptureFixture, postgres_url: URL) -> None:
        """A set-wise retag in PostgreSQL logs its start and its counts under its record's id."""
        engine = sa.create_engine(postgres_url)
        table = snapshot_table(f"log_rows_{unique_prefix()}", table_catalog().schema, "postgresql")
        with engine.begin() as connection:
            fill(connection, table, table_catalog().schema, ROWS)
        prefix = unique_prefix()
        store = SQLStore(postgres_url, prefix=prefix, migrate=True)
        try:
            with caplog.at_level(logging.INFO, logger="tagrules.runs"):
                report = retag_from_table(table_catalog(), engine, table.name, store, now=T0, set_wise=True)
            assert report.set_wise
            logged = [r for r in records(caplog, "tagrules.runs") if getattr(r, "set_wise", False)]
            started, finished = logged
            assert vars(started)["run_id"] == vars(finished)["run_id"]
            assert vars(finished)["run_id"] in [run.id for run in store.runs()]
            assert vars(finished)["customers"] == 3
            assert vars(finished)["added"] == report.added
            assert vars(finished)["table"] == table.name
        finally:
            store.close()
            drop_store(postgres_url, prefix)
            table.drop(engine)
            engine.dispose()


class TestPluginsAndListeners:
    def test_a_plugin_that_fails_to_load_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """A plugin that cannot be imported is a WARNING on ``tagrules.plugins`` naming it."""
        point = importlib.metadata.EntryPoint(
            name="broken", value="no_such_module_anywhere:plugin", group=ENTRY_POINT_GROUP
        )
        with caplog.at_level(logging.WARNING, logger="tagrules.plugins"):
            registry = discover([point])
        (logged,) = records(caplog, "tagrules.plugins")
        assert logged.levelno == logging.WARNING
        assert (vars(logged)["plugin"], vars(logged)["target"]) == (
            "broken",
            "no_such_module_anywhere:plugin",
        )
        assert vars(logged)["problem"] == registry.failures[0].message
        assert "cannot be imported" in logged.getMessage()

    def test_a_listener_failure_carries_the_event(self, caplog: pytest.LogCaptureFixture) -> None:
        """A listener that raised is logged with the listener and the event as fields."""

        def broken(event: ChangeEvent) -> None:
            raise RuntimeError("down")

        with caplog.at_level(logging.ERROR, logger="tagrules.listeners"):
            Tagger(catalog(), MemoryStore(), listeners=[broken]).apply_many([("a", MID)], now=T0)
        first = records(caplog, "tagrules.listeners")[0]
        assert vars(first)["customer_id"] == "a"
        assert vars(first)["change"] == "added"
        assert vars(first)["listener"].endswith("broken")
        assert first.exc_info is not None


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "customers.jsonl"
    subprocess.run([TAGRULES, "sample", "--count", "30", "--seed", "3", "--output", str(path)], check=True)
    return path


class TestCommand:
    def test_json_lines_on_standard_error(self, tmp_path: Path, sample: Path) -> None:
        """``tagrules -v --log-format json run`` writes one JSON object per line on standard error,
        with time, level, logger, message and the record's fields; standard output is unchanged."""
        store = f"sqlite:///{tmp_path / 'tags.db'}"
        command = [TAGRULES, "-v", "--log-format", "json", "run", "retail", str(sample)]
        result = subprocess.run([*command, "--store", store], capture_output=True, text=True, check=True)
        lines = json_lines(result.stderr)
        assert [line["message"].split()[2] for line in lines] == ["started:", "finished"]
        for line in lines:
            assert {"time", "level", "logger", "message", "run_id"} <= line.keys()
            assert line["level"] == "INFO"
            assert line["logger"] == "tagrules.runs"
            assert datetime.datetime.fromisoformat(line["time"]).tzinfo is not None
        assert lines[1]["customers"] == 30
        assert lines[1]["added"] > 0
        assert result.stdout.startswith("30 customers") or "30 customers" in result.stdout

    def test_verbosity_levels(self, tmp_path: Path, sample: Path) -> None:
        """Without ``-v`` nothing is logged, ``-v`` shows INFO, ``-vv`` DEBUG too; text by default."""
        store = f"sqlite:///{tmp_path / 'tags.db'}"
        levels = {}
        for flags in ([], ["-v"], ["-vv"], ["--verbose", "--verbose"], ["--log-format", "json"]):
            command = [TAGRULES, *flags, "run", "retail", str(sample), "--store", store]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            if "json" in flags:
                levels[" ".join(flags)] = {line["level"] for line in json_lines(result.stderr)}
            else:
                levels[" ".join(flags)] = {line.split()[1] for line in result.stderr.splitlines()}
        assert levels == {
            "": set(),
            "-v": {"INFO"},
            "-vv": {"INFO", "DEBUG"},
            "--verbose --verbose": {"INFO", "DEBUG"},
            "--log-format json": set(),  # WARNING and above only
        }

    def test_in_process_the_handler_is_removed_afterwards(
        self, capsys: pytest.CaptureFixture[str], sample: Path, tmp_path: Path
    ) -> None:
        """The command's handler lives as long as the command: ``main()`` leaves logging as it was."""
        logger = logging.getLogger("tagrules")
        before = (list(logger.handlers), logger.level)
        status, _, err = run_cli(
            capsys, "-v", "run", "retail", str(sample), "--store", f"sqlite:///{tmp_path / 't.db'}"
        )
        assert status == 0
        assert "INFO tagrules.runs: run " in err
        assert (list(logger.handlers), logger.level) == before

    def test_a_bad_log_format_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``--log-format`` takes text or json."""
        with pytest.raises(SystemExit) as raised:
            run_cli(capsys, "--log-format", "yaml", "validate", "retail")
        assert raised.value.code == 2
        assert "invalid choice: 'yaml'" in capsys.readouterr().err
