"""Privacy: erased people (pseudonyms only), the daily retention run, and when the text of
an inbound event or the payload of an outbox row was erased.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0007g"
down_revision: str | None = "0006"


def upgrade() -> None:
    op.create_table(
        "erased_people",
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("pseudonym", name=op.f("pk_erased_people")),
    )
    op.create_table(
        "retention_runs",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_retention_runs")),
    )
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scrubbed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_inbound_events_unscrubbed", ["scrubbed_at", "handled_at"], unique=False
        )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scrubbed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_outbox_unscrubbed", ["scrubbed_at", "sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_unscrubbed")
        batch_op.drop_column("scrubbed_at")
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_events_unscrubbed")
        batch_op.drop_column("scrubbed_at")
    op.drop_table("retention_runs")
    op.drop_table("erased_people")
