"""``tagrules count``'s contract, run as a subprocess on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from sql_tables import fill, snapshot_table
from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog
from test_cli import NOW, tagrules

CATALOG = """
schema:
  spend_365d: float
  orders_30d: int
  tier: "str | None"
tags:
  - {key: spend_high, rule: "spend_365d >= 100000", group: spend, priority: 2}
  - {key: spend_mid, rule: "spend_365d >= 30000", group: spend, priority: 1}
  - {key: freq_high, rule: "orders_30d >= 3"}
  - {key: vip, rule: "'spend_high' in tags and 'freq_high' in tags"}
  - {key: gold, rule: "(tier ?? '') =~ '(?i)gold'"}
  - {key: later, rule: "spend_365d >= 1", status: draft}
"""

ROWS: list[dict[str, Any]] = [
    {"spend_365d": 150000.0, "orders_30d": 4, "tier": "Gold"},
    {"spend_365d": 40000.0, "orders_30d": 0, "tier": None},
    {"spend_365d": 10.0, "orders_30d": 3, "tier": "gold"},
]


@pytest.fixture
def catalog(write: Callable[[str, str], Path]) -> Path:
    return write("catalog.yaml", CATALOG)


def customers_table(url: URL, catalog_path: Path, name: str) -> str:
    from tagrules import Catalog

    catalog = Catalog.load(catalog_path)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        fill(connection, snapshot_table(name, catalog.schema, engine.dialect.name), catalog.schema, ROWS)
    engine.dispose()
    return url.render_as_string(hide_password=False)


class TestCount:
    def test_json_is_one_object_covering_every_active_tag(self, sqlite_url: URL, catalog: Path) -> None:
        """--json prints exactly one object, tag key -> rows assigned, for every active tag."""
        url = customers_table(sqlite_url, catalog, "customers")
        result = tagrules("count", str(catalog), "--db", url, "--table", "customers", "--now", NOW, "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {
            "spend_high": 1,
            "spend_mid": 1,
            "freq_high": 2,
            "vip": 1,
            "gold": 2,
        }
        assert result.stdout.count("\n") == 1

    def test_text_says_where_each_tag_ran(self, sqlite_url: URL, catalog: Path) -> None:
        """The table lists count, unknown rows and where each tag was evaluated."""
        url = customers_table(sqlite_url, catalog, "customers")
        result = tagrules("count", str(catalog), "--db", url, "--table", "customers", "--now", NOW)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "3 rows, now 2026-06-01T00:00:00+00:00"
        assert lines[2].split() == ["spend_high", "1", "0", "database"]
        assert lines[-1].split() == ["gold", "2", "0", "python"]
        assert "gold: in Python:" in result.stderr

    def test_database_mode_refuses_tags_it_cannot_push(self, sqlite_url: URL, catalog: Path) -> None:
        """--mode database fails with the tag and construct instead of evaluating in Python."""
        url = customers_table(sqlite_url, catalog, "customers")
        result = tagrules("count", str(catalog), "--db", url, "--table", "customers", "--mode", "database")
        assert result.returncode == 1
        assert "tag 'gold': the regular expression" in result.stderr
        assert "Traceback" not in result.stderr

    def test_retail_on_postgresql(self, postgres_url: URL) -> None:
        """The retail pack on PostgreSQL gives the counts of Python evaluation."""
        catalog = load_catalog()
        engine = sa.create_engine(postgres_url)
        customers = list(generate_customers(200, seed=9))
        with engine.begin() as connection:
            fill(
                connection,
                snapshot_table("cli_retail", catalog.schema, "postgresql", aware=True),
                catalog.schema,
                customers,
            )
        engine.dispose()
        url = postgres_url.render_as_string(hide_password=False)
        now = REFERENCE_NOW.isoformat()
        pushed = tagrules("count", "retail", "--db", url, "--table", "cli_retail", "--now", now, "--json")
        python = tagrules(
            "count",
            "retail",
            "--db",
            url,
            "--table",
            "cli_retail",
            "--now",
            now,
            "--json",
            "--mode",
            "python",
        )
        assert pushed.returncode == 0, pushed.stderr
        assert json.loads(pushed.stdout) == json.loads(python.stdout)
        assert set(json.loads(pushed.stdout)) == {tag.key for tag in catalog.active}

    @pytest.mark.parametrize(
        ("db", "table", "message"),
        [
            ("not a url", "customers", "not a database URL"),
            ("nosuchdb://x/y", "customers", "not a database URL"),
            ("postgresql+psycopg://postgres@127.0.0.1:1/none", "customers", "cannot connect to the database"),
            (None, "missing", "no table 'missing'"),
        ],
    )
    def test_errors_are_messages(
        self, sqlite_url: URL, catalog: Path, db: str | None, table: str, message: str
    ) -> None:
        """A bad URL, an unreachable server or a missing table: one clear line, exit 1, no traceback."""
        url = db or customers_table(sqlite_url, catalog, "customers")
        result = tagrules("count", str(catalog), "--db", url, "--table", table)
        assert result.returncode == 1
        assert message in result.stderr
        assert "Traceback" not in result.stderr

    def test_missing_column(self, sqlite_url: URL, catalog: Path) -> None:
        """A field without its column is named, with the way to map it."""
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE thin (spend_365d REAL, orders INTEGER)"))
        engine.dispose()
        result = tagrules("count", str(catalog), "--db", str(sqlite_url), "--table", "thin")
        assert result.returncode == 1
        assert "no column 'orders_30d' for the field 'orders_30d'" in result.stderr
        mapped = tagrules(
            "count",
            str(catalog),
            "--db",
            str(sqlite_url),
            "--table",
            "thin",
            "--column",
            "orders_30d=orders",
            "--column",
            "tier=orders",
            "--json",
        )
        assert mapped.returncode == 0, mapped.stderr
