"""email unique whatever its case, enforced by the database

Revision ID: 8b1e4d7a2c90
Revises: 5f3a9c2e7d41
Create Date: 2026-11-23 10:00:00

The first revision made `email` unique as stored; this one makes `lower(email)` unique, so
"Ada@example.com" and "ada@example.com" cannot both exist whichever code path writes them.
Existing rows are kept: tests/test_migrations.py seeds rows at the revision before and reads
them back after upgrading.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8b1e4d7a2c90"
down_revision: str | None = "5f3a9c2e7d41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows stored before in another case would collide in the new index: fold them first.
    op.execute(sa.text("UPDATE users SET email = lower(email) WHERE email <> lower(email)"))
    op.drop_index(op.f("ix_users_email"), table_name="users")
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_email_lower", table_name="users")
    op.create_index(op.f("ix_users_email"), "users", ["email"], unique=True)
