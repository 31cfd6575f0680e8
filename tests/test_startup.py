"""What starting tagrules costs: ``import tagrules`` and the CLI load only what they use."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from typing import Any

import pytest

import tagrules
from tagrules import cli

HEAVY = ("sqlalchemy", "pydantic", "rule_engine", "tagrules.stores", "tagrules.pushdown", "tagrules.plugins")


def loaded_after(code: str) -> list[str]:
    """The heavy modules loaded by a fresh interpreter running ``code``."""
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [name for name in result.stdout.split() if name.startswith(HEAVY)]


class TestImport:
    def test_import_tagrules_loads_nothing_heavy(self) -> None:
        """``import tagrules`` imports neither SQLAlchemy nor the stores, push-down, plugins, pydantic or
        rule-engine: each public name loads its module when first used."""
        assert loaded_after("import tagrules") == []

    def test_evaluating_does_not_import_sqlalchemy(self) -> None:
        """Catalogs and the evaluator work without SQLAlchemy; a store name brings it in when used."""
        code = (
            "from tagrules import Catalog, Evaluator\n"
            "catalog = Catalog([{'key': 'a', 'rule': 'x > 1'}], {'x': 'int'})\n"
            "assert Evaluator(catalog).evaluate({'x': 2}).tags == {'a'}\n"
        )
        assert not any(name.startswith("sqlalchemy") for name in loaded_after(code))
        assert any(
            name.startswith("sqlalchemy")
            for name in loaded_after(code + "import tagrules\ntagrules.SQLStore\n")
        )

    def test_every_public_name_resolves_to_its_definition(self) -> None:
        """Each lazy name is the object its module defines, and is kept once loaded."""
        for name, module in tagrules._LAZY.items():
            assert getattr(tagrules, name) is getattr(importlib.import_module(module), name), name
        assert set(tagrules._LAZY) | {"__version__"} == set(tagrules.__all__)

    def test_unknown_names_raise_attribute_error(self) -> None:
        """A name tagrules does not have is an AttributeError, as for any module."""
        with pytest.raises(AttributeError, match="no attribute 'Evaluater'"):
            tagrules.Evaluater  # noqa: B018


class TestParserTables:
    def test_tables_match_the_installed_rule_engine(self) -> None:
        """The precomputed parser tables carry the signature of rule-engine's grammar (else PLY would
        rebuild them at every start; ``make parser-tables`` writes them anew)."""
        import rule_engine
        from rule_engine._vendor.ply import yacc

        from tagrules import _parsetab

        parser = rule_engine.Rule.parser
        reflect: Any = yacc.ParserReflect
        reflected = reflect({name: getattr(parser, name) for name in dir(parser)})
        reflected.get_all()
        assert reflected.signature() == _parsetab._lr_signature

    def test_rule_engine_reads_them(self) -> None:
        """rule-engine imported after tagrules builds its parser from the precomputed tables."""
        code = (
            "import tagrules, rule_engine, sys\n"
            "assert sys.modules['rule_engine.parser.parsetab'].__file__.endswith('_parsetab.py')\n"
            "assert rule_engine.Rule('x > 1').matches({'x': 2})\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


class TestCommandLine:
    def test_validate_does_not_import_sqlalchemy(self) -> None:
        """``tagrules validate`` loads only the catalog commands: no SQLAlchemy."""
        code = "from tagrules.cli import main\nassert main(['validate', 'retail']) == 0\n"
        assert not any(name.startswith("sqlalchemy") for name in loaded_after(code))

    def test_version_prints_what_argparse_would(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``tagrules --version`` answers without building every command's parser, as argparse would."""
        assert cli.main(["--version"]) == 0
        fast = capsys.readouterr().out
        with pytest.raises(SystemExit) as exit_info:
            cli.build_parser().parse_args(["--version"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out == fast == f"tagrules {tagrules.__version__}\n"

    def test_each_command_is_registered_by_the_module_named_for_it(self) -> None:
        """The lazy command table names, for each command, the module that registers it, and
        every command is in it."""
        everything = _commands_of(cli.build_parser())
        assert set(cli._COMMANDS) == set(everything)
        for command in cli._COMMANDS:
            assert command in _commands_of(cli.build_parser(command)), command


def _commands_of(parser: argparse.ArgumentParser) -> list[str]:
    actions = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return list(actions[0].choices)
