"""Greece is stored as EL, as the Commission writes it (profiles saved before kept ISO's GR).

Revision ID: 0008p
Revises: 0007g
Create Date: 2026-12-01 23:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008p"
down_revision: str | None = "0007g"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE people SET country = 'EL' WHERE country = 'GR'")


def downgrade() -> None:
    op.execute("UPDATE people SET country = 'GR' WHERE country = 'EL'")
