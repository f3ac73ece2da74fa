"""Finding a handled edit of a message: an index on ``(replaces, status)``.

Every command's claim asks whether an edit of its message was handled already
(``replaces = ? AND status = 'done'``). With an index on ``replaces`` alone, SQLite without
statistics may pick the ``(status, id)`` index instead and read every handled event: a cost
per command that grows with the history (1.3 ms at 8,000 events). The two-column index
serves both conditions, and every lookup by ``replaces`` alone as before.
"""

from alembic import op

revision: str = "0009i"
down_revision: str | None = "0008c"


def upgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_events_replaces")
        batch_op.create_index(
            "ix_inbound_events_replaces_status", ["replaces", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_events_replaces_status")
        batch_op.create_index("ix_inbound_events_replaces", ["replaces"], unique=False)
