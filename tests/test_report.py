"""The HTML report: one self-contained file whose every chart renders in headless Chromium."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tagrules import SQLStore, Tagger
from tagrules.packs.retail import generate_customers, load_catalog
from tagrules.report import render_report, write_report

BUILD = Path(__file__).resolve().parent.parent / "build"
START = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=15000",
]


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store after four weekly runs of the retail pack over 80 customers whose spend grows."""
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'tags.db'}"
    store = SQLStore(url)
    try:
        tagger = Tagger(load_catalog(), store)
        customers = list(generate_customers(80, seed=5, now=START))
        for week in range(4):
            grown = [
                {**c, "spend_365d": c["spend_365d"] * (1 + week), "orders_30d": c["orders_30d"] + week}
                for c in customers
            ]
            tagger.apply_many(((c["id"], c) for c in grown), now=START + datetime.timedelta(days=7 * week))
    finally:
        store.close()
    return url


def charts(document: str) -> list[tuple[str, str]]:
    """(name, content) of each chart of a report."""
    parts = re.split(r'<div class="chart" data-chart="', document)[1:]
    return [(part.split('"', 1)[0], part) for part in parts]


class TestReport:
    def test_self_contained(self, store_url: str) -> None:
        """The page holds its scripts and styles: no external script, style sheet or image."""
        store = SQLStore(store_url)
        try:
            document = render_report(store, catalog=load_catalog(), until=START + datetime.timedelta(days=22))
        finally:
            store.close()
        assert "<script src" not in document
        assert "<link" not in document
        assert "<img" not in document
        names = [name for name, _ in charts(document)]
        assert "changes" in names
        assert "errors" in names
        assert "overlap" in names
        assert any(name.startswith("members-") for name in names)
        assert any(name.startswith("flow-") for name in names)
        assert "<td><b>vip</b>" in document  # the table of every tag, with its definition
        assert "spend_365d" in document

    def test_empty_store(self, tmp_path: Path) -> None:
        """A store without history gives a page that says so."""
        store = SQLStore(f"sqlite:///{tmp_path / 'empty.db'}")
        try:
            assert "holds no tag history yet" in render_report(store)
        finally:
            store.close()

    def test_command(self, store_url: str, tmp_path: Path) -> None:
        """``tagrules report`` writes the file and prints its path."""
        target = tmp_path / "report.html"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tagrules.cli",
                "report",
                "--store",
                store_url,
                "--output",
                str(target),
                "--catalog",
                "retail",
                "--every",
                "week",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(target)
        assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason} (CI=true: the browser test must run)", pytrace=False)
        pytest.skip(reason)
    return found


class TestInBrowser:
    def test_every_chart_renders_without_console_errors(self, store_url: str, tmp_path: Path) -> None:
        """Headless Chromium loads the report offline with no console message, every chart drawn as a
        non-empty SVG; a screenshot is kept under build/."""
        browser = _chromium()
        store = SQLStore(store_url)
        try:
            page = write_report(store, tmp_path / "report.html", catalog=load_catalog())
        finally:
            store.close()
        flags = [
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ]
        dom = subprocess.run(
            [browser, *flags, "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "net::ERR" in line]
        assert console == []
        drawn = charts(dom.stdout)
        assert len(drawn) == len(charts(page.read_text(encoding="utf-8")))
        for name, content in drawn:
            assert re.search(r"<svg[^>]*class=\"main-svg\"", content), f"chart {name} was not drawn"
            assert "<path" in content or "<rect" in content, f"chart {name} is empty"
        BUILD.mkdir(exist_ok=True)
        shot = BUILD / "report.png"
        result = subprocess.run(
            [browser, *flags, "--window-size=1280,3000", f"--screenshot={shot}", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert shot.stat().st_size > 10_000
