"""Admin routes over the job queue: what is queued, what died and why, and a retry. The
`jobs` command (app/cli.py) does the same from a shell."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from app.auth.dependencies import get_admin
from app.core.errors import problem_responses
from app.core.schemas import Page
from app.db.session import SessionDep
from app.jobs import service
from app.jobs.schemas import JobRead, JobsQuery

admin_router = APIRouter(dependencies=[Depends(get_admin)], responses=problem_responses(403))

JobId = Annotated[uuid.UUID, Path()]


@admin_router.get("", response_model=Page[JobRead], responses=problem_responses(422))
async def list_jobs(session: SessionDep, query: JobsQuery) -> Page[JobRead]:
    """The queued jobs, oldest first; `?status=dead` for the dead ones with their last error."""
    jobs, total = await service.list_jobs(
        session, status=query.status, limit=query.limit, offset=query.offset
    )
    return Page[JobRead].of(jobs, total=total, params=query)


@admin_router.get("/{job_id}", response_model=JobRead, responses=problem_responses(404, 422))
async def read_job(session: SessionDep, job_id: JobId) -> JobRead:
    return JobRead.model_validate(await service.get_job(session, job_id=job_id))


@admin_router.post(
    "/{job_id}/retry", response_model=JobRead, responses=problem_responses(404, 409, 422)
)
async def retry_job(session: SessionDep, job_id: JobId) -> JobRead:
    """Put a dead job back in the queue with all its tries, to run now (409 for a job that is
    still pending or running)."""
    return JobRead.model_validate(await service.retry_job(session, job_id=job_id))
