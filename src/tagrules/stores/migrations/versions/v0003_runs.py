"""Run records: one row per run, one per run and tag.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tagrules.stores._tables import RUN_COUNTS, RUN_ID_LENGTH, TAG_LENGTH, ExactText, UTCDateTime

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def _exact(length: int) -> sa.types.TypeEngine[str]:
    """Text compared exactly, as every key column of the store (revision 0002)."""
    return sa.String(length).with_variant(ExactText(length), "mysql", "mariadb")


def upgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    op.create_table(
        f"{prefix}runs",
        sa.Column("id", _exact(RUN_ID_LENGTH), primary_key=True),
        sa.Column("kind", _exact(8), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("evaluated_at", UTCDateTime(), nullable=False),
        sa.Column("catalog_version", _exact(32), nullable=False),
        sa.Column("customers", sa.BigInteger, nullable=False),
    )
    op.create_index(f"{prefix}runs_evaluated", f"{prefix}runs", ["evaluated_at"])
    op.create_table(
        f"{prefix}run_tags",
        sa.Column("run_id", _exact(RUN_ID_LENGTH), primary_key=True),
        sa.Column("tag", _exact(TAG_LENGTH), primary_key=True),
        sa.Column("tag_group", _exact(TAG_LENGTH)),
        sa.Column("tier_rank", sa.Integer),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in RUN_COUNTS),
    )


def downgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    op.drop_table(f"{prefix}run_tags")
    op.drop_table(f"{prefix}runs")
