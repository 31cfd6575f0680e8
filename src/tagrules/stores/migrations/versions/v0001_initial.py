"""The initial schema: customers, memberships, history, overrides, outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tagrules.stores._tables import ID_LENGTH, TAG_LENGTH, UTCDateTime

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    op.create_table(
        f"{prefix}customers",
        sa.Column("customer_id", sa.String(ID_LENGTH), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        f"{prefix}memberships",
        sa.Column("customer_id", sa.String(ID_LENGTH), primary_key=True),
        sa.Column("tag", sa.String(TAG_LENGTH), primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("rule_version", sa.String(32)),
    )
    op.create_index(f"{prefix}memberships_tag", f"{prefix}memberships", ["tag", "customer_id"])
    op.create_table(
        f"{prefix}history",
        sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("tag", sa.String(TAG_LENGTH), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime()),
        sa.Column("rule_version", sa.String(32)),
        sa.Column("reason", sa.String(32)),
    )
    op.create_index(f"{prefix}history_customer", f"{prefix}history", ["customer_id", "tag"])
    op.create_index(f"{prefix}history_tag", f"{prefix}history", ["tag", "since"])
    op.create_table(
        f"{prefix}overrides",
        sa.Column("customer_id", sa.String(ID_LENGTH), primary_key=True),
        sa.Column("tag", sa.String(TAG_LENGTH), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("by", sa.String(ID_LENGTH), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        f"{prefix}outbox",
        sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("tag", sa.String(TAG_LENGTH), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
    )
    op.create_index(f"{prefix}outbox_customer", f"{prefix}outbox", ["customer_id"])


def downgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    for name in ("outbox", "overrides", "history", "memberships", "customers"):
        op.drop_table(f"{prefix}{name}")
