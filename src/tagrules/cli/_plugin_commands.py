"""``tagrules plugins``: what the installed plugins provide."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tagrules.cli._common import plugins
from tagrules.plugins import Plugin

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the ``plugins`` command to the ``tagrules`` parser."""
    command = commands.add_parser(
        "plugins", help="list the installed plugins and what each provides (exit 1 if one failed to load)"
    )
    command.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    command.set_defaults(run=run_plugins)


def _describe(plugin: Plugin) -> dict[str, Any]:
    return {
        "name": plugin.name,
        "description": plugin.description,
        "packs": sorted(plugin.packs),
        "functions": [function.signature for function in plugin.functions],
        "derived_fields": [f"{field.name}: {field.type}" for field in plugin.derived_fields],
        "listeners": [getattr(listener, "__qualname__", repr(listener)) for listener in plugin.listeners],
    }


def run_plugins(arguments: argparse.Namespace) -> int:
    registry = plugins()
    described = [_describe(plugin) for plugin in registry.plugins]
    failed = [
        {"name": failure.name, "target": failure.target, "error": failure.message}
        for failure in registry.failures
    ]
    if arguments.json:
        print(json.dumps({"plugins": described, "failed": failed}, ensure_ascii=False, indent=2))
        return 1 if failed else 0
    for entry in described:
        print(f"{entry['name']}" + (f" - {entry['description']}" if entry["description"] else ""))
        for label, key in (
            ("pack", "packs"),
            ("function", "functions"),
            ("derived field", "derived_fields"),
            ("listener", "listeners"),
        ):
            for item in entry[key]:
                print(f"  {label}: {item}")
    for failure in failed:
        print(f"{failure['name']} - FAILED ({failure['target']}): {failure['error']}")
    if not described and not failed:
        print("no plugins installed")
    return 1 if failed else 0
