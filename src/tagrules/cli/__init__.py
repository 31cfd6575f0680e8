"""The ``tagrules`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tagrules import __version__
from tagrules.cli import (
    _catalog_commands,
    _database_commands,
    _impact_commands,
    _plugin_commands,
    _store_commands,
    _test_command,
    _watch_commands,
)
from tagrules.cli._common import CommandError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tagrules`` command, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tagrules",
        description=(
            "Rule-based customer tagging: validate catalogs, evaluate snapshots, explain tags, "
            "keep tags and their history in a store, count tags in a database."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tagrules {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _catalog_commands.register(commands)
    _plugin_commands.register(commands)
    _test_command.register(commands)
    _store_commands.register(commands)
    _watch_commands.register(commands)
    _database_commands.register(commands)
    _impact_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tagrules`` command; return its exit status (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        status: int = arguments.run(arguments)
    except CommandError as error:
        print(f"tagrules: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tagrules: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1
    return status
