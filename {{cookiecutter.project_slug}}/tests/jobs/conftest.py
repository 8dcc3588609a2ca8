"""Jobs tests run on a database of their own, with commits for real: a job exists only once
its transaction commits, so the rolled-back test transaction of the other tests cannot hold
one. The job functions below are registered for these tests only."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.models import AccountToken
from app.core.config import Settings
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.jobs.models import Job, JobStatus
from app.jobs.registry import JobContext, job
from app.jobs.runner import JobRunner
from app.main import create_app
from app.users.models import User
from tests import databases
from tests.mail import SmtpServer, smtp_server

# Short everything, so the retries, leases and backoffs of a test take a fraction of a second.
FAST_JOBS: dict[str, Any] = {
    "JOBS_POLL_SECONDS": "0.2",
    "JOBS_TIMEOUT_SECONDS": "1",
    "JOBS_LEASE_SECONDS": "2",
    "JOBS_MAX_ATTEMPTS": "3",
    "JOBS_BACKOFF_SECONDS": "0.01",
    "JOBS_BACKOFF_MAX_SECONDS": "0.05",
    "JOBS_SHUTDOWN_SECONDS": "1",
}


@dataclass
class Runs:
    """What the test jobs did: (key, job id, attempt) per run that finished, in order."""

    done: list[tuple[str, uuid.UUID, int]] = field(default_factory=list)
    started: list[tuple[str, uuid.UUID, int]] = field(default_factory=list)
    # Keys of `flaky` jobs that still fail.
    failing: set[str] = field(default_factory=set)


RUNS = Runs()


@job("tests.record")
async def record(context: JobContext, *, key: str, seconds: float = 0.0) -> None:
    RUNS.started.append((key, context.id, context.attempt))
    await asyncio.sleep(seconds)
    RUNS.done.append((key, context.id, context.attempt))


@job("tests.flaky")
async def flaky(context: JobContext, *, key: str) -> None:
    RUNS.started.append((key, context.id, context.attempt))
    if key in RUNS.failing:
        raise RuntimeError(f"{key} is broken")
    RUNS.done.append((key, context.id, context.attempt))


@job("tests.unreachable")
async def unreachable(context: JobContext, *, key: str) -> None:
    """A job whose server is down, as an SMTP or HTTP client reports it."""
    RUNS.started.append((key, context.id, context.attempt))
    raise ConnectionRefusedError(111, "Connection refused")


@job("tests.block")
async def block(context: JobContext, *, key: str) -> None:
    RUNS.started.append((key, context.id, context.attempt))
    await asyncio.Event().wait()


# Set by a test to let `stubborn` jobs end.
RELEASE_STUBBORN = asyncio.Event()


@job("tests.stubborn")
async def stubborn(context: JobContext, *, key: str) -> None:
    """A job that ignores its cancel (as a job stuck in a driver can), until released."""
    RUNS.started.append((key, context.id, context.attempt))
    while not RELEASE_STUBBORN.is_set():
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            continue
    RUNS.done.append((key, context.id, context.attempt))


@pytest.fixture(scope="module")
def jobs_database() -> Iterator[str]:
    with databases.scratch_database(databases.new_database_url("jobs"), migrated=True) as url:
        yield url


@dataclass
class Queue:
    """The jobs database, and runners on it, each with an engine (a pool) of its own, as
    separate processes would have."""

    url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    overrides: dict[str, Any]

    def settings(self, **overrides: Any) -> Settings:
        return Settings(**{**self.overrides, "DATABASE_URL": self.url, **overrides})

    def new_runner(self, **overrides: Any) -> tuple[JobRunner, AsyncEngine]:
        """A runner, not started, and the engine it alone uses (the caller disposes it)."""
        settings = self.settings(**overrides)
        engine = create_engine(settings)
        runner = JobRunner(
            settings,
            sessionmaker=create_sessionmaker(engine),
            read_sessionmaker=create_sessionmaker(engine, read_only=True),
        )
        return runner, engine

    @asynccontextmanager
    async def runner(self, **overrides: Any) -> AsyncIterator[JobRunner]:
        runner, engine = self.new_runner(**overrides)
        runner.start()
        try:
            yield runner
        finally:
            await runner.stop()
            await engine.dispose()

    async def jobs(self) -> list[Job]:
        async with self.sessionmaker() as session:
            return list(await session.scalars(select(Job).order_by(Job.created_at)))

    async def count(self, status: JobStatus | None = None) -> int:
        where = [] if status is None else [Job.status == status]
        async with self.sessionmaker() as session:
            return await session.scalar(select(func.count()).select_from(Job).where(*where)) or 0

    async def until_empty(self, within: float = 20.0) -> None:
        """Until every job ran (a done job is deleted)."""

        async def empty() -> bool:
            return await self.count() == 0

        await eventually(empty, within=within)

    async def until_dead(self) -> None:
        async def dead() -> bool:
            return await self.count(JobStatus.DEAD) > 0

        await eventually(dead)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 20.0) -> None:
    """Until `check()` is true, or TimeoutError after `within` seconds. What it waits for is in
    the database or another thread, which no asyncio event could announce."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - see the docstring
            await asyncio.sleep(0.02)


@pytest.fixture
async def queue(jobs_database: str) -> AsyncIterator[Queue]:
    overrides = dict(FAST_JOBS)
    settings = Settings(**{**overrides, "DATABASE_URL": jobs_database})
    engine = create_engine(settings)
    RUNS.done.clear()
    RUNS.started.clear()
    RUNS.failing.clear()
    RELEASE_STUBBORN.clear()
    yield Queue(jobs_database, engine, create_sessionmaker(engine), overrides)
    async with engine.begin() as connection:
        await connection.execute(delete(Job))
        await connection.execute(delete(AccountToken))
        await connection.execute(delete(User))
    await engine.dispose()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@asynccontextmanager
async def running_app(queue: Queue, smtp: SmtpServer, **overrides: Any) -> AsyncIterator[FastAPI]:
    """The app as `serve` runs it: its lifespan starts the runner, and stops it."""
    app = create_app(queue.settings(**smtp.settings, **overrides))
    async with app.router.lifespan_context(app):
        yield app


def app_client(app: FastAPI) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver")
