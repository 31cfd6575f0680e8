"""The Alembic migrations of the SQL tag store (run by :func:`tagrules.stores.upgrade`)."""
