"""The embedded runner: jobs run in the service's own process, from the database.

One runner per worker process, started and stopped by the app's lifespan (app/main.py). It
runs up to JOBS_CONCURRENCY jobs at once, each as a task of the event loop. It looks for due
jobs when woken (a commit in this process enqueued one, or a job of its own finished), and
otherwise every JOBS_POLL_SECONDS, or sooner when it knows a job falls due sooner (a retry's
backoff, another runner's lease). Looking is one read (`next_due`); only a due job costs a
claim, so an idle runner never takes SQLite's write lock.

Each job runs under JOBS_TIMEOUT_SECONDS, below its lease (JOBS_LEASE_SECONDS), so a job is
never still running when another runner may claim it; the one case left is a runner that
stopped without handing its job back (killed, or its machine lost), whose job is claimed
again once the lease passes: delivery is at least once. On shutdown the runner claims no
more, lets running jobs finish for JOBS_SHUTDOWN_SECONDS, then cancels them and hands them
back (their lease released, the try not counted), so another runner starts them at once.
"""

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import app.jobs.catalog  # noqa: F401 - registers every job function
from app.core.config import Settings
from app.core.errors import is_database_unavailable
from app.db.base import utcnow
from app.jobs import service
from app.jobs.executor import JobExecutor
from app.jobs.models import RUNNER_ID_MAX_LENGTH

logger = logging.getLogger(__name__)

# A due job another runner is claiming right now: look again this soon.
_CONTENDED_WAIT_SECONDS = 0.05
# How long stop waits for a look at the queue in progress (one read, or one claim) to end.
_LOOP_STOP_SECONDS = 5.0


def runner_id(kind: str = "") -> str:
    """A holder id unique to this process and object: host, process id, random suffix."""
    unique = f"{kind}{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    return unique[-RUNNER_ID_MAX_LENGTH:]


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        read_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        self.id = runner_id()
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._read_sessionmaker = read_sessionmaker
        self._executor = JobExecutor(
            settings, sessionmaker=sessionmaker, read_sessionmaker=read_sessionmaker
        )
        self._lease = timedelta(seconds=settings.JOBS_LEASE_SECONDS)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._trouble: str | None = None  # what keeps the queue from being read, if anything
        self._stopping = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.create_task(self._poll(), name="jobs-runner")
        service.add_waker(self.wake)
        logger.info(
            "jobs: runner started",
            extra={"runner": self.id, "concurrency": self._settings.JOBS_CONCURRENCY},
        )

    def wake(self) -> None:
        """Look for due jobs now. Safe from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        """Claim no more; let running jobs finish within JOBS_SHUTDOWN_SECONDS, then cancel
        them, which hands them back.

        The loop is asked to end rather than cancelled: a cancel that lands inside a query can
        leave an asyncpg connection waiting forever (MagicStack/asyncpg#873), and a shutdown
        must end. Each wait here is bounded, so stop returns even then."""
        service.remove_waker(self.wake)
        self._stopping = True
        self._wake.set()
        bound = self._settings.JOBS_SHUTDOWN_SECONDS
        if self._main is not None:
            # A look in progress ends with its query; then the loop sees _stopping.
            _, looking = await asyncio.wait({self._main}, timeout=_LOOP_STOP_SECONDS)
            await self._cancel(looking, bound)
        running = set(self._running)
        handed_back = 0
        if running:
            _, unfinished = await asyncio.wait(running, timeout=bound)
            handed_back = len(unfinished)
            await self._cancel(unfinished, bound)
        logger.info("jobs: runner stopped", extra={"runner": self.id, "handed_back": handed_back})

    async def _cancel(self, tasks: set[asyncio.Task[None]], within: float) -> None:
        """Cancel the tasks and wait for them, at most `within` seconds (at least one)."""
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=max(within, 1.0))
        if stuck:
            logger.error(
                "jobs: tasks did not end when cancelled; their jobs run again after the lease",
                extra={"runner": self.id, "tasks": sorted(task.get_name() for task in stuck)},
            )

    # --- The loop ---------------------------------------------------------------------------

    async def _poll(self) -> None:
        poll = self._settings.JOBS_POLL_SECONDS
        while not self._stopping:
            self._wake.clear()
            wait = poll
            try:
                if len(self._running) < self._settings.JOBS_CONCURRENCY:
                    async with self._read_sessionmaker() as session:
                        due = await service.next_due(session)
                    now = utcnow()
                    if due is not None and due <= now:
                        if await self._claim_one():
                            continue
                        wait = min(poll, _CONTENDED_WAIT_SECONDS)
                    elif due is not None:
                        wait = min(poll, (due - now).total_seconds())
            except (SQLAlchemyError, OSError) as error:
                # The jobs are safe in the database; look again at the next poll.
                self._report(error)
            else:
                self._report(None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def _report(self, error: Exception | None) -> None:
        """One log line when the queue cannot be read, and one when it can again: not one
        per poll."""
        if error is None:
            if self._trouble is not None:
                logger.info("jobs: the queue can be read again", extra={"runner": self.id})
            self._trouble = None
            return
        outage = not isinstance(error, SQLAlchemyError) or is_database_unavailable(error)
        trouble = "outage" if outage else type(error).__name__
        if trouble == self._trouble:
            return
        self._trouble = trouble
        if outage:
            logger.warning("jobs: cannot reach the queue", extra={"error": type(error).__name__})
        else:  # a missing table, a schema of another version: not something waiting fixes
            logger.error(
                "jobs: cannot read the queue; is the database migrated (`make migrate`)?",
                extra={"error": type(error).__name__},
            )

    async def _claim_one(self) -> bool:
        async with self._sessionmaker() as session, session.begin():
            job = await service.claim_job(session, runner_id=self.id, lease=self._lease)
        if job is None:
            return False
        task = asyncio.create_task(self._executor.run(job, holder=self.id), name=f"job-{job.id}")
        self._running.add(task)
        task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free
