"""The Dramatiq worker: the `worker` command, which `make worker` runs.

One process runs up to JOBS_CONCURRENCY jobs at once: Dramatiq's consumer takes messages
from JOBS_QUEUE, and its worker threads hand each one to this process's event loop, where the
job runs on its own database pool, exactly as in the embedded runner (app/jobs/executor.py).
Scale out by running more of these processes, on any number of machines: each takes only the
messages it can run now (RabbitMQ's prefetch), and a message is acknowledged only once the
job's outcome is recorded (app/jobs/broker.py).

The process also runs a relay, so the jobs its jobs enqueue are published at once.

SIGTERM (or SIGINT) stops it gracefully: its relay stops, it takes no more messages, lets the
running jobs finish for JOBS_SHUTDOWN_SECONDS, then cancels the rest, which hands them back to
the table (the try not counted) for another process's relay to publish; RabbitMQ gets back the
messages this process had prefetched but not started. A SIGKILL loses nothing either: RabbitMQ
redelivers the unacknowledged messages to another worker.
"""

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import uuid
from datetime import timedelta

import dramatiq

import app.jobs.catalog  # noqa: F401 - registers every job function
from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.jobs.broker import ACTOR_NAME, Relay, create_broker, take_lease
from app.jobs.executor import JobExecutor
from app.jobs.runner import runner_id

logger = logging.getLogger(__name__)

# Dramatiq's threads look for a message (and for a stop) this often, in milliseconds.
_WORKER_TIMEOUT_MS = 200
# How long a stop waits for the cancelled jobs to write their hand-back.
_LOOP_STOP_SECONDS = 5.0


class Worker:
    """A Dramatiq consumer whose jobs run on an event loop (the caller's)."""

    def __init__(self, settings: Settings) -> None:
        self.id = runner_id("worker:")
        self._settings = settings
        self._engine = create_engine(settings)
        self._sessionmaker = create_sessionmaker(self._engine)
        self._read_sessionmaker = create_sessionmaker(self._engine, read_only=True)
        self._executor = JobExecutor(
            settings, sessionmaker=self._sessionmaker, read_sessionmaker=self._read_sessionmaker
        )
        self._relay = Relay(
            settings, sessionmaker=self._sessionmaker, read_sessionmaker=self._read_sessionmaker
        )
        self._broker = create_broker(settings)
        dramatiq.Actor(
            self._handle,
            broker=self._broker,
            actor_name=ACTOR_NAME,
            queue_name=settings.JOBS_QUEUE,
            priority=0,
            options={},
        )
        self._dramatiq = dramatiq.Worker(
            self._broker,
            queues={settings.JOBS_QUEUE},
            worker_threads=settings.JOBS_CONCURRENCY,
            worker_timeout=_WORKER_TIMEOUT_MS,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # The jobs running now, as tasks of the loop (added and removed on the loop only).
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Take and run jobs until `stop` is set; then stop gracefully (see above)."""
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(None, self._dramatiq.start)
        self._relay.start()
        logger.info(
            "jobs: worker started",
            extra={
                "runner": self.id,
                "queue": self._settings.JOBS_QUEUE,
                "concurrency": self._settings.JOBS_CONCURRENCY,
            },
        )
        try:
            await stop.wait()
        finally:
            await self._stop()

    async def _stop(self) -> None:
        assert self._loop is not None
        bound = self._settings.JOBS_SHUTDOWN_SECONDS
        running_now = len(self._tasks)
        logger.info("jobs: worker stopping", extra={"runner": self.id, "running": running_now})
        # First the relay: a job handed back below must wait in the table for another
        # process's relay, not be claimed and published again by this stopping one.
        await self._relay.stop()
        # Dramatiq's threads take no more messages and wait for the one each is running.
        stopping = self._loop.run_in_executor(None, self._dramatiq.stop, int(bound * 1000) + 5000)
        handed_back = 0
        if self._tasks:
            _, unfinished = await asyncio.wait(set(self._tasks), timeout=bound)
            handed_back = len(unfinished)
            for task in unfinished:
                task.cancel()  # the job hands itself back (app/jobs/executor.py)
            if unfinished:  # until each hand-back is written
                await asyncio.wait(unfinished, timeout=_LOOP_STOP_SECONDS)
        await stopping
        await self._loop.run_in_executor(None, self._broker.close)
        await self._engine.dispose()
        logger.info("jobs: worker stopped", extra={"runner": self.id, "handed_back": handed_back})

    def _handle(self, job_id: str, attempt: int, holder: str) -> None:
        """Run by a Dramatiq thread for each message: the job runs on the event loop, and the
        message is acknowledged when this returns."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(
            self._take_and_run(uuid.UUID(job_id), attempt, holder), self._loop
        )
        with contextlib.suppress(concurrent.futures.CancelledError):
            future.result()  # cancelled: stopped, and the job was handed back to the table

    async def _take_and_run(self, job_id: uuid.UUID, attempt: int, holder: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._run_message(job_id, attempt, holder)
        finally:
            self._tasks.discard(task)

    async def _run_message(self, job_id: uuid.UUID, attempt: int, holder: str) -> None:
        lease = timedelta(seconds=self._settings.JOBS_LEASE_SECONDS)
        async with self._sessionmaker() as session, session.begin():
            job = await take_lease(
                session,
                job_id=job_id,
                attempt=attempt,
                holder=holder,
                lease=lease,
            )
        if job is None:
            logger.info(
                "jobs: message dropped: its job is done or was claimed again",
                extra={"job_id": str(job_id), "attempt": attempt},
            )
            return
        await self._executor.run(job, holder=holder)


async def _serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await Worker(settings).run(stop)


def main() -> None:
    settings = get_settings()  # a bad setting ends here, with one line naming it
    configure_logging(settings.LOG_LEVEL)
    if settings.JOBS_ENGINE != "dramatiq":
        raise SystemExit(
            "error: JOBS_ENGINE is embedded: the service's own processes run the jobs; set "
            "JOBS_ENGINE=dramatiq to run them in workers"
        )
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
