"""an index for the newest-first item list

Revision ID: 3c8d5e1f9a27
Revises: f0363c7818c0
Create Date: 2026-12-02 09:00:00

`GET /items` reads a user's items newest first (`ORDER BY created_at DESC, id DESC`). An index
on (owner_id, created_at, id), read backwards, yields a page in that order without sorting the
user's items; it also serves every lookup by owner, so the single-column index goes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3c8d5e1f9a27"
down_revision: str | None = "f0363c7818c0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_items_owner_id_created_at_id", "items", ["owner_id", "created_at", "id"])
    op.drop_index("ix_items_owner_id", table_name="items")


def downgrade() -> None:
    op.create_index("ix_items_owner_id", "items", ["owner_id"])
    op.drop_index("ix_items_owner_id_created_at_id", table_name="items")
