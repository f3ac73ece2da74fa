"""Events: events, RSVPs, guests, attendance, reminders, calendar tokens."""

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("cop_code", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("queue_counter", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["cop_code"], ["cops.code"], name=op.f("fk_events_cop_code_cops")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_cop_start", ["cop_code", "starts_at"], unique=False)
        batch_op.create_index("ix_events_cop_end", ["cop_code", "ends_at"], unique=False)

    op.create_table(
        "event_rsvps",
        sa.Column("id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("answer", sa.String(length=16), nullable=False),
        sa.Column("queue_no", sa.Integer(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reaction_event_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_event_rsvps_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_rsvps")),
        sa.UniqueConstraint("event_id", "user_id", name=op.f("uq_event_rsvps_event_id")),
    )
    with op.batch_alter_table("event_rsvps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_rsvps_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_rsvps_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_event_rsvps_reaction_event_id"), ["reaction_event_id"], unique=False
        )

    op.create_table(
        "event_guests",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("invited_by", sa.String(length=255), nullable=False),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_event_guests_event_id_events")
        ),
        sa.PrimaryKeyConstraint("event_id", "user_id", name=op.f("pk_event_guests")),
    )
    with op.batch_alter_table("event_guests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_guests_user_id"), ["user_id"], unique=False)

    op.create_table(
        "event_attendance",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("marked_by", sa.String(length=255), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_event_attendance_event_id_events")
        ),
        sa.PrimaryKeyConstraint("event_id", "user_id", name=op.f("pk_event_attendance")),
    )
    with op.batch_alter_table("event_attendance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_attendance_user_id"), ["user_id"], unique=False)

    op.create_table(
        "event_reminders",
        sa.Column("id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("offset_minutes", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_event_reminders_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_reminders")),
        sa.UniqueConstraint("event_id", "offset_minutes", name=op.f("uq_event_reminders_event_id")),
    )
    with op.batch_alter_table("event_reminders", schema=None) as batch_op:
        batch_op.create_index("ix_event_reminders_due", ["status", "due_at"], unique=False)

    op.create_table(
        "calendar_tokens",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_calendar_tokens")),
        sa.UniqueConstraint("token", name=op.f("uq_calendar_tokens_token")),
    )


def downgrade() -> None:
    op.drop_table("calendar_tokens")
    with op.batch_alter_table("event_reminders", schema=None) as batch_op:
        batch_op.drop_index("ix_event_reminders_due")
    op.drop_table("event_reminders")
    with op.batch_alter_table("event_attendance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_attendance_user_id"))
    op.drop_table("event_attendance")
    with op.batch_alter_table("event_guests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_guests_user_id"))
    op.drop_table("event_guests")
    with op.batch_alter_table("event_rsvps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_rsvps_reaction_event_id"))
        batch_op.drop_index(batch_op.f("ix_event_rsvps_user_id"))
        batch_op.drop_index(batch_op.f("ix_event_rsvps_event_id"))
    op.drop_table("event_rsvps")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_cop_end")
        batch_op.drop_index("ix_events_cop_start")
    op.drop_table("events")
