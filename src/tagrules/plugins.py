"""Plugins: packages that add tag packs, rule functions, derived fields and change listeners.

A plugin is a :class:`Plugin` object published under the ``tagrules.plugins`` entry-point group
of the package that provides it::

    # pyproject.toml of the plugin package
    [project.entry-points."tagrules.plugins"]
    loyalty = "tagrules_loyalty:plugin"

The entry point names a :class:`Plugin`, or a callable returning one. :func:`installed_plugins`
finds and loads them all; a plugin that fails to import, or that declares something invalid, is
reported in :attr:`PluginRegistry.failures` and the others still load. tagrules registers its own
retail pack this way.

A catalog sees what plugins provide when it is loaded with them: ``Catalog.load(path,
plugins=installed_plugins())`` (``Catalog.loads``, ``Catalog.from_data``, ``Catalog(...)``,
``load_case_file`` and ``resolve_catalog`` take the same argument), or through the registry
(:meth:`PluginRegistry.load_catalog`, :meth:`PluginRegistry.load_pack`). Nothing looks plugins up
by itself but the front ends: the ``tagrules`` command and the pytest plugin (its
``tagrules_plugins`` fixture) load every catalog with ``installed_plugins()``.

A plugin's listeners are named (by the function's ``__name__``) and run only for catalogs that ask
for them (``listeners: [log_change]`` in the catalog file) or when a run names them
(``tagrules run --listener log_change``): :meth:`PluginRegistry.listeners_for`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import final

from tagrules._log import PLUGINS
from tagrules.catalog import Catalog
from tagrules.errors import TagrulesError
from tagrules.extensions import DerivedField, RuleFunction
from tagrules.schema import suggest
from tagrules.stores._base import ChangeEvent

__all__ = [
    "ENTRY_POINT_GROUP",
    "Plugin",
    "PluginError",
    "PluginFailure",
    "PluginRegistry",
    "installed_plugins",
]

#: The entry-point group plugins are published under.
ENTRY_POINT_GROUP = "tagrules.plugins"

#: A pack: a catalog file, or a callable building the catalog from the registry's functions and fields.
PackSource = str | Path | Callable[["PluginRegistry"], Catalog]

#: A change listener: called with each change event after it is committed.
ChangeListener = Callable[[ChangeEvent], object]

_LISTENER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def listener_name(listener: ChangeListener) -> str:
    """The name catalogs and ``--listener`` use for a plugin listener: its ``__name__`` (for a
    callable object, its ``name`` attribute or its class name)."""
    name = getattr(listener, "__name__", None)
    if name is None:
        name = getattr(listener, "name", None) or type(listener).__name__
    return str(name)


class PluginError(TagrulesError):
    """A plugin could not be loaded or declares something invalid."""


@final
@dataclass(frozen=True, eq=False)
class Plugin:
    """What one plugin provides.

    Args:
        name: the plugin's name, shown by ``tagrules plugins``.
        packs: pack name -> a catalog file (path) or a callable taking the
            :class:`PluginRegistry` and returning the :class:`~tagrules.Catalog`. Catalog files are
            loaded with every installed plugin's functions and derived fields.
        functions: custom rule functions (``$name(...)``).
        derived_fields: fields computed from snapshots before rules run.
        listeners: callables given each :class:`~tagrules.ChangeEvent` after it is committed, each
            named by its ``__name__``; they run for the catalogs that name them (``listeners:`` in
            the catalog file) and for ``tagrules run --listener NAME``.
        description: one line about the plugin.
    """

    name: str
    packs: Mapping[str, PackSource] = field(default_factory=dict)
    functions: Sequence[RuleFunction] = ()
    derived_fields: Sequence[DerivedField] = ()
    listeners: Sequence[ChangeListener] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PluginError("a plugin needs a name")
        for function in self.functions:
            if not isinstance(function, RuleFunction):
                raise PluginError(f"plugin {self.name!r}: {function!r} is not a RuleFunction")
        for derived in self.derived_fields:
            if not isinstance(derived, DerivedField):
                raise PluginError(f"plugin {self.name!r}: {derived!r} is not a DerivedField")
        for listener in self.listeners:
            if not callable(listener):
                raise PluginError(f"plugin {self.name!r}: listener {listener!r} is not callable")
            if not _LISTENER_NAME.match(listener_name(listener)):
                raise PluginError(
                    f"plugin {self.name!r}: listener {listener!r} needs a name catalogs can use "
                    "(define it with def, or give it a 'name' attribute of letters, digits and '_')"
                )
        for pack, source in self.packs.items():
            if not isinstance(source, (str, Path)) and not callable(source):
                raise PluginError(f"plugin {self.name!r}: pack {pack!r} is neither a file nor a callable")


@final
@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was not loaded, and why.

    Attributes:
        name: the entry point's name.
        target: what the entry point points at (``module:attribute``).
        message: what went wrong.
    """

    name: str
    target: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.target}): {self.message}"


@final
class PluginRegistry:
    """The plugins in use: their packs, functions, derived fields and listeners, merged.

    A name provided twice (two packs, two functions or two derived fields with the same name) is a
    failure of the later plugin, which is then left out whole.

    Args:
        plugins: the plugins, in the order they are consulted.
        failures: plugins that could not be loaded, carried along to be reported.
    """

    def __init__(self, plugins: Iterable[Plugin], failures: Iterable[PluginFailure] = ()) -> None:
        accepted: list[Plugin] = []
        problems = list(failures)
        packs: dict[str, tuple[Plugin, PackSource]] = {}
        functions: dict[str, RuleFunction] = {}
        derived: dict[str, DerivedField] = {}
        listeners: dict[str, ChangeListener] = {}
        owners: dict[tuple[str, str], str] = {}
        for plugin in plugins:
            clashes = [
                f"{kind} {name!r} is already provided by plugin {owners[kind, name]!r}"
                for kind, names in (
                    ("pack", plugin.packs),
                    ("function", [function.name for function in plugin.functions]),
                    ("derived field", [derived.name for derived in plugin.derived_fields]),
                    ("listener", [listener_name(listener) for listener in plugin.listeners]),
                )
                for name in names
                if (kind, name) in owners
            ]
            if clashes:
                problems.append(PluginFailure(plugin.name, "-", "; ".join(clashes)))
                continue
            accepted.append(plugin)
            for name, source in plugin.packs.items():
                packs[name] = (plugin, source)
                owners["pack", name] = plugin.name
            for function in plugin.functions:
                functions[function.name] = function
                owners["function", function.name] = plugin.name
            for derived_field in plugin.derived_fields:
                derived[derived_field.name] = derived_field
                owners["derived field", derived_field.name] = plugin.name
            for listener in plugin.listeners:
                listeners[listener_name(listener)] = listener
                owners["listener", listener_name(listener)] = plugin.name
        self.plugins: tuple[Plugin, ...] = tuple(accepted)
        self.failures: tuple[PluginFailure, ...] = tuple(problems)
        for failure in problems:
            PLUGINS.warning(
                "%s; it is not used",
                failure,
                extra={"plugin": failure.name, "target": failure.target, "problem": failure.message},
            )
        self._packs = packs
        self.functions: tuple[RuleFunction, ...] = tuple(functions.values())
        self.derived_fields: tuple[DerivedField, ...] = tuple(derived.values())
        #: every plugin's listeners; a run uses :meth:`listeners_for`, those its catalog asks for
        self.listeners: tuple[ChangeListener, ...] = tuple(listeners.values())
        self._listeners = listeners

    def __repr__(self) -> str:
        return f"<PluginRegistry of {len(self.plugins)} plugins, {len(self.failures)} failures>"

    @property
    def packs(self) -> list[str]:
        """The names of the packs the plugins provide, sorted."""
        return sorted(self._packs)

    def pack_owner(self, name: str) -> Plugin:
        """The plugin providing pack ``name``.

        Raises:
            LookupError: no plugin provides it.
        """
        return self._pack(name)[0]

    def load_pack(self, name: str) -> Catalog:
        """The catalog of the pack called ``name``.

        Raises:
            LookupError: no plugin provides a pack of that name (the message suggests the nearest).
            DefinitionError: the pack's catalog is not valid.
        """
        _, source = self._pack(name)
        if isinstance(source, (str, Path)):
            return self.load_catalog(source)
        return source(self)

    def load_catalog(self, path: str | Path) -> Catalog:
        """Load a catalog file with every plugin's functions and derived fields; the listeners it
        names must be the plugins' (a problem names an unknown one)."""
        return Catalog.load(path, plugins=self, known_listeners=self.listener_names)

    @property
    def listener_names(self) -> list[str]:
        """The names of the plugins' listeners, sorted."""
        return sorted(self._listeners)

    def listeners_for(self, catalog: Catalog, extra: Iterable[str] = ()) -> list[ChangeListener]:
        """The listeners a run of ``catalog`` hands its changes to: those the catalog names
        (``listeners:``), then those of ``extra`` (``--listener NAME``), each once.

        Raises:
            PluginError: a name no installed plugin's listener has (the message suggests the nearest).
        """
        found: list[ChangeListener] = []
        for name in dict.fromkeys([*catalog.listeners, *extra]):
            listener = self._listeners.get(name)
            if listener is None:
                available = ", ".join(self.listener_names) or "none"
                raise PluginError(
                    f"unknown listener {name!r}{suggest(name, self._listeners)} "
                    f"(the installed plugins' listeners: {available})"
                )
            found.append(listener)
        return found

    def _pack(self, name: str) -> tuple[Plugin, PackSource]:
        found = self._packs.get(name)
        if found is None:
            raise LookupError(f"no pack named {name!r}{suggest(name, self._packs)}")
        return found


def _load_entry_point(entry_point: importlib.metadata.EntryPoint) -> Plugin:
    try:
        loaded = entry_point.load()
    except Exception as error:
        raise PluginError(f"cannot be imported: {type(error).__name__}: {error}") from error
    if isinstance(loaded, Plugin):
        return loaded
    if callable(loaded):
        try:
            made = loaded()
        except Exception as error:
            raise PluginError(f"failed to build its Plugin: {type(error).__name__}: {error}") from error
        if isinstance(made, Plugin):
            return made
        loaded = made
    raise PluginError(f"is not a tagrules Plugin (got {type(loaded).__name__})")


def discover(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> PluginRegistry:
    """Load the plugins of ``entry_points`` (default: every installed ``tagrules.plugins`` one)."""
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    plugins: list[Plugin] = []
    failures: list[PluginFailure] = []
    for entry_point in sorted(entry_points, key=lambda point: (point.name != "retail", point.name)):
        try:
            plugins.append(_load_entry_point(entry_point))
        except PluginError as error:
            failures.append(PluginFailure(entry_point.name, entry_point.value, str(error)))
    return PluginRegistry(plugins, failures)


@functools.lru_cache(maxsize=1)
def installed_plugins() -> PluginRegistry:
    """The registry of every installed plugin (loaded once per process).

    Examples:
        >>> "retail" in installed_plugins().packs
        True
    """
    return discover()
