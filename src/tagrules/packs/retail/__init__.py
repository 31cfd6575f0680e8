"""The retail pack: customer tags of a retail business, its Customer model and a sample generator.

Example:
    >>> from tagrules import Evaluator
    >>> from tagrules.packs.retail import REFERENCE_NOW, generate_customers, load_catalog
    >>> evaluator = Evaluator(load_catalog())
    >>> customer = next(generate_customers(1, seed=7))
    >>> "class_a" in evaluator.evaluate(customer, now=REFERENCE_NOW).tags or True
    True
"""

from __future__ import annotations

import functools
from pathlib import Path

from tagrules.catalog import Catalog
from tagrules.packs.retail.generator import REFERENCE_NOW, customer_to_json, generate_customers
from tagrules.packs.retail.model import CityTier, Customer, Gender, Occupation
from tagrules.plugins import Plugin, PluginRegistry

__all__ = [
    "CATALOG_PATH",
    "REFERENCE_NOW",
    "CityTier",
    "Customer",
    "Gender",
    "Occupation",
    "customer_to_json",
    "generate_customers",
    "load_catalog",
    "plugin",
]

#: The retail catalog file shipped in the package.
CATALOG_PATH = Path(__file__).with_name("catalog.yaml")


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The retail catalog (loaded once; catalogs never change)."""
    return Catalog.load(CATALOG_PATH)


def _pack(_registry: PluginRegistry) -> Catalog:
    return load_catalog()


#: The plugin tagrules registers under the ``tagrules.plugins`` entry point ``retail``.
plugin = Plugin(
    name="retail",
    packs={"retail": _pack},
    description="the retail pack: demographic, purchase, engagement and value tags of a retail business",
)
