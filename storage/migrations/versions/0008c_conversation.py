"""Conversation: which message an edit replaces, and finding a person's recent events.

``inbound_events.replaces`` is the event id an ``m.replace`` edit changes, so the bot can
tell whether an earlier version of that message was already acted on. The index on
``(sender, handled_at)`` finds when a person last got the "send help" pointer.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0008c"
down_revision: str | None = "0007g"


def upgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replaces", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_inbound_events_replaces", ["replaces"], unique=False)
        batch_op.create_index("ix_inbound_events_sender", ["sender", "handled_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_events_sender")
        batch_op.drop_index("ix_inbound_events_replaces")
        batch_op.drop_column("replaces")
