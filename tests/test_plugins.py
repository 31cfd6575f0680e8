"""Plugins: typed rule functions, derived fields, entry-point loading, and the example plugin package."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagrules import Catalog, DefinitionError, Evaluator
from tagrules.extensions import DerivedField, RuleFunction
from tagrules.packs import available_packs, load_pack
from tagrules.plugins import (
    ENTRY_POINT_GROUP,
    Plugin,
    PluginError,
    PluginRegistry,
    discover,
    installed_plugins,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 1, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tagrules-loyalty"


def _days_since(now: datetime.datetime, moment: datetime.datetime | None) -> int | None:
    return None if moment is None else (now - moment).days


DAYS_SINCE = RuleFunction(
    "days_since", _days_since, arguments=["datetime | None"], returns="int | None", uses_now=True
)
HALF = RuleFunction("half", lambda value: value / 2, arguments=["float"], returns="float")
FAILING = RuleFunction("failing", lambda value: 1 / 0, arguments=["int"], returns="int")
WRONG_RESULT = RuleFunction("wrong_result", lambda value: "text", arguments=["int"], returns="int")


def _catalog(rules: Mapping[str, str], schema: Mapping[str, str], **extra: Any) -> Catalog:
    return Catalog([{"key": key, "rule": rule} for key, rule in rules.items()], dict(schema), **extra)


class TestRuleFunctions:
    def test_declared_types_become_a_signature(self) -> None:
        """A function's signature is written the way rule authors read it."""
        optional = RuleFunction("clip", min, arguments=["float", "float"], returns="float", required=1)
        assert DAYS_SINCE.signature == "$days_since(datetime | None) -> int | None"
        assert optional.signature == "$clip(float, [float]) -> float"

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ({"name": "Bad-Name"}, "must be lowercase letters"),
            ({"name": "now"}, "is a builtin of the rule language"),
            ({"arguments": ["integer"]}, "argument #1: unknown type 'integer'"),
            ({"returns": "lst[str]"}, "return type"),
            ({"arguments": "int"}, "must be a list of type names"),
            ({"required": 3}, "'required' must be between 0 and 1"),
            ({"implementation": 42}, "not callable"),
        ],
    )
    def test_bad_declarations_are_refused_with_the_reason(
        self, arguments: dict[str, Any], message: str
    ) -> None:
        """A bad name, type or arity is refused when the function is declared, saying what is wrong."""
        declaration: dict[str, Any] = {
            "name": "fine",
            "implementation": abs,
            "arguments": ["int"],
            "returns": "int",
            **arguments,
        }
        with pytest.raises(ValueError, match=re.escape(message)):
            RuleFunction(**declaration)

    def test_misuse_is_caught_at_load(self) -> None:
        """Wrong argument types, too many arguments and a misused result are load-time problems."""
        with pytest.raises(DefinitionError) as raised:
            _catalog(
                {
                    "wrong_type": "($days_since(age) ?? 0) > 1",
                    "too_many": "($days_since(seen, seen) ?? 0) > 1",
                    "result_as_text": "$days_since(seen) == 'a'",
                    "nullable_result": "$days_since(seen) > 1",
                },
                {"seen": "datetime", "age": "int"},
                functions=[DAYS_SINCE],
            )
        messages = {problem.tag: problem.message for problem in raised.value.problems}
        assert "argument #1 of $days_since is not of the type the function declares" in messages["wrong_type"]
        assert "expected at most 1 positional arguments" in messages["too_many"]
        assert "always false" in messages["result_as_text"]
        assert "may be null" in messages["nullable_result"]

    def test_two_functions_with_one_name_are_refused(self) -> None:
        """A catalog cannot be given two functions of the same name."""
        twin = RuleFunction("half", abs, arguments=["float"], returns="float")
        with pytest.raises(DefinitionError, match=r"two functions are named \$half"):
            _catalog({"a": "$half(x) > 1"}, {"x": "float"}, functions=[HALF, twin])

    @pytest.mark.parametrize("compiled", [True, False])
    def test_functions_see_the_evaluations_now(self, compiled: bool) -> None:
        """A function declared with uses_now receives the now the evaluation is given."""
        catalog = _catalog(
            {"lapsed": "($days_since(last) ?? 9999) > 30"},
            {"last": "datetime | None"},
            functions=[DAYS_SINCE],
        )
        evaluator = Evaluator(catalog, compiled=compiled)
        last = datetime.datetime(2026, 5, 1, tzinfo=UTC)
        assert evaluator.evaluate({"last": last}, now=NOW).tags == {"lapsed"}
        assert evaluator.evaluate({"last": last}, now=last + datetime.timedelta(days=3)).tags == frozenset()
        assert evaluator.evaluate({"last": None}, now=NOW).tags == {"lapsed"}

    @pytest.mark.parametrize("compiled", [True, False])
    def test_a_failing_function_fails_only_its_tag(self, compiled: bool) -> None:
        """An exception inside a function, or a result of the wrong type, is that tag's error."""
        catalog = _catalog(
            {"boom": "$failing(n) > 0", "odd": "$wrong_result(n) > 0", "fine": "n > 0"},
            {"n": "int"},
            functions=[FAILING, WRONG_RESULT],
        )
        evaluation = Evaluator(catalog, compiled=compiled).evaluate({"n": 3}, now=NOW)
        assert evaluation.tags == {"fine"}
        assert evaluation.errors["boom"] == "$failing: ZeroDivisionError: division by zero"
        assert "data type mismatch on returned value" in evaluation.errors["odd"]

    @given(
        value=st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
        threshold=st.integers(min_value=-1000, max_value=1000),
        days=st.integers(min_value=-400, max_value=400),
    )
    def test_compiled_and_interpreted_agree(self, value: float, threshold: int, days: int) -> None:
        """Rules calling functions give the same tags compiled as interpreted."""
        catalog = _catalog(
            {
                "half_above": f"$half(x) > {threshold}",
                "recent": f"($days_since(seen) ?? 0) <= {abs(threshold)}",
            },
            {"x": "float", "seen": "datetime | None"},
            functions=[HALF, DAYS_SINCE],
        )
        snapshot = {"x": value, "seen": NOW - datetime.timedelta(days=days)}
        compiled = Evaluator(catalog).evaluate(snapshot, now=NOW)
        interpreted = Evaluator(catalog, compiled=False).evaluate(snapshot, now=NOW)
        assert compiled.tags == interpreted.tags
        assert dict(compiled.errors) == dict(interpreted.errors)
        assert ("half_above" in compiled.tags) == (value / 2 > threshold)


BROKEN = datetime.datetime(1999, 1, 1, tzinfo=UTC)


def _days_since_last(snapshot: Mapping[str, Any], now: datetime.datetime) -> int | None:
    last = snapshot.get("last_order_at")
    if last == BROKEN:
        raise ValueError("cannot read the last order")
    return None if last is None else (now - last).days


DERIVED = DerivedField("days_since_last_order", "int | None", _days_since_last, reads=["last_order_at"])


class TestDerivedFields:
    def _catalog(self) -> Catalog:
        return _catalog(
            {"lapsed": "(days_since_last_order ?? 9999) > 90", "adult": "age >= 18"},
            {"last_order_at": "datetime | None", "age": "int"},
            derived=[DERIVED],
        )

    @pytest.mark.parametrize("compiled", [True, False])
    def test_rules_read_derived_fields(self, compiled: bool) -> None:
        """A derived field is computed at the evaluation's now before the rules read it."""
        evaluator = Evaluator(self._catalog(), compiled=compiled)
        recent = {"last_order_at": NOW - datetime.timedelta(days=10), "age": 30}
        assert evaluator.evaluate(recent, now=NOW).tags == {"adult"}
        assert evaluator.evaluate(recent, now=NOW + datetime.timedelta(days=100)).tags == {"adult", "lapsed"}

    @pytest.mark.parametrize("compiled", [True, False])
    def test_a_failing_derived_field_fails_only_the_tags_reading_it(self, compiled: bool) -> None:
        """The field's error names it, and tags that do not read it are unaffected."""
        evaluation = Evaluator(self._catalog(), compiled=compiled).evaluate(
            {"last_order_at": BROKEN, "age": 30}, now=NOW
        )
        assert evaluation.tags == {"adult"}
        assert evaluation.errors == {
            "lapsed": (
                "field 'days_since_last_order': derived field failed: ValueError: cannot read the last order"
            )
        }

    @pytest.mark.parametrize("compiled", [True, False])
    @pytest.mark.parametrize(
        "last_order_at",
        ["2026-05-22T00:00:00Z", "2026-05-21T19:00:00-05:00", datetime.datetime(2026, 5, 22)],
        ids=["json-text", "offset-text", "naive"],
    )
    def test_derived_fields_receive_typed_values(self, compiled: bool, last_order_at: Any) -> None:
        """compute sees the schema's values: JSON text and naive datetimes arrive as aware UTC datetimes."""
        seen: list[Any] = []

        def days(snapshot: Mapping[str, Any], now: datetime.datetime) -> int:
            seen.append(snapshot["last_order_at"])
            return int((now - snapshot["last_order_at"]).days)

        field = DerivedField("days", "int", days, reads=["last_order_at"])
        catalog = _catalog(
            {"recent": "days <= 10"}, {"last_order_at": "datetime", "age": "int"}, derived=[field]
        )
        evaluation = Evaluator(catalog, compiled=compiled).evaluate({"last_order_at": last_order_at}, now=NOW)
        assert evaluation.errors == {}
        assert evaluation.tags == {"recent"}
        assert seen == [datetime.datetime(2026, 5, 22, tzinfo=UTC)]

    def test_a_bad_input_is_named_without_calling_compute(self) -> None:
        """A field the derived field reads that the schema refuses fails the field, naming the input."""
        evaluation = Evaluator(self._catalog()).evaluate({"last_order_at": "broken", "age": 30}, now=NOW)
        assert evaluation.tags == {"adult"}
        message = evaluation.errors["lapsed"]
        assert message.startswith(
            "field 'days_since_last_order': derived field not computed: field 'last_order_at': "
        )
        assert "'broken'" in message

    def test_snapshots_need_not_carry_derived_fields(self) -> None:
        """Validating a snapshot does not ask for the derived fields, and files do not list them."""
        catalog = self._catalog()
        Evaluator(catalog).validate({"last_order_at": None, "age": 3})
        assert catalog.to_data()["schema"] == {"last_order_at": "datetime | None", "age": "int"}
        assert Catalog.from_data(catalog.to_data(), derived=[DERIVED]) == catalog

    def test_a_field_without_its_inputs_is_not_offered(self) -> None:
        """A catalog whose schema lacks what the field reads gets an unknown-field problem instead."""
        with pytest.raises(DefinitionError, match="unknown field 'days_since_last_order'"):
            _catalog({"lapsed": "(days_since_last_order ?? 0) > 1"}, {"age": "int"}, derived=[DERIVED])

    def test_bad_declarations_are_refused(self) -> None:
        """A derived field with a bad type or name is refused when declared."""
        with pytest.raises(ValueError, match="derived field 'x': unknown type 'integer'"):
            DerivedField("x", "integer", _days_since_last)
        with pytest.raises(ValueError, match="must be letters, digits and '_'"):
            DerivedField("no-dash", "int", _days_since_last)


def _entry_point(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


class TestLoading:
    def test_the_retail_pack_is_registered_through_an_entry_point(self) -> None:
        """tagrules publishes its own retail pack as a plugin, like any other package would."""
        points = {
            point.name: point.value for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        }
        assert points["retail"] == "tagrules.packs.retail:plugin"
        assert "retail" in available_packs()
        assert installed_plugins().pack_owner("retail").name == "retail"

    def test_broken_plugins_are_reported_and_the_others_load(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A plugin that fails to import, declares bad types or is not a Plugin does not stop the rest."""
        modules = {
            "plugin_ok": """
                from tagrules.extensions import RuleFunction
                from tagrules.plugins import Plugin
                def make():
                    twice = RuleFunction("twice", lambda x: x * 2, arguments=["int"], returns="int")
                    return Plugin(name="ok", functions=[twice])
            """,
            "plugin_import_error": "import not_a_module_anywhere\n",
            "plugin_bad_types": """
                from tagrules.extensions import RuleFunction
                from tagrules.plugins import Plugin
                bad = RuleFunction("f", abs, arguments=["integr"], returns="int")
                plugin = Plugin(name="bad", functions=[bad])
            """,
            "plugin_not_a_plugin": "plugin = 42\n",
        }
        for name, source in modules.items():
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        registry = discover(
            [
                _entry_point("ok", "plugin_ok:make"),
                _entry_point("missing", "plugin_import_error:plugin"),
                _entry_point("bad", "plugin_bad_types:plugin"),
                _entry_point("odd", "plugin_not_a_plugin:plugin"),
            ]
        )
        assert [plugin.name for plugin in registry.plugins] == ["ok"]
        failures = {failure.name: failure.message for failure in registry.failures}
        assert "No module named 'not_a_module_anywhere'" in failures["missing"]
        assert "argument #1: unknown type 'integr'" in failures["bad"]
        assert failures["odd"] == "is not a tagrules Plugin (got int)"
        catalog = registry.load_catalog(_write_catalog(tmp_path, "$twice(n) > 4"))
        assert Evaluator(catalog).evaluate({"n": 3}, now=NOW).tags == {"t"}

    def test_clashing_names_leave_the_later_plugin_out(self) -> None:
        """Two plugins providing one pack or function name: the second is a failure, the first stays."""
        first = Plugin(name="first", functions=[HALF], packs={"shared": "a.yaml"})
        second = Plugin(name="second", functions=[HALF], packs={"shared": "b.yaml"})
        registry = PluginRegistry([first, second])
        assert [plugin.name for plugin in registry.plugins] == ["first"]
        (failure,) = registry.failures
        assert "pack 'shared' is already provided by plugin 'first'" in str(failure)
        assert "function 'half' is already provided by plugin 'first'" in str(failure)

    def test_an_unknown_pack_suggests_the_nearest(self) -> None:
        """Asking for a pack no plugin provides names the nearest one."""
        with pytest.raises(LookupError, match="did you mean 'retail'"):
            load_pack("retale")

    def test_a_plugin_must_hold_what_it_declares(self) -> None:
        """Declaring something that is not a function, field or listener fails at once."""
        with pytest.raises(PluginError, match="is not a RuleFunction"):
            Plugin(name="x", functions=[abs])  # type: ignore[list-item]
        with pytest.raises(PluginError, match="is not callable"):
            Plugin(name="x", listeners=[42])  # type: ignore[list-item]


def _write_catalog(directory: Path, rule: str) -> Path:
    path = directory / "catalog.yaml"
    path.write_text(
        f"schema: {{n: int}}\ntags:\n  - {{key: t, rule: {json.dumps(rule)}}}\n", encoding="utf-8"
    )
    return path


def _heard(event: Any) -> None:
    HEARD.append(event)


def _noted(event: Any) -> None:
    HEARD.append(("noted", event))


HEARD: list[Any] = []
LISTENING = Plugin(name="listening", listeners=[_heard, _noted])


class TestListenerSelection:
    def test_listeners_run_only_for_catalogs_that_name_them(self) -> None:
        """A catalog without 'listeners:' gets no plugin listener; one naming a listener gets it, and
        extra names (--listener) are added once each."""
        registry = PluginRegistry([LISTENING])
        plain = _catalog({"big": "spend > 1"}, {"spend": "float"})
        asking = Catalog.from_data(
            {
                "schema": {"spend": "float"},
                "listeners": ["_heard"],
                "tags": [{"key": "big", "rule": "spend > 1"}],
            }
        )
        assert registry.listener_names == ["_heard", "_noted"]
        assert registry.listeners_for(plain) == []
        assert registry.listeners_for(asking) == [_heard]
        assert registry.listeners_for(plain, ["_noted", "_noted"]) == [_noted]
        assert registry.listeners_for(asking, ["_heard", "_noted"]) == [_heard, _noted]
        assert asking.to_data()["listeners"] == ["_heard"]

    def test_an_unknown_listener_is_refused_at_load_with_the_nearest(self, tmp_path: Path) -> None:
        """A catalog file naming a listener no installed plugin has fails to load, naming it."""
        path = tmp_path / "catalog.yaml"
        path.write_text(
            "schema: {spend: float}\nlisteners: [_heardd]\ntags:\n  - {key: big, rule: 'spend > 1'}\n",
            encoding="utf-8",
        )
        with pytest.raises(
            DefinitionError, match=r"unknown listener '_heardd'; did you mean '_heard'\?"
        ) as raised:
            PluginRegistry([LISTENING]).load_catalog(path)
        assert raised.value.problems[0].file == str(path)
        # loaded without the registry, the names are checked when the registry resolves them
        with pytest.raises(PluginError, match="unknown listener '_heardd'; did you mean '_heard'"):
            PluginRegistry([LISTENING]).listeners_for(Catalog.load(path))
        with pytest.raises(PluginError, match="unknown listener 'nope'"):
            PluginRegistry([LISTENING]).listeners_for(
                _catalog({"big": "spend > 1"}, {"spend": "float"}), ["nope"]
            )

    def test_listener_lists_must_be_names(self) -> None:
        """'listeners:' is a list of distinct names."""
        with pytest.raises(DefinitionError, match="must be a list of listener names"):
            Catalog.from_data({"schema": {"a": "int"}, "listeners": "x", "tags": []})
        with pytest.raises(DefinitionError, match="named twice"):
            Catalog.from_data({"schema": {"a": "int"}, "listeners": ["x", "x"], "tags": []})

    def test_a_listener_needs_a_name(self) -> None:
        """A lambda cannot be named by a catalog, so a plugin declaring one is refused; two plugins
        with a listener of one name clash."""
        with pytest.raises(PluginError, match="needs a name"):
            Plugin(name="x", listeners=[lambda event: None])
        registry = PluginRegistry([LISTENING, Plugin(name="again", listeners=[_heard])])
        assert [plugin.name for plugin in registry.plugins] == ["listening"]
        assert "listener '_heard' is already provided" in registry.failures[0].message


def _tagrules_test(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tagrules.cli", "test", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


class TestExamplePlugin:
    """The example package under examples/ is installed with the test extras and works end to end."""

    def test_it_is_installed_and_listed(self) -> None:
        """``tagrules plugins`` lists the example's pack, functions, derived field and listener."""
        result = subprocess.run(
            [sys.executable, "-m", "tagrules.cli", "plugins", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        listed = {plugin["name"]: plugin for plugin in json.loads(result.stdout)["plugins"]}
        loyalty = listed["loyalty"]
        assert loyalty["packs"] == ["loyalty"]
        assert loyalty["functions"] == [
            "$days_since(datetime | None) -> int | None",
            "$count_within(list, timedelta) -> int",
        ]
        assert loyalty["derived_fields"] == ["days_since_last_order: int | None"]
        assert loyalty["listeners"] == ["log_change"]
        assert listed["retail"]["packs"] == ["retail"]

    def test_its_pack_tags_members(self) -> None:
        """The loyalty pack's rules call the plugin's functions and read its derived field."""
        from tagrules_loyalty.model import Member, Order

        evaluator = Evaluator(load_pack("loyalty"))
        day = datetime.timedelta(days=1)
        active = Member(
            id="m1",
            joined_at=NOW - 900 * day,
            last_order_at=NOW - 5 * day,
            orders=[Order(at=NOW - 5 * day, amount=10.0), Order(at=NOW - 20 * day, amount=4.0)],
            points=2500,
        )
        lapsing = Member(id="m2", joined_at=NOW - 900 * day, last_order_at=NOW - 120 * day, points=12000)
        dormant = Member(id="m3", joined_at=NOW - 900 * day)
        assert evaluator.evaluate(active, now=NOW).tags == {"active_buyer", "points_silver"}
        assert evaluator.evaluate(lapsing, now=NOW).tags == {"lapsing", "points_gold"}
        assert evaluator.evaluate(dormant, now=NOW).tags == {"dormant"}

    def test_the_command_line_uses_its_functions(self, tmp_path: Path) -> None:
        """Catalog files given to the command line may call installed plugins' functions."""
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(
            'schema: {last: "datetime | None"}\n'
            'tags:\n  - {key: lapsed, rule: "($days_since(last) ?? 0) > 30"}\n',
            encoding="utf-8",
        )
        snapshots = tmp_path / "snapshots.jsonl"
        snapshots.write_text('{"id": 1, "last": "2026-01-01T00:00:00Z"}\n', encoding="utf-8")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tagrules.cli",
                "evaluate",
                str(catalog),
                str(snapshots),
                "--now",
                "2026-06-01T00:00:00Z",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"id": 1, "tags": ["lapsed"]}

    def test_its_case_file_passes(self) -> None:
        """Case files may name a plugin's pack; its functions follow the case file's now."""
        result = _tagrules_test(EXAMPLE / "loyalty.cases.yaml")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "4 cases: 4 passed, 0 failed" in result.stdout

    def test_its_listener_hears_the_changes_of_a_run(self, tmp_path: Path) -> None:
        """``tagrules run`` hands every committed change to the listeners of installed plugins."""
        members = tmp_path / "members.jsonl"
        members.write_text(
            '{"id": "m1", "joined_at": "2024-01-01T00:00:00Z", "last_order_at": null, "orders": [], '
            '"points": 2500}\n',
            encoding="utf-8",
        )
        audit = tmp_path / "audit.jsonl"
        command = [sys.executable, "-m", "tagrules.cli", "run", "loyalty", str(members)]
        command += ["--store", f"sqlite:///{tmp_path / 'tags.db'}", "--now", "2026-06-01T00:00:00Z"]
        environment = {**os.environ, "TAGRULES_LOYALTY_AUDIT": str(audit)}
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
        assert result.returncode == 0, result.stderr
        heard = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
        assert sorted((event["id"], event["tag"], event["change"]) for event in heard) == [
            ("m1", "dormant", "added"),
            ("m1", "points_silver", "added"),
        ]
        again = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
        assert again.returncode == 0, again.stderr
        assert len(audit.read_text(encoding="utf-8").splitlines()) == 2

    def test_its_listener_runs_only_where_asked(self, tmp_path: Path) -> None:
        """A catalog that does not name the example's listener runs without it; --listener adds it;
        an unknown --listener stops the run before any store is made."""
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(
            "schema: {points: int}\ntags:\n  - {key: many_points, rule: 'points > 100'}\n", encoding="utf-8"
        )
        members = tmp_path / "members.jsonl"
        members.write_text('{"id": "m1", "points": 2500}\n', encoding="utf-8")
        audit = tmp_path / "audit.jsonl"
        environment = {**os.environ, "TAGRULES_LOYALTY_AUDIT": str(audit)}

        def run(store: str, *extra: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "tagrules.cli", "run", str(catalog), str(members)]
            command += ["--store", f"sqlite:///{tmp_path / store}", "--now", "2026-06-01T00:00:00Z", *extra]
            return subprocess.run(command, capture_output=True, text=True, check=False, env=environment)

        plain = run("plain.db")
        assert plain.returncode == 0, plain.stderr
        assert not audit.exists()
        chosen = run("chosen.db", "--listener", "log_change")
        assert chosen.returncode == 0, chosen.stderr
        assert [json.loads(line)["tag"] for line in audit.read_text(encoding="utf-8").splitlines()] == [
            "many_points"
        ]
        unknown = run("unknown.db", "--listener", "log_chnage")
        assert unknown.returncode == 1
        assert "unknown listener 'log_chnage'; did you mean 'log_change'?" in unknown.stderr
        assert not (tmp_path / "unknown.db").exists()


LAPSED_CATALOG = (
    'schema: {last_order_at: "datetime | None"}\n'
    "tags:\n"
    '  - {key: lapsed, rule: "($days_since(last_order_at) ?? 0) > 30"}\n'
    '  - {key: long_gone, rule: "(days_since_last_order ?? 0) > 100"}\n'
)
LAPSED_CASES = """
catalog: catalog.yaml
now: "2026-06-01T00:00:00Z"
cases:
  - name: lapsed, not long gone
    snapshot: {last_order_at: "2026-03-01T00:00:00Z"}
    has: [lapsed]
    lacks: [long_gone]
"""


class TestWhereCatalogsLoad:
    """One rule: a catalog sees the plugins it is loaded with; the front ends load with the installed ones."""

    @pytest.fixture
    def project(self, tmp_path: Path) -> Path:
        (tmp_path / "catalog.yaml").write_text(LAPSED_CATALOG, encoding="utf-8")
        (tmp_path / "lapsed.cases.yaml").write_text(LAPSED_CASES, encoding="utf-8")
        return tmp_path

    def test_load_and_loads_take_the_registry(self, project: Path) -> None:
        """Catalog.load and Catalog.loads given plugins= see its functions and fields, as validate does."""
        from tagrules.cli._common import load_catalog

        registry = installed_plugins()
        loaded = Catalog.load(project / "catalog.yaml", plugins=registry)
        from_text = Catalog.loads(LAPSED_CATALOG, plugins=registry)
        from_command = load_catalog(str(project / "catalog.yaml"))
        for catalog in (loaded, from_text, from_command):
            assert set(catalog.functions) == {"days_since", "count_within"}
            assert set(catalog.derived_fields) == {"days_since_last_order"}
        assert loaded == from_command
        one_plugin = registry.plugins[[plugin.name for plugin in registry.plugins].index("loyalty")]
        assert set(Catalog.loads(LAPSED_CATALOG, plugins=one_plugin).functions) == {
            "days_since",
            "count_within",
        }

    def test_without_plugins_the_message_says_how_to_give_them(self, project: Path) -> None:
        """A catalog loaded without plugins= refuses a plugin's function, saying where functions come from."""
        with pytest.raises(DefinitionError) as caught:
            Catalog.load(project / "catalog.yaml")
        assert "unknown builtin '$days_since' (if a plugin provides it" in str(caught.value)
        assert "loaded with plugins=" in str(caught.value)

    def test_case_files_take_the_registry(self, project: Path) -> None:
        """load_case_file and resolve_catalog load the catalog with the plugins they are given."""
        from tagrules.testing import load_case_file, resolve_catalog, run_cases

        case_file = load_case_file(project / "lapsed.cases.yaml", plugins=installed_plugins())
        assert all(result.passed for result in run_cases(case_file))
        with pytest.raises(DefinitionError, match=r"unknown builtin '\$days_since'"):
            resolve_catalog("catalog.yaml", project, plugins=PluginRegistry([]))

    def test_tagrules_test_sees_installed_plugins(self, project: Path) -> None:
        """``tagrules test`` runs case files whose catalog files call installed plugins' functions."""
        result = _tagrules_test(project / "lapsed.cases.yaml")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 case: 1 passed, 0 failed" in result.stdout

    def test_the_pytest_plugin_sees_installed_plugins(self, project: Path) -> None:
        """tagrules_catalog and collected case files load catalog files with the installed plugins."""
        (project / "pytest.ini").write_text("[pytest]\ntagrules_catalog = catalog.yaml\n", encoding="utf-8")
        (project / "test_lapsed.py").write_text(
            textwrap.dedent(
                """
                import pytest

                @pytest.mark.tagrules(now="2026-06-01T00:00:00Z")
                def test_lapsed(assert_tags, tagrules_catalog):
                    assert "days_since" in tagrules_catalog.functions
                    assert_tags({"last_order_at": "2026-01-01T00:00:00Z"}, has={"lapsed", "long_gone"})
                """
            ),
            encoding="utf-8",
        )
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
            capture_output=True,
            text=True,
            check=False,
            cwd=project,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 passed" in result.stdout
