"""The queue: one row per job, in the app's own database.

A job is written by the transaction that asks for it, so it exists exactly when that
transaction commits (a rollback discards it), and it stays until a runner has run it.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, Timestamps, UUIDPrimaryKey, utcnow

JOB_NAME_MAX_LENGTH = 100
RUNNER_ID_MAX_LENGTH = 100
REQUEST_ID_MAX_LENGTH = 128
# The last error is kept this long at most: its type and message, never a traceback.
LAST_ERROR_MAX_LENGTH = 2000


class JobStatus(StrEnum):
    PENDING = "pending"  # waiting for `run_at`; a failed job waits here for its next try
    RUNNING = "running"  # claimed by a runner until `locked_until` (its lease)
    DEAD = "dead"  # failed JOBS_MAX_ATTEMPTS times; kept, with its last error, for an admin


class Job(UUIDPrimaryKey, Timestamps, Base):
    """A job to run. A job that succeeds is deleted; one that keeps failing stays, `dead`."""

    __tablename__ = "jobs"

    # The registered name of the job function (app/jobs/registry.py) and its arguments, as
    # JSON validated against the function's signature when enqueued and again when run.
    name: Mapped[str] = mapped_column(String(JOB_NAME_MAX_LENGTH))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[JobStatus] = mapped_column(
        Enum(
            JobStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
        ),
        default=JobStatus.PENDING,
    )
    # Times a runner has started the job (a claim counts, whether or not the run finished).
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    # Not to be started before this (now, or after a failure the end of its backoff).
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The lease of the runner that claimed it: once past, another runner may claim it again.
    locked_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(RUNNER_ID_MAX_LENGTH))
    last_error: Mapped[str | None] = mapped_column(Text)
    # The request that enqueued it: the job's log lines carry the same request id.
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_MAX_LENGTH))

    # What runners look for: pending jobs by due time (and running ones whose lease passed).
    __table_args__ = (Index("ix_jobs_status_run_at", "status", "run_at"),)
