"""The ``tagrules`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tagrules import __version__
from tagrules.cli._common import CommandError

__all__ = ["build_parser", "main"]

#: The modules registering the subcommands, in the order ``--help`` lists them.
_COMMAND_MODULES = (
    "_catalog_commands",
    "_plugin_commands",
    "_test_command",
    "_store_commands",
    "_events_command",
    "_watch_commands",
    "_database_commands",
    "_impact_commands",
)
#: command name -> the module registering it: a command imports only its own module (a store
#: command pulls in SQLAlchemy, ``validate`` need not); a name not listed imports them all.
_COMMANDS = {
    "validate": "_catalog_commands",
    "evaluate": "_catalog_commands",
    "explain": "_catalog_commands",
    "sample": "_catalog_commands",
    "plugins": "_plugin_commands",
    "test": "_test_command",
    "run": "_store_commands",
    "members": "_store_commands",
    "due": "_store_commands",
    "publish": "_store_commands",
    "versions": "_store_commands",
    "history": "_store_commands",
    "db": "_store_commands",
    "forget": "_store_commands",
    "events": "_events_command",
    "stats": "_watch_commands",
    "overlap": "_watch_commands",
    "flow": "_watch_commands",
    "report": "_watch_commands",
    "count": "_database_commands",
    "impact": "_impact_commands",
}


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names, when its first word after the global options is one (its own
    options come after it)."""
    words = iter(argv)
    for word in words:
        if word == "--log-format":
            next(words, None)
        elif not (word.startswith("--log-format=") or _is_verbose(word)):
            return word if word in _COMMANDS else None
    return None


def _is_verbose(word: str) -> bool:
    """``-v``, ``-vv``, ... or ``--verbose``."""
    return word == "--verbose" or (len(word) > 1 and word[0] == "-" and set(word[1:]) == {"v"})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``tagrules`` command: with every subcommand, or with only
    ``command`` (which then parses exactly as it would among all the others)."""
    parser = argparse.ArgumentParser(
        prog="tagrules",
        description=(
            "Rule-based customer tagging: validate catalogs, evaluate snapshots, explain tags, "
            "keep tags and their history in a store, count tags in a database."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tagrules {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest="log_verbosity",
        help="log what tagrules does to standard error: -v runs and decisions, -vv details too",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="the log's format: text (default), or json: one JSON object per line",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = (_COMMANDS[command],) if command in _COMMANDS else _COMMAND_MODULES
    for name in modules:
        importlib.import_module(f"tagrules.cli.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tagrules`` command; return its exit status (0 ok, 1 failure, 2 usage)."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words == ["--version"]:
        # what argparse's version action prints, without building the parsers of every command
        print(f"tagrules {__version__}")
        return 0
    parser = build_parser(_command_of(words))
    arguments = parser.parse_args(words)

    try:
        if arguments.log_verbosity or arguments.log_format != "text":
            from tagrules.cli._logging import command_log

            with command_log(arguments.log_verbosity, arguments.log_format):
                status: int = arguments.run(arguments)
        else:
            status = arguments.run(arguments)
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
