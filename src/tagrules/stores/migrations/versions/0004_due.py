"""When tags lapse by time alone.

Revision ID: 0004
Revises: 0003

* customers: ``due_at``, when the customer's tags change by time alone as its last evaluation found
  (``NULL``: never, or not known), indexed for ``due``; ``lapses``, the instant each computed
  membership lapses (JSON; ``NULL`` while not known).
* memberships: ``lapses_at``, when the membership lapses by time alone (``NULL``: never, or not
  known), indexed with the tag for ``expiring``.

Existing rows get ``NULL``: not known until the customer is evaluated again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tagrules.stores._tables import UTCDateTime

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    with op.batch_alter_table(f"{prefix}customers") as customers:
        customers.add_column(sa.Column("due_at", UTCDateTime()))
        customers.add_column(sa.Column("lapses", sa.Text))
    op.create_index(f"{prefix}customers_due", f"{prefix}customers", ["due_at"])
    with op.batch_alter_table(f"{prefix}memberships") as memberships:
        memberships.add_column(sa.Column("lapses_at", UTCDateTime()))
    op.create_index(f"{prefix}memberships_lapses", f"{prefix}memberships", ["tag", "lapses_at"])


def downgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    op.drop_index(f"{prefix}memberships_lapses", f"{prefix}memberships")
    with op.batch_alter_table(f"{prefix}memberships") as memberships:
        memberships.drop_column("lapses_at")
    op.drop_index(f"{prefix}customers_due", f"{prefix}customers")
    with op.batch_alter_table(f"{prefix}customers") as customers:
        customers.drop_column("lapses")
        customers.drop_column("due_at")
