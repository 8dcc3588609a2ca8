"""`jobs list` and `jobs retry`: what an operator sees of dead jobs, and how one runs again."""

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from app import cli
from app.core.config import get_settings
from app.db.base import utcnow
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.jobs.models import Job, JobStatus


@pytest.fixture
def jobs_url(jobs_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The command's settings point at the jobs database, for this test only."""
    monkeypatch.setenv("DATABASE_URL", jobs_database)
    get_settings.cache_clear()
    yield jobs_database
    monkeypatch.undo()
    get_settings.cache_clear()
    asyncio.run(_run_sql(jobs_database, None))


async def _run_sql(url: str, job: Job | None) -> None:
    engine = create_engine(get_settings(), url=url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            if job is None:
                await session.execute(delete(Job))
            else:
                session.add(job)
    finally:
        await engine.dispose()


async def _status(url: str, job_id: uuid.UUID) -> tuple[JobStatus, int] | None:
    engine = create_engine(get_settings(), url=url)
    try:
        async with create_sessionmaker(engine)() as session:
            job = await session.get(Job, job_id)
            return None if job is None else (job.status, job.attempts)
    finally:
        await engine.dispose()


def _job(status: JobStatus, **values: object) -> Job:
    return Job(
        id=uuid.uuid4(),
        name="send_welcome_email",
        arguments={"user_id": str(uuid.uuid4())},
        status=status,
        run_at=utcnow(),
        **{"attempts": 3, **values},
    )


def test_list_shows_the_dead_jobs_with_their_last_error(
    jobs_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = _job(JobStatus.DEAD, last_error="SMTPConnectError: refused\nmore detail")
    pending = _job(JobStatus.PENDING, attempts=0)
    asyncio.run(_run_sql(jobs_url, dead))
    asyncio.run(_run_sql(jobs_url, pending))

    cli.jobs_main(["list", "--dead"])
    header, line = capsys.readouterr().out.strip().splitlines()
    assert header == "1 dead jobs"
    assert line.startswith(f"{dead.id}  dead  attempts=3  send_welcome_email  ")
    assert line.endswith("  last error: SMTPConnectError: refused")

    cli.jobs_main(["list"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "2 queued jobs"
    assert {line.split()[0] for line in lines[1:]} == {str(dead.id), str(pending.id)}


def test_retry_queues_a_dead_job_again(jobs_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    dead = _job(JobStatus.DEAD, last_error="RuntimeError: boom")
    asyncio.run(_run_sql(jobs_url, dead))
    cli.jobs_main(["retry", str(dead.id)])
    assert capsys.readouterr().out.strip() == (
        f"job {dead.id} (send_welcome_email) is queued again; a runner starts it shortly"
    )
    assert asyncio.run(_status(jobs_url, dead.id)) == (JobStatus.PENDING, 0)


def test_retry_refuses_what_it_cannot_retry_in_one_line(jobs_url: str) -> None:
    pending = _job(JobStatus.PENDING)
    asyncio.run(_run_sql(jobs_url, pending))
    with pytest.raises(SystemExit) as exited:
        cli.jobs_main(["retry", str(pending.id)])
    assert (
        exited.value.code
        == "error: Only a dead job can be retried; this one is still pending or running."
    )
    with pytest.raises(SystemExit) as exited:
        cli.jobs_main(["retry", str(uuid.uuid4())])
    assert exited.value.code == "error: The job does not exist (a job that succeeded is deleted)."
    with pytest.raises(SystemExit) as exited:
        cli.jobs_main(["retry", "not-an-id"])
    assert exited.value.code == 2  # argparse's usage error


def test_list_on_an_unmigrated_database_says_to_migrate(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_database)
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            cli.jobs_main(["list"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert exited.value.code == "error: the database has no jobs table; run `make migrate` first"
