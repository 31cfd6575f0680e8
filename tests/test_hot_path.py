"""The evaluator's fast paths give exactly what the general paths give."""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import BaseModel

from tagrules import Catalog, Evaluator

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


class Address(BaseModel):
    city: str


class Customer(BaseModel):
    spend: float
    categories: list[str]
    address: Address


class Other(BaseModel):
    """Not the schema's model: ``spend`` is a property, ``categories`` missing."""

    address: Address

    @property
    def spend(self) -> float:
        return 200.0


CATALOG = Catalog(
    [
        {"key": "big", "rule": "spend > 100"},
        {"key": "books", "rule": "'books' in categories"},
        {"key": "beijing", "rule": "address.city == 'Beijing'"},
    ],
    Customer,
)


class TestPydanticSnapshots:
    def test_a_model_gives_what_its_dump_gives(self) -> None:
        """A model instance is read by attribute and evaluates as its dumped dict does."""
        customer = Customer(spend=150.0, categories=["books"], address=Address(city="Beijing"))
        evaluator = Evaluator(CATALOG)
        from_model = evaluator.evaluate(customer, now=NOW)
        assert from_model == evaluator.evaluate(customer.model_dump(), now=NOW)
        assert from_model.tags == {"big", "books", "beijing"}

    def test_an_unset_field_is_missing(self) -> None:
        """A field a constructed model lacks fails only the rules that read it, as in a dict."""
        fields: dict[str, Any] = {"spend": 150.0, "address": Address(city="Beijing")}
        customer = Customer.model_construct(**fields)  # no categories
        evaluation = Evaluator(CATALOG).evaluate(customer, now=NOW)
        assert evaluation.tags == {"big", "beijing"}
        assert set(evaluation.errors) == {"books"}
        assert evaluation.errors == Evaluator(CATALOG, compiled=False).evaluate(customer, now=NOW).errors

    def test_another_model_is_read_by_its_attributes(self) -> None:
        """A model of another class is read through its attributes, properties included."""
        other = Other(address=Address(city="Shanghai"))
        compiled = Evaluator(CATALOG).evaluate(other, now=NOW)
        assert compiled.tags == {"big"}
        assert compiled == Evaluator(CATALOG, compiled=False).evaluate(other, now=NOW)


class Order(BaseModel):
    amount: float


class Shopper(BaseModel):
    orders: list[Order]
    address: Address


SHOPPERS = Catalog(
    [
        {"key": "big_orders", "rule": "[o for o in orders if o.amount > 500].length >= 2"},
        {"key": "beijing", "rule": "address.city == 'Beijing'"},
    ],
    Shopper,
)


class Town(BaseModel):
    """An address of another class, without the ``city`` the schema's Address declares."""

    name: str


class TestNestedModels:
    def test_bad_nested_values_fail_as_in_the_interpreter(self) -> None:
        """A nested model lacking a field, or holding a wrong type, fails the rules reading it alike."""
        wrong: dict[str, Any] = {"amount": "x"}
        fields: dict[str, Any] = {"orders": [Order.model_construct(**wrong)], "address": Town(name="x")}
        shopper = Shopper.model_construct(**fields)
        compiled = Evaluator(SHOPPERS).evaluate(shopper, now=NOW)
        assert set(compiled.errors) == {"big_orders", "beijing"}
        assert compiled == Evaluator(SHOPPERS, compiled=False).evaluate(shopper, now=NOW)


class TestNow:
    def test_an_aware_time_outside_utc_is_resolved_as_before(self) -> None:
        """Only an aware UTC time skips resolving; any other keeps the general path's result."""
        evaluator = Evaluator(CATALOG)
        customer = {"spend": 1.0, "categories": [], "address": {"city": "x"}}
        east = datetime.datetime(2026, 6, 1, 8, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
        naive = datetime.datetime(2026, 6, 1)
        assert evaluator.evaluate(customer, now=NOW).now is NOW
        assert evaluator.evaluate(customer, now=naive).now == NOW
        assert evaluator.evaluate(customer, now=east).now == east
