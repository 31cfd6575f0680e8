"""Exact keys and event ids never reused.

Revision ID: 0002
Revises: 0001

* MariaDB/MySQL: every text column of the store but the free-text override reason compares exactly
  (``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin`` on MySQL 8.0.17+): the server's default
  collations ignore case and trailing spaces, so ``'Big'``, ``'big'`` and ``'big '`` were one key.
  Rows are kept as they are.
* SQLite: the outbox is rebuilt with ``AUTOINCREMENT``, so the id of an acknowledged (deleted) event
  is never given to a new one. PostgreSQL sequences and MariaDB/MySQL ``AUTO_INCREMENT`` counters
  never go back already.
"""

from __future__ import annotations

from alembic import context, op

from tagrules.stores._tables import ID_LENGTH, TAG_LENGTH, exact_collation

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

# table -> (column, length, nullable), as revision 0001 created them
_TEXT_COLUMNS = {
    "customers": [("customer_id", ID_LENGTH, False)],
    "memberships": [
        ("customer_id", ID_LENGTH, False),
        ("tag", TAG_LENGTH, False),
        ("source", 16, False),
        ("rule_version", 32, True),
    ],
    "history": [
        ("customer_id", ID_LENGTH, False),
        ("tag", TAG_LENGTH, False),
        ("source", 16, False),
        ("rule_version", 32, True),
        ("reason", 32, True),
    ],
    "overrides": [
        ("customer_id", ID_LENGTH, False),
        ("tag", TAG_LENGTH, False),
        ("kind", 16, False),
        ("by", ID_LENGTH, False),
    ],
    "outbox": [
        ("customer_id", ID_LENGTH, False),
        ("tag", TAG_LENGTH, False),
        ("change", 16, False),
        ("reason", 32, False),
    ],
}


def _collate(prefix: str, collation: str) -> None:
    for table, columns in _TEXT_COLUMNS.items():
        changes = ", ".join(
            f"MODIFY `{name}` VARCHAR({length}) CHARACTER SET utf8mb4 COLLATE {collation}"
            + ("" if nullable else " NOT NULL")
            for name, length, nullable in columns
        )
        op.execute(f"ALTER TABLE {prefix}{table} {changes}")


def _outbox_autoincrement(prefix: str, autoincrement: bool) -> None:
    with op.batch_alter_table(
        f"{prefix}outbox", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    dialect = op.get_bind().dialect
    if dialect.name in ("mysql", "mariadb"):
        _collate(prefix, exact_collation(dialect))
    elif dialect.name == "sqlite":
        _outbox_autoincrement(prefix, True)


def downgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    dialect = op.get_bind().dialect
    if dialect.name in ("mysql", "mariadb"):
        _collate(prefix, "utf8mb4_general_ci")
    elif dialect.name == "sqlite":
        _outbox_autoincrement(prefix, False)
