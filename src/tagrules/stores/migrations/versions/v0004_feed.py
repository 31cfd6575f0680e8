"""The change feed: event positions, consumers with their own cursors, runs without events.

Revision ID: 0004
Revises: 0003

* ``outbox.position``: an event's place in the feed (indexed with the id), given when it is first
  read (see ``tagrules.stores._feed``). Events already in the outbox keep their id as position.
* ``consumers``: each consumer's last acknowledged position. When the outbox holds events, the
  ``default`` consumer (the one of ``pending_events``/``acknowledge``) is registered at 0, so that
  every event pending before the upgrade is still delivered, and kept until it acknowledges.
* ``feed``: one row holding the last position given.
* ``runs.emit_events``: false for a run that wrote no change events (``emit_events=False``).
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from alembic import context, op

from tagrules.stores._tables import CONSUMER_LENGTH, ExactText, UTCDateTime

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _exact(length: int) -> sa.types.TypeEngine[str]:
    """Text compared exactly, as every key column of the store (revision 0002)."""
    return sa.String(length).with_variant(ExactText(length), "mysql", "mariadb")


def upgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    op.add_column(f"{prefix}outbox", sa.Column("position", _BIGINT))
    op.create_index(f"{prefix}outbox_position", f"{prefix}outbox", ["position", "id"])
    op.add_column(
        f"{prefix}runs",
        sa.Column("emit_events", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    consumers = op.create_table(
        f"{prefix}consumers",
        sa.Column("name", _exact(CONSUMER_LENGTH), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("registered_at", UTCDateTime(), nullable=False),
    )
    feed = op.create_table(
        f"{prefix}feed",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("head", sa.BigInteger, nullable=False),
    )
    assert consumers is not None
    assert feed is not None
    outbox = sa.table(f"{prefix}outbox", sa.column("id"), sa.column("position"))
    bind = op.get_bind()
    bind.execute(sa.update(outbox).values(position=outbox.c.id))
    head = bind.execute(sa.select(sa.func.max(outbox.c.id))).scalar()
    bind.execute(sa.insert(feed).values(id=1, head=head or 0))
    if head is not None:
        now = datetime.datetime.now(datetime.timezone.utc)
        bind.execute(sa.insert(consumers).values(name="default", position=0, registered_at=now))


def downgrade() -> None:
    prefix: str = context.config.attributes["table_prefix"]
    bind = op.get_bind()
    outbox = sa.table(f"{prefix}outbox", sa.column("position"))
    consumers = sa.table(f"{prefix}consumers", sa.column("name"), sa.column("position"))
    # the outbox of revision 0003 has one consumer: what the default one acknowledged is gone
    acknowledged = bind.execute(sa.select(consumers.c.position).where(consumers.c.name == "default")).scalar()
    if acknowledged:
        bind.execute(sa.delete(outbox).where(outbox.c.position <= acknowledged))
    op.drop_table(f"{prefix}feed")
    op.drop_table(f"{prefix}consumers")
    op.drop_index(f"{prefix}outbox_position", table_name=f"{prefix}outbox")
    with op.batch_alter_table(f"{prefix}outbox") as batch:
        batch.drop_column("position")
    with op.batch_alter_table(f"{prefix}runs") as batch:
        batch.drop_column("emit_events")
