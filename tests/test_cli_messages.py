"""Messages that point the right way: each names the problem and the fix, in tagrules' own words."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from cli_helpers import run_cli
from tagrules import Catalog, DefinitionError

CATALOG = """
schema:
  spend: float
tags:
  - {key: big, rule: "spend >= 100"}
"""


def problems(tags: list[dict[str, object]], schema: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        Catalog(tags, schema or {"spend": "float", "name": "str"})
    return [problem.message for problem in caught.value.problems]


class TestStoreUrls:
    """A store URL that cannot work says what to do about it, in one line."""

    @pytest.mark.parametrize("server", ["postgres_url", "mysql_url"])
    def test_missing_server_database(
        self, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, server: str
    ) -> None:
        """A database missing on a reachable server: create the database (db upgrade cannot)."""
        base: URL = request.getfixturevalue(server)
        name = f"h_missing_{secrets.token_hex(4)}"
        url = base.set(database=name).render_as_string(hide_password=False)
        status, _, err = run_cli(capsys, "members", "--store", url, "--tag", "big")
        assert status == 1
        assert err.endswith(
            f": the database {name!r} does not exist on the server; create the database first "
            f"(CREATE DATABASE {name})\n"
        )
        assert "db upgrade" not in err

    def test_missing_sqlite_folder(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """sqlite:///nodir/x.db names the missing folder instead of asking whether the database runs."""
        (tmp_path / "in.jsonl").write_text('{"id": "a", "spend": 1}\n', encoding="utf-8")
        (tmp_path / "c.yaml").write_text(CATALOG, encoding="utf-8")
        folder = tmp_path / "nodir"
        status, _, err = run_cli(
            capsys,
            "run",
            str(tmp_path / "c.yaml"),
            str(tmp_path / "in.jsonl"),
            "--store",
            f"sqlite:///{folder}/x.db",
        )
        assert status == 1
        assert err == (
            f"tagrules: sqlite:///{folder}/x.db: the folder {str(folder)!r} does not exist; "
            "create it or give another path\n"
        )

    def test_upgrade_hint_keeps_the_prefix(
        self, capsys: pytest.CaptureFixture[str], postgres_url: URL
    ) -> None:
        """The `db upgrade` hint for a store with another prefix gives that prefix."""
        url = postgres_url.render_as_string(hide_password=False)
        prefix = f"t{secrets.token_hex(4)}_"
        status, _, err = run_cli(capsys, "members", "--store", url, "--prefix", prefix, "--tag", "big")
        assert status == 1
        assert f"run `tagrules db upgrade URL --prefix {prefix}` to set it up" in err

    def test_postgres_scheme(self, capsys: pytest.CaptureFixture[str]) -> None:
        """postgres:// suggests the URL scheme tagrules' PostgreSQL driver answers to."""
        status, _, err = run_cli(capsys, "members", "--store", "postgres://u@127.0.0.1/x", "--tag", "big")
        assert status == 1
        assert err.endswith("no database driver for 'postgres'; did you mean postgresql+psycopg://...?\n")

    def test_sqlite_with_two_slashes(self, capsys: pytest.CaptureFixture[str]) -> None:
        """sqlite://x.db is one tagrules line, not SQLAlchemy's multi-line text."""
        status, _, err = run_cli(capsys, "db", "upgrade", "sqlite://x.db")
        assert status == 1
        assert err == (
            "tagrules: sqlite://x.db: not a SQLite URL; a file is sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db (three or four slashes), memory is sqlite://\n"
        )


class TestCatalogMessages:
    """Catalog problems in tagrules' words, with the fix where one is known."""

    def test_unknown_pack(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A misspelt pack name is neither a file nor a pack, and the nearest pack is named."""
        status, out, _ = run_cli(capsys, "validate", "retial")
        assert status == 1
        assert out == "retial: no such file or pack; did you mean 'retail'?\n"

    @pytest.mark.parametrize(
        ("rule", "hint"),
        [
            ("spend = 1", "; did you mean '=='?"),
            ("spend > 1 && spend < 3", "; did you mean 'and'?"),
            ("spend > 1 || spend < 3", "; did you mean 'or'?"),
        ],
    )
    def test_syntax_hints(self, rule: str, hint: str) -> None:
        """Operators of other languages get the rule language's operator as a hint."""
        (message,) = problems([{"key": "a", "rule": rule}])
        assert message.startswith("syntax error")
        assert message.endswith(hint)

    def test_type_mismatch_names_both_types(self) -> None:
        """An operator on operands that do not go together names their types."""
        (message,) = problems([{"key": "a", "rule": "spend + name > 1"}])
        assert (
            message == "in 'spend + name': data type mismatch: a number and a string cannot be used together"
        )

    @pytest.mark.parametrize(
        ("entry", "message"),
        [
            ({"priority": "x"}, "field 'priority': must be an integer, not text 'x'"),
            ({"priority": 1.5}, "field 'priority': must be an integer, not float 1.5"),
            ({"rule": 3}, "field 'rule': must be text, not int 3"),
            ({"status": "live"}, "field 'status': must be one of 'draft', 'active' or 'retired', not 'live'"),
            ({"metadata": [1]}, "field 'metadata': must be a mapping, not a list"),
            ({"priority": None}, "field 'priority': must be an integer, not null"),
        ],
    )
    def test_field_types_in_tagrules_words(self, entry: dict[str, object], message: str) -> None:
        """A tag field of the wrong type is described by tagrules, never by pydantic ("Input should")."""
        assert problems([{"key": "a", "rule": "spend > 1", **entry}]) == [message]

    def test_tab_in_yaml(self) -> None:
        """A tab used for indentation is named as the problem."""
        with pytest.raises(DefinitionError) as caught:
            Catalog.loads("schema:\n  spend: float\ntags:\n\t- {key: a, rule: spend > 1}\n", source="c.yaml")
        assert str(caught.value.problems[0]).endswith(
            "(a tab: YAML indents with spaces only; replace the tab with spaces)"
        )


class TestCounts:
    """Counts read as English: 1 tag, 2 tags."""

    def test_singular(
        self, capsys: pytest.CaptureFixture[str], write: Callable[[str, str], Path], tmp_path: Path
    ) -> None:
        """validate and run say "1 tag", "1 customer" and "1 error"."""
        catalog = write("c.yaml", CATALOG + '  - {key: odd, rule: "spend / 0 > 1"}\n')
        status, out, _ = run_cli(capsys, "validate", str(catalog))
        assert (status, out) == (
            0,
            f"{catalog}: valid: 2 tags (2 active, 0 draft, 0 retired), 0 exclusive groups\n",
        )
        one = write("one.yaml", CATALOG)
        status, out, _ = run_cli(capsys, "validate", str(one))
        assert out == f"{one}: valid: 1 tag (1 active, 0 draft, 0 retired), 0 exclusive groups\n"
        snapshots = write("in.jsonl", '{"id": "a", "spend": 500}\n')
        store = f"sqlite:///{tmp_path / 'store.db'}"
        status, out, _ = run_cli(capsys, "run", str(catalog), str(snapshots), "--store", store)
        assert out.splitlines()[-1] == "1 customer: 1 added, 0 removed, 1 error"


class TestMembers:
    """`members` of a tag no customer holds."""

    def test_unknown_tag(
        self, capsys: pytest.CaptureFixture[str], write: Callable[[str, str], Path], tmp_path: Path
    ) -> None:
        """A tag the store has never given is unknown (exit 1, with the nearest tag), not an empty list."""
        catalog = write("c.yaml", CATALOG)
        snapshots = write("in.jsonl", '{"id": "a", "spend": 500}\n')
        store = f"sqlite:///{tmp_path / 'store.db'}"
        assert run_cli(capsys, "run", str(catalog), str(snapshots), "--store", store)[0] == 0
        status, out, err = run_cli(capsys, "members", "--store", store, "--tag", "bgi")
        assert (status, out) == (1, "")
        assert (
            err == "tagrules: tag 'bgi' is unknown to the store: no customer holds it; did you mean 'big'?\n"
        )
        assert run_cli(capsys, "members", "--store", store, "--tag", "big")[1] == "a\n"
