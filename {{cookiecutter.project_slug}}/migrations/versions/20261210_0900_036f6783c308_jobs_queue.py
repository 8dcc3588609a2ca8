"""the jobs table: the background job queue

Revision ID: 036f6783c308
Revises: 3c8d5e1f9a27
Create Date: 2026-12-10 09:00:00

One row per job still to run (or dead, kept for an admin), written by the transaction that
enqueues it (app/jobs/). Portable types only, so the one revision serves SQLite and
PostgreSQL alike: the status is a string, the arguments JSON (TEXT on SQLite). The index on
(status, run_at) is what every runner's look at the queue reads.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "036f6783c308"
down_revision: str | None = "3c8d5e1f9a27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "running", "dead", name="jobstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_status_run_at", "jobs", ["status", "run_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_run_at", table_name="jobs")
    op.drop_table("jobs")
