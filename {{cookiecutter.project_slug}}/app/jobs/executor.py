"""Run one claimed job and record how it ended: done (deleted), failed (retried after a
backoff, or dead after JOBS_MAX_ATTEMPTS tries), or handed back unfinished.

Both engines run jobs through this: the embedded runner (app/jobs/runner.py) in the
service's own processes, and, with the Dramatiq engine, the worker processes. Every write
matches the holder and the attempt of the claim (a fencing token, app/jobs/service.py), so
a job whose lease passed cannot overwrite what the next holder did.
"""

import asyncio
import logging
import time
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.errors import is_database_unavailable
from app.core.logging import request_id_var
from app.jobs import service
from app.jobs.exceptions import UnknownJob
from app.jobs.models import JobStatus
from app.jobs.registry import JobContext, get_job_function
from app.jobs.service import ClaimedJob

logger = logging.getLogger(__name__)


class JobsEngine(Protocol):
    """What the app's lifespan starts and stops (app/main.py): the embedded runner, or the
    relay that hands jobs to the Dramatiq workers."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class JobExecutor:
    def __init__(
        self,
        settings: Settings,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        read_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._read_sessionmaker = read_sessionmaker

    async def run(self, job: ClaimedJob, *, holder: str) -> None:
        """Run the job held by `holder` (the id its claim wrote) and record the outcome.
        A cancel hands the job back (its try not counted) and is raised again."""
        # The job's log lines carry the id of the request that enqueued it.
        request_id_var.set(job.request_id or f"job-{job.id}")
        log = {"job_id": str(job.id), "job": job.name, "attempt": job.attempt}
        max_attempts = self._settings.JOBS_MAX_ATTEMPTS
        if job.attempt > max_attempts:
            # Claimed again after its lease passed, as many times as it may be tried: each
            # holder stopped (or was killed) while running it.
            error = f"LeaseExpired: the runner stopped while running it, {max_attempts} times"
            await self._fail(job, holder, error, log)
            return
        context = JobContext(
            id=job.id,
            name=job.name,
            attempt=job.attempt,
            request_id=job.request_id,
            settings=self._settings,
            sessionmaker=self._sessionmaker,
            read_sessionmaker=self._read_sessionmaker,
        )
        started = time.perf_counter()
        try:
            function = get_job_function(job.name)
            if function is None:
                raise UnknownJob(f"no job function is registered as {job.name!r}")
            async with asyncio.timeout(self._settings.JOBS_TIMEOUT_SECONDS):
                await function.run(context, job.arguments)
        except asyncio.CancelledError:
            await asyncio.shield(self._write(service.release_job, job, holder, log, "handed back"))
            raise
        except Exception as exc:
            log_failure("jobs: job failed", exc, log)
            await self._fail(job, holder, f"{type(exc).__name__}: {exc}", log)
        else:
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            await self._write(
                service.complete_job, job, holder, {**log, "duration_ms": duration_ms}, "done"
            )

    async def _fail(self, job: ClaimedJob, holder: str, error: str, log: dict[str, object]) -> None:
        settings = self._settings
        retry_in = service.backoff_seconds(
            job.attempt, base=settings.JOBS_BACKOFF_SECONDS, cap=settings.JOBS_BACKOFF_MAX_SECONDS
        )
        try:
            async with self._sessionmaker() as session, session.begin():
                status = await service.fail_job(
                    session,
                    job=job,
                    runner_id=holder,
                    error=error,
                    max_attempts=settings.JOBS_MAX_ATTEMPTS,
                    retry_in=retry_in,
                )
        except (SQLAlchemyError, OSError) as exc:
            log_failure("jobs: could not record the failure; it runs again after its lease", exc)
            return
        if status is JobStatus.DEAD:
            logger.error("jobs: job is dead", extra={**log, "error": error})
        elif status is JobStatus.PENDING:
            logger.warning("jobs: job will be retried", extra={**log, "retry_in": retry_in})
        else:
            logger.warning("jobs: lease lost before the failure was recorded", extra=log)

    async def _write(
        self,
        write: service.JobWrite,
        job: ClaimedJob,
        holder: str,
        log: dict[str, object],
        outcome: str,
    ) -> None:
        try:
            async with self._sessionmaker() as session, session.begin():
                held = await write(session, job=job, runner_id=holder)
        except (SQLAlchemyError, OSError) as exc:
            log_failure(f"jobs: job {outcome} but not recorded; it runs again after its lease", exc)
            return
        if held:
            logger.info("jobs: job %s", outcome, extra=log)
        else:
            logger.warning("jobs: job %s after its lease was lost", outcome, extra=log)


def log_failure(message: str, error: Exception, extra: dict[str, object] | None = None) -> None:
    """A database outage (or a network error) is logged as one line with its type: it is
    expected, and the job's lease and retries already answer it. Anything else is a bug to
    read, logged with its traceback."""
    outage = isinstance(error, OSError) or (
        isinstance(error, SQLAlchemyError) and is_database_unavailable(error)
    )
    if outage:
        logger.warning(message, extra={**(extra or {}), "error": type(error).__name__})
    else:
        logger.error(message, exc_info=error, extra=extra)
