"""The Dramatiq engine: RabbitMQ carries the jobs to worker processes on any number of
machines, and the jobs table stays the record of every job.

A job is still written by the transaction that asks for it (app/jobs/service.py), so a
rollback discards it and a commit keeps it whether or not RabbitMQ can be reached: the table
is the outbox. From there:

1. The relay (one in each service process, started by the lifespan, and one in each worker
   process) claims a due job with a lease of JOBS_QUEUE_LEASE_SECONDS and publishes one
   persistent message naming the claim (job id, attempt, relay id), and waits for RabbitMQ's
   publisher confirm. When RabbitMQ cannot be reached it hands the job back (the try not
   counted) and tries again at the next poll: nothing is lost while the broker is down.
2. A worker (`make worker`, app/jobs/worker.py) receives the message and takes the job's
   lease (JOBS_LEASE_SECONDS) if the claim the message names is still current; a message for a
   job already done, or claimed again since, is dropped. It runs the job through the same
   executor as the embedded runner (app/jobs/executor.py), which records the outcome (done,
   retried after a backoff, dead after JOBS_MAX_ATTEMPTS tries), and only then acknowledges.
3. A worker killed mid-job never acknowledges: RabbitMQ gives the message to another worker
   at once, which runs the job again. A message RabbitMQ lost is covered by the lease: once
   JOBS_QUEUE_LEASE_SECONDS pass the relay claims the job again and publishes it anew.

Delivery is at least once, as with the embedded engine; retries, dead jobs and the admin's
retry live in the table, so `GET /api/v1/jobs` and `jobs list` show the same for both.
Dramatiq's own retries are not used (its Retries middleware is left out): a failure is
recorded in the table, and the message is acknowledged.
"""

import asyncio
import contextlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import BrokerError
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.errors import is_database_unavailable
from app.db.base import utcnow
from app.jobs import service
from app.jobs.models import Job
from app.jobs.runner import runner_id
from app.jobs.service import ClaimedJob

logger = logging.getLogger(__name__)
# pika logs every connection step at INFO; its warnings and errors still come through.
logging.getLogger("pika").setLevel(logging.WARNING)

# The one actor every job message names; the job's own name is in the table.
ACTOR_NAME = "run_job"
# A due job another relay is claiming right now: look again this soon.
_CONTENDED_WAIT_SECONDS = 0.05
# How long stop waits for a look at the queue (or a publication) in progress to end.
_LOOP_STOP_SECONDS = 5.0


def create_broker(settings: Settings) -> RabbitmqBroker:
    """A RabbitMQ broker that waits for the publisher confirm of every message, with no
    middleware: retries, time limits and dead jobs are the table's (see above)."""
    return RabbitmqBroker(
        url=settings.JOBS_BROKER_URL.get_secret_value(), confirm_delivery=True, middleware=[]
    )


def job_message(settings: Settings, job: ClaimedJob, *, holder: str) -> "dramatiq.Message[Any]":
    return dramatiq.Message(
        queue_name=settings.JOBS_QUEUE,
        actor_name=ACTOR_NAME,
        args=(),
        kwargs={"job_id": str(job.id), "attempt": job.attempt, "holder": holder},
        options={},
    )


async def take_lease(
    session: AsyncSession, *, job_id: uuid.UUID, attempt: int, holder: str, lease: timedelta
) -> ClaimedJob | None:
    """The job a message names, its lease renewed for running it, if that claim is still
    current; None for a job done since, or claimed again (the message is stale)."""
    now = utcnow()
    row = (
        await session.execute(
            update(Job)
            .where(service.held_by(job_id, holder, attempt))
            .values(locked_until=now + lease, updated_at=now)
            .returning(*ClaimedJob.COLUMNS)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    return None if row is None else ClaimedJob.from_row(row)


class Relay:
    """Hands due jobs from the table to RabbitMQ, one claim and one confirmed message each."""

    def __init__(
        self,
        settings: Settings,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        read_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        self.id = runner_id("relay:")
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._read_sessionmaker = read_sessionmaker
        self._lease = timedelta(seconds=settings.JOBS_QUEUE_LEASE_SECONDS)
        self._broker = create_broker(settings)
        # pika's connection is blocking and belongs to one thread: publications take turns on
        # this one, off the event loop.
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs-relay")
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._trouble: str | None = None
        self._stopping = False
        self.published = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.create_task(self._poll(), name="jobs-relay")
        service.add_waker(self.wake)
        logger.info("jobs: relay started", extra={"runner": self.id})

    def wake(self) -> None:
        """Look for due jobs now. Safe from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        """Claim no more; the publication in progress ends (or is handed back) first."""
        service.remove_waker(self.wake)
        self._stopping = True
        self._wake.set()
        if self._main is not None:
            _, looking = await asyncio.wait({self._main}, timeout=_LOOP_STOP_SECONDS)
            for task in looking:
                task.cancel()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                loop.run_in_executor(self._publisher, self._broker.close), _LOOP_STOP_SECONDS
            )
        self._publisher.shutdown(wait=False, cancel_futures=True)
        logger.info("jobs: relay stopped", extra={"runner": self.id, "published": self.published})

    async def _poll(self) -> None:
        poll = self._settings.JOBS_POLL_SECONDS
        while not self._stopping:
            self._wake.clear()
            wait = poll
            try:
                async with self._read_sessionmaker() as session:
                    due = await service.next_due(session)
                now = utcnow()
                if due is not None and due <= now:
                    published = await self._publish_one()
                    if published:
                        continue
                    if published is None:  # another relay took it
                        wait = min(poll, _CONTENDED_WAIT_SECONDS)
                elif due is not None:
                    wait = min(poll, (due - now).total_seconds())
            except (SQLAlchemyError, OSError) as error:
                self._report("database", error)
            else:
                self._report("database", None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _publish_one(self) -> bool | None:
        """Claim the job due first and publish it: True once RabbitMQ confirmed it, False
        when RabbitMQ could not take it (the job is handed back), None when none was free."""
        async with self._sessionmaker() as session, session.begin():
            job = await service.claim_job(session, runner_id=self.id, lease=self._lease)
        if job is None:
            return None
        message = job_message(self._settings, job, holder=self.id)
        assert self._loop is not None
        try:
            await self._loop.run_in_executor(self._publisher, self._broker.enqueue, message)
        except BrokerError as error:
            async with self._sessionmaker() as session, session.begin():
                await service.release_job(session, job=job, runner_id=self.id)
            self._report("broker", error)
            return False
        self.published += 1
        self._report("broker", None)
        return True

    def _report(self, what: str, error: Exception | None) -> None:
        """One log line when the database or RabbitMQ cannot be reached, and one when it can
        again: not one per poll."""
        if error is None:
            if self._trouble == what:
                logger.info("jobs: the %s can be reached again", what, extra={"runner": self.id})
                self._trouble = None
            return
        if self._trouble == what:
            return
        self._trouble = what
        if what == "broker":
            logger.warning(
                "jobs: cannot reach RabbitMQ; the jobs wait in the table",
                extra={"runner": self.id, "error": type(error).__name__},
            )
        elif not isinstance(error, SQLAlchemyError) or is_database_unavailable(error):
            logger.warning("jobs: cannot reach the queue", extra={"error": type(error).__name__})
        else:
            logger.error(
                "jobs: cannot read the queue; is the database migrated (`make migrate`)?",
                extra={"error": type(error).__name__},
            )
