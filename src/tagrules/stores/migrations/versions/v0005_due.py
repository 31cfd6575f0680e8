"""When tags lapse by time alone, and published catalog versions.

Revision ID: 0005
Revises: 0004

* customers: ``due_at``, when the customer's tags change by time alone as its last evaluation found
  (``NULL``: never, or not known), indexed for ``due``; ``lapses``, the instant each computed
  membership lapses (``tag instant`` pairs; ``NULL`` while not known).
* memberships: ``lapses_at``, when the membership lapses by time alone (``NULL``: never, or not
  known), indexed with the tag for ``expiring``.

* versions, version_tags: each published catalog version (who, when, why) and its definitions.
* history: ``catalog_version`` and ``closed_version``, the versions of the runs that opened and
  closed each period.

Existing rows get ``NULL``: not known (lapses: until the customer is evaluated again).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tagrules.stores._tables import ID_LENGTH, TAG_LENGTH, ExactText, UTCDateTime

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def _exact(length: int) -> sa.types.TypeEngine[str]:
    """Text compared exactly, as every key column of the store (revision 0002)."""
    return sa.String(length).with_variant(ExactText(length), "mysql", "mariadb")


def upgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    with op.batch_alter_table(f"{prefix}customers") as customers:
        customers.add_column(sa.Column("due_at", UTCDateTime()))
        customers.add_column(sa.Column("lapses", sa.Text))
    op.create_index(f"{prefix}customers_due", f"{prefix}customers", ["due_at"])
    with op.batch_alter_table(f"{prefix}memberships") as memberships:
        memberships.add_column(sa.Column("lapses_at", UTCDateTime()))
    op.create_index(f"{prefix}memberships_lapses", f"{prefix}memberships", ["tag", "lapses_at"])
    with op.batch_alter_table(f"{prefix}history") as history:
        history.add_column(sa.Column("catalog_version", _exact(32)))
        history.add_column(sa.Column("closed_version", _exact(32)))
    op.create_table(
        f"{prefix}versions",
        sa.Column("version", _exact(32), primary_key=True),
        sa.Column("name", _exact(TAG_LENGTH)),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.Column("published_by", _exact(ID_LENGTH), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_table(
        f"{prefix}version_tags",
        sa.Column("version", _exact(32), primary_key=True),
        sa.Column("tag", _exact(TAG_LENGTH), primary_key=True),
        sa.Column("definition", sa.Text, nullable=False),
    )


def downgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    op.drop_table(f"{prefix}version_tags")
    op.drop_table(f"{prefix}versions")
    with op.batch_alter_table(f"{prefix}history") as history:
        history.drop_column("closed_version")
        history.drop_column("catalog_version")
    op.drop_index(f"{prefix}memberships_lapses", f"{prefix}memberships")
    with op.batch_alter_table(f"{prefix}memberships") as memberships:
        memberships.drop_column("lapses_at")
    op.drop_index(f"{prefix}customers_due", f"{prefix}customers")
    with op.batch_alter_table(f"{prefix}customers") as customers:
        customers.drop_column("lapses")
        customers.drop_column("due_at")
