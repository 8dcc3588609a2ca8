import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query

from app.core.schemas import ReadSchema
from app.jobs.models import JobStatus


class JobRead(ReadSchema):
    """A job still queued (pending or running) or kept as dead; a job that succeeded is gone."""

    id: uuid.UUID
    name: str
    arguments: dict[str, Any]
    status: JobStatus
    attempts: int
    run_at: datetime
    last_error: str | None
    request_id: str | None
    created_at: datetime
    updated_at: datetime


# `?status=dead` lists the dead jobs only; without it, every queued job.
StatusQuery = Annotated[JobStatus | None, Query()]
