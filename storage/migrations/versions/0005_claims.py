"""Claims: travel-expense claims and their lines."""

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("cop_code", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("claimed", sa.BigInteger(), nullable=False),
        sa.Column("allowed", sa.BigInteger(), nullable=False),
        sa.Column("approved", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_by", sa.String(length=255), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["cop_code"], ["cops.code"], name=op.f("fk_claims_cop_code_cops")),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_claims_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claims")),
    )
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_claims_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_claims_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_claims_cop_code"), ["cop_code"], unique=False)

    op.create_table(
        "claim_lines",
        sa.Column("id", ID, nullable=False),
        sa.Column("claim_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("rate", sa.String(length=32), nullable=False),
        sa.Column("eur", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.String(length=32), nullable=True),
        sa.Column("distance_km", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cap", sa.BigInteger(), nullable=True),
        sa.Column("allowed", sa.BigInteger(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("approved", sa.BigInteger(), nullable=True),
        sa.Column("receipt_url", sa.Text(), nullable=True),
        sa.Column("receipt_name", sa.String(length=255), nullable=False),
        sa.Column("receipt_mimetype", sa.String(length=100), nullable=False),
        sa.Column("receipt_size", sa.BigInteger(), nullable=True),
        sa.Column("receipt_event_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["claim_id"], ["claims.id"], name=op.f("fk_claim_lines_claim_id_claims")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_lines")),
    )
    with op.batch_alter_table("claim_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_claim_lines_claim_id"), ["claim_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("claim_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claim_lines_claim_id"))
    op.drop_table("claim_lines")
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claims_cop_code"))
        batch_op.drop_index(batch_op.f("ix_claims_event_id"))
        batch_op.drop_index(batch_op.f("ix_claims_user_id"))
    op.drop_table("claims")
