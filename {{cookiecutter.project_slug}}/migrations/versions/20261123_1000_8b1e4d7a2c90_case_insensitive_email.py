"""email unique whatever its case, enforced by the database

Revision ID: 8b1e4d7a2c90
Revises: 5f3a9c2e7d41
Create Date: 2026-11-23 10:00:00

The first revision made `email` unique as stored; this one makes `lower(email)` unique, so
"Ada@example.com" and "ada@example.com" cannot both exist whichever code path writes them.
Every email is folded to lower case.

Accounts whose emails differ only by case cannot all keep their address. One keeps it: the
active one, then the admin, then the oldest (created_at, then id). Every other one is kept
with its data but deactivated, its tokens invalidated (token_version + 1), and its email
replaced by "duplicate-<id as 32 hex digits>-<the email in lower case>" (cut at 254 characters),
so nobody can sign in to it and an admin can find it and merge or delete it. No row is
deleted: tests/test_migrations.py seeds such duplicates at the revision before and reads them
back after upgrading.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "8b1e4d7a2c90"
down_revision: str | None = "5f3a9c2e7d41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


EMAIL_MAX_LENGTH = 254

users = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("email", sa.String()),
    sa.column("role", sa.String()),
    sa.column("is_active", sa.Boolean()),
    sa.column("token_version", sa.Integer()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _set_duplicates_aside(connection: sa.Connection) -> None:
    """All but one of each set of emails equal but for case: deactivated and renamed."""
    shared = (
        sa.select(sa.func.lower(users.c.email))
        .group_by(sa.func.lower(users.c.email))
        .having(sa.func.count() > 1)
    )
    rows = connection.execute(
        sa.select(users.c.id, users.c.email)
        .where(sa.func.lower(users.c.email).in_(shared))
        .order_by(
            sa.func.lower(users.c.email),
            users.c.is_active.desc(),
            (users.c.role == "admin").desc(),
            users.c.created_at,
            users.c.id,
        )
    ).all()
    kept: set[str] = set()
    for user_id, email in rows:
        if email.lower() not in kept:
            kept.add(email.lower())  # the first in that order keeps the address
            continue
        connection.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(
                email=f"duplicate-{user_id.hex}-{email.lower()}"[:EMAIL_MAX_LENGTH],
                is_active=False,
                token_version=users.c.token_version + 1,
            )
        )


def upgrade() -> None:
    # Rows stored before in another case would collide in the new index: set the duplicates
    # aside (see above), then fold the rest. Offline (`--sql`) there are no rows to read: the
    # script it writes assumes no such duplicates.
    if not context.is_offline_mode():
        _set_duplicates_aside(op.get_bind())
    op.execute(sa.text("UPDATE users SET email = lower(email) WHERE email <> lower(email)"))
    op.drop_index(op.f("ix_users_email"), table_name="users")
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_email_lower", table_name="users")
    op.create_index(op.f("ix_users_email"), "users", ["email"], unique=True)
