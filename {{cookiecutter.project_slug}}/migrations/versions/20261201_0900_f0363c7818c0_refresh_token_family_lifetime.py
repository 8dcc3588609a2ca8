"""refresh token families carry the time of their login

Revision ID: f0363c7818c0
Revises: 8b1e4d7a2c90
Create Date: 2026-12-01 09:00:00

`family_issued_at` is when the login that started a family happened; rotation never extends a
login past REFRESH_TOKEN_FAMILY_MAX_DAYS from then. Existing rows get the earliest `issued_at`
of their family, which is that login's time (every row is kept).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f0363c7818c0"
down_revision: str | None = "8b1e4d7a2c90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch_op:
        batch_op.add_column(sa.Column("family_issued_at", sa.DateTime(timezone=True)))
    tokens = sa.table(
        "refresh_tokens",
        sa.column("family_id", sa.Uuid()),
        sa.column("issued_at", sa.DateTime(timezone=True)),
        sa.column("family_issued_at", sa.DateTime(timezone=True)),
    )
    first = tokens.alias("first")
    op.execute(
        tokens.update().values(
            family_issued_at=sa.select(sa.func.min(first.c.issued_at))
            .where(first.c.family_id == tokens.c.family_id)
            .scalar_subquery()
        )
    )
    with op.batch_alter_table("refresh_tokens") as batch_op:
        batch_op.alter_column(
            "family_issued_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch_op:
        batch_op.drop_column("family_issued_at")
