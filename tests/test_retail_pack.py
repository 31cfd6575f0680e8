"""The retail pack: its catalog, its Customer model and its sample generator."""

from __future__ import annotations

import collections
import datetime

import pytest

from tagrules import Evaluator
from tagrules.packs.retail import REFERENCE_NOW, Customer, customer_to_json, generate_customers, load_catalog


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator(load_catalog())


class TestRetailCatalog:
    def test_covers_the_tag_families(self) -> None:
        """The pack has every family of the taxonomy, tiers as exclusive groups."""
        catalog = load_catalog()
        categories = {tag.category for tag in catalog}
        assert categories == {"basic", "behaviour", "preference", "value", "lifecycle", "priority"}
        assert set(catalog.groups) == {
            "age_band",
            "gender",
            "region",
            "occupation",
            "frequency",
            "spend",
            "interaction",
            "satisfaction",
            "lifecycle",
            "priority_class",
        }
        assert {"vip", "strategic_partner", "potential", "churned", "new_customer"} <= {
            tag.key for tag in catalog
        }

    def test_schema_is_the_customer_model(self) -> None:
        """The pack's schema is its pydantic Customer model."""
        catalog = load_catalog()
        assert catalog.schema.model is Customer
        assert str(catalog.schema.fields["last_order_at"]) == "datetime | None"


class TestGenerator:
    def test_deterministic(self) -> None:
        """The same seed gives the same customers; another seed, others."""
        assert list(generate_customers(50, seed=3)) == list(generate_customers(50, seed=3))
        assert list(generate_customers(50, seed=3)) != list(generate_customers(50, seed=4))

    def test_customers_fit_the_model(self) -> None:
        """Every generated customer validates as a Customer, from dicts and from JSON."""
        for customer in generate_customers(300, seed=1):
            Customer.model_validate(customer)
            Customer.model_validate_json(customer_to_json(customer))

    def test_histories_are_consistent(self) -> None:
        """Counts nest (30 days within 90 within 365 within all time) and dates are ordered."""
        for customer in generate_customers(500, seed=2):
            assert (
                0
                <= customer["orders_30d"]
                <= customer["orders_90d"]
                <= customer["orders_365d"]
                <= customer["orders_total"]
            )
            assert customer["registered_at"] <= REFERENCE_NOW
            if customer["orders_total"]:
                assert (
                    customer["registered_at"]
                    <= customer["first_order_at"]
                    <= customer["last_order_at"]
                    <= REFERENCE_NOW
                )
            else:
                assert customer["last_order_at"] is None
                assert customer["spend_365d"] == 0

    def test_ids_and_start(self) -> None:
        """Ids count up from start."""
        assert [c["id"] for c in generate_customers(2, start=10)] == ["C0000010", "C0000011"]

    def test_negative_count(self) -> None:
        """A negative count is refused."""
        with pytest.raises(ValueError, match="negative"):
            list(generate_customers(-1))


class TestRetailEvaluation:
    def test_generated_customers_evaluate_cleanly(self, evaluator: Evaluator) -> None:
        """A thousand generated customers evaluate without a single rule error."""
        for customer in generate_customers(1000, seed=11):
            assert not evaluator.evaluate(customer, now=REFERENCE_NOW).errors

    def test_every_tag_is_reachable(self, evaluator: Evaluator) -> None:
        """Every tag of the pack is assigned to some of 3,000 generated customers, none to all."""
        counts: collections.Counter[str] = collections.Counter()
        customers = list(generate_customers(3000, seed=12))
        for customer in customers:
            counts.update(evaluator.evaluate(customer, now=REFERENCE_NOW).tags)
        for tag in load_catalog():
            assert 0 < counts[tag.key] < len(customers), tag.key

    def test_one_tier_per_group(self, evaluator: Evaluator) -> None:
        """Tiers of a group are exclusive on every generated customer."""
        groups = load_catalog().groups
        for customer in generate_customers(500, seed=13):
            tags = evaluator.evaluate(customer, now=REFERENCE_NOW).tags
            for members in groups.values():
                assert len(tags & set(members)) <= 1

    def test_vip_follows_the_policy(self, evaluator: Evaluator) -> None:
        """A big spender buying monthly is VIP and class A; churned customers return when they buy."""
        base = next(generate_customers(1, seed=5))
        vip = dict(
            base,
            spend_365d=150000.0,
            orders_30d=4,
            orders_90d=9,
            orders_365d=30,
            orders_total=40,
            last_order_at=REFERENCE_NOW - datetime.timedelta(days=2),
        )
        tags = evaluator.evaluate(vip, now=REFERENCE_NOW).tags
        assert {"vip", "spend_high", "freq_high", "class_a"} <= tags
        gone = dict(
            vip,
            orders_30d=0,
            orders_90d=0,
            orders_365d=0,
            last_order_at=REFERENCE_NOW - datetime.timedelta(days=400),
        )
        assert {"churned", "lifecycle_churned"} <= evaluator.evaluate(gone, now=REFERENCE_NOW).tags
        back = dict(gone, orders_30d=1, orders_90d=1, orders_365d=1, last_order_at=REFERENCE_NOW)
        assert "churned" not in evaluator.evaluate(back, now=REFERENCE_NOW).tags
