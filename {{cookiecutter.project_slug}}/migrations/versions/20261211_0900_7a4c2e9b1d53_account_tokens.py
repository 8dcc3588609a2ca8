"""account tokens (password reset, email verification) and users.email_verified_at

Revision ID: 7a4c2e9b1d53
Revises: 036f6783c308
Create Date: 2026-12-11 09:00:00

Every account that exists when this runs counts as unverified (email_verified_at NULL). With
REQUIRE_VERIFIED_EMAIL=false (the default) that changes nothing; before turning it on, mark
the addresses you know to be good, or those accounts must verify before their next login.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7a4c2e9b1d53"
down_revision: str | None = "036f6783c308"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "account_tokens",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum(
                "password_reset",
                "email_verification",
                name="accounttokenpurpose",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_account_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_tokens_token_hash")),
    )
    op.create_index(op.f("ix_account_tokens_user_id"), "account_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_account_tokens_user_id"), table_name="account_tokens")
    op.drop_table("account_tokens")
    # A plain DROP COLUMN (SQLite has it since 3.35): a batch copy of the table would lose
    # its expression index on lower(email).
    op.drop_column("users", "email_verified_at")
