"""Travel claims: the Commission's monthly exchange rates (InforEuro), the month of the rate
each line was converted at, and one open claim per person and event enforced by the
database (a partial unique index).
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0008m"
down_revision: str | None = "0007g"

OPEN_WHERE = "status IN ('draft', 'submitted', 'approved', 'paid')"


def upgrade() -> None:
    op.create_table(
        "exchange_rates",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("rate", sa.String(length=32), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("month", "currency", name=op.f("pk_exchange_rates")),
    )
    with op.batch_alter_table("claim_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_month", sa.String(length=7), nullable=True))
    # Two claims made at the same moment before this index existed: the later drafts give
    # way to the first open claim (a draft is no financial record yet).
    op.execute(
        "UPDATE claims SET status = 'withdrawn', withdrawn_at = updated_at "
        "WHERE status = 'draft' AND EXISTS (SELECT 1 FROM claims AS first "
        "WHERE first.user_id = claims.user_id AND first.event_id = claims.event_id "
        "AND first.id < claims.id "
        "AND first.status IN ('draft', 'submitted', 'approved', 'paid'))"
    )
    op.create_index(
        "uq_claims_open",
        "claims",
        ["user_id", "event_id"],
        unique=True,
        sqlite_where=sa.text(OPEN_WHERE),
        postgresql_where=sa.text(OPEN_WHERE),
    )


def downgrade() -> None:
    op.drop_index("uq_claims_open", table_name="claims")
    with op.batch_alter_table("claim_lines", schema=None) as batch_op:
        batch_op.drop_column("rate_month")
    op.drop_table("exchange_rates")
