"""Membership: the resumable join dialogue, room membership seen by the bot, power grants."""

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    op.create_table(
        "join_dialogues",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("cop_code", sa.String(length=12), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("asked", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cop_code"], ["cops.code"], name=op.f("fk_join_dialogues_cop_code_cops")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_join_dialogues")),
    )
    op.create_table(
        "room_members",
        sa.Column("room_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("membership", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_room_members")),
    )
    op.create_table(
        "power_grants",
        sa.Column("room_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_power_grants")),
    )


def downgrade() -> None:
    op.drop_table("power_grants")
    op.drop_table("room_members")
    op.drop_table("join_dialogues")
