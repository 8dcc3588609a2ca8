"""an index for the newest-first item list

Revision ID: 3c8d5e1f9a27
Revises: f0363c7818c0
Create Date: 2026-12-02 09:00:00

`GET /items` reads a user's items newest first (`ORDER BY created_at DESC, id DESC`). An index
on (owner_id, created_at, id), read backwards, yields a page in that order without sorting the
user's items; it also serves every lookup by owner, so the single-column index goes.
(This project has no items: the revision keeps the history the same as in projects that do.)
"""

from collections.abc import Sequence

revision: str = "3c8d5e1f9a27"
down_revision: str | None = "f0363c7818c0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
