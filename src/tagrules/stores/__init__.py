"""Tag stores: where memberships, history, overrides and change events are kept.

:class:`TagStore` is the interface; :class:`MemoryStore` keeps everything in memory and
:class:`SQLStore` in SQLite, PostgreSQL or MariaDB/MySQL, :class:`AsyncSQLStore` there too for
asyncio. :func:`store_tables` gives the SQL tables of a table prefix, and :func:`upgrade` creates or
upgrades them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagrules._lazy import lazy_attributes
from tagrules.stores._base import (
    DEFAULT_CONSUMER,
    NEW_CUSTOMER,
    CatalogVersion,
    ChangeEvent,
    CustomerChange,
    CustomerState,
    Due,
    FeedConsumer,
    HistoryEntry,
    Membership,
    Override,
    Source,
    TagStore,
)
from tagrules.stores._runs import Every, RunRecord, TagCounts, TagSeries, TagStatistics, TierFlow
from tagrules.stores.memory import MemoryStore

if TYPE_CHECKING:
    from tagrules.stores._database import HEAD_REVISION, current_revision, upgrade
    from tagrules.stores._tables import DEFAULT_PREFIX, StoreTables, store_tables
    from tagrules.stores.async_sql import AsyncSQLStore
    from tagrules.stores.sql import SQLStore

# the SQL stores' names -> their module, imported when first used (they import SQLAlchemy)
_LAZY = {
    "AsyncSQLStore": "tagrules.stores.async_sql",
    "HEAD_REVISION": "tagrules.stores._database",
    "current_revision": "tagrules.stores._database",
    "upgrade": "tagrules.stores._database",
    "DEFAULT_PREFIX": "tagrules.stores._tables",
    "StoreTables": "tagrules.stores._tables",
    "store_tables": "tagrules.stores._tables",
    "SQLStore": "tagrules.stores.sql",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "DEFAULT_CONSUMER",
    "DEFAULT_PREFIX",
    "HEAD_REVISION",
    "NEW_CUSTOMER",
    "AsyncSQLStore",
    "CatalogVersion",
    "ChangeEvent",
    "CustomerChange",
    "CustomerState",
    "Due",
    "Every",
    "FeedConsumer",
    "HistoryEntry",
    "Membership",
    "MemoryStore",
    "Override",
    "RunRecord",
    "SQLStore",
    "Source",
    "StoreTables",
    "TagCounts",
    "TagSeries",
    "TagStatistics",
    "TagStore",
    "TierFlow",
    "current_revision",
    "store_tables",
    "upgrade",
]
