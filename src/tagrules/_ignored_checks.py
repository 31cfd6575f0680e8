"""Static-check warnings a catalog silences on purpose: its ``checks: {ignore: [...]}`` section.

Tiers that overlap or leave a gap by design would otherwise keep ``tagrules validate --strict``
failing. Each entry names the check and where it is silenced::

    checks:
      ignore:
        - {group: frequency, check: gap, reason: "no tier for two orders a quarter, on purpose"}
        - {tag: always_on, check: always-true}
        - {check: never-matched}            # everywhere in the catalog
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, final

from tagrules.errors import Problem
from tagrules.schema import suggest

__all__ = ["CHECK_CODES", "IgnoredCheck", "read_ignored_checks"]

#: The codes of the static checks (see :mod:`tagrules.analysis`).
CHECK_CODES = ("gap", "overlap", "shadowed", "always-true", "always-false", "never-matched", "not-checked")
_ENTRY_KEYS = ("check", "group", "tag", "reason")


@final
@dataclass(frozen=True, slots=True)
class IgnoredCheck:
    """One silenced check: ``check`` for one exclusive ``group``, one ``tag``, or (neither given)
    everywhere; ``reason`` says why, for the next reader."""

    check: str
    group: str | None = None
    tag: str | None = None
    reason: str = ""

    def covers(self, code: str, group: str | None, tag: str | None) -> bool:
        """Whether a finding with this code, about this group or tag, is silenced."""
        if code != self.check:
            return False
        return (self.group is None or self.group == group) and (self.tag is None or self.tag == tag)

    def to_data(self) -> dict[str, str]:
        data = {"check": self.check}
        data.update({name: value for name, value in (("group", self.group), ("tag", self.tag)) if value})
        if self.reason:
            data["reason"] = self.reason
        return data


def read_ignored_checks(
    data: Any, groups: Collection[str], tags: Collection[str], file: str | None
) -> tuple[tuple[IgnoredCheck, ...], list[Problem]]:
    """The ``checks`` section of a catalog, and its problems (each naming the entry)."""
    problems: list[Problem] = []

    def problem(message: str) -> None:
        problems.append(Problem(message, file=file, section="checks"))

    if data is None:
        return (), problems
    if not isinstance(data, Mapping) or any(key != "ignore" for key in data):
        problem("'checks' must be a mapping with one entry, 'ignore': a list of checks to silence")
        return (), problems
    entries = data.get("ignore") or []
    if not isinstance(entries, list):
        problem("'checks.ignore' must be a list of entries such as {group: NAME, check: gap}")
        return (), problems
    ignored = []
    for number, entry in enumerate(entries, start=1):
        where = f"'checks.ignore' entry {number}"
        if not isinstance(entry, Mapping):
            problem(f"{where} must be a mapping such as {{group: NAME, check: gap}}")
            continue
        unknown = [str(key) for key in entry if key not in _ENTRY_KEYS]
        for key in unknown:
            problem(f"{where}: unknown field {key!r}{suggest(key, _ENTRY_KEYS)}")
        check, group, tag, reason = (entry.get(key) for key in _ENTRY_KEYS)
        found = len(problems)
        if check not in CHECK_CODES:
            shown = (
                "no 'check'"
                if check is None
                else f"unknown check {check!r}{suggest(str(check), CHECK_CODES)}"
            )
            problem(f"{where}: {shown}; the checks are {', '.join(CHECK_CODES)}")
        if group is not None and tag is not None:
            problem(f"{where}: give 'group' or 'tag', not both")
        if group is not None and group not in groups:
            problem(f"{where}: no exclusive group {group!r}{suggest(str(group), list(groups))}")
        if tag is not None and tag not in tags:
            problem(f"{where}: no tag {tag!r}{suggest(str(tag), list(tags))}")
        if reason is not None and not isinstance(reason, str):
            problem(f"{where}: 'reason' must be text")
        if len(problems) == found and not unknown:
            ignored.append(IgnoredCheck(str(check), group, tag, reason or ""))
    return tuple(ignored), problems
