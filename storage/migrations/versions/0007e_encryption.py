"""End-to-end encryption: the crypto store, parked undecryptable events, the leader lease,
and the ``file`` objects (key, iv, hashes) of encrypted receipts and intel files.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007e"
down_revision: str | Sequence[str] | None = ("0004", "0005", "0006")


def upgrade() -> None:
    op.create_table(
        "crypto_state",
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "kind", "key", name=op.f("pk_crypto_state")),
    )
    op.create_table(
        "undecryptable_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("room_id", sa.String(length=255), nullable=False),
        sa.Column("sender", sa.String(length=255), nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_requested", sa.Boolean(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_undecryptable_events")),
    )
    op.create_index(
        op.f("ix_undecryptable_events_sender"), "undecryptable_events", ["sender"], unique=False
    )
    op.create_index(
        op.f("ix_undecryptable_events_session_id"),
        "undecryptable_events",
        ["session_id"],
        unique=False,
    )
    op.create_table(
        "undecryptable_notices",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_undecryptable_notices")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    with op.batch_alter_table("claim_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("receipt_file", sa.JSON(), nullable=True))
    with op.batch_alter_table("intel_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("file_object", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intel_items", schema=None) as batch_op:
        batch_op.drop_column("file_object")
    with op.batch_alter_table("claim_lines", schema=None) as batch_op:
        batch_op.drop_column("receipt_file")
    op.drop_table("leases")
    op.drop_table("undecryptable_notices")
    op.drop_index(op.f("ix_undecryptable_events_session_id"), table_name="undecryptable_events")
    op.drop_index(op.f("ix_undecryptable_events_sender"), table_name="undecryptable_events")
    op.drop_table("undecryptable_events")
    op.drop_table("crypto_state")
