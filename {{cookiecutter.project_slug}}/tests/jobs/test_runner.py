"""The queue and the embedded runner, on a database of their own, with real commits."""

import asyncio
import logging
import time
import uuid
from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import update

from app.core.config import Settings
from app.db.base import utcnow
from app.db.engine import create_engine
from app.db.session import WriteInReadOnlySession, create_sessionmaker
from app.jobs import service
from app.jobs.exceptions import JobNotDead, JobNotFound
from app.jobs.models import Job, JobStatus
from app.jobs.registry import JobContext, job
from app.jobs.runner import JobRunner
from tests.jobs.conftest import (
    FAST_JOBS,
    RELEASE_STUBBORN,
    RUNS,
    Queue,
    block,
    eventually,
    flaky,
    record,
    stubborn,
    unreachable,
)


async def _enqueue(queue: Queue, *keys: str, seconds: float = 0.0) -> list[uuid.UUID]:
    async with queue.sessionmaker() as session, session.begin():
        return [await service.enqueue(session, record, key=key, seconds=seconds) for key in keys]


async def test_a_rolled_back_transaction_leaves_no_job(queue: Queue) -> None:
    async with queue.runner():
        async with queue.sessionmaker() as session:
            await service.enqueue(session, record, key="discarded")
            await session.rollback()
        await _enqueue(queue, "kept")
        await queue.until_empty()
    assert [key for key, _, _ in RUNS.done] == ["kept"]


async def test_a_committed_job_runs_once_and_is_deleted(queue: Queue) -> None:
    async with queue.runner():
        (job_id,) = await _enqueue(queue, "once")
        await queue.until_empty()
        await asyncio.sleep(0.3)  # more than a poll: nothing runs it again
    assert RUNS.done == [("once", job_id, 1)]


async def test_a_commit_wakes_the_runner_at_once(queue: Queue) -> None:
    """With a poll of a minute, only the wake after the commit can start the job this soon."""
    async with queue.runner(JOBS_POLL_SECONDS=60):
        await asyncio.sleep(0.1)  # the runner has looked once and sleeps
        started = time.monotonic()
        await _enqueue(queue, "woken")
        await queue.until_empty(within=5)
        assert time.monotonic() - started < 2
    assert [key for key, _, _ in RUNS.done] == ["woken"]


async def test_enqueue_validates_the_arguments_and_is_refused_when_reading(queue: Queue) -> None:
    async with queue.sessionmaker() as session:
        with pytest.raises(ValidationError):
            await service.enqueue(session, record, key="x", seconds="soon")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="keyword arguments only"):
            await service.enqueue(session, record, "positional")  # type: ignore[call-arg]
    read = create_sessionmaker(queue.engine, read_only=True)
    async with read() as session:
        await service.enqueue(session, record, key="in a GET")
        with pytest.raises(WriteInReadOnlySession):
            await session.flush()
    assert await queue.count() == 0


def test_a_job_function_must_take_typed_keyword_arguments() -> None:
    async def positional(context: JobContext, user_id: uuid.UUID) -> None: ...

    async def untyped(context: JobContext, *, user_id) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(TypeError, match="keyword-only"):
        job("tests.positional")(positional)
    with pytest.raises(TypeError, match="type annotation"):
        job("tests.untyped")(untyped)
    with pytest.raises(ValueError, match="already registered"):
        job("tests.record")(record.function)


async def test_a_job_that_always_fails_ends_dead_with_its_error_and_a_retry_runs_it(
    queue: Queue,
) -> None:
    RUNS.failing.add("broken")
    async with queue.sessionmaker() as session, session.begin():
        job_id = await service.enqueue(session, flaky, key="broken")
    async with queue.runner():
        await queue.until_dead()
        (dead,) = await queue.jobs()
        assert dead.id == job_id
        assert dead.attempts == 3  # JOBS_MAX_ATTEMPTS
        assert dead.last_error == "RuntimeError: broken is broken"
        assert dead.locked_by is None
        assert [attempt for _, _, attempt in RUNS.started] == [1, 2, 3]
        await asyncio.sleep(0.3)
        assert len(RUNS.started) == 3  # dead: never tried again by itself

        RUNS.failing.clear()
        async with queue.sessionmaker() as session, session.begin():
            retried = await service.retry_job(session, job_id=job_id)
        assert retried.status is JobStatus.PENDING
        await queue.until_empty()
    assert RUNS.done == [("broken", job_id, 1)]


async def test_an_outage_is_logged_as_one_line_and_a_bug_with_its_traceback(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that cannot reach its server fails as expected: one line with the error's type,
    no traceback (an outage must not fill the log). A job that raises anything else is a bug,
    logged with its traceback."""
    RUNS.failing.add("bug")
    async with queue.sessionmaker() as session, session.begin():
        await service.enqueue(session, unreachable, key="down")
        await service.enqueue(session, flaky, key="bug")
    with caplog.at_level(logging.INFO, logger="app.jobs"):
        async with queue.runner(JOBS_MAX_ATTEMPTS="1"):
            await eventually(lambda: _dead_count(queue, 2))
    failed = [r for r in caplog.records if r.getMessage() == "jobs: job failed"]
    by_job = {r.job: r for r in failed}  # type: ignore[attr-defined]
    assert by_job["tests.unreachable"].exc_info is None
    assert by_job["tests.unreachable"].levelno == logging.WARNING
    assert by_job["tests.unreachable"].error == "ConnectionRefusedError"  # type: ignore[attr-defined]
    assert by_job["tests.flaky"].exc_info is not None
    assert by_job["tests.flaky"].levelno == logging.ERROR


async def _dead_count(queue: Queue, count: int) -> bool:
    return await queue.count(JobStatus.DEAD) == count


async def test_retry_refuses_a_job_that_is_not_dead(queue: Queue) -> None:
    (job_id,) = await _enqueue(queue, "pending")
    async with queue.sessionmaker() as session, session.begin():
        with pytest.raises(JobNotDead):
            await service.retry_job(session, job_id=job_id)
        with pytest.raises(JobNotFound):
            await service.retry_job(session, job_id=uuid.uuid4())


async def test_a_job_over_its_timeout_fails_and_is_retried(queue: Queue) -> None:
    await _enqueue(queue, "slow", seconds=5)
    async with queue.runner(JOBS_TIMEOUT_SECONDS=0.2, JOBS_MAX_ATTEMPTS=2):
        await queue.until_dead()
    (dead,) = await queue.jobs()
    assert dead.last_error == "TimeoutError: "
    assert [(key, attempt) for key, _, attempt in RUNS.started] == [("slow", 1), ("slow", 2)]
    assert RUNS.done == []


async def test_a_job_with_no_registered_function_ends_dead(queue: Queue) -> None:
    async with queue.sessionmaker() as session, session.begin():
        session.add(Job(name="tests.renamed", arguments={}, run_at=utcnow()))
    async with queue.runner():
        await queue.until_dead()
    (dead,) = await queue.jobs()
    assert dead.last_error == "UnknownJob: no job function is registered as 'tests.renamed'"


async def started() -> bool:
    return bool(RUNS.started)


async def _claimed_by_a_runner_that_died(queue: Queue, job_id: uuid.UUID, attempts: int) -> None:
    """As a runner leaves a job when it is killed mid-job: running, its lease not yet passed."""
    async with queue.sessionmaker() as session, session.begin():
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status=JobStatus.RUNNING,
                attempts=attempts,
                locked_by="killed-runner",
                locked_until=utcnow() + timedelta(seconds=0.5),
            )
        )


async def test_a_job_whose_runner_died_runs_again_once_its_lease_passed(queue: Queue) -> None:
    (job_id,) = await _enqueue(queue, "orphan")
    await _claimed_by_a_runner_that_died(queue, job_id, attempts=1)
    async with queue.runner():
        await asyncio.sleep(0.3)
        assert RUNS.started == []  # the lease still holds
        await queue.until_empty()
    assert RUNS.done == [("orphan", job_id, 2)]


async def test_a_job_whose_runners_keep_dying_ends_dead(queue: Queue) -> None:
    (job_id,) = await _enqueue(queue, "poison")
    await _claimed_by_a_runner_that_died(queue, job_id, attempts=3)  # JOBS_MAX_ATTEMPTS
    async with queue.runner():
        await queue.until_dead()
    (dead,) = await queue.jobs()
    assert dead.last_error is not None
    assert dead.last_error.startswith("LeaseExpired: the runner stopped while running it")
    assert RUNS.started == []


async def test_a_restart_runs_the_jobs_left_pending(queue: Queue) -> None:
    """Jobs committed while no runner runs (the service was down) run after start-up."""
    ids = await _enqueue(queue, "a", "b", "c")
    async with queue.runner():
        await queue.until_empty()
    assert sorted(job_id for _, job_id, _ in RUNS.done) == sorted(ids)


async def test_stopping_hands_back_the_job_it_holds(queue: Queue) -> None:
    async with queue.sessionmaker() as session, session.begin():
        job_id = await service.enqueue(session, block, key="held")
    async with queue.runner(JOBS_SHUTDOWN_SECONDS=0.1):
        await eventually(started)
    (handed_back,) = await queue.jobs()
    assert (handed_back.id, handed_back.status) == (job_id, JobStatus.PENDING)
    assert (handed_back.attempts, handed_back.locked_by, handed_back.locked_until) == (
        0,
        None,
        None,
    )
    assert handed_back.run_at <= utcnow()  # due at once, for the next runner


async def test_stopping_lets_a_short_job_finish(queue: Queue) -> None:
    await _enqueue(queue, "short", seconds=0.3)
    async with queue.runner(JOBS_SHUTDOWN_SECONDS=5):
        await eventually(started)
    assert [key for key, _, _ in RUNS.done] == ["short"]
    assert await queue.count() == 0


async def test_stopping_ends_in_bounded_time_when_a_job_ignores_its_cancel(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    async with queue.sessionmaker() as session, session.begin():
        await service.enqueue(session, stubborn, key="stuck")
    runner, engine = queue.new_runner(JOBS_SHUTDOWN_SECONDS=0.2)
    with caplog.at_level(logging.INFO, logger="app.jobs.runner"):
        runner.start()
        try:
            await eventually(started)
            stopping = time.monotonic()
            async with asyncio.timeout(10):  # what the test allows; stop takes about 1.2 s
                await runner.stop()
            stopped_in = time.monotonic() - stopping
        finally:
            RELEASE_STUBBORN.set()  # the job ends by itself, and is still recorded as done
            await queue.until_empty()
            await engine.dispose()
    assert stopped_in < 5
    messages = [record.getMessage() for record in caplog.records]
    stuck = "jobs: tasks did not end when cancelled; their jobs run again after the lease"
    assert messages.index(stuck) < messages.index("jobs: runner stopped")
    assert [key for key, _, _ in RUNS.done] == ["stuck"]


async def test_two_runners_never_run_one_job_twice(queue: Queue) -> None:
    """Two runners with a pool each, as two processes, race for 60 jobs that each take a
    moment: every job runs exactly once."""
    ids = await _enqueue(queue, *(f"job{n}" for n in range(60)), seconds=0.02)
    # Leases that hold however slow the machine (a run past its lease may run again: that is
    # the at-least-once path, tested on its own); the claim must keep the two apart.
    held = {"JOBS_LEASE_SECONDS": "60", "JOBS_TIMEOUT_SECONDS": "30"}
    async with queue.runner(**held), queue.runner(**held):
        await queue.until_empty(within=60)
    ran = [job_id for _, job_id, _ in RUNS.started]
    assert sorted(ran) == sorted(ids)  # each once: none twice, none lost
    assert all(attempt == 1 for _, _, attempt in RUNS.started)


def test_backoff_is_exponential_with_full_jitter() -> None:
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)]:
        delays = [service.backoff_seconds(attempt, base=2, cap=60) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not fixed
        assert len(set(delays)) > 100


async def test_an_unmigrated_database_is_reported_once_not_at_every_poll(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(**{**FAST_JOBS, "DATABASE_URL": empty_database, "JOBS_POLL_SECONDS": 0.02})
    engine = create_engine(settings)
    runner = JobRunner(
        settings,
        sessionmaker=create_sessionmaker(engine),
        read_sessionmaker=create_sessionmaker(engine, read_only=True),
    )
    with caplog.at_level(logging.INFO, logger="app.jobs.runner"):
        runner.start()
        await asyncio.sleep(0.3)  # a dozen polls
        await runner.stop()
    await engine.dispose()
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == ["jobs: cannot read the queue; is the database migrated (`make migrate`)?"]
