"""Run records: one row per run, one per run and tag.

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tagrules.stores._tables import RUN_COUNTS, RUN_ID_LENGTH, TAG_LENGTH, UTCDateTime

revision = "0003"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    op.create_table(
        f"{prefix}runs",
        sa.Column("id", sa.String(RUN_ID_LENGTH), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("evaluated_at", UTCDateTime(), nullable=False),
        sa.Column("catalog_version", sa.String(32), nullable=False),
        sa.Column("customers", sa.BigInteger, nullable=False),
    )
    op.create_index(f"{prefix}runs_evaluated", f"{prefix}runs", ["evaluated_at"])
    op.create_table(
        f"{prefix}run_tags",
        sa.Column("run_id", sa.String(RUN_ID_LENGTH), primary_key=True),
        sa.Column("tag", sa.String(TAG_LENGTH), primary_key=True),
        sa.Column("tag_group", sa.String(TAG_LENGTH)),
        sa.Column("tier_rank", sa.Integer),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in RUN_COUNTS),
    )


def downgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    op.drop_table(f"{prefix}run_tags")
    op.drop_table(f"{prefix}runs")
