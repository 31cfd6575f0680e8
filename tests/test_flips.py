"""``Evaluator.flips``: the single-field changes that flip a tag, each one checked."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rule_strategies import RandomSchema, raw_snapshots, schemas
from tagrules import Catalog, DefinitionError, Evaluator
from test_pushdown_differential import catalogs

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 1, tzinfo=UTC)
SCHEMA = {"spend": "float", "orders": "int", "seen": "datetime", "city": "str", "partner": "bool"}
TAGS: list[dict[str, Any]] = [
    {"key": "high", "rule": "spend >= 100000", "group": "spend", "priority": 2},
    {"key": "mid", "rule": "spend >= 30000", "group": "spend", "priority": 1},
    {"key": "frequent", "rule": "orders > 2"},
    {"key": "vip", "rule": "'high' in tags and 'frequent' in tags or partner"},
    {"key": "recent", "rule": "seen >= $now - t'P30D'"},
    {"key": "metro", "rule": "city in ['tier1', 'tier2']"},
]
SNAPSHOT = {"spend": 81234.0, "orders": 3, "seen": "2026-04-01T00:00:00Z", "city": "rural", "partner": False}


def flips_of(key: str, snapshot: dict[str, Any] = SNAPSHOT) -> dict[str, tuple[Any, Any, Any]]:
    found = Evaluator(Catalog(TAGS, SCHEMA)).flips(snapshot, key, now=NOW)
    return {flip.field: (flip.before, flip.after, flip.difference) for flip in found}


class TestFlips:
    def test_nearest_number(self) -> None:
        """A float threshold is reached exactly; the difference is the distance to it."""
        assert flips_of("high") == {"spend": (81234.0, 100000.0, 100000.0 - 81234.0)}

    def test_int_step_and_strict_comparison(self) -> None:
        """``orders > 2`` on 3 flips at 2: the nearest int on the other side."""
        assert flips_of("frequent") == {"orders": (3, 2, -1)}

    def test_through_dependencies_and_groups(self) -> None:
        """vip reads high's rule through ``'high' in tags``, frequent's, and the flag."""
        found = flips_of("vip")
        assert found["spend"][1] == 100000.0
        assert found["partner"] == (False, True, None)
        assert "orders" not in found  # frequent already holds: orders alone cannot assign vip

    def test_lower_tier_lost_to_a_higher_one(self) -> None:
        """mid is assigned until spend reaches the higher tier (or drops below its own threshold)."""
        assert flips_of("mid")["spend"][1] == 100000.0
        assert flips_of("mid", {**SNAPSHOT, "spend": 30500.0})["spend"][1] == 29999.999999999996

    def test_datetime_against_now(self) -> None:
        """A window against ``$now`` flips at its edge, written as ISO 8601 with the time difference."""
        before, after, difference = flips_of("recent")["seen"]
        assert (before, after) == ("2026-04-01T00:00:00+00:00", "2026-05-02T00:00:00+00:00")
        assert difference == datetime.timedelta(days=31)

    def test_text_compared_against(self) -> None:
        """For text, each compared value that flips the tag."""
        found = Evaluator(Catalog(TAGS, SCHEMA)).flips(SNAPSHOT, "metro", now=NOW)
        assert sorted(flip.after for flip in found) == ["tier1", "tier2"]

    def test_nothing_flips(self) -> None:
        """A rule no single field decides has no flips."""
        catalog = Catalog([{"key": "always", "rule": "true"}], SCHEMA)
        assert Evaluator(catalog).flips(SNAPSHOT, "always", now=NOW) == []

    def test_list_members_from_numbers_no_int_can_be(self) -> None:
        """An int list compared with inf, 0.5 or a number beyond 64 bits: only the whole numbers
        within range are suggested as members (the others name no int)."""
        catalog = Catalog(
            [{"key": "t", "rule": "items.length == 2 and items[1] in [2, inf, 0.5, 99999999999999999999]"}],
            {"items": "list[int]"},
        )
        found = Evaluator(catalog).flips({"items": [1]}, "t", now=NOW)
        assert [(flip.field, flip.after) for flip in found] == [("items", [1, 2])]


class TestFlipsProperty:
    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def test_every_flip_flips(self, data: st.DataObject) -> None:
        """Random rules and snapshots: applying any suggested change, as JSON writes it, flips the tag."""
        schema: RandomSchema = data.draw(schemas())
        definitions, hints = data.draw(catalogs(schema))
        try:
            catalog = Catalog(definitions, schema.schema)
        except DefinitionError:
            assume(False)
            return
        snapshot = data.draw(raw_snapshots(schema, hints))
        evaluator = Evaluator(catalog)
        key = data.draw(st.sampled_from([definition["key"] for definition in definitions]))
        assigned = key in evaluator.evaluate(snapshot, NOW).tags
        for flip in evaluator.flips(snapshot, key, now=NOW):
            changed = {**snapshot, flip.field: json.loads(json.dumps(flip.after))}
            evaluation = evaluator.evaluate(changed, NOW)
            assert key not in evaluation.errors, (flip, evaluation.errors)
            assert (key in evaluation.tags) != assigned, (flip, definitions, snapshot)


class TestExplainFlipCommand:
    def test_json(self, tmp_path: Path) -> None:
        """``explain --flip --json`` prints ``{"tag", "assigned", "flips": [{"field", "from", "to"}]}``."""
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(json.dumps({"schema": SCHEMA, "tags": TAGS}), encoding="utf-8")
        rows = tmp_path / "rows.jsonl"
        rows.write_text(json.dumps({"id": "a", **SNAPSHOT}) + "\n", encoding="utf-8")
        command = [sys.executable, "-m", "tagrules.cli", "explain", str(catalog), str(rows), "--id", "a"]
        when = ["--now", "2026-06-01T00:00:00Z", "--flip"]
        result = subprocess.run(
            [*command, "--tag", "high", *when, "--json"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {
            "tag": "high",
            "assigned": False,
            "flips": [{"field": "spend", "from": 81234.0, "to": 100000.0}],
        }
        text = subprocess.run([*command, "--tag", "high", *when], capture_output=True, text=True, check=False)
        assert "spend: 81234.0 -> 100000.0 (+18766.0)" in text.stdout
