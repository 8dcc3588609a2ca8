"""Jobs in real servers (`serve`, as in production), each process with its embedded runner,
sending to a real SMTP server: a runner killed mid-job, and registrations racing across two
processes."""

import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from app.jobs.models import Job
from tests import databases
from tests.factories import DEFAULT_PASSWORD
from tests.jobs import registrations
from tests.mail import smtp_server
from tests.servers import serve, serve_together, start, wait_until_live

REGISTER = "/api/v1/auth/register"
# Short leases, so a killed runner's job is claimed again within seconds.
SERVED_JOBS = {
    "JOBS_TIMEOUT_SECONDS": "3",
    "JOBS_LEASE_SECONDS": "4",
    "JOBS_BACKOFF_SECONDS": "0.05",
    "JOBS_BACKOFF_MAX_SECONDS": "0.2",
}


def _queued(url: str) -> int:
    async def count() -> int:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.scalar(select(func.count()).select_from(Job)) or 0
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_a_runner_killed_mid_job_runs_it_again_and_its_effect_happens_once(
    tmp_path: Path,
) -> None:
    """The SMTP server holds the first try mid-DATA; the server process is killed (SIGKILL:
    no shutdown, no hand-back). A second process claims the job once the lease passed and
    sends it: one message accepted, carrying the same Message-ID (the job's id) as the try
    that died, by which a copy would be recognised."""
    with (
        smtp_server() as smtp,
        databases.scratch_database(databases.new_database_url("killed"), migrated=True) as url,
    ):
        env = {**smtp.settings, **SERVED_JOBS}
        smtp.inbox.hold.set()
        first = start(url, tmp_path / "first.log", workers=1, env=env)
        try:
            wait_until_live(first)
            registered = httpx.post(
                f"{first.server.base_url}{REGISTER}",
                json={"email": "killed@example.com", "password": DEFAULT_PASSWORD},
            )
            assert registered.status_code == 201, registered.text
            (held,) = smtp.inbox.wait_for(1, arrived=True)  # the job is mid-send
        finally:
            first.process.kill()
            first.process.wait()
        smtp.inbox.hold.clear()
        smtp.inbox.release_held()
        assert smtp.inbox.delivered == []
        assert _queued(url) == 1  # still there, claimed by a runner that is gone

        with serve(url, tmp_path / "second.log", env=env) as second:
            (delivered,) = smtp.inbox.wait_for(1)
            deadline = time.monotonic() + 10
            while _queued(url) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _queued(url) == 0
            time.sleep(0.5)  # nothing else comes
        assert "Traceback" not in second.log()
    assert len(smtp.inbox.delivered) == 1
    assert [m.message_id for m in smtp.inbox.arrived] == [held.message_id] * 2
    assert delivered.message_id == held.message_id
    assert delivered.recipients == ("killed@example.com",)


REGISTRATIONS = 200


def test_concurrent_registrations_on_two_processes_send_one_email_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 registrations at once, spread over two server processes (a runner each, on one
    database): 200 emails, one per account, none twice; the queue ends empty."""
    with (
        smtp_server() as smtp,
        databases.scratch_database(databases.new_database_url("twohundred"), migrated=True) as url,
        serve_together(
            url, (tmp_path / "a.log", smtp.settings), (tmp_path / "b.log", smtp.settings)
        ) as servers,
    ):
        # First one at a time, on an idle queue: how soon a committed job's email is out.
        idle = registrations.one_at_a_time(servers, smtp.inbox, 5)
        first = len(smtp.inbox.delivered)
        committed = registrations.all_at_once(servers, REGISTRATIONS, "racer")
        smtp.inbox.wait_for(first + REGISTRATIONS, within=120)
        deadline = time.monotonic() + 10
        while _queued(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # nothing else comes
        queued = _queued(url)
        logs = [server.log() for server in servers]
    delivered = smtp.inbox.delivered[first:]
    recipients = [m.recipients[0] for m in delivered]
    assert len(delivered) == REGISTRATIONS
    assert sorted(recipients) == sorted(committed)  # one each: none lost, none twice
    assert len({m.message_id for m in delivered}) == REGISTRATIONS
    assert len(smtp.inbox.arrived) == first + REGISTRATIONS  # no job even started twice
    assert queued == 0
    assert all("Traceback" not in log for log in logs)
    # Both processes sent some (each runs the jobs its own requests woke it for, at least).
    assert all('"email: sent"' in log for log in logs)
    latencies = sorted(m.at - committed[m.recipients[0]] for m in delivered)
    with capsys.disabled():
        sys.stdout.write(
            f"\ncommit to delivery, one registration at a time: median "
            f"{statistics.median(idle) * 1000:.0f} ms; {REGISTRATIONS} at once on 2 processes: "
            f"{len(delivered)} emails, {len(delivered) - len(set(recipients))} duplicates, "
            f"median {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms\n"
        )
