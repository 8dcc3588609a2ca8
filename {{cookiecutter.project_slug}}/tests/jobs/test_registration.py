"""The registration's email, end to end in one process: the app with its lifespan (so its
embedded runner), a real database with real commits, and a real SMTP server."""

import json
import uuid

import pytest
from sqlalchemy import func, select

from app.auth import service as auth_service
from app.core.errors import Conflict
from app.db.session import SessionDep
from app.jobs import service as jobs_service
from app.users.jobs import send_welcome_email
from app.users.models import User
from app.users.schemas import UserCreate
from tests import factories
from tests.jobs.conftest import Queue, app_client, eventually, running_app
from tests.mail import Inbox, SmtpServer, smtp_server
from tests.servers import free_port

REGISTER = "/api/v1/auth/register"


def _body(email: str) -> dict[str, str]:
    return {"email": email, "password": factories.DEFAULT_PASSWORD, "full_name": "Ada"}


async def _users(queue: Queue) -> int:
    async with queue.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(User)) or 0


async def test_a_committed_registration_sends_exactly_one_verification_email(
    queue: Queue, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_app(queue, smtp) as app, app_client(app) as client:
        response = await client.post(
            REGISTER, json=_body("new@example.com"), headers={"X-Request-ID": "signup-42"}
        )
        assert response.status_code == 201, response.text
        (message,) = await smtp.inbox.until(1)
        await queue.until_empty()
    assert message.recipients == ("new@example.com",)
    assert message.message["Subject"].startswith("Confirm your address for ")
    assert message.message_id.startswith("<job-")
    assert len(smtp.inbox.arrived) == 1
    # The job's log lines carry the id of the request that enqueued it.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    sent = [line for line in lines if line["message"] == "email: sent"]
    assert [line["request_id"] for line in sent] == ["signup-42"]


async def test_a_duplicate_registration_sends_nothing_more(queue: Queue, smtp: SmtpServer) -> None:
    async with running_app(queue, smtp) as app, app_client(app) as client:
        assert (await client.post(REGISTER, json=_body("twice@example.com"))).status_code == 201
        again = await client.post(REGISTER, json=_body("TWICE@example.com"))
        assert again.status_code == 409
        await smtp.inbox.until(1)
        await queue.until_empty()
    assert [m.recipients for m in smtp.inbox.arrived] == [("twice@example.com",)]


async def test_a_rolled_back_registration_sends_nothing(queue: Queue, smtp: SmtpServer) -> None:
    """The account and its welcome job are written, then the request fails: the rollback
    takes both back, and no email goes out."""
    async with running_app(queue, smtp) as app:

        @app.post("/test/register-then-fail")
        async def register_then_fail(session: SessionDep) -> None:
            data = UserCreate(email="undone@example.com", password=factories.DEFAULT_PASSWORD)
            await auth_service.register(session, passwords=app.state.passwords, data=data)
            raise Conflict("the request fails after the job was enqueued")

        async with app_client(app) as client:
            failed = await client.post("/test/register-then-fail")
            assert failed.status_code == 409
            assert failed.headers["content-type"] == "application/problem+json"
            assert await queue.count() == 0
            assert await _users(queue) == 0
            # A committed registration after it: its email comes, and it is the only one.
            assert (await client.post(REGISTER, json=_body("kept@example.com"))).status_code == 201
            await smtp.inbox.until(1)
            await queue.until_empty()
    assert [m.recipients for m in smtp.inbox.arrived] == [("kept@example.com",)]


async def test_a_restart_sends_the_welcomes_left_pending(queue: Queue, smtp: SmtpServer) -> None:
    """Registrations committed while no runner ran (the service stopped right after their
    commit) are sent once the app starts again."""
    job_ids: list[uuid.UUID] = []
    async with queue.sessionmaker() as session:
        for n in range(3):
            user = await factories.create_user(session, email=f"pending{n}@example.com")
            job_ids.append(await jobs_service.enqueue(session, send_welcome_email, user_id=user.id))
            await session.commit()
    assert await queue.count() == 3
    async with running_app(queue, smtp):
        messages = await smtp.inbox.until(3)
        await queue.until_empty()
    assert sorted(m.recipients[0] for m in messages) == [
        f"pending{n}@example.com" for n in range(3)
    ]
    assert sorted(m.message_id for m in messages) == sorted(
        f"<job-{i}@example.com>" for i in job_ids
    )


async def test_a_deleted_account_gets_no_welcome(queue: Queue, smtp: SmtpServer) -> None:
    async with queue.sessionmaker() as session:
        user = await factories.create_user(session, email="gone@example.com")
        await jobs_service.enqueue(session, send_welcome_email, user_id=user.id)
        await session.commit()
        await session.delete(user)
        await session.commit()
    async with running_app(queue, smtp):
        await queue.until_empty()
    assert smtp.inbox.arrived == []


async def test_an_smtp_server_that_is_down_delays_the_email_without_losing_it(
    queue: Queue,
) -> None:
    """The first tries fail (nothing listens on the port); the job stays queued with its
    error, and is delivered once a server answers there."""
    down = SmtpServer("127.0.0.1", free_port(), Inbox())
    async with queue.sessionmaker() as session:
        user = await factories.create_user(session, email="patient@example.com")
        await jobs_service.enqueue(session, send_welcome_email, user_id=user.id)
        await session.commit()
    async with running_app(queue, down, JOBS_MAX_ATTEMPTS=100):

        async def failed_twice() -> bool:
            (job,) = await queue.jobs()
            return job.attempts >= 2 and job.last_error is not None

        await eventually(failed_twice)
        (job,) = await queue.jobs()
        assert job.last_error is not None
        assert job.last_error.startswith("SMTPConnect")
        with smtp_server(port=down.port) as up:
            (message,) = await up.inbox.until(1)
            await queue.until_empty()
    assert message.recipients == ("patient@example.com",)
