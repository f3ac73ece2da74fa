"""The waiting list's order from the answers alone: ``events.queue_counter`` dropped.

A yes (or a wait) took its place in the queue from a counter on the event, one more
statement for every such answer. It now takes one more than the highest ``queue_no`` of the
event's answers, read with the person's answer and the counts (under the event's lock), which
orders it after every answer there as the counter did. Nothing else read the counter.

``ALTER TABLE … DROP COLUMN`` (SQLite 3.35 and newer) rather than a batch copy of the table:
the answers, guests and claims refer to the events, and with foreign keys on, dropping the
old table of a batch copy would fail on them.
"""

from alembic import op

revision: str = "0010q"
down_revision: str | None = "0003"


def upgrade() -> None:
    op.execute("ALTER TABLE events DROP COLUMN queue_counter")


def downgrade() -> None:
    op.execute("ALTER TABLE events ADD COLUMN queue_counter INTEGER NOT NULL DEFAULT 0")
    op.execute(
        "UPDATE events SET queue_counter = COALESCE("
        "(SELECT MAX(queue_no) FROM event_rsvps WHERE event_rsvps.event_id = events.id), 0)"
    )
