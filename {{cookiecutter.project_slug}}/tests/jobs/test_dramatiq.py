"""The Dramatiq engine on a real RabbitMQ: the relay publishes committed jobs, workers run them.

Each test has a RabbitMQ queue of its own (deleted afterwards) and the jobs database of this
module. The first tests run the relay and a worker in the test's process; the others start
worker processes (`worker`, as `make worker` runs it) and servers (`serve`), and kill or stop
them as production would. The job `tests.effect` (tests/jobs/effects.py) records every run and
has its effect once per job id.
"""

import asyncio
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings, describe_error
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.jobs import service
from app.jobs.broker import Relay, create_broker
from app.jobs.models import Job, JobStatus
from app.jobs.worker import Worker
from tests import PROJECT_DIR, databases
from tests.jobs import registrations
from tests.jobs.conftest import Queue, eventually
from tests.jobs.effects import effect, effects, runs
from tests.mail import smtp_server
from tests.outage import Outage
from tests.servers import serve_together

TEST_RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
WORKER_START_TIMEOUT = 60.0


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def rabbitmq_url() -> str:
    if not _reachable(TEST_RABBITMQ_URL):
        pytest.skip(f"RabbitMQ is not reachable at {TEST_RABBITMQ_URL} (set TEST_RABBITMQ_URL)")
    return TEST_RABBITMQ_URL


@pytest.fixture
def broker_queue(rabbitmq_url: str) -> Iterator[str]:
    """A queue of this test's own; it and Dramatiq's delay and dead-letter queues beside it are
    deleted afterwards."""
    name = f"tests.{uuid.uuid4().hex[:12]}"
    yield name
    broker = create_broker(Settings(JOBS_BROKER_URL=SecretStr(rabbitmq_url)))
    try:
        for queue_name in (name, f"{name}.DQ", f"{name}.XQ"):
            broker.channel.queue_delete(queue_name)
    finally:
        broker.close()


def _engine_settings(url: str, broker_queue: str, **overrides: str) -> dict[str, str]:
    return {
        "JOBS_ENGINE": "dramatiq",
        "JOBS_BROKER_URL": url,
        "JOBS_QUEUE": broker_queue,
        "JOBS_QUEUE_LEASE_SECONDS": "5",
        **overrides,
    }


@asynccontextmanager
async def relay(settings: Settings) -> AsyncIterator[Relay]:
    """A relay in this process, on a pool of its own."""
    engine = create_engine(settings)
    started = Relay(
        settings,
        sessionmaker=create_sessionmaker(engine),
        read_sessionmaker=create_sessionmaker(engine, read_only=True),
    )
    started.start()
    try:
        yield started
    finally:
        await started.stop()
        await engine.dispose()


@asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[None]:
    """A worker in this process: Dramatiq's threads hand the jobs to this event loop."""
    stop = asyncio.Event()
    running = asyncio.create_task(Worker(settings).run(stop))
    try:
        yield
    finally:
        stop.set()
        await running


async def _enqueue(queue: Queue, folder: Path, *keys: str, seconds: float = 0.0) -> None:
    async with queue.sessionmaker() as session, session.begin():
        for key in keys:
            await service.enqueue(session, effect, folder=str(folder), key=key, seconds=seconds)


async def test_a_committed_job_runs_once_and_a_rolled_back_one_never(
    queue: Queue, rabbitmq_url: str, broker_queue: str, tmp_path: Path
) -> None:
    settings = queue.settings(**_engine_settings(rabbitmq_url, broker_queue))
    async with relay(settings), worker(settings):
        await _enqueue(queue, tmp_path, "one", "two")
        async with queue.sessionmaker() as session, session.begin():
            await service.enqueue(session, effect, folder=str(tmp_path), key="undone")
            await session.rollback()
        await queue.until_empty()
        await asyncio.sleep(0.3)  # nothing else comes
    assert sorted(effects(tmp_path).values()) == ["one", "two"]
    assert sorted(key for key, *_ in runs(tmp_path)) == ["one", "two"]


async def test_a_job_committed_while_rabbitmq_is_down_is_delivered_once_it_is_back(
    queue: Queue,
    rabbitmq_url: str,
    broker_queue: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The relay and the worker reach RabbitMQ through a proxy that is not listening: the
    committed job waits in the table, untried. Once the proxy listens again, they reconnect,
    and the job runs once."""
    parts = urlsplit(rabbitmq_url)
    outage = Outage(parts.hostname or "127.0.0.1", parts.port or 5672)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    proxied = parts._replace(netloc=f"{credentials}127.0.0.1:{outage.port}").geturl()
    settings = queue.settings(**_engine_settings(proxied, broker_queue))
    try:
        with caplog.at_level(logging.INFO, logger="app.jobs.broker"):
            async with relay(settings), worker(settings):
                await _enqueue(queue, tmp_path, "patient")

                async def refused() -> bool:
                    return any("cannot reach RabbitMQ" in r.getMessage() for r in caplog.records)

                await eventually(refused)
                await asyncio.sleep(0.5)  # a few more polls, each refused

                # Each refused publication claims the job for a moment, then hands it back:
                # between two polls it waits in the table, pending and untried.
                async def handed_back() -> bool:
                    (waiting,) = await queue.jobs()
                    return (waiting.status, waiting.attempts) == (JobStatus.PENDING, 0)

                await eventually(handed_back)
                assert runs(tmp_path) == []
                outage.restore()
                await queue.until_empty()
                await asyncio.sleep(0.3)  # nothing else comes
    finally:
        outage.close()
    assert list(effects(tmp_path).values()) == ["patient"]
    assert [key for key, *_ in runs(tmp_path)] == ["patient"]
    # One line per relay (the test's and the worker's) when RabbitMQ went away, not one per poll.
    refusals = [
        r.runner  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "jobs: cannot reach RabbitMQ; the jobs wait in the table"
    ]
    assert 1 <= len(refusals) == len(set(refusals)) <= 2
    assert "jobs: the broker can be reached again" in [r.getMessage() for r in caplog.records]


async def test_a_job_that_always_fails_ends_dead_and_an_admin_retry_runs_it(
    queue: Queue, rabbitmq_url: str, broker_queue: str, tmp_path: Path
) -> None:
    (tmp_path / "fail-broken").touch()
    settings = queue.settings(**_engine_settings(rabbitmq_url, broker_queue))
    async with relay(settings), worker(settings):
        await _enqueue(queue, tmp_path, "broken")
        await queue.until_dead()
        (dead,) = await queue.jobs()
        assert dead.attempts == settings.JOBS_MAX_ATTEMPTS == 3
        assert dead.last_error == "RuntimeError: broken is broken"
        assert len(runs(tmp_path)) == 3
        (tmp_path / "fail-broken").unlink()
        async with queue.sessionmaker() as session, session.begin():
            await service.retry_job(session, job_id=dead.id)
        await queue.until_empty()
    assert effects(tmp_path) == {str(dead.id): "broken"}
    assert [attempt for *_, attempt, _pid in runs(tmp_path)] == [1, 2, 3, 1]


# --- Worker processes ---------------------------------------------------------------------


# `python -m tests.jobs.effects`: the `worker` command with the test job registered.
EFFECTS_WORKER = [sys.executable, "-m", "tests.jobs.effects"]


@contextmanager
def worker_process(
    log_path: Path, env: Mapping[str, str], command: list[str] = EFFECTS_WORKER
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process, once it has started; stopped with SIGTERM afterwards unless the
    test ended it."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while "jobs: worker started" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()


def _queued(url: str) -> list[tuple[JobStatus, int]]:
    async def read() -> list[tuple[JobStatus, int]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(select(Job.status, Job.attempts))
                return [(row.status, row.attempts) for row in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _enqueue_in(url: str, folder: Path, key: str, *, seconds: float) -> None:
    async def write() -> None:
        engine = create_async_engine(url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                await service.enqueue(session, effect, folder=str(folder), key=key, seconds=seconds)
        finally:
            await engine.dispose()

    asyncio.run(write())


# Leases long enough for a job of a few seconds; the retry backoff short.
PROCESS_JOBS = {
    "JOBS_TIMEOUT_SECONDS": "40",
    "JOBS_LEASE_SECONDS": "50",
    "JOBS_QUEUE_LEASE_SECONDS": "60",
    "JOBS_POLL_SECONDS": "0.2",
    "JOBS_BACKOFF_SECONDS": "0.05",
    "JOBS_BACKOFF_MAX_SECONDS": "0.2",
}


@pytest.fixture
def process_env(rabbitmq_url: str, broker_queue: str) -> Iterator[dict[str, str]]:
    """The settings of worker processes on a scratch database and this test's queue."""
    with databases.scratch_database(databases.new_database_url("workers"), migrated=True) as url:
        # Small pools: two servers and two workers, beside the other tests' databases, stay
        # well below PostgreSQL's max_connections (ignored on SQLite, which has no pool).
        pools = {"DATABASE_POOL_SIZE": "4"}
        yield {
            "DATABASE_URL": url,
            **_engine_settings(rabbitmq_url, broker_queue),
            **PROCESS_JOBS,
            **pools,
        }


def test_a_worker_killed_mid_job_runs_it_again_and_its_effect_happens_once(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL: no shutdown, no acknowledgement. RabbitMQ gives the message to the next
    worker at once (no lease to wait for), which runs the job again; the effect happens once."""
    url = process_env["DATABASE_URL"]
    with worker_process(tmp_path / "first.log", process_env) as first:
        _enqueue_in(url, tmp_path, "killed", seconds=2)
        _until(lambda: len(runs(tmp_path)) == 1, "the first run")
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert effects(tmp_path) == {}
    with worker_process(tmp_path / "second.log", process_env) as second:
        _until(lambda: not _queued(url), "the job to be done")
        time.sleep(0.5)  # nothing else comes
        second.terminate()
        assert second.wait(timeout=20) == 0
    (first_run, second_run) = runs(tmp_path)
    assert first_run[:3] == second_run[:3] == ("killed", first_run[1], 1)
    assert first_run[3] == first.pid
    assert second_run[3] == second.pid
    assert list(effects(tmp_path).values()) == ["killed"]
    assert "Traceback" not in (tmp_path / "second.log").read_text()


def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    url = process_env["DATABASE_URL"]
    env = {**process_env, "JOBS_SHUTDOWN_SECONDS": "20"}
    with worker_process(tmp_path / "worker.log", env) as process:
        _enqueue_in(url, tmp_path, "finishing", seconds=1.5)
        _until(lambda: len(runs(tmp_path)) == 1, "the run")
        process.terminate()
        assert process.wait(timeout=30) == 0
    log = (tmp_path / "worker.log").read_text()
    assert list(effects(tmp_path).values()) == ["finishing"]
    assert _queued(url) == []
    assert '"handed_back": 0' in log
    assert "Traceback" not in log


def test_sigterm_hands_back_a_job_that_outlasts_the_shutdown_bound(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    """The job is cancelled after JOBS_SHUTDOWN_SECONDS and handed back: due again, its try
    not counted, for the next worker."""
    url = process_env["DATABASE_URL"]
    env = {**process_env, "JOBS_SHUTDOWN_SECONDS": "0.5"}
    with worker_process(tmp_path / "worker.log", env) as process:
        _enqueue_in(url, tmp_path, "long", seconds=30)
        _until(lambda: len(runs(tmp_path)) == 1, "the run")
        stopping = time.monotonic()
        process.terminate()
        assert process.wait(timeout=30) == 0
        stopped_in = time.monotonic() - stopping
    log = (tmp_path / "worker.log").read_text()
    assert _queued(url) == [(JobStatus.PENDING, 0)], log
    assert effects(tmp_path) == {}
    assert '"handed_back": 1' in log
    assert stopped_in < 15, log
    assert "Traceback" not in log


REGISTRATIONS = 200
WORKER = Path(sys.executable).with_name("worker")


def test_concurrent_registrations_through_rabbitmq_send_one_email_each(
    process_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 registrations at once on two server processes (a relay each), run by two worker
    processes (`worker`, as `make worker` starts it): 200 emails, one per account, none twice;
    the queue ends empty. Prints the time from commit to delivery."""
    url = process_env["DATABASE_URL"]
    with smtp_server() as smtp:
        env = {**process_env, **smtp.settings}
        with (
            serve_together(url, (tmp_path / "a.log", env), (tmp_path / "b.log", env)) as servers,
            worker_process(tmp_path / "w1.log", env, [str(WORKER)]),
            worker_process(tmp_path / "w2.log", env, [str(WORKER)]),
        ):
            idle = registrations.one_at_a_time(servers, smtp.inbox, 5)
            first = len(smtp.inbox.delivered)
            committed = registrations.all_at_once(servers, REGISTRATIONS, "rabbit")
            smtp.inbox.wait_for(first + REGISTRATIONS, within=120)
            _until(lambda: not _queued(url), "the queue to empty")
            time.sleep(0.5)  # nothing else comes
            logs = {path.name: path.read_text() for path in tmp_path.glob("*.log")}
    delivered = smtp.inbox.delivered[first:]
    recipients = [m.recipients[0] for m in delivered]
    assert len(delivered) == REGISTRATIONS
    assert sorted(recipients) == sorted(committed)  # one each: none lost, none twice
    assert len(smtp.inbox.arrived) == first + REGISTRATIONS  # no job even started twice
    assert all("Traceback" not in log for log in logs.values())
    # The workers sent the emails; the servers only published them.
    assert all('"email: sent"' in logs[name] for name in ("w1.log", "w2.log"))
    assert all('"email: sent"' not in logs[name] for name in ("a.log", "b.log"))
    latencies = sorted(m.at - committed[m.recipients[0]] for m in delivered)
    with capsys.disabled():
        sys.stdout.write(
            f"\nDramatiq, commit to delivery, one registration at a time: median "
            f"{statistics.median(idle) * 1000:.0f} ms; {REGISTRATIONS} at once on 2 servers and "
            f"2 workers: {len(delivered)} emails, {len(delivered) - len(set(recipients))} "
            f"duplicates, median {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms\n"
        )


@pytest.mark.parametrize(
    ("setting", "value", "line"),
    [
        (
            "JOBS_BROKER_URL",
            "http://127.0.0.1:5672/",
            "invalid configuration: JOBS_BROKER_URL: must be a RabbitMQ URL such as "
            "amqp://user:password@127.0.0.1:5672/%2F",
        ),
        (
            "JOBS_ENGINE",
            "embedded",
            "error: JOBS_ENGINE is embedded: the service's own processes run the jobs; set "
            "JOBS_ENGINE=dramatiq to run them in workers",
        ),
    ],
)
def test_the_worker_refuses_bad_settings_in_one_line(setting: str, value: str, line: str) -> None:
    environment = {**os.environ, "JOBS_ENGINE": "dramatiq", setting: value}
    result = subprocess.run(
        [WORKER], cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [line]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"JOBS_QUEUE_LEASE_SECONDS": "60", "JOBS_LEASE_SECONDS": "60"}, "must be above"),
        ({"JOBS_QUEUE": "jobs for us"}, "should match pattern"),
        ({"JOBS_BROKER_URL": "amqp://guest@127.0.0.1:notaport/"}, "must be a RabbitMQ URL"),
        ({"JOBS_ENGINE": "celery"}, "Input should be 'dramatiq' or 'embedded'"),
    ],
)
def test_a_bad_engine_setting_is_refused_with_its_name(
    values: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    message = describe_error(caught.value)
    assert problem in message
    assert "guest" not in message  # the broker URL's credentials are never echoed
