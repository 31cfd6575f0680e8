"""``Evaluation.valid_until``: the first instant time alone changes a snapshot's tags, exactly."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tagrules import Catalog, DefinitionError, Evaluator, TimeUnknown

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
SCHEMA = {"seen": "datetime", "joined": "datetime | None", "due": "date", "count": "int"}
ONE = datetime.timedelta(microseconds=1)


def state(evaluator: Evaluator, snapshot: dict[str, Any], moment: datetime.datetime) -> tuple[Any, Any]:
    evaluation = evaluator.evaluate(snapshot, moment)
    return evaluation.tags, frozenset(evaluation.errors)


class TestValidUntil:
    def test_a_window_against_now(self) -> None:
        """A 30-day window ends one microsecond after its edge; the tag depending on it goes with it."""
        catalog = Catalog(
            [
                {"key": "new", "rule": "seen >= $now - t'P30D'"},
                {"key": "welcome", "rule": "'new' in tags and count > 0"},
            ],
            SCHEMA,
        )
        snapshot = {
            "seen": datetime.datetime(2026, 5, 20, 8, tzinfo=UTC),
            "joined": None,
            "due": "2026-07-01",
            "count": 1,
        }
        evaluation = Evaluator(catalog).evaluate(snapshot, NOW, valid_until=True)
        assert evaluation.tags == {"new", "welcome"}
        assert evaluation.valid_until == datetime.datetime(2026, 6, 19, 8, 0, 0, 1, tzinfo=UTC)

    def test_today_turns_at_midnight(self) -> None:
        """A comparison with ``$today`` turns at the midnight (in ``now``'s timezone) after its edge."""
        catalog = Catalog([{"key": "overdue", "rule": "$today > due"}], SCHEMA)
        snapshot = {"seen": NOW, "joined": None, "due": "2026-06-03", "count": 0}
        evaluation = Evaluator(catalog).evaluate(snapshot, NOW, valid_until=True)
        assert evaluation.valid_until == datetime.datetime(2026, 6, 4, tzinfo=UTC)

    def test_no_time_no_end(self) -> None:
        """A catalog whose rules do not read time never lapses."""
        catalog = Catalog([{"key": "busy", "rule": "count > 3"}], SCHEMA)
        snapshot = {"seen": NOW, "joined": None, "due": "2026-06-03", "count": 5}
        assert Evaluator(catalog).evaluate(snapshot, NOW, valid_until=True).valid_until is None

    def test_not_asked(self) -> None:
        """An evaluation made without asking has no ``valid_until``, and says how to ask."""
        catalog = Catalog([{"key": "busy", "rule": "count > 3"}], SCHEMA)
        evaluation = Evaluator(catalog).evaluate({"count": 1}, NOW)
        with pytest.raises(AttributeError, match="valid_until=True"):
            _ = evaluation.valid_until

    def test_time_read_otherwise_is_refused(self) -> None:
        """A rule reading time other than at a fixed rate is a TimeUnknown naming the tag."""
        catalog = Catalog([{"key": "may", "rule": "$now.month == 5"}], SCHEMA)
        with pytest.raises(TimeUnknown, match="tag 'may'"):
            Evaluator(catalog).evaluate({"count": 1}, NOW, valid_until=True)


_FIELDS_NOW = ["seen", "(joined ?? seen)"]
_DELTAS = ["t'P30D'", "t'PT1H'", "t'P1DT0.5S'", "t'P0D'", "t'PT0.000001S'"]
_OPERATORS = [">=", ">", "<=", "<", "==", "!="]


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    operator = draw(st.sampled_from(_OPERATORS))
    delta = draw(st.sampled_from(_DELTAS))
    field = draw(st.sampled_from(_FIELDS_NOW))
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return f"{field} {operator} $now - {delta}"
    if shape == 1:
        return f"$now + {delta} {operator} {field}"
    if shape == 2:
        return f"{field} - $now {operator} {delta}"
    if shape == 3:
        return f"$today {operator} due"
    if shape == 4:
        return f"$today - {delta} {operator} due"
    return f"count {operator} {draw(st.integers(0, 3))}"


@st.composite
def rules(draw: st.DrawFn, earlier: list[str]) -> str:
    parts = [draw(comparisons()) for _ in range(draw(st.integers(1, 2)))]
    depends = draw(st.booleans())
    if earlier and depends:
        parts.append(f"'{draw(st.sampled_from(earlier))}' in tags")
    if draw(st.booleans()):
        parts[0] = f"not ({parts[0]})"
    joiner = draw(st.sampled_from([" and ", " or "]))
    return joiner.join(f"({part})" for part in parts)


@st.composite
def catalogs(draw: st.DrawFn) -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = []
    for index in range(draw(st.integers(1, 4))):
        key = f"t{index}"
        group = draw(st.sampled_from([None, "g"]))
        tags.append(
            {
                "key": key,
                "rule": draw(rules([tag["key"] for tag in tags if tag["group"] is None])),
                "group": group,
                "priority": index,
            }
        )
    return tags


_TIMES = st.datetimes(
    min_value=datetime.datetime(2026, 3, 1), max_value=datetime.datetime(2026, 9, 1), timezones=st.just(UTC)
)


@st.composite
def snapshots(draw: st.DrawFn) -> dict[str, Any]:
    near = st.one_of(
        _TIMES, st.sampled_from([NOW, NOW - datetime.timedelta(days=30), NOW + datetime.timedelta(hours=1)])
    )
    return {
        "seen": draw(near),
        "joined": draw(st.one_of(st.none(), near)),
        "due": draw(near).date().isoformat(),
        "count": draw(st.integers(0, 4)),
    }


_ZONES = [
    UTC,
    datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
    datetime.timezone(datetime.timedelta(hours=-8)),
]


class TestValidUntilProperty:
    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(
        tags=catalogs(),
        snapshot=snapshots(),
        now=_TIMES.map(lambda moment: moment),
        zone=st.sampled_from(_ZONES),
        probes=st.lists(st.floats(0, 1, exclude_max=True), max_size=3),
    )
    def test_exact(
        self,
        tags: list[dict[str, Any]],
        snapshot: dict[str, Any],
        now: datetime.datetime,
        zone: Any,
        probes: list[float],
    ) -> None:
        """At ``valid_until`` the tags differ; just before it, and anywhere from ``now`` on, they do not."""
        try:
            catalog = Catalog(tags, SCHEMA)
        except DefinitionError:
            assume(False)
            return
        evaluator = Evaluator(catalog)
        moment = now.astimezone(zone)
        evaluation = evaluator.evaluate(snapshot, moment, valid_until=True)
        start = state(evaluator, snapshot, moment)
        until = evaluation.valid_until
        if until is None:
            for days in (0.001, 1, 31, 200, 4000):
                assert state(evaluator, snapshot, moment + datetime.timedelta(days=days)) == start
            return
        assert until > moment
        assert state(evaluator, snapshot, until) != start
        assert state(evaluator, snapshot, until - ONE) == start
        for fraction in probes:
            probe = min(moment + (until - moment) * fraction, until - ONE)
            assert state(evaluator, snapshot, probe) == start

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(
        tags=catalogs(),
        snapshot=snapshots(),
        now=_TIMES,
        given_tags=st.sets(st.sampled_from(["t0", "t1", "t2", "t3"]), max_size=2),
        excluded=st.sets(st.sampled_from(["t0", "t1", "t2", "t3"]), max_size=2),
    )
    def test_exact_with_manual_and_suppressed_tags(
        self,
        tags: list[dict[str, Any]],
        snapshot: dict[str, Any],
        now: datetime.datetime,
        given_tags: set[str],
        excluded: set[str],
    ) -> None:
        """Manual and suppressed tags take part: the claim stays exact at and just before it."""
        try:
            catalog = Catalog(tags, SCHEMA)
        except DefinitionError:
            assume(False)
            return
        keys = {tag["key"] for tag in tags}
        manual, suppressed = given_tags & keys, excluded & keys
        evaluator = Evaluator(catalog)

        def state_at(moment: datetime.datetime) -> tuple[Any, Any]:
            evaluation = evaluator.evaluate(snapshot, moment, manual, suppressed=suppressed)
            return evaluation.tags, frozenset(evaluation.errors)

        until = evaluator.evaluate(snapshot, now, manual, suppressed=suppressed, valid_until=True).valid_until
        start = state_at(now)
        if until is None:
            for days in (0.001, 1, 31, 200, 4000):
                assert state_at(now + datetime.timedelta(days=days)) == start
            return
        assert until > now
        assert state_at(until) != start
        assert state_at(until - ONE) == start


class TestEvaluateCommand:
    def test_valid_until_in_each_object(self, tmp_path: Any) -> None:
        """``tagrules evaluate --valid-until`` adds ``valid_until`` (ISO 8601, or null) to each object."""
        import json
        import subprocess
        import sys

        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(
            "schema: {seen: datetime, count: int}\ntags:\n  - {key: new, rule: \"seen >= $now - t'P30D'\"}\n"
            '  - {key: busy, rule: "count > 3"}\n',
            encoding="utf-8",
        )
        rows = tmp_path / "rows.jsonl"
        rows.write_text(
            '{"id": "a", "seen": "2026-05-20T08:00:00Z", "count": 5}\n'
            '{"id": "b", "seen": "2025-01-01T00:00:00Z", "count": 1}\n',
            encoding="utf-8",
        )
        command = [
            sys.executable,
            "-m",
            "tagrules.cli",
            "evaluate",
            str(catalog),
            str(rows),
            "--now",
            "2026-06-01T00:00:00Z",
        ]
        result = subprocess.run(
            [*command, "--valid-until"], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert lines == [
            {"id": "a", "tags": ["busy", "new"], "valid_until": "2026-06-19T08:00:00.000001+00:00"},
            {"id": "b", "tags": [], "valid_until": None},
        ]
        plain = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert "valid_until" not in plain.stdout


class TestFunctionsAndTime:
    def test_a_function_reading_time_is_refused_where_called(self) -> None:
        """Calling a function that reads the evaluation time is a TimeUnknown; not calling it is not."""
        from tagrules.extensions import RuleFunction

        late = RuleFunction(
            "late", lambda now, moment: moment < now, arguments=("datetime",), returns="bool", uses_now=True
        )
        calling = Catalog([{"key": "late", "rule": "$late(seen)"}], SCHEMA, functions=[late])
        with pytest.raises(TimeUnknown, match="function \\$late"):
            Evaluator(calling).evaluate({"seen": NOW}, NOW, valid_until=True)
        quiet = Catalog([{"key": "busy", "rule": "count > 3"}], SCHEMA, functions=[late])
        assert Evaluator(quiet).evaluate({"count": 5}, NOW, valid_until=True).valid_until is None
