"""Enqueue jobs in the caller's transaction; claim, finish and retry them.

`enqueue` adds a row to the `jobs` table through the caller's session and nothing else: the
job is stored by the same commit as the rest of the request's writes, or discarded by the
same rollback. After a commit that enqueued, the runners of this process are woken at once
(`wake_runners`); other processes find the job at their next poll.

Claims are short transactions of the runner's own, separate from the job's work:
- PostgreSQL: `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)`, so runners racing
  for the queue each take a different row, without waiting for each other;
- SQLite: the same single UPDATE, which runs under the database's one write lock (the
  transaction began with BEGIN IMMEDIATE), so two claims can never see the same row free.
A claim takes a lease (`locked_until`). A runner finishes only the job it still holds: every
write after the claim matches the runner's id and the attempt it claimed (a fencing token),
so a runner whose lease passed cannot overwrite what the next one did.
"""

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ParamSpec, Protocol

from sqlalchemy import and_, case, delete, event, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.core.logging import request_id_var
from app.db.base import utcnow
from app.jobs.exceptions import JobNotDead, JobNotFound
from app.jobs.models import LAST_ERROR_MAX_LENGTH, Job, JobStatus
from app.jobs.registry import JobFunction

P = ParamSpec("P")

# Session.info flag: this transaction enqueued a job (read, and cleared, by its commit).
_ENQUEUED = "jobs_enqueued"

# Called after each commit that enqueued: the runners of this process register here.
_wakers: set[Callable[[], None]] = set()


async def enqueue(
    session: AsyncSession, job: JobFunction[P], *args: P.args, **kwargs: P.kwargs
) -> uuid.UUID:
    """Store a job in the session's transaction; it runs only if that transaction commits.

    The arguments are checked against the job function's signature (mypy) and validated by
    its pydantic model (here, and again when the job runs). The job carries the current
    request id. Returns the job's id. Refused in a GET or HEAD request's read-only session,
    like every write there.
    """
    request_id = request_id_var.get()
    row = Job(
        id=uuid.uuid4(),
        name=job.name,
        arguments=job.dump(*args, **kwargs),
        status=JobStatus.PENDING,
        attempts=0,
        run_at=utcnow(),
        request_id=None if request_id == "-" else request_id,
    )
    session.add(row)
    session.info[_ENQUEUED] = True
    return row.id


def add_waker(waker: Callable[[], None]) -> None:
    _wakers.add(waker)


def remove_waker(waker: Callable[[], None]) -> None:
    _wakers.discard(waker)


def wake_runners() -> None:
    for waker in list(_wakers):
        waker()


def _wake_after_commit(session: Session) -> None:
    if session.info.pop(_ENQUEUED, False):
        wake_runners()


# A commit that enqueued nothing costs this one dict lookup; GET and HEAD requests never commit.
event.listen(Session, "after_commit", _wake_after_commit)


# --- Admin: list and retry --------------------------------------------------------------------


async def list_jobs(
    session: AsyncSession, *, status: JobStatus | None, limit: int, offset: int
) -> tuple[list[Job], int]:
    where = [] if status is None else [Job.status == status]
    total = await session.scalar(select(func.count()).select_from(Job).where(*where))
    result = await session.scalars(
        select(Job).where(*where).order_by(Job.created_at, Job.id).limit(limit).offset(offset)
    )
    return list(result), total or 0


async def get_job(session: AsyncSession, *, job_id: uuid.UUID) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise JobNotFound
    return job


async def retry_job(session: AsyncSession, *, job_id: uuid.UUID) -> Job:
    """A dead job back in the queue with all its tries, to run now; its last error is kept
    until it runs again. Raises JobNotFound, or JobNotDead for a job still queued."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.DEAD)
        .values(status=JobStatus.PENDING, attempts=0, run_at=utcnow(), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await get_job(session, job_id=job_id)  # JobNotFound when there is no such job
        raise JobNotDead
    return await session.get_one(Job, job_id, populate_existing=True)


# --- Runners: claim, finish, fail, hand back ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: uuid.UUID
    name: str
    arguments: dict[str, Any]
    attempt: int
    request_id: str | None

    # The columns a claim returns, in the order `from_row` reads them.
    COLUMNS = (Job.id, Job.name, Job.arguments, Job.attempts, Job.request_id)

    @classmethod
    def from_row(cls, row: Any) -> "ClaimedJob":
        return cls(
            id=row.id,
            name=row.name,
            arguments=row.arguments,
            attempt=row.attempts,
            request_id=row.request_id,
        )


def _due(now: datetime) -> Any:
    """Pending and due, or claimed by a runner whose lease has passed."""
    return or_(
        and_(Job.status == JobStatus.PENDING, Job.run_at <= now),
        and_(Job.status == JobStatus.RUNNING, Job.locked_until < now),
    )


async def claim_job(
    session: AsyncSession, *, runner_id: str, lease: timedelta
) -> ClaimedJob | None:
    """Take the job due first, with a lease, in one statement; None when none is due."""
    now = utcnow()
    candidate = (
        select(Job.id)
        .where(_due(now))
        .order_by(Job.run_at)
        .limit(1)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite renders none and needs none
        .scalar_subquery()
    )
    row = (
        await session.execute(
            update(Job)
            .where(Job.id == candidate, _due(now))
            .values(
                status=JobStatus.RUNNING,
                attempts=Job.attempts + 1,
                locked_until=now + lease,
                locked_by=runner_id,
                updated_at=now,
            )
            .returning(*ClaimedJob.COLUMNS)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    return None if row is None else ClaimedJob.from_row(row)


class JobWrite(Protocol):
    """`complete_job` or `release_job`: True when the runner still held the job."""

    async def __call__(self, session: AsyncSession, *, job: ClaimedJob, runner_id: str) -> bool: ...


def held_by(job_id: uuid.UUID, holder: str, attempt: int) -> Any:
    """The job as `holder` claimed it for this attempt: still running, its lease not taken
    over since."""
    return and_(
        Job.id == job_id,
        Job.status == JobStatus.RUNNING,
        Job.locked_by == holder,
        Job.attempts == attempt,
    )


def _held(job: ClaimedJob, runner_id: str) -> Any:
    return held_by(job.id, runner_id, job.attempt)


async def complete_job(session: AsyncSession, *, job: ClaimedJob, runner_id: str) -> bool:
    """A job that succeeded is deleted. False when the runner no longer held it."""
    result = await session.execute(
        delete(Job).where(_held(job, runner_id)).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: anywhere from 0 to base x 2^(attempt - 1), at
    most `cap`, so jobs that failed together do not all come back together."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt - 1, 64)))


async def fail_job(
    session: AsyncSession,
    *,
    job: ClaimedJob,
    runner_id: str,
    error: str,
    max_attempts: int,
    retry_in: float,
) -> JobStatus | None:
    """Record a failure: dead after `max_attempts` tries, else pending again after
    `retry_in` seconds. Returns the new status, or None when the runner no longer held it."""
    status = JobStatus.DEAD if job.attempt >= max_attempts else JobStatus.PENDING
    now = utcnow()
    result = await session.execute(
        update(Job)
        .where(_held(job, runner_id))
        .values(
            status=status,
            run_at=now + timedelta(seconds=retry_in),
            locked_until=None,
            locked_by=None,
            last_error=error[:LAST_ERROR_MAX_LENGTH],
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return status if result.rowcount else None  # type: ignore[attr-defined]


async def release_job(session: AsyncSession, *, job: ClaimedJob, runner_id: str) -> bool:
    """Hand a job back unfinished (the runner is stopping): due now, the try not counted."""
    now = utcnow()
    result = await session.execute(
        update(Job)
        .where(_held(job, runner_id))
        .values(
            status=JobStatus.PENDING,
            attempts=Job.attempts - 1,
            run_at=now,
            locked_until=None,
            locked_by=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def next_due(session: AsyncSession) -> datetime | None:
    """When the next job falls due: a pending one's `run_at`, a running one's lease end."""
    due_at = case((Job.status == JobStatus.PENDING, Job.run_at), else_=Job.locked_until)
    when: datetime | None = await session.scalar(
        select(func.min(due_at)).where(Job.status.in_((JobStatus.PENDING, JobStatus.RUNNING)))
    )
    return when
