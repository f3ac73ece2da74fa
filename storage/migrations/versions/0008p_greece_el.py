"""Greece is stored as EL, as the Commission writes it (profiles saved before kept ISO's GR)."""

from alembic import op

revision: str = "0008p"
down_revision: str | None = "0007g"


def upgrade() -> None:
    op.execute("UPDATE people SET country = 'EL' WHERE country = 'GR'")


def downgrade() -> None:
    op.execute("UPDATE people SET country = 'GR' WHERE country = 'EL'")
