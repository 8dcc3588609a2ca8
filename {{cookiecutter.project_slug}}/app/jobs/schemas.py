import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query

from app.core.schemas import PageParams, ReadSchema
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


class JobsParams(PageParams):
    """A page of the queue; `?status=dead` for the dead jobs only, none for every queued job.
    One model for all the query parameters: the older FastAPI releases that pyproject.toml
    allows read a query model only as a route's sole query parameter."""

    status: JobStatus | None = None


JobsQuery = Annotated[JobsParams, Query()]
